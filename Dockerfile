# syntax=docker/dockerfile:1
# Multi-stage: a static binary (CGO off, time zone data compiled in) on a distroless non-root base.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION} -X main.dateBuilt=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      -o /out/rollup ./cmd/rollup

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="rollup" \
      org.opencontainers.image.description="Weekly rollup of contact-centre scenarios on Kafka (Benthos engine)"
COPY --from=build /out/rollup /usr/local/bin/rollup
# Root-owned and read-only for the service user: the pipelines are configuration, not state.
COPY pipelines /etc/rollup/pipelines
COPY config /etc/rollup/config
WORKDIR /etc/rollup
USER 65532:65532
# The Benthos HTTP server: /ping (liveness), /ready (readiness), /metrics (Prometheus).
EXPOSE 4195
ENTRYPOINT ["/usr/local/bin/rollup"]
CMD ["run", "pipelines/weekly-rollup.yaml"]

# syntax=docker/dockerfile:1
# Multi-stage: a static binary (CGO off, time zone data compiled in) on a distroless non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/rollup ./cmd/rollup

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rollup /usr/local/bin/rollup
COPY --chown=65532:65532 pipelines /etc/rollup/pipelines
COPY --chown=65532:65532 config /etc/rollup/config
WORKDIR /etc/rollup
USER 65532:65532
# The Benthos HTTP server: /ping, /ready, /metrics.
EXPOSE 4195
ENTRYPOINT ["/usr/local/bin/rollup"]
CMD ["run", "pipelines/weekly-rollup.yaml"]

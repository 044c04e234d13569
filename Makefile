# rollup: build, test, benchmark. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/rollup
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.dateBuilt=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: help build test test-go test-pipelines test-alerts lint bench bench-seed bench-e2e bench-check soak demo clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## the static binary in bin/rollup
	CGO_ENABLED=0 $(GO) build -trimpath -tags timetzdata -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rollup

test: build test-go test-pipelines ## everything a newcomer runs: go vet, go test, pipeline tests (embedded broker)

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-pipelines: build ## the YAML pipeline tests (rollup test)
	$(BIN) test ./pipelines/...

test-alerts: ## the Prometheus alerting rules and their unit tests (needs promtool)
	promtool check rules config/prometheus/rollup-alerts.yaml
	promtool test rules config/prometheus/rollup-alerts_test.yaml

lint: ## gofmt, go vet and rollup lint of every pipeline
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(BIN) lint ./pipelines/*.yaml

bench: ## processor benchmarks on one core (rows/s, allocs)
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./plugins/... ./internal/...

bench-seed: build ## the stdio pipeline beside the pandas and polars peers (test/bench/peers) on the same 20 requests, both ratios
	BIN=$(BIN) ./scripts/bench-seed.sh

bench-e2e: build ## end to end through a broker: req/s by threads and replicas, latency, ratios to the pandas and polars peers, exactly-once beside at-least-once, worker, CPU split, memory
	ROLLUP_BIN=$(abspath $(BIN)) ./scripts/bench-e2e.sh $(BENCH_FLAGS)

bench-check: build ## do the pandas and polars peers agree with rollup to 1e-9 on varied generated requests?
	$(GO) run ./test/bench -check -bin $(BIN)

soak: build ## 30 minutes at 70 % of capacity against the dev broker: RSS, heap, goroutines every 10 s, slopes, lost 0 (not CI)
	ROLLUP_BIN=$(abspath $(BIN)) $(GO) run ./test/bench -soak $(or $(SOAK),30m) $(BENCH_FLAGS)

demo: build ## the real job on an embedded broker
	$(BIN) demo

clean:
	rm -rf bin

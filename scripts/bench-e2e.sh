#!/usr/bin/env bash
# End-to-end benchmark through a Kafka broker (test/bench): throughput for each thread and replica
# count, latency at a steady rate, the project's peers (test/bench/peers: pandas and polars) on the
# same requests and both ratios, the worker pipeline, a CPU profile split by stage, and peak RSS
# against the memory formula. Prints a markdown report (test/bench/RESULTS.md explains it).
#
#   scripts/bench-e2e.sh                      # embedded broker (`rollup dev-broker` process)
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 scripts/bench-e2e.sh   # a real broker (plaintext)
#   scripts/bench-e2e.sh -n 80 -o /tmp/bench.md -keep             # flags: go run ./test/bench -h
#
# ROLLUP_BIN: the rollup binary to measure (default: built from this checkout by the bench).
# The peers need python3; the bench pip-installs pandas and polars when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./test/bench "$@"

#!/usr/bin/env bash
# End-to-end benchmark through a Kafka broker (test/bench): throughput for each thread and replica
# count, latency at a steady rate, the seed's pandas path on the same requests and the ratio, the
# worker pipeline, a CPU profile split by stage, and peak RSS against the memory formula. Prints a
# markdown report (test/bench/RESULTS.md explains it).
#
#   scripts/bench-e2e.sh                      # embedded broker (`rollup dev-broker` process)
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 scripts/bench-e2e.sh   # a real broker (plaintext)
#   scripts/bench-e2e.sh -n 80 -o /tmp/bench.md -keep             # flags: go run ./test/bench -h
#
# ROLLUP_BIN: the rollup binary to measure (default: built from this checkout by the bench).
# SHARED: the directory holding tools/seed_peer.py (default ../shared). The peer needs python3
# with pandas; the bench installs pandas with pip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export SHARED=${SHARED:-$(cd .. && pwd)/shared}
exec go run ./test/bench "$@"

#!/usr/bin/env bash
# The stdio pipeline beside the project's peers (test/bench/peers: pandas, the old service's path, and
# polars, the strongest Python rewrite) on the same seed-sized requests from internal/gen, in one run,
# with both ratios. Every peer answer must agree with rollup's to 1e-9 relative.
#
#   scripts/bench-seed.sh [N requests, default 20]
#
# Fairness: each peer's time is the sum of its own per-request timings (Python start and imports
# excluded); ours is the whole process's (start-up included), fastest of three runs. The peers need
# python3; the bench pip-installs pandas and polars when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/rollup}
[ -x "$BIN" ] || { echo "bench-seed: $BIN missing: run 'make build' first" >&2; exit 1; }
exec go run ./test/bench -seed -bin "$BIN" -n "${1:-20}"

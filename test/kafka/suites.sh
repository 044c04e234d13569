#!/usr/bin/env bash
# Runs the Kafka integration suites and the fault suite against a fresh cluster of one Kafka version,
# then stops and removes the cluster. .ci/run calls it once per version.
#
#   test/kafka/suites.sh KAFKA_VERSION [FAULT_RUN]
#
# FAULT_RUN: a `go test -run` pattern for a subset of the fault suite (empty: all of it).
# FAULT_EOS_RUN (environment): when set, a `go test -run` pattern of the fault scenarios to run again in
# exactly-once mode (FAULT_EXACTLY_ONCE=true, read_committed checker, duplicated must be 0); its table
# goes to $REPORT_DIR/fault-<version>-eos.md. The cluster is
# kafka.sh's (KAFKA_BROKERS nodes, default 3) with KAFKA_SECURITY (default sasl_scram,tls) on KAFKA_PORT
# (default 9092). The fault table goes to $REPORT_DIR/fault-<version>.md (default: a temporary dir) and
# to stdout, with a timing line per phase. Exit status: non-zero if a suite failed (both always run).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:?usage: test/kafka/suites.sh KAFKA_VERSION [FAULT_RUN]}
run=${2:-}
export KAFKA_VERSION=$version
export KAFKA_SECURITY=${KAFKA_SECURITY-sasl_scram,tls}
report_dir=${REPORT_DIR:-$(mktemp -d)}
mkdir -p "$report_dir"
report=$report_dir/fault-$version.md
kafka=test/kafka/kafka.sh
phase() { printf '\n--- Kafka %s: %s [%s]\n' "$version" "$*" "$(date -u +%T)"; }
timings=()
timed() { # name command...
	local name=$1 t0=$SECONDS rc=0
	shift
	"$@" || rc=$?
	timings+=("$(printf '%-22s %4ds  %s' "$name" "$((SECONDS - t0))" "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")")")
	return "$rc"
}

phase "fresh cluster"
$kafka clean >/dev/null 2>&1 || true
trap '$kafka clean >/dev/null 2>&1 || true' EXIT
timed "cluster start" $kafka start
eval "$($kafka env)"
echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS (Kafka $KAFKA_VERSION, $KAFKA_BROKERS nodes)"

failed=0
phase "integration suites"
timed "integration suites" go test -count=1 -timeout 20m ./plugins/kafka/ ./internal/devbroker/ ./test/e2e/ || failed=1

phase "fault suite${run:+ (subset: -run '$run')}"
fault() {
	FAULT_REPORT="$report" go test -count=1 -tags fault -timeout 45m -v ${run:+-run "$run"} ./test/fault/ 2>&1 |
		grep --line-buffered -vE '^=== (RUN|PAUSE|CONT|NAME)'
}
timed "fault suite${run:+ (subset)}" fault || failed=1

if [[ -n "${FAULT_EOS_RUN:-}" ]]; then
	phase "fault suite, exactly-once mode (-run '$FAULT_EOS_RUN')"
	eos() {
		FAULT_EXACTLY_ONCE=true FAULT_REPORT="${report%.md}-eos.md" go test -count=1 -tags fault -timeout 30m -v \
			-run "$FAULT_EOS_RUN" ./test/fault/ 2>&1 | grep --line-buffered -vE '^=== (RUN|PAUSE|CONT|NAME)'
	}
	timed "fault suite, exactly-once" eos || failed=1
fi

phase "stop"
timed "cluster stop + clean" $kafka clean
trap - EXIT

phase "summary"
[[ -f "$report" ]] && cat "$report"
[[ -f "${report%.md}-eos.md" ]] && { echo; cat "${report%.md}-eos.md"; }
printf '\nTimings, Kafka %s:\n' "$version"
printf '  %s\n' "${timings[@]}"
exit "$failed"

#!/usr/bin/env bash
# Installs what test/kafka/kafka.sh needs on a fresh Debian machine, quietly, skipping what is already
# there: a Java runtime (11+) with keytool, Maven (to fetch the broker jars from Maven Central), openssl
# (TLS certificates) and kcat (librdkafka's CLI: readiness check and interop tests). Then fetches the
# jars of each Kafka version in KAFKA_FETCH_VERSIONS (default: $KAFKA_VERSION, else 3.9.0) into the cache
# (a no-op when cached). KAFKA_SKIP_FETCH=1 skips that step. Kafka 4.x needs Java 17.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

need=()
command -v "$JAVA" >/dev/null 2>&1 || need+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v flock >/dev/null 2>&1 && command -v setsid >/dev/null 2>&1 || need+=(util-linux)

if ((${#need[@]})); then
	command -v apt-get >/dev/null 2>&1 || {
		echo "install-deps.sh: error: apt-get not found; install by hand: ${need[*]}" >&2
		exit 1
	}
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "install-deps.sh: error: not root and no sudo; install by hand: ${need[*]}" >&2
			exit 1
		}
		sudo=(sudo)
	fi
	echo "install-deps.sh: installing ${need[*]}" >&2
	out=$(mktemp)
	if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${need[@]}"; } >"$out" 2>&1; then
		tail -n 30 "$out" >&2
		rm -f "$out"
		echo "install-deps.sh: error: apt-get could not install ${need[*]}" >&2
		exit 1
	fi
	rm -f "$out"
fi

if [[ "${KAFKA_SKIP_FETCH:-0}" != 1 ]]; then
	for v in ${KAFKA_FETCH_VERSIONS:-${KAFKA_VERSION:-3.9.0}}; do
		KAFKA_VERSION=$v "$SCRIPT_DIR/kafka.sh" fetch
	done
fi

#!/usr/bin/env bash
# Runs a real Apache Kafka 3.9.0 broker (single node, KRaft, broker+controller in one JVM) on 127.0.0.1,
# with no Docker and nothing downloaded but the broker's jars from Maven Central (see pom.xml).
#
#   kafka.sh start     fetch jars (cached), format a fresh log dir, start, wait until it answers
#   kafka.sh stop      SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT seconds
#   kafka.sh kill9     SIGKILL, keeping the log dir; `KAFKA_REUSE_DATA=1 kafka.sh start` restarts on it
#   kafka.sh pause     SIGSTOP (the broker freezes; clients see timeouts)
#   kafka.sh resume    SIGCONT
#   kafka.sh status    running / paused / stopped (exit 0 / 0 / 3)
#   kafka.sh env       prints `export KAFKA_BOOTSTRAP_SERVERS=...` (and the SASL/TLS variables)
#   kafka.sh fetch     only materialise the jar cache
#   kafka.sh logs      last lines of the broker log (KAFKA_LOG_LINES, default 80)
#   kafka.sh clean     stop, then remove the work dir (data, certificates, logs)
#
# Settings (environment):
#   KAFKA_PORT=9092            PLAINTEXT listener, always on (the test harness uses it)
#   KAFKA_SASL_PORT=PORT+1     SASL_PLAINTEXT listener (SCRAM-SHA-256 and SCRAM-SHA-512)
#   KAFKA_TLS_PORT=PORT+2      SSL listener (self-signed CA, server auth only)
#   KAFKA_CONTROLLER_PORT=PORT+3  KRaft controller listener
#   KAFKA_SECURITY=            comma list of: sasl_scram, tls (e.g. sasl_scram,tls); empty = PLAINTEXT only
#   KAFKA_SASL_USERNAME=rollup KAFKA_SASL_PASSWORD=rollup-secret   the SCRAM user made at format time
#   KAFKA_REUSE_DATA=0         1: start on the existing log dir without reformatting (restart scenarios)
#   KAFKA_WORKDIR=${TMPDIR:-/tmp}/rollup-kafka-$KAFKA_PORT   config, data, pid file, log, certificates
#   ROLLUP_CACHE=$HOME/.cache/rollup   the jars go to $ROLLUP_CACHE/kafka-3.9.0/libs
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx768m"   KAFKA_READY_TIMEOUT=120   KAFKA_STOP_TIMEOUT=30
#   KAFKA_NUM_PARTITIONS=3     default partition count of auto-created topics
set -euo pipefail

readonly KAFKA_VERSION=3.9.0
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

PORT=${KAFKA_PORT:-9092}
SASL_PORT=${KAFKA_SASL_PORT:-$((PORT + 1))}
TLS_PORT=${KAFKA_TLS_PORT:-$((PORT + 2))}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 3))}
SECURITY=${KAFKA_SECURITY:-}
SASL_USER=${KAFKA_SASL_USERNAME:-rollup}
SASL_PASS=${KAFKA_SASL_PASSWORD:-rollup-secret}
REUSE=${KAFKA_REUSE_DATA:-0}
WORKDIR=${KAFKA_WORKDIR:-${TMPDIR:-/tmp}/rollup-kafka-$PORT}
CACHE=${ROLLUP_CACHE:-${HOME:-/root}/.cache/rollup}/kafka-$KAFKA_VERSION
LIBS=$CACHE/libs
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-120}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
NUM_PARTITIONS=${KAFKA_NUM_PARTITIONS:-3}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

DATA=$WORKDIR/data
CONF=$WORKDIR/server.properties
LOG4J=$WORKDIR/log4j.properties
TOOLS_LOG4J=$WORKDIR/tools-log4j.properties
PIDFILE=$WORKDIR/kafka.pid
LOGFILE=$WORKDIR/kafka.log
STATE=$WORKDIR/state.env     # what the running broker was started with (read by `env`)
FORMATTED=$WORKDIR/format.env # what the log dir was formatted with (checked on reuse)
TLS_DIR=$WORKDIR/tls
TLS_STOREPASS=rollup-test-store # keystore password: test-only, the store holds a throwaway key

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
	printf 'kafka.sh: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------------------------------------- checks

want_sasl=0
want_tls=0
parse_security() {
	local item
	IFS=',' read -r -a items <<<"${SECURITY// /}"
	for item in "${items[@]+"${items[@]}"}"; do
		case "$item" in
		'' | none | plaintext) ;;
		sasl_scram | sasl | scram) want_sasl=1 ;;
		tls | ssl) want_tls=1 ;;
		*) die "KAFKA_SECURITY: unknown item '$item' (use a comma list of: sasl_scram, tls)" ;;
		esac
	done
}

check_port_number() {
	local name=$1 value=$2
	if [[ ! "$value" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
		die "$name='$value' is not a port number"
	fi
}

need_java() {
	command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Java 11+ needed, 17 recommended; run test/kafka/install-deps.sh)"
	local major
	major=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -1)
	major=${major#1.}
	[[ -n "$major" && "$major" -ge 11 ]] || die "Kafka $KAFKA_VERSION needs Java 11 or newer; $JAVA is '${major:-unknown}'"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --------------------------------------------------------------------------------------------- process

# The pid in the pid file, if that process is alive and is our broker (guards against pid reuse).
broker_pid() {
	[[ -f "$PIDFILE" ]] || return 1
	local pid
	pid=$(<"$PIDFILE")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $CONF" || return 1
	echo "$pid"
}

# Process state letter: R/S/D running, T stopped (paused), Z zombie.
proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }

wait_gone() { # pid seconds
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null && [[ "$(proc_state "$pid")" != Z ]]; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# ------------------------------------------------------------------------------------------------ jars

fetch_jars() {
	if [[ -f "$LIBS/.complete" ]]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven 3.6+ needed to fetch the Kafka jars from Maven Central)"
	need_java
	log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
	mkdir -p "$CACHE"
	local tmp out
	tmp=$(mktemp -d "$CACHE/libs.tmp.XXXXXX")
	out=$(mktemp)
	local t0=$SECONDS
	if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$out" 2>&1; then
		tail -n 40 "$out" >&2
		rm -rf "$tmp" "$out"
		die "mvn could not fetch the Kafka jars (see above); is Maven Central reachable?"
	fi
	rm -f "$out"
	[[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || {
		rm -rf "$tmp"
		die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
	}
	touch "$tmp/.complete"
	# Another run may have finished first: keep theirs.
	if ! mv -T "$tmp" "$LIBS" 2>/dev/null; then rm -rf "$tmp"; fi
	log "jars ready ($(find "$LIBS" -name '*.jar' | wc -l) jars, $((SECONDS - t0))s)"
}

# ---------------------------------------------------------------------------------------------- config

write_log4j() {
	# One log file: the broker logs to stdout, which start() sends to $LOGFILE.
	cat >"$LOG4J" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
EOF
	cat >"$TOOLS_LOG4J" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

write_config() {
	local listeners="PLAINTEXT://127.0.0.1:$PORT"
	local advertised="PLAINTEXT://127.0.0.1:$PORT"
	((want_sasl)) && listeners+=",SASL_PLAINTEXT://127.0.0.1:$SASL_PORT" && advertised+=",SASL_PLAINTEXT://127.0.0.1:$SASL_PORT"
	((want_tls)) && listeners+=",SSL://127.0.0.1:$TLS_PORT" && advertised+=",SSL://127.0.0.1:$TLS_PORT"
	listeners+=",CONTROLLER://127.0.0.1:$CONTROLLER_PORT"

	cat >"$CONF" <<EOF
# Written by test/kafka/kafka.sh; rewritten at every start.
# Single-node KRaft: this process is both the broker and the only controller (the quorum).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
# Loopback only. PLAINTEXT stays on whatever KAFKA_SECURITY says: the test harness uses it.
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
log.dirs=$DATA

# Message size. A 500k-row request is about 25-35 MB after gzip+base64, and its response (or its DLQ copy,
# which carries the original value plus error headers) must fit too. Kafka's default message.max.bytes is
# about 1 MB, which would refuse any seed request over 1 MB. 100 MiB per record batch leaves room;
# replica.fetch.max.bytes and the broker's fetch.max.bytes must be at least as large so such a batch can be
# replicated and fetched, and socket.request.max.bytes (one whole produce request) larger still.
message.max.bytes=104857600
replica.fetch.max.bytes=104857600
fetch.max.bytes=104857600
socket.request.max.bytes=209715200

# One node: every internal topic has replication factor 1 and min ISR 1.
auto.create.topics.enable=true
num.partitions=$NUM_PARTITIONS
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Tests start consumer groups often: do not wait 3 s for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
EOF
	if ((want_sasl)); then
		cat >>"$CONF" <<EOF

# SASL/SCRAM on the SASL_PLAINTEXT listener. The credentials live in the KRaft metadata log: the user
# '$SASL_USER' was added at format time (kafka.tools.StorageTool format --add-scram), for both mechanisms.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
	fi
	if ((want_tls)); then
		cat >>"$CONF" <<EOF

# TLS on the SSL listener: server certificate signed by a throwaway CA ($TLS_DIR/ca.pem); no client auth.
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.ssl.ssl.keystore.password=$TLS_STOREPASS
listener.name.ssl.ssl.key.password=$TLS_STOREPASS
listener.name.ssl.ssl.client.auth=none
EOF
	fi
}

# Self-signed CA, a broker certificate for 127.0.0.1/localhost signed by it, and an unrelated CA that
# signed nothing here (for "certificate from an unknown CA" tests). Kept across restarts.
make_tls() {
	if [[ -f "$TLS_DIR/broker.p12" && -f "$TLS_DIR/ca.pem" && -f "$TLS_DIR/other-ca.pem" ]]; then
		return 0
	fi
	command -v openssl >/dev/null 2>&1 || die "openssl not found (run test/kafka/install-deps.sh)"
	mkdir -p "$TLS_DIR"
	local d=$TLS_DIR out
	out=$(mktemp)
	{
		openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
			-subj "/CN=rollup test CA" -keyout "$d/ca.key" -out "$d/ca.pem" &&
			openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
				-subj "/CN=rollup unknown CA" -keyout "$d/other-ca.key" -out "$d/other-ca.pem" &&
			openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
				-keyout "$d/broker.key" -out "$d/broker.csr" &&
			printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >"$d/broker.ext" &&
			openssl x509 -req -sha256 -days 3650 -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
				-CAcreateserial -extfile "$d/broker.ext" -out "$d/broker.pem" &&
			openssl pkcs12 -export -name broker -in "$d/broker.pem" -inkey "$d/broker.key" \
				-certfile "$d/ca.pem" -out "$d/broker.p12" -passout "pass:$TLS_STOREPASS"
	} >"$out" 2>&1 || {
		cat "$out" >&2
		rm -f "$out" "$d/broker.p12"
		die "could not make the TLS certificates with openssl (see above)"
	}
	# Make sure Java can read what openssl wrote (keytool ships with the JDK).
	local keytool=${JAVA_HOME:+$JAVA_HOME/bin/}keytool
	if command -v "$keytool" >/dev/null 2>&1; then
		"$keytool" -list -storetype PKCS12 -keystore "$d/broker.p12" -storepass "$TLS_STOREPASS" >"$out" 2>&1 || {
			cat "$out" >&2
			rm -f "$out" "$d/broker.p12"
			die "Java cannot read the PKCS12 keystore openssl made ($d/broker.p12)"
		}
	fi
	rm -f "$out" "$d/broker.csr" "$d/broker.ext"
}

tool() { # run a Kafka tool class in a JVM of its own
	"$JAVA" -Xmx256m -Dlog4j.configuration="file:$TOOLS_LOG4J" -cp "$LIBS/*" "$@"
}

format_dir() {
	local cluster_id out
	cluster_id=$(tool kafka.tools.StorageTool random-uuid) || die "StorageTool random-uuid failed"
	local args=(format -t "$cluster_id" -c "$CONF")
	if ((want_sasl)); then
		args+=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASS]"
			--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASS]")
	fi
	out=$(mktemp)
	tool kafka.tools.StorageTool "${args[@]}" >"$out" 2>&1 || {
		# The tool's output never holds the password (it prints only the formatting result).
		cat "$out" >&2
		rm -f "$out"
		die "StorageTool format failed (see above)"
	}
	rm -f "$out"
	printf 'FORMATTED_SASL=%s\nFORMATTED_SASL_USER=%q\nCLUSTER_ID=%s\n' "$want_sasl" "$SASL_USER" "$cluster_id" >"$FORMATTED"
	log "formatted $DATA (cluster id $cluster_id)"
}

# --------------------------------------------------------------------------------------------- commands

fingerprint() { echo "port=$PORT sasl=$want_sasl:$SASL_PORT:$SASL_USER tls=$want_tls:$TLS_PORT controller=$CONTROLLER_PORT"; }

write_state() {
	{
		echo "STATE_FINGERPRINT='$(fingerprint)'"
		printf 'export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$PORT"
		if ((want_sasl)); then
			printf 'export KAFKA_SASL_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$SASL_PORT"
			printf 'export KAFKA_SASL_MECHANISMS=SCRAM-SHA-256,SCRAM-SHA-512\n'
			printf 'export KAFKA_SASL_USERNAME=%q\n' "$SASL_USER"
			printf 'export KAFKA_SASL_PASSWORD=%q\n' "$SASL_PASS"
		fi
		if ((want_tls)); then
			printf 'export KAFKA_TLS_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$TLS_PORT"
			printf 'export KAFKA_TLS_CA_FILE=%q\n' "$TLS_DIR/ca.pem"
			printf 'export KAFKA_TLS_UNKNOWN_CA_FILE=%q\n' "$TLS_DIR/other-ca.pem"
		fi
	} >"$STATE"
}

print_log_tail() {
	local n=${1:-60}
	if [[ -f "$LOGFILE" ]]; then
		echo "---- last $n lines of $LOGFILE ----" >&2
		tail -n "$n" "$LOGFILE" >&2
		echo "----" >&2
	fi
}

# Ready means: the log says "Kafka Server started" after our start, every listener accepts TCP, and (when
# kcat is installed) a metadata request on the PLAINTEXT listener lists broker 1.
wait_ready() { # pid log-offset
	local pid=$1 offset=$2 deadline=$((SECONDS + READY_TIMEOUT))
	local ports=("$PORT")
	((want_sasl)) && ports+=("$SASL_PORT")
	((want_tls)) && ports+=("$TLS_PORT")
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			print_log_tail 80
			rm -f "$PIDFILE"
			die "the broker exited during startup (log: $LOGFILE)"
		fi
		if tail -c +"$((offset + 1))" "$LOGFILE" 2>/dev/null | grep -q 'Kafka Server started'; then
			local p ok=1
			for p in "${ports[@]}"; do port_open "$p" || ok=0; done
			if ((ok)) && command -v kcat >/dev/null 2>&1; then
				timeout 15 kcat -L -b "127.0.0.1:$PORT" -m 5 2>/dev/null | grep -q 'broker 1 at' || ok=0
			fi
			((ok)) && return 0
		fi
		if ((SECONDS >= deadline)); then
			print_log_tail 80
			die "the broker did not answer within ${READY_TIMEOUT}s (still running as pid $pid; run 'kafka.sh stop')"
		fi
		sleep 0.5
	done
}

cmd_start() {
	parse_security
	local n
	for n in PORT SASL_PORT TLS_PORT CONTROLLER_PORT; do check_port_number "KAFKA_$n" "${!n}"; done
	[[ "$NUM_PARTITIONS" =~ ^[1-9][0-9]*$ ]] || die "KAFKA_NUM_PARTITIONS='$NUM_PARTITIONS' is not a positive number"
	mkdir -p "$WORKDIR"
	exec 9>"$WORKDIR/.lock"
	flock -w 60 9 || die "another kafka.sh holds $WORKDIR/.lock"

	local pid
	if pid=$(broker_pid); then
		local running_fp=''
		[[ -f "$STATE" ]] && running_fp=$(sed -n "s/^STATE_FINGERPRINT='\(.*\)'$/\1/p" "$STATE")
		[[ "$running_fp" == "$(fingerprint)" ]] ||
			die "a broker is already running from $WORKDIR (pid $pid) with other settings ($running_fp); run 'kafka.sh stop' first"
		[[ "$(proc_state "$pid")" != T ]] || die "the broker (pid $pid) is paused; run 'kafka.sh resume'"
		log "already running (pid $pid) on 127.0.0.1:$PORT"
		return 0
	fi
	rm -f "$PIDFILE"

	need_java
	fetch_jars
	for n in PORT CONTROLLER_PORT; do
		port_open "${!n}" && die "port ${!n} ($n) on 127.0.0.1 is already in use by another process"
	done
	((want_sasl)) && port_open "$SASL_PORT" && die "port $SASL_PORT (SASL) on 127.0.0.1 is already in use"
	((want_tls)) && port_open "$TLS_PORT" && die "port $TLS_PORT (TLS) on 127.0.0.1 is already in use"

	local reuse=0
	if [[ "$REUSE" == 1 && -f "$DATA/meta.properties" ]]; then
		reuse=1
		if ((want_sasl)); then
			local FORMATTED_SASL=0 FORMATTED_SASL_USER=''
			# shellcheck disable=SC1090
			[[ -f "$FORMATTED" ]] && source "$FORMATTED"
			[[ "$FORMATTED_SASL" == 1 && "$FORMATTED_SASL_USER" == "$SASL_USER" ]] ||
				die "KAFKA_REUSE_DATA=1 but $DATA was formatted without the SCRAM user '$SASL_USER'; start without KAFKA_REUSE_DATA to reformat"
		fi
	elif [[ "$REUSE" == 1 ]]; then
		log "KAFKA_REUSE_DATA=1 but $DATA is not formatted: formatting a new one"
	fi
	if ((!reuse)); then
		rm -rf "$DATA" "$FORMATTED" "$LOGFILE"
	fi

	write_log4j
	((want_tls)) && make_tls
	write_config
	((reuse)) || format_dir

	local offset=0
	[[ -f "$LOGFILE" ]] && offset=$(stat -c %s "$LOGFILE")
	printf '==== kafka.sh start %s (reuse=%s) ====\n' "$(date -u +%FT%TZ)" "$reuse" >>"$LOGFILE"
	offset=$(stat -c %s "$LOGFILE")

	# 9>&-: the broker must not inherit the lock descriptor (it would hold the lock for its whole life).
	# setsid: the broker does not share the caller's process group or terminal (a Ctrl-C or a harness
	# killing its group must not take it down unasked); the inner shell writes its own pid and then execs
	# java, so the pid file names the JVM itself (what kill9/pause/resume signal).
	# shellcheck disable=SC2086,SC2016
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
		"$JAVA" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$LOG4J" -cp "$LIBS/*" kafka.Kafka "$CONF" \
		</dev/null >>"$LOGFILE" 2>&1 9>&- &
	local t0=$SECONDS tries=0
	while [[ ! -s "$PIDFILE" ]] && ((tries++ < 50)); do sleep 0.1; done
	[[ -s "$PIDFILE" ]] || die "the broker process did not start"
	pid=$(<"$PIDFILE")
	write_state
	wait_ready "$pid" "$offset"
	local what="PLAINTEXT 127.0.0.1:$PORT"
	((want_sasl)) && what+=", SASL_PLAINTEXT(SCRAM) 127.0.0.1:$SASL_PORT"
	((want_tls)) && what+=", SSL 127.0.0.1:$TLS_PORT"
	log "Kafka $KAFKA_VERSION ready in $((SECONDS - t0))s (pid $pid; $what; log $LOGFILE)"
}

with_lock() {
	mkdir -p "$WORKDIR"
	exec 9>"$WORKDIR/.lock"
	flock -w 60 9 || die "another kafka.sh holds $WORKDIR/.lock"
}

cmd_stop() {
	with_lock
	local pid
	if ! pid=$(broker_pid); then
		rm -f "$PIDFILE"
		log "not running"
		return 0
	fi
	# A paused JVM cannot handle SIGTERM until continued.
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
		log "no exit ${STOP_TIMEOUT}s after SIGTERM: sending SIGKILL to $pid"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
	fi
	rm -f "$PIDFILE"
	log "stopped (pid $pid)"
}

cmd_kill9() {
	with_lock
	local pid
	pid=$(broker_pid) || die "not running"
	kill -KILL "$pid"
	wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
	rm -f "$PIDFILE"
	log "killed pid $pid with SIGKILL; the log dir is kept: 'KAFKA_REUSE_DATA=1 kafka.sh start' restarts on it"
}

cmd_signal() { # STOP|CONT
	local pid
	pid=$(broker_pid) || die "not running"
	kill -"$1" "$pid"
	if [[ "$1" == STOP ]]; then log "paused pid $pid (SIGSTOP)"; else log "resumed pid $pid (SIGCONT)"; fi
}

cmd_status() {
	local pid
	if pid=$(broker_pid); then
		local st=running
		[[ "$(proc_state "$pid")" == T ]] && st=paused
		echo "$st (pid $pid, 127.0.0.1:$PORT, work dir $WORKDIR)"
		return 0
	fi
	if [[ -f "$PIDFILE" ]]; then
		echo "stopped (stale pid file $PIDFILE)"
	else
		echo "stopped"
	fi
	return 3
}

cmd_env() {
	if [[ -f "$STATE" ]]; then
		grep '^export ' "$STATE"
	else
		# Not started yet from this work dir: print what `start` would use.
		parse_security
		printf 'export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$PORT"
		((want_sasl)) && printf 'export KAFKA_SASL_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$SASL_PORT"
		((want_tls)) && printf 'export KAFKA_TLS_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$TLS_PORT"
		return 0
	fi
}

cmd_clean() {
	cmd_stop
	rm -rf "$WORKDIR"
	log "removed $WORKDIR"
}

main() {
	[[ $# -eq 1 ]] || usage
	case "$1" in
	start) cmd_start ;;
	stop) cmd_stop ;;
	kill9 | kill-9) cmd_kill9 ;;
	pause) cmd_signal STOP ;;
	resume) cmd_signal CONT ;;
	status) cmd_status ;;
	env) cmd_env ;;
	fetch) fetch_jars ;;
	logs) if [[ -f "$LOGFILE" ]]; then tail -n "${KAFKA_LOG_LINES:-80}" "$LOGFILE"; else die "no log at $LOGFILE"; fi ;;
	clean) cmd_clean ;;
	-h | --help | help) usage ;;
	*)
		log "unknown command '$1'"
		usage
		;;
	esac
}

main "$@"

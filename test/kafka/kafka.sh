#!/usr/bin/env bash
# Runs a real Apache Kafka cluster on 127.0.0.1: KAFKA_BROKERS nodes (default 3), each one JVM that is
# both a broker and a KRaft controller ("combined" nodes: the 3 controllers form the metadata quorum,
# the cheapest replicated layout on a small machine), with no Docker and nothing downloaded but the jars
# from Maven Central (see pom.xml). Kafka 3.9.x or 4.x (KAFKA_VERSION). With 3 nodes, every topic gets
# replication factor 3 and min.insync.replicas 2 by default (__consumer_offsets and the transaction log
# too); with fewer nodes, RF = the node count and min ISR = max(1, RF - 1).
#
#   kafka.sh start [ID]   no ID: fetch jars (cached), format fresh log dirs, start every node, wait until
#                         each answers. ID: start that node again on its data (after stop/kill9 ID)
#   kafka.sh stop [ID]    SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT seconds
#   kafka.sh kill9 [ID]   SIGKILL, keeping the data; `kafka.sh start ID` restarts it on it
#   kafka.sh pause [ID]   SIGSTOP (the node freezes; clients and the other nodes see timeouts)
#   kafka.sh resume [ID]  SIGCONT
#                         (without ID, stop/kill9/pause/resume act on every node)
#   kafka.sh status [ID]  one line per node: running / paused / stopped; exit 0 all running or paused,
#                         3 none, 4 some
#   kafka.sh leader TOPIC PARTITION   the id of the broker leading that partition (TopicCommand)
#   kafka.sh controller   the id of the active KRaft controller (MetadataQuorumCommand describe --status)
#   kafka.sh env          prints `export KAFKA_BOOTSTRAP_SERVERS=host:port,...` (every node; and the
#                         SASL/TLS variables, KAFKA_VERSION, KAFKA_BROKERS)
#   kafka.sh fetch        only materialise the jar cache of KAFKA_VERSION
#   kafka.sh logs [ID]    last lines of the node logs (KAFKA_LOG_LINES, default 80)
#   kafka.sh clean        stop (SIGKILL after 5 s), then remove the work dir (data, certificates, logs)
#
# Settings (environment). Commands other than a fresh `start` read the version, node count and
# security of the running cluster back from its work dir, so only KAFKA_PORT/KAFKA_WORKDIR must match.
#   KAFKA_VERSION=3.9.0        3.9.x or 4.x (Kafka 4 needs Java 17: a java from /usr/lib/jvm is used
#                              when the default one is too old)
#   KAFKA_BROKERS=3            node count, 1 to 9 (1: a single node for a quick local run)
#   KAFKA_PORT=9092            node 1's PLAINTEXT listener, always on (the test harness uses it)
#   KAFKA_SASL_PORT=PORT+1     node 1's SASL_PLAINTEXT listener (SCRAM-SHA-256 and SCRAM-SHA-512)
#   KAFKA_TLS_PORT=PORT+2      node 1's SSL listener (self-signed CA, server auth only)
#   KAFKA_CONTROLLER_PORT=PORT+3  node 1's KRaft controller listener
#   KAFKA_PORT_STEP=10         node N's ports are node 1's + (N-1)*STEP (9092, 9102, 9112, ...)
#   KAFKA_SECURITY=            comma list of: sasl_scram, tls (e.g. sasl_scram,tls); empty = PLAINTEXT only
#   KAFKA_SASL_USERNAME=rollup KAFKA_SASL_PASSWORD=rollup-secret   the SCRAM user made at format time
#   KAFKA_REUSE_DATA=0         1: `start` without ID restarts every node on its data without reformatting
#   KAFKA_WORKDIR=${TMPDIR:-/tmp}/rollup-kafka-$KAFKA_PORT   node-N/ (config, data, pid, log), tls/, state
#   ROLLUP_CACHE=$HOME/.cache/rollup   the jars go to $ROLLUP_CACHE/kafka-$KAFKA_VERSION/libs-<pom hash>
#   KAFKA_HEAP_OPTS="-Xms128m -Xmx512m" (per node)   KAFKA_READY_TIMEOUT=180   KAFKA_STOP_TIMEOUT=30
#   KAFKA_NUM_PARTITIONS=3     default partition count of auto-created topics
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

VERSION=${KAFKA_VERSION:-3.9.0}
NBROKERS=${KAFKA_BROKERS:-3}
PORT=${KAFKA_PORT:-9092}
SASL_PORT=${KAFKA_SASL_PORT:-$((PORT + 1))}
TLS_PORT=${KAFKA_TLS_PORT:-$((PORT + 2))}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 3))}
PORT_STEP=${KAFKA_PORT_STEP:-10}
SECURITY=${KAFKA_SECURITY:-}
SASL_USER=${KAFKA_SASL_USERNAME:-rollup}
SASL_PASS=${KAFKA_SASL_PASSWORD:-rollup-secret}
REUSE=${KAFKA_REUSE_DATA:-0}
WORKDIR=${KAFKA_WORKDIR:-${TMPDIR:-/tmp}/rollup-kafka-$PORT}
CACHE_ROOT=${ROLLUP_CACHE:-${HOME:-/root}/.cache/rollup}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-180}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
NUM_PARTITIONS=${KAFKA_NUM_PARTITIONS:-3}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

LOG4J=$WORKDIR/log4j.properties
TOOLS_LOG4J=$WORKDIR/tools-log4j.properties
STATE=$WORKDIR/state.env     # what the running cluster was started with (read by the other commands)
FORMATTED=$WORKDIR/format.env # what the log dirs were formatted with (checked on reuse)
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

# -------------------------------------------------------------------------------------------- settings

# Derived from VERSION and NBROKERS; called again when a command reads them back from $STATE.
derive() {
	[[ "$VERSION" =~ ^(3\.9|4\.[0-9]+)\.[0-9]+$ ]] || die "KAFKA_VERSION='$VERSION': use 3.9.x or 4.x (e.g. 3.9.0, 4.1.1)"
	[[ "$NBROKERS" =~ ^[1-9]$ ]] || die "KAFKA_BROKERS='$NBROKERS': use 1 to 9"
	MAJOR=${VERSION%%.*}
	CACHE=$CACHE_ROOT/kafka-$VERSION
	# The pom's hash in the name: a changed dependency list fetches a new classpath.
	LIBS=$CACHE/libs-$(sha256sum "$SCRIPT_DIR/pom.xml" | head -c 8)
	RF=$((NBROKERS < 3 ? NBROKERS : 3))
	MIN_ISR=$((RF > 1 ? RF - 1 : 1))
	if ((MAJOR >= 4)); then JAVA_MIN=17; else JAVA_MIN=11; fi
}

node_dir() { echo "$WORKDIR/node-$1"; }
node_port() { echo $((PORT + ($1 - 1) * PORT_STEP)); }
node_sasl_port() { echo $((SASL_PORT + ($1 - 1) * PORT_STEP)); }
node_tls_port() { echo $((TLS_PORT + ($1 - 1) * PORT_STEP)); }
node_controller_port() { echo $((CONTROLLER_PORT + ($1 - 1) * PORT_STEP)); }
node_conf() { echo "$(node_dir "$1")/server.properties"; }
node_pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
node_logfile() { echo "$(node_dir "$1")/kafka.log"; }
node_data() { echo "$(node_dir "$1")/data"; }

# A comma list of node addresses: all_addrs port-function
all_addrs() {
	local i out=''
	for ((i = 1; i <= NBROKERS; i++)); do out+="${out:+,}127.0.0.1:$("$1" "$i")"; done
	echo "$out"
}

# The settings of the cluster started from this work dir, if any: they win over the environment for
# every command but a fresh `start` (which compares them instead).
load_state() {
	[[ -f "$STATE" ]] || return 1
	local STATE_VERSION='' STATE_BROKERS='' STATE_SECURITY=''
	# shellcheck disable=SC1090
	source <(grep '^STATE_' "$STATE")
	[[ -n "$STATE_VERSION" ]] || return 1
	VERSION=$STATE_VERSION NBROKERS=$STATE_BROKERS SECURITY=$STATE_SECURITY
	derive
}

# ---------------------------------------------------------------------------------------------- checks

want_sasl=0
want_tls=0
parse_security() {
	local item
	want_sasl=0 want_tls=0
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

java_major() { # java binary
	local major
	major=$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -1)
	major=${major#1.}
	echo "${major:-0}"
}

# Picks a java of at least JAVA_MIN: $JAVA_HOME's or the one on PATH, else the newest under /usr/lib/jvm
# (Kafka 4 brokers need 17; a machine whose default is 11 may have a newer one installed beside it).
need_java() {
	if command -v "$JAVA" >/dev/null 2>&1 && (($(java_major "$JAVA") >= JAVA_MIN)); then
		return 0
	fi
	local j best='' best_major=0 m
	for j in /usr/lib/jvm/*/bin/java; do
		[[ -x "$j" ]] || continue
		m=$(java_major "$j")
		if ((m >= JAVA_MIN && m > best_major)); then best=$j best_major=$m; fi
	done
	[[ -n "$best" ]] || die "Kafka $VERSION needs Java $JAVA_MIN or newer; '$JAVA' is missing or older and /usr/lib/jvm has none (run test/kafka/install-deps.sh)"
	log "using $best (Java $best_major): Kafka $VERSION needs Java $JAVA_MIN+"
	JAVA=$best
	JAVA_HOME=${best%/bin/java}
	export JAVA_HOME
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --------------------------------------------------------------------------------------------- process

# The pid in node ID's pid file, if that process is alive and is that node (guards against pid reuse).
node_pid() {
	local pidfile pid
	pidfile=$(node_pidfile "$1")
	[[ -f "$pidfile" ]] || return 1
	pid=$(<"$pidfile")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $(node_conf "$1")" || return 1
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
	local profile=log4j1
	((MAJOR >= 4)) && profile=log4j2
	log "fetching Apache Kafka $VERSION jars from Maven Central into $LIBS"
	mkdir -p "$CACHE"
	local tmp out
	tmp=$(mktemp -d "$CACHE/libs.tmp.XXXXXX")
	out=$(mktemp)
	local t0=$SECONDS
	if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$VERSION" -P "$profile" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$out" 2>&1; then
		tail -n 40 "$out" >&2
		rm -rf "$tmp" "$out"
		die "mvn could not fetch the Kafka $VERSION jars (see above); is Maven Central reachable, does it serve that version?"
	fi
	rm -f "$out"
	[[ -f "$tmp/kafka_2.13-$VERSION.jar" ]] || {
		rm -rf "$tmp"
		die "mvn finished but kafka_2.13-$VERSION.jar is missing"
	}
	touch "$tmp/.complete"
	# Another run may have finished first: keep theirs.
	if ! mv -T "$tmp" "$LIBS" 2>/dev/null; then rm -rf "$tmp"; fi
	log "jars ready ($(find "$LIBS" -name '*.jar' | wc -l) jars, $((SECONDS - t0))s)"
}

# ---------------------------------------------------------------------------------------------- config

# Kafka 3.x logs through log4j 1 (reload4j), Kafka 4.x through log4j2: each reads its own file format.
log4j_opt() { # file
	if ((MAJOR >= 4)); then echo "-Dlog4j2.configurationFile=$1"; else echo "-Dlog4j.configuration=file:$1"; fi
}

write_log4j() {
	if ((MAJOR >= 4)); then
		# One log file per node: the node logs to stdout, which start sends to its kafka.log.
		cat >"$LOG4J" <<'EOF'
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
		cat >"$TOOLS_LOG4J" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
		return 0
	fi
	cat >"$LOG4J" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
	cat >"$TOOLS_LOG4J" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

write_config() { # node id
	local id=$1 p sp tp cp
	p=$(node_port "$id") sp=$(node_sasl_port "$id") tp=$(node_tls_port "$id") cp=$(node_controller_port "$id")
	local listeners="PLAINTEXT://127.0.0.1:$p"
	local advertised="PLAINTEXT://127.0.0.1:$p"
	((want_sasl)) && listeners+=",SASL_PLAINTEXT://127.0.0.1:$sp" && advertised+=",SASL_PLAINTEXT://127.0.0.1:$sp"
	((want_tls)) && listeners+=",SSL://127.0.0.1:$tp" && advertised+=",SSL://127.0.0.1:$tp"
	listeners+=",CONTROLLER://127.0.0.1:$cp"
	local voters='' i
	for ((i = 1; i <= NBROKERS; i++)); do voters+="${voters:+,}$i@127.0.0.1:$(node_controller_port "$i")"; done

	mkdir -p "$(node_dir "$id")"
	cat >"$(node_conf "$id")" <<EOF
# Written by test/kafka/kafka.sh; rewritten at every start.
# Kafka $VERSION, node $id of $NBROKERS. Combined KRaft node: this process is a broker and one of the
# $NBROKERS controllers (a static quorum: controller.quorum.voters), so a majority of the nodes must run.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
# Loopback only. PLAINTEXT stays on whatever KAFKA_SECURITY says: the test harness and replication use it.
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
log.dirs=$(node_data "$id")

# Message size. A 500k-row request is about 25-35 MB after gzip+base64, and its response (or its DLQ copy,
# which carries the original value plus error headers) must fit too. Kafka's default message.max.bytes is
# about 1 MB, which would refuse any seed request over 1 MB. 100 MiB per record batch leaves room;
# replica.fetch.max.bytes and the broker's fetch.max.bytes must be at least as large so such a batch can be
# replicated and fetched, and socket.request.max.bytes (one whole produce request) larger still.
message.max.bytes=104857600
replica.fetch.max.bytes=104857600
fetch.max.bytes=104857600
socket.request.max.bytes=209715200

# Replication: RF $RF and min ISR $MIN_ISR for every topic made with the broker default (replication
# factor -1, auto-created topics) and for the internal ones. With 3 nodes, acks=all survives one node
# down and refuses writes (NOT_ENOUGH_REPLICAS) with two down.
auto.create.topics.enable=true
num.partitions=$NUM_PARTITIONS
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
unclean.leader.election.enable=false
# 10 partitions instead of 50 for the offsets and transaction logs: 3 nodes share 2 cores with the tests.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Fewer threads than the defaults (8 I/O, 3 network, 10 background) for the same reason.
num.io.threads=4
num.network.threads=2
background.threads=4
# Tests start consumer groups often: do not wait 3 s for more members before the first rebalance.
group.initial.rebalance.delay.ms=0
EOF
	if ((want_sasl)); then
		cat >>"$(node_conf "$id")" <<EOF

# SASL/SCRAM on the SASL_PLAINTEXT listener. The credentials live in the KRaft metadata log: the user
# '$SASL_USER' was added at format time (kafka.tools.StorageTool format --add-scram), for both mechanisms.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# ACLs are checked, so a test can deny the SASL user something (test/e2e TestResponseTopicWriteDenied).
# A resource without ACLs allows everyone, and PLAINTEXT clients (the nodes themselves, the suites'
# admin clients) are the superuser ANONYMOUS, so nothing else changes.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS
EOF
	fi
	if ((want_tls)); then
		cat >>"$(node_conf "$id")" <<EOF

# TLS on the SSL listener: server certificate signed by a throwaway CA ($TLS_DIR/ca.pem); no client auth.
listener.name.ssl.ssl.keystore.type=PKCS12
listener.name.ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.ssl.ssl.keystore.password=$TLS_STOREPASS
listener.name.ssl.ssl.key.password=$TLS_STOREPASS
listener.name.ssl.ssl.client.auth=none
EOF
	fi
}

# Self-signed CA, a broker certificate for 127.0.0.1/localhost signed by it (shared by every node), and
# an unrelated CA that signed nothing here (for "certificate from an unknown CA" tests). Kept across
# restarts.
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
	local keytool=${JAVA%java}keytool
	if command -v "$keytool" >/dev/null 2>&1; then
		"$keytool" -list -storetype PKCS12 -keystore "$d/broker.p12" -storepass "$TLS_STOREPASS" >"$out" 2>&1 || {
			cat "$out" >&2
			rm -f "$out" "$d/broker.p12"
			die "Java cannot read the PKCS12 keystore openssl made ($d/broker.p12)"
		}
	fi
	rm -f "$out" "$d/broker.csr" "$d/broker.ext"
}

tool() { # run a Kafka tool class in a JVM of its own, tuned to start fast
	# shellcheck disable=SC2046
	"$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 $(log4j_opt "$TOOLS_LOG4J") -cp "$LIBS/*" "$@"
}

# A cluster id as Kafka's Uuid.randomUuid().toString() makes them: 16 random bytes, URL-safe base64
# without padding, never starting with '-' (saves one JVM start).
random_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		[[ "$id" != -* ]] && echo "$id" && return 0
	done
}

format_nodes() {
	local cluster_id i
	cluster_id=$(random_cluster_id)
	local args=(format -t "$cluster_id")
	if ((want_sasl)); then
		args+=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASS]"
			--add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASS]")
	fi
	# One StorageTool JVM per node, in parallel: each writes meta.properties (cluster id, node id) and
	# the bootstrap metadata (with the SCRAM user) into its own log dir.
	local pids=()
	for ((i = 1; i <= NBROKERS; i++)); do
		tool kafka.tools.StorageTool "${args[@]}" -c "$(node_conf "$i")" >"$(node_dir "$i")/format.out" 2>&1 &
		pids+=($!)
	done
	local failed=0
	for ((i = 1; i <= NBROKERS; i++)); do
		if ! wait "${pids[$((i - 1))]}"; then
			# The tool's output never holds the password (it prints only the formatting result).
			cat "$(node_dir "$i")/format.out" >&2
			failed=1
		fi
	done
	((failed == 0)) || die "StorageTool format failed (see above)"
	printf 'FORMATTED_SASL=%s\nFORMATTED_SASL_USER=%q\nCLUSTER_ID=%s\nFORMATTED_FP=%q\n' \
		"$want_sasl" "$SASL_USER" "$cluster_id" "$(fingerprint)" >"$FORMATTED"
	log "formatted $NBROKERS log dirs (cluster id $cluster_id)"
}

# --------------------------------------------------------------------------------------------- commands

fingerprint() {
	echo "version=$VERSION brokers=$NBROKERS port=$PORT step=$PORT_STEP sasl=$want_sasl:$SASL_PORT:$SASL_USER tls=$want_tls:$TLS_PORT controller=$CONTROLLER_PORT"
}

write_state() {
	{
		echo "STATE_FINGERPRINT='$(fingerprint)'"
		printf 'STATE_VERSION=%q\nSTATE_BROKERS=%q\nSTATE_SECURITY=%q\n' "$VERSION" "$NBROKERS" "$SECURITY"
		print_env
	} >"$STATE"
}

print_env() {
	printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$(all_addrs node_port)"
	printf 'export KAFKA_VERSION=%q\nexport KAFKA_BROKERS=%q\n' "$VERSION" "$NBROKERS"
	if ((want_sasl)); then
		printf 'export KAFKA_SASL_BOOTSTRAP_SERVERS=%s\n' "$(all_addrs node_sasl_port)"
		printf 'export KAFKA_SASL_MECHANISMS=SCRAM-SHA-256,SCRAM-SHA-512\n'
		printf 'export KAFKA_SASL_USERNAME=%q\n' "$SASL_USER"
		printf 'export KAFKA_SASL_PASSWORD=%q\n' "$SASL_PASS"
	fi
	if ((want_tls)); then
		printf 'export KAFKA_TLS_BOOTSTRAP_SERVERS=%s\n' "$(all_addrs node_tls_port)"
		printf 'export KAFKA_TLS_CA_FILE=%q\n' "$TLS_DIR/ca.pem"
		printf 'export KAFKA_TLS_UNKNOWN_CA_FILE=%q\n' "$TLS_DIR/other-ca.pem"
	fi
}

print_log_tail() { # id lines
	local f n=${2:-60}
	f=$(node_logfile "$1")
	if [[ -f "$f" ]]; then
		echo "---- last $n lines of $f ----" >&2
		tail -n "$n" "$f" >&2
		echo "----" >&2
	fi
}

node_ports() { # id: every listener port of that node
	local ports=("$(node_port "$1")")
	((want_sasl)) && ports+=("$(node_sasl_port "$1")")
	((want_tls)) && ports+=("$(node_tls_port "$1")")
	echo "${ports[@]}"
}

# Node ready means: its log says "Kafka Server started" after our start, and every listener accepts TCP.
# The cluster is ready when every node started is, and (when kcat is installed) a metadata request lists
# all of them. A combined node only finishes starting once the controller quorum has a leader, so the
# nodes of a fresh cluster are started together and waited for together.
wait_ready() { # "id:pid:log-offset" ...
	local deadline=$((SECONDS + READY_TIMEOUT)) item id pid offset pending
	while :; do
		pending=()
		for item in "$@"; do
			IFS=: read -r id pid offset <<<"$item"
			if ! kill -0 "$pid" 2>/dev/null; then
				print_log_tail "$id" 80
				rm -f "$(node_pidfile "$id")"
				die "node $id exited during startup (log: $(node_logfile "$id"))"
			fi
			local ok=0
			if tail -c +"$((offset + 1))" "$(node_logfile "$id")" 2>/dev/null | grep -q 'Kafka Server started'; then
				local p
				ok=1
				for p in $(node_ports "$id"); do port_open "$p" || ok=0; done
			fi
			((ok)) || pending+=("$id")
		done
		if ((${#pending[@]} == 0)) && command -v kcat >/dev/null 2>&1; then
			local md
			md=$(timeout 15 kcat -L -b "$(running_addrs)" -m 5 2>/dev/null || true)
			for item in "$@"; do
				id=${item%%:*}
				grep -q "broker $id at" <<<"$md" || pending+=("$id")
			done
		fi
		((${#pending[@]} == 0)) && return 0
		if ((SECONDS >= deadline)); then
			for id in "${pending[@]}"; do print_log_tail "$id" 40; done
			die "node(s) ${pending[*]} did not answer within ${READY_TIMEOUT}s (still running; run 'kafka.sh stop')"
		fi
		sleep 0.5
	done
}

running_addrs() {
	local i out=''
	for ((i = 1; i <= NBROKERS; i++)); do
		node_pid "$i" >/dev/null && out+="${out:+,}127.0.0.1:$(node_port "$i")"
	done
	echo "${out:-127.0.0.1:$PORT}"
}

# Launches node ID's JVM and prints "id:pid:log-offset" for wait_ready.
launch_node() { # id reuse
	local id=$1 reuse=$2 logfile pidfile
	logfile=$(node_logfile "$id") pidfile=$(node_pidfile "$id")
	local p
	for p in $(node_ports "$id") "$(node_controller_port "$id")"; do
		port_open "$p" && die "port $p (node $id) on 127.0.0.1 is already in use by another process"
	done
	printf '==== kafka.sh start %s (Kafka %s, node %s, reuse=%s) ====\n' "$(date -u +%FT%TZ)" "$VERSION" "$id" "$reuse" >>"$logfile"
	local offset
	offset=$(stat -c %s "$logfile")
	rm -f "$pidfile"
	# 9>&-: the node must not inherit the lock descriptor (it would hold the lock for its whole life).
	# setsid: the node does not share the caller's process group or terminal (a Ctrl-C or a harness
	# killing its group must not take it down unasked); the inner shell writes its own pid and then execs
	# java, so the pid file names the JVM itself (what kill9/pause/resume signal).
	# Few GC and JIT threads: several nodes share a small machine.
	# shellcheck disable=SC2086,SC2016,SC2046
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
		"$JAVA" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ParallelGCThreads=2 \
		-XX:ConcGCThreads=1 -XX:CICompilerCount=2 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		$(log4j_opt "$LOG4J") -cp "$LIBS/*" kafka.Kafka "$(node_conf "$id")" \
		</dev/null >>"$logfile" 2>&1 9>&- &
	local tries=0
	while [[ ! -s "$pidfile" ]] && ((tries++ < 50)); do sleep 0.1; done
	[[ -s "$pidfile" ]] || die "node $id did not start"
	echo "$id:$(<"$pidfile"):$offset"
}

lock() {
	mkdir -p "$WORKDIR"
	exec 9>"$WORKDIR/.lock"
	flock -w 120 9 || die "another kafka.sh holds $WORKDIR/.lock"
}

check_id() { # id
	[[ "$1" =~ ^[1-9]$ ]] && (($1 <= NBROKERS)) || die "no node '$1' (nodes are 1 to $NBROKERS)"
}

cmd_start() {
	lock
	local n
	for n in PORT SASL_PORT TLS_PORT CONTROLLER_PORT; do check_port_number "KAFKA_$n" "${!n}"; done
	[[ "$PORT_STEP" =~ ^[0-9]+$ ]] && ((PORT_STEP >= 4)) || die "KAFKA_PORT_STEP='$PORT_STEP' must be 4 or more"
	check_port_number "node $NBROKERS's controller port" "$((CONTROLLER_PORT + (NBROKERS - 1) * PORT_STEP))"
	[[ "$NUM_PARTITIONS" =~ ^[1-9][0-9]*$ ]] || die "KAFKA_NUM_PARTITIONS='$NUM_PARTITIONS' is not a positive number"

	local running=() i pid
	for ((i = 1; i <= 9; i++)); do
		[[ -d "$(node_dir "$i")" ]] || continue
		pid=$(node_pid "$i") && running+=("$i")
	done
	if ((${#running[@]})); then
		local running_fp=''
		[[ -f "$STATE" ]] && running_fp=$(sed -n "s/^STATE_FINGERPRINT='\(.*\)'$/\1/p" "$STATE")
		[[ "$running_fp" == "$(fingerprint)" ]] ||
			die "nodes ${running[*]} already run from $WORKDIR with other settings ($running_fp); run 'kafka.sh stop' first"
		if ((${#running[@]} == NBROKERS)); then
			log "already running ($NBROKERS nodes, Kafka $VERSION, bootstrap $(all_addrs node_port))"
			return 0
		fi
		die "only nodes ${running[*]} of $NBROKERS run: start the others with 'kafka.sh start ID', or 'kafka.sh stop' first"
	fi

	need_java
	fetch_jars

	local reuse=0
	if [[ "$REUSE" == 1 && -f "$(node_data 1)/meta.properties" && -f "$FORMATTED" ]]; then
		local FORMATTED_FP='' FORMATTED_SASL=0 FORMATTED_SASL_USER=''
		# shellcheck disable=SC1090
		source "$FORMATTED"
		[[ "$FORMATTED_FP" == "$(fingerprint)" ]] ||
			die "KAFKA_REUSE_DATA=1 but the log dirs were formatted for other settings ($FORMATTED_FP); start without KAFKA_REUSE_DATA to reformat"
		reuse=1
	elif [[ "$REUSE" == 1 ]]; then
		log "KAFKA_REUSE_DATA=1 but $WORKDIR has no formatted cluster: formatting a new one"
	fi
	if ((!reuse)); then
		rm -rf "$WORKDIR"/node-* "$FORMATTED" "$STATE"
	fi

	write_log4j
	((want_tls)) && make_tls
	for ((i = 1; i <= NBROKERS; i++)); do write_config "$i"; done
	((reuse)) || format_nodes

	local t0=$SECONDS items=()
	write_state
	for ((i = 1; i <= NBROKERS; i++)); do items+=("$(launch_node "$i" "$reuse")"); done
	wait_ready "${items[@]}"
	local what="PLAINTEXT $(all_addrs node_port)"
	((want_sasl)) && what+="; SASL_PLAINTEXT(SCRAM) $(all_addrs node_sasl_port)"
	((want_tls)) && what+="; SSL $(all_addrs node_tls_port)"
	log "Kafka $VERSION ready in $((SECONDS - t0))s: $NBROKERS node(s), RF $RF, min ISR $MIN_ISR ($what; logs $WORKDIR/node-*/kafka.log)"
}

# `start ID`: node ID again, on its data, with the settings the cluster runs with.
cmd_start_node() {
	local id=$1
	lock
	load_state || die "no cluster was started from $WORKDIR (run 'kafka.sh start' first)"
	parse_security
	check_id "$id"
	local pid
	if pid=$(node_pid "$id"); then
		[[ "$(proc_state "$pid")" != T ]] || die "node $id (pid $pid) is paused; run 'kafka.sh resume $id'"
		log "node $id already running (pid $pid)"
		return 0
	fi
	[[ -f "$(node_data "$id")/meta.properties" ]] || die "node $id has no formatted log dir in $(node_dir "$id")"
	need_java
	write_log4j
	write_config "$id"
	local t0=$SECONDS item
	item=$(launch_node "$id" 1)
	wait_ready "$item"
	pid=${item#*:}
	log "node $id (Kafka $VERSION) ready again in $((SECONDS - t0))s on its data (pid ${pid%%:*}; log $(node_logfile "$id"))"
}

# The node ids a command acts on: the one given, or all.
targets() { # [id]
	if [[ -n "${1:-}" ]]; then
		check_id "$1"
		echo "$1"
	else
		seq 1 "$NBROKERS"
	fi
}

cmd_stop() { # [id]
	lock
	local ids i pid pids=() names=()
	ids=$(targets "${1:-}")
	for i in $ids; do
		if ! pid=$(node_pid "$i"); then
			rm -f "$(node_pidfile "$i")"
			continue
		fi
		# A paused JVM cannot handle SIGTERM until continued.
		kill -CONT "$pid" 2>/dev/null || true
		kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid") names+=("$i")
	done
	if ((${#pids[@]} == 0)); then
		log "not running"
		return 0
	fi
	local k deadline=$((SECONDS + STOP_TIMEOUT))
	for k in "${!pids[@]}"; do
		pid=${pids[$k]}
		if ! wait_gone "$pid" "$((deadline > SECONDS ? deadline - SECONDS : 0))"; then
			log "node ${names[$k]}: no exit ${STOP_TIMEOUT}s after SIGTERM: sending SIGKILL to $pid"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
		fi
		rm -f "$(node_pidfile "${names[$k]}")"
	done
	log "stopped node(s) ${names[*]}"
}

cmd_kill9() { # [id]
	lock
	local ids i pid done_=()
	ids=$(targets "${1:-}")
	for i in $ids; do
		if ! pid=$(node_pid "$i"); then
			[[ -n "${1:-}" ]] && die "node $i is not running"
			continue
		fi
		kill -KILL "$pid"
		wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
		rm -f "$(node_pidfile "$i")"
		done_+=("$i")
	done
	((${#done_[@]})) || die "not running"
	log "killed node(s) ${done_[*]} with SIGKILL; the data is kept: 'kafka.sh start ID' restarts a node on it"
}

cmd_signal() { # STOP|CONT [id]
	local ids i pid done_=()
	ids=$(targets "${2:-}")
	for i in $ids; do
		if ! pid=$(node_pid "$i"); then
			[[ -n "${2:-}" ]] && die "node $i is not running"
			continue
		fi
		kill -"$1" "$pid"
		done_+=("$i")
	done
	((${#done_[@]})) || die "not running"
	if [[ "$1" == STOP ]]; then log "paused node(s) ${done_[*]} (SIGSTOP)"; else log "resumed node(s) ${done_[*]} (SIGCONT)"; fi
}

cmd_status() { # [id]
	local ids i pid up=0 total=0
	ids=$(targets "${1:-}")
	for i in $ids; do
		total=$((total + 1))
		if pid=$(node_pid "$i"); then
			local st=running
			[[ "$(proc_state "$pid")" == T ]] && st=paused
			echo "node $i: $st (pid $pid, 127.0.0.1:$(node_port "$i"))"
			up=$((up + 1))
		else
			echo "node $i: stopped"
		fi
	done
	echo "Kafka $VERSION, $NBROKERS node(s), work dir $WORKDIR"
	((up == total)) && return 0
	((up == 0)) && return 3
	return 4
}

cmd_leader() { # topic partition
	local topic=$1 part=$2 out
	[[ "$part" =~ ^[0-9]+$ ]] || die "partition '$part' is not a number"
	need_java
	out=$(tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(running_addrs)" --describe --topic "$topic") ||
		die "TopicCommand --describe --topic $topic failed"
	# Lines like: "	Topic: t	Partition: 0	Leader: 2	Replicas: 2,3,1	Isr: 2,3,1 ..."
	local leader
	leader=$(awk -v p="$part" '{
		for (i = 1; i < NF; i++) if ($i == "Partition:" && $(i+1) == p) {
			for (j = i; j < NF; j++) if ($j == "Leader:") { print $(j+1); exit }
		}
	}' <<<"$out")
	[[ -n "$leader" ]] || die "no partition $part in topic $topic"
	[[ "$leader" != -1 && "$leader" != none ]] || die "partition $topic/$part has no leader"
	echo "$leader"
}

cmd_controller() {
	local out id
	need_java
	out=$(tool org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$(running_addrs)" describe --status) ||
		die "MetadataQuorumCommand describe --status failed"
	id=$(sed -n 's/^LeaderId:[[:space:]]*\([0-9-]*\).*/\1/p' <<<"$out" | head -1)
	[[ "$id" =~ ^[0-9]+$ ]] || die "no active controller in: $out"
	echo "$id"
}

cmd_env() {
	if [[ -f "$STATE" ]]; then
		grep '^export ' "$STATE"
	else
		# Not started yet from this work dir: print what `start` would use.
		print_env
	fi
}

cmd_logs() { # [id]
	local ids i f
	ids=$(targets "${1:-}")
	for i in $ids; do
		f=$(node_logfile "$i")
		[[ -f "$f" ]] || continue
		echo "==== node $i: $f"
		tail -n "${KAFKA_LOG_LINES:-80}" "$f"
	done
}

cmd_clean() {
	# The data goes anyway: no need to wait out a node whose controlled shutdown cannot finish because
	# the others (the KRaft quorum) are already gone, as the last of a whole cluster stopped at once can.
	STOP_TIMEOUT=${KAFKA_CLEAN_STOP_TIMEOUT:-5}
	cmd_stop
	rm -rf "$WORKDIR"
	log "removed $WORKDIR"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd=$1
	shift
	derive
	# Everything but a fresh start acts on the cluster that runs from this work dir, with its settings.
	if [[ "$cmd" != start || $# -gt 0 ]] && [[ "$cmd" != fetch ]]; then
		load_state || true
	fi
	parse_security
	case "$cmd" in
	start) if (($#)); then cmd_start_node "$1"; else cmd_start; fi ;;
	stop) cmd_stop "$@" ;;
	kill9 | kill-9) cmd_kill9 "$@" ;;
	pause) cmd_signal STOP "$@" ;;
	resume) cmd_signal CONT "$@" ;;
	status) cmd_status "$@" ;;
	leader) [[ $# -eq 2 ]] || usage && cmd_leader "$1" "$2" ;;
	controller) cmd_controller ;;
	env) cmd_env ;;
	fetch) fetch_jars ;;
	logs) cmd_logs "$@" ;;
	clean) cmd_clean ;;
	-h | --help | help) usage ;;
	*)
		log "unknown command '$cmd'"
		usage
		;;
	esac
}

main "$@"

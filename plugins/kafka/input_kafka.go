package kafka

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Input field names; where a field means the same as in Redpanda Connect's `redpanda` input it
// has the same name.
const (
	inFieldTopics                 = "topics"
	inFieldConsumerGroup          = "consumer_group"
	inFieldStartOffset            = "start_offset"
	inFieldCheckpointLimit        = "checkpoint_limit"
	inFieldCommitPeriod           = "commit_period"
	inFieldSessionTimeout         = "session_timeout"
	inFieldRebalanceTimeout       = "rebalance_timeout"
	inFieldHeartbeatInterval      = "heartbeat_interval"
	inFieldInstanceID             = "instance_id"
	inFieldFetchMaxBytes          = "fetch_max_bytes"
	inFieldFetchMaxPartitionBytes = "fetch_max_partition_bytes"
	inFieldFetchMaxWait           = "fetch_max_wait"
	inFieldShutdownTimeout        = "shutdown_timeout"
	inFieldRevokeTimeout          = "revoke_timeout"
	inFieldBalancers              = "balancers"
	inFieldGroupProtocol          = "group_protocol"
	inFieldExactlyOnce            = "exactly_once"
	inFieldTransactionalID        = "transactional_id"
	inFieldTransactionInterval    = "transaction_interval"
	inFieldTransactionTimeout     = "transaction_timeout"
)

const (
	// commitTimeout bounds one offset commit round trip (periodic, revoke or shutdown).
	commitTimeout = 10 * time.Second
	// metadataMaxAge bounds how long a partition added to an input topic goes unnoticed.
	metadataMaxAge = 30 * time.Second
	// closeGrace is how long past shutdown_timeout a shutdown waits for the client to close
	// before it returns anyway.
	closeGrace = 500 * time.Millisecond
	// pingTimeout bounds Connect's first request, which surfaces bad credentials and TLS errors.
	pingTimeout = 15 * time.Second
	// minBrokerReadBytes is the largest response the client accepts at the defaults: one record
	// batch larger than the fetch limits is still returned whole (Kafka KIP-74), so this, not the
	// fetch limits, is the largest record that can be read. 256 MiB covers 100 MB records.
	minBrokerReadBytes = 256 << 20
	// nackBackoffBase and nackBackoffMax shape the re-delivery back-off of a nacked record.
	nackBackoffBase = 500 * time.Millisecond
	nackBackoffMax  = 30 * time.Second
)

func kafkaInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Consumes Kafka topics in a consumer group with franz-go, committing each partition's offset only once every record below it is acknowledged.").
		Description(`
Each record becomes one message. Acknowledgements may come back in any order; per partition the
input commits only the highest offset below which every record is acknowledged (the oldest record
still in the pipeline), as soon as that position moves (one commit in flight at a time; later
acknowledgements coalesce into the next), on a partition revoke and on shutdown. A restart or a new
group member therefore resumes at the first unfinished record: nothing is lost, and after a crash
about `+"`checkpoint_limit`"+` records per partition are processed twice (those in flight, plus any
acknowledged during the last commit's round trip).

- **Back-pressure**: per partition, at most `+"`checkpoint_limit`"+` records lie between the oldest
  unacknowledged one and the newest handed out; fetching of that partition pauses at the limit.
- **Rebalances**: on a revoke the partition's buffered records are dropped, what is contiguous is
  committed, and a late acknowledgement can never commit it again (the new owner re-reads the rest).
  Lost partitions (session expired) are forgotten without a commit.
- **Nacks**: a message that the pipeline rejects is delivered again with back-off (0.5s doubling to
  30s); it is never skipped and no commit passes it.
- **Shutdown**: Benthos first stops reading and waits for every message already in the pipeline to
  be acknowledged; then this input stops fetching, commits, and leaves the group, the commit and the
  leave bounded together by `+"`shutdown_timeout`"+`, so that the other members take the partitions
  at once rather than after a session timeout (a static member, with `+"`instance_id`"+`, keeps its
  partitions until its session times out). It does not wait for acknowledgements itself: a record
  the engine read but had not yet handed to a pipeline thread when shutdown began is dropped
  without one, and is read again by the next owner.
- **Balancers**: `+"`cooperative_sticky`"+` first, then `+"`range`"+`, so that a member can join a group
  whose other members are librdkafka or Java consumers with their default (eager) assignors, as in
  a rolling cutover from another service; the group then agrees on `+"`range`"+`, and moves to
  `+"`cooperative_sticky`"+` by itself once every member lists it.
- **Errors**: wrong credentials, authorization and TLS handshake failures reconnect only after
  `+"`auth_error_backoff`"+` (doubling up to 5 minutes); other broker errors are retried by the client.

### Metadata

Each message carries: `+"`kafka_key`"+`, `+"`kafka_topic`"+`, `+"`kafka_partition`"+`, `+"`kafka_offset`"+`,
`+"`kafka_timestamp_unix`"+` (seconds), `+"`kafka_timestamp_ms`"+`, `+"`kafka_timestamp`"+` (RFC 3339 with
nanoseconds), `+"`kafka_lag`"+` (records after this one in the partition when it was handed out: high
watermark minus offset minus one) and every record header as a metadata key with its value. The
`+"`kafka_`"+` keys are set after the headers, so a header cannot spoof them.

### Metrics

Gauges `+"`kafka_consumer_lag`"+` (high watermark minus the commit position) and `+"`kafka_in_flight`"+`
(the checkpoint window), labelled `+"`topic`"+` and `+"`partition`"+`; gauge `+"`kafka_paused_partitions`"+`
(partitions whose fetching is paused because their window reached `+"`checkpoint_limit`"+`: the
pipeline is the bottleneck); counter `+"`kafka_redeliveries_total`"+` by `+"`topic`"+` and `+"`partition`"+`
(records the pipeline rejected and that are delivered again: a rising rate means an output keeps
failing); counters `+"`kafka_commits_total`"+`, `+"`kafka_commit_errors_total`"+` and
`+"`kafka_rebalances_total`"+`; counter `+"`kafka_reprocessed_records_total`"+` (records this member
processed, or was still processing, when it gave up their partitions without a commit covering them:
a lost session, a failed commit on revoke or at shutdown, records finished out of order or still in
the pipeline at a revoke. The partition's next owner processes them again: this counts the
duplicates at-least-once delivery can produce without a crash. Each such event is logged with "to
process again: N finished, M in flight").

### Record size

A seed-sized request is about 1 MB on the wire (20,000 rows, gzip and base64) and a 500,000-row one
about 25 MB. The fetch limits bound memory, not record size: a record larger than them is still
returned whole (Kafka KIP-74). The client accepts responses up to 256 MiB (or fetch_max_bytes plus
16 MiB if larger), which is the largest record it can read; the topic's `+"`max.message.bytes`"+` must
allow the records in the first place.`).
		Fields(
			service.NewStringListField(inFieldTopics).
				Description("Topics to consume. Each entry may hold several comma-separated names.").
				Example([]string{"Scenario-Execute"}).
				Example([]string{"${INPUT_KAFKA_TOPIC}"}),
			service.NewStringField(inFieldConsumerGroup).
				Description("The consumer group. Instances with the same group share the topics' partitions; offsets are committed for it.").
				Example("${KAFKA_GROUP_ID}"),
			service.NewStringEnumField(inFieldStartOffset, "earliest", "latest").
				Description("Where a group with no committed offset starts (also where it resumes if its committed offset no longer exists): `earliest` reads everything retained, `latest` only new records.").
				Default("earliest"),
			service.NewIntField(inFieldCheckpointLimit).
				Description("Per partition, the most records between the oldest one not yet acknowledged and the newest one handed out. Fetching of the partition pauses at the limit. Set it above the pipeline's thread count so that many records of one partition run at once; it also bounds the records processed twice after a crash.").
				Default(1024).
				LintRule(`root = if this < 1 { [ "checkpoint_limit must be at least 1" ] }`),
			service.NewDurationField(inFieldCommitPeriod).
				Description("Commits happen as soon as a partition's position moves; this is how often a failed commit is retried and the lag and in-flight gauges are published.").
				Default("1s"),
			service.NewDurationField(inFieldSessionTimeout).
				Description("How long the group coordinator waits without a heartbeat before it considers this member dead and reassigns its partitions. Must lie within the broker's group.min/max.session.timeout.ms.").
				Default("45s").
				Advanced(),
			service.NewDurationField(inFieldRebalanceTimeout).
				Description("How long the coordinator waits for every member to rejoin during a rebalance, which includes committing in the revoke.").
				Default("60s").
				Advanced(),
			service.NewDurationField(inFieldHeartbeatInterval).
				Description("How often the member heartbeats; also how soon it notices a rebalance. Keep it well below `session_timeout`.").
				Default("3s").
				Advanced(),
			service.NewStringField(inFieldInstanceID).
				Description("Static membership (KIP-345): a stable ID per instance (for example the pod name). A restart within `session_timeout` gets its partitions back without a rebalance; on shutdown the member does not leave the group. Empty: dynamic membership.").
				Default("").
				Advanced(),
			service.NewStringField(inFieldFetchMaxBytes).
				Description("Most bytes one fetch response from one broker may hold (`B`, `KiB`, `MiB`, `KB`, `MB`). The client fetches from every broker at once, so buffered memory can reach brokers times this.").
				Default("64MiB").
				Advanced(),
			service.NewStringField(inFieldFetchMaxPartitionBytes).
				Description("Most bytes of one partition in one fetch response. A single larger record is still returned.").
				Default("32MiB").
				Advanced(),
			service.NewDurationField(inFieldFetchMaxWait).
				Description("How long a broker may hold a fetch waiting for new records. Lower values resume paused partitions sooner.").
				Default("1s").
				Advanced(),
			service.NewDurationField(inFieldShutdownTimeout).
				Description("On shutdown, the bound on the final commit and leaving the group together (normally milliseconds; a broker outage would otherwise hold the process until the engine's forced exit). Messages in the pipeline are not waited for here: the engine waits for them before it closes the input, within its own top-level `shutdown_timeout`, which must exceed the slowest request plus this.").
				Default("3s").
				Advanced(),
			service.NewDurationField(inFieldRevokeTimeout).
				Description("On a rebalance, how long the records of revoked partitions still in the pipeline may take to finish before the revoke commits (its commit then has a deadline of its own). Records finished in time are not processed again by the new owner. Keep it, plus one commit, below `rebalance_timeout`.").
				Default("10s").
				Advanced(),
			service.NewStringListField(inFieldBalancers).
				Description("Partition assignors this member supports, in order of preference (Kafka's `partition.assignment.strategy`; an entry may hold several, comma-separated): `cooperative_sticky`, `range`, `round_robin`, `sticky`. The group uses the first one every member supports. The default joins groups of librdkafka or Java consumers with their default assignors (`range`) during a rolling cutover and becomes cooperative once they are gone; set `[cooperative_sticky]` alone afterwards if you want a member with eager assignors to be refused rather than downgrade the group.").
				Default([]string{"cooperative_sticky", "range"}).
				Example([]string{"cooperative_sticky"}).
				Advanced(),
			service.NewStringEnumField(inFieldGroupProtocol, groupClassic, groupConsumer).
				Description("The consumer group protocol (Kafka's `group.protocol`). `classic`: members assign partitions among themselves with `balancers` (every Kafka version; what librdkafka and Java consumers use by default). `consumer`: KIP-848, the broker's group coordinator assigns partitions incrementally (its `uniform` assignor) and members do not stop for a rebalance; needs Kafka 4.0 or later (franz-go recommends 4.3+); the session timeout and heartbeat interval are then the broker's `group.consumer.*` settings, and `balancers`, `session_timeout` and `heartbeat_interval` are ignored. A broker that does not serve it is refused at connect, with an error naming the broker, rather than silently falling back. Not with `exactly_once` yet. See docs/operations.md for the comparison under churn.").
				Default(groupClassic).
				Advanced(),
			service.NewBoolField(inFieldExactlyOnce).
				Description("Exactly-once: the outcomes of the records (written by `kafka` outputs of the same stream with `exactly_once: true`) and the records' offsets are committed in one Kafka transaction, so a reader with `isolation.level=read_committed` sees each record's outcome once, whatever crashes. Records are still processed concurrently; a transaction collects records for `transaction_interval`, then waits for all of them to be answered before it commits. A record the pipeline rejects aborts its transaction, which is read again after a back-off. Needs Kafka 2.5 or later (KIP-447). See docs/operations.md.").
				Default(false),
			service.NewStringField(inFieldTransactionalID).
				Description("With `exactly_once`: this instance's transactional id, stable across its restarts and never shared by two live instances (on Kubernetes, a StatefulSet's pod name). A restart with the same id aborts the transaction its crashed predecessor left open at once; a new id leaves it to `transaction_timeout`. Empty: the consumer group and `instance_id`, else the host name.").
				Default("").
				Example("${KAFKA_TRANSACTIONAL_ID:}"),
			service.NewDurationField(inFieldTransactionInterval).
				Description("With `exactly_once`: how long a transaction collects records before it waits for their outcomes and commits. Longer transactions cost less per record; responses become visible to read_committed readers only at the commit.").
				Default("100ms").
				Advanced(),
			service.NewDurationField(inFieldTransactionTimeout).
				Description("With `exactly_once`: how long the broker lets a transaction stay open before it aborts it (a crashed instance's transaction, unless a restart with the same `transactional_id` aborts it first). Above the slowest request; at most the broker's `transaction.max.timeout.ms`.").
				Default("40s").
				Advanced(),
		).
		Fields(connectionFields()...).
		Example("Weekly rollup requests", "Consume the request topic in the service's group.", `
input:
  kafka:
    seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:localhost:9092}" ]
    topics: [ "${INPUT_KAFKA_TOPIC:Scenario-Execute}" ]
    consumer_group: "${KAFKA_GROUP_ID:weekly-aggregator}"
    checkpoint_limit: 64
`)
}

func init() {
	service.MustRegisterInput("kafka", kafkaInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Input, error) {
			return newKafkaInputFromParsedConf(conf, mgr)
		})
}

// kafkaInput is the `kafka` input. Each successful Connect starts a session (input_kafka_session.go: one
// client, its poll and commit loops, and a fresh checkpointer); a session that fails fatally makes
// Read return ErrNotConnected, and Benthos calls Connect again, which replaces it.
type kafkaInput struct {
	log     *service.Logger
	metrics inputMetrics
	backoff *fatalBackoff

	connOpts         []kgo.Opt
	topics           []string
	group            string
	instanceID       string
	startOffset      kgo.Offset
	limit            int
	commitPeriod     time.Duration
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	heartbeat        time.Duration
	fetchMaxWait     time.Duration
	shutdownTimeout  time.Duration
	revokeTimeout    time.Duration
	balancers        []kgo.GroupBalancer
	groupProtocol    string // groupClassic or groupConsumer (input_kafka_group.go)

	// Exactly-once mode (input_kafka_txn.go); hub is nil without it.
	hub                *txnHub
	transactionalID    string
	txnInterval        time.Duration
	transactionTimeout time.Duration
	lastFence          time.Time // when a session was last fenced (txnSession.fail), under mu
	fetchMaxBytes      int32
	fetchMaxPartB      int32

	mu     sync.Mutex
	sess   consumerSession
	closed bool
}

// consumerSession is one connected lifetime of the input: a client in the consumer group and the
// goroutines around it. The at-least-once one (input_kafka_session.go) commits offsets as
// acknowledgements come in; the exactly-once one (input_kafka_txn.go) commits them in the
// transaction that carries the outcomes.
type consumerSession interface {
	// read hands out the next record; ErrNotConnected once the session has failed.
	read(ctx context.Context) (*service.Message, service.AckFunc, error)
	// shutdown ends the session; final is a normal Close (commit what is finished, leave).
	shutdown(final bool)
	// snapshot is what the readiness gate sees.
	snapshot() (connected bool, missing []string, parts []partitionProgress)
}

type inputMetrics struct {
	lag, inFlight, paused                          *service.MetricGauge
	commits, commitErrors, rebalances, redelivered *service.MetricCounter
	txnCommits, txnAborts, reread                  *service.MetricCounter
}

func newKafkaInputFromParsedConf(conf *service.ParsedConfig, mgr *service.Resources) (*kafkaInput, error) {
	i := &kafkaInput{log: mgr.Logger()}
	var err error
	if i.connOpts, err = connectionOptsFromConfig(conf, mgr.Logger()); err != nil {
		return nil, err
	}
	if i.backoff, err = fatalBackoffFromConfig(conf); err != nil {
		return nil, err
	}
	rawTopics, err := conf.FieldStringList(inFieldTopics)
	if err != nil {
		return nil, err
	}
	for _, entry := range rawTopics {
		for _, t := range strings.Split(entry, ",") {
			if t = strings.TrimSpace(t); t != "" {
				i.topics = append(i.topics, t)
			}
		}
	}
	if len(i.topics) == 0 {
		return nil, fmt.Errorf("field %q: no topic given", inFieldTopics)
	}
	if i.group, err = conf.FieldString(inFieldConsumerGroup); err != nil {
		return nil, err
	}
	if i.group == "" {
		return nil, fmt.Errorf("field %q: a consumer group is required", inFieldConsumerGroup)
	}
	start, err := conf.FieldString(inFieldStartOffset)
	if err != nil {
		return nil, err
	}
	i.startOffset = kgo.NewOffset().AtStart()
	if start == "latest" {
		i.startOffset = kgo.NewOffset().AtEnd()
	}
	if i.limit, err = conf.FieldInt(inFieldCheckpointLimit); err != nil {
		return nil, err
	}
	if i.limit < 1 {
		return nil, fmt.Errorf("field %q: must be at least 1, got %d", inFieldCheckpointLimit, i.limit)
	}
	if i.instanceID, err = conf.FieldString(inFieldInstanceID); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{
		{inFieldCommitPeriod, &i.commitPeriod},
		{inFieldSessionTimeout, &i.sessionTimeout},
		{inFieldRebalanceTimeout, &i.rebalanceTimeout},
		{inFieldHeartbeatInterval, &i.heartbeat},
		{inFieldFetchMaxWait, &i.fetchMaxWait},
		{inFieldShutdownTimeout, &i.shutdownTimeout},
		{inFieldRevokeTimeout, &i.revokeTimeout},
	} {
		if *d.to, err = conf.FieldDuration(d.name); err != nil {
			return nil, err
		}
		if *d.to <= 0 {
			return nil, fmt.Errorf("field %q: must be positive", d.name)
		}
	}
	for _, b := range []struct {
		name string
		to   *int32
	}{
		{inFieldFetchMaxBytes, &i.fetchMaxBytes},
		{inFieldFetchMaxPartitionBytes, &i.fetchMaxPartB},
	} {
		s, err := conf.FieldString(b.name)
		if err != nil {
			return nil, err
		}
		n, err := parseSize(s)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", b.name, err)
		}
		if n < 1 || n > 1<<30 {
			return nil, fmt.Errorf("field %q: %s is outside 1B to 1GiB", b.name, s)
		}
		*b.to = int32(n)
	}
	if err := i.groupFromConfig(conf); err != nil {
		return nil, err
	}
	m := mgr.Metrics()
	i.metrics = inputMetrics{
		lag:          m.NewGauge("kafka_consumer_lag", "topic", "partition"),
		inFlight:     m.NewGauge("kafka_in_flight", "topic", "partition"),
		paused:       m.NewGauge("kafka_paused_partitions"),
		commits:      m.NewCounter("kafka_commits_total"),
		commitErrors: m.NewCounter("kafka_commit_errors_total"),
		rebalances:   m.NewCounter("kafka_rebalances_total"),
		redelivered:  m.NewCounter("kafka_redeliveries_total", "topic", "partition"),
		txnCommits:   m.NewCounter("kafka_transactions_committed_total"),
		txnAborts:    m.NewCounter("kafka_transactions_aborted_total"),
		reread:       m.NewCounter("kafka_reprocessed_records_total"),
	}
	if err := i.exactlyOnceFromConfig(conf, mgr); err != nil {
		return nil, err
	}
	return i, nil
}

// noteFence records a fence and reports whether it is the first within refenceWindow.
func (i *kafkaInput) noteFence() (first bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	first = i.lastFence.IsZero() || time.Since(i.lastFence) > refenceWindow
	i.lastFence = time.Now()
	return first
}

// clientOpts returns every client option of an at-least-once session; the callbacks come from
// the session.
func (i *kafkaInput) clientOpts(s *session) []kgo.Opt {
	return append(i.groupOpts(),
		// Rebalance callbacks cannot run between a poll returning and the records reaching the
		// checkpointer (we AllowRebalance right after), so a revoke always sees them and drops
		// them, and records of an old assignment can never enter the state of a new one.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	)
}

// Connect starts a session. After a fatal error (credentials, authorization, TLS) it first
// waits out the long back-off, so a misconfigured service retries slowly.
func (i *kafkaInput) Connect(ctx context.Context) error {
	i.mu.Lock()
	old, closed := i.sess, i.closed
	i.sess = nil
	i.mu.Unlock()
	if closed {
		return service.ErrEndOfInput
	}
	registerInput(i)
	if old != nil {
		// The old session failed; its records in flight are re-read by whoever owns their
		// partitions next, so there is nothing to commit.
		old.shutdown(false)
	}
	if err := i.backoff.wait(ctx); err != nil {
		return err
	}
	var s consumerSession
	err := i.checkGroupProtocol(ctx)
	switch {
	case err != nil:
	case i.hub != nil:
		s, err = startTxnSession(ctx, i)
	default:
		s, err = startSession(ctx, i)
	}
	if err != nil {
		if isFatalClientErr(err) {
			d := i.backoff.failed()
			return fmt.Errorf("kafka input: %w (non-retryable; next attempt in %v)", err, d)
		}
		return fmt.Errorf("kafka input: %w", err)
	}
	i.backoff.reset()
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		s.shutdown(false)
		return service.ErrEndOfInput
	}
	i.sess = s
	i.mu.Unlock()
	return nil
}

// Read returns the next record as a message whose AckFunc settles it in the session.
func (i *kafkaInput) Read(ctx context.Context) (*service.Message, service.AckFunc, error) {
	i.mu.Lock()
	s := i.sess
	i.mu.Unlock()
	if s == nil {
		return nil, nil, service.ErrNotConnected
	}
	return s.read(ctx)
}

// Close shuts the current session down: stop fetching, commit, leave the group, within
// shutdown_timeout. It waits for no acknowledgement: Benthos calls Close only after every message
// it handed to a pipeline thread was acknowledged (or after it gave up on them at its own
// deadline); see session.shutdown.
func (i *kafkaInput) Close(context.Context) error {
	i.mu.Lock()
	s := i.sess
	i.sess = nil
	i.closed = true
	i.mu.Unlock()
	defer unregisterInput(i)
	if s != nil {
		s.shutdown(true)
	}
	return nil
}

// newRecordMessage builds the message of one record (lag: records after it, -1 unknown). Headers
// go first so that the kafka_ keys, set after them, cannot be spoofed by a header of the same name.
func newRecordMessage(r *kgo.Record, lag int64) *service.Message {
	msg := service.NewMessage(r.Value)
	for _, h := range r.Headers {
		msg.MetaSetMut(h.Key, string(h.Value))
	}
	msg.MetaSetMut("kafka_key", string(r.Key))
	msg.MetaSetMut("kafka_topic", r.Topic)
	msg.MetaSetMut("kafka_partition", int64(r.Partition))
	msg.MetaSetMut("kafka_offset", r.Offset)
	msg.MetaSetMut("kafka_timestamp_unix", r.Timestamp.Unix())
	msg.MetaSetMut("kafka_timestamp_ms", r.Timestamp.UnixMilli())
	msg.MetaSetMut("kafka_timestamp", r.Timestamp.UTC().Format(time.RFC3339Nano))
	msg.MetaSetMut("kafka_lag", max(lag, 0))
	return msg
}

// nackBackoff is the wait before the attempt-th re-delivery of a nacked record.
func nackBackoff(attempt int) time.Duration {
	d := nackBackoffBase
	for n := 1; n < attempt && d < nackBackoffMax; n++ {
		d *= 2
	}
	return min(d, nackBackoffMax)
}

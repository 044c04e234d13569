package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Output field names. Where a field means the same as in Redpanda Connect's `redpanda` output it
// has the same name, so that pipelines move between the two.
const (
	outFieldTopic              = "topic"
	outFieldKey                = "key"
	outFieldPartitioner        = "partitioner"
	outFieldPartition          = "partition"
	outFieldMetadata           = "metadata"
	outFieldMetaIncludePrefix  = "include_prefixes"
	outFieldMetaIncludePattern = "include_patterns"
	outFieldMetaExcludePrefix  = "exclude_prefixes"
	outFieldBatching           = "batching"
	outFieldCompression        = "compression"
	outFieldIdempotentWrite    = "idempotent_write"
	outFieldAcks               = "acks"
	outFieldTimeout            = "timeout"
	outFieldMaxMessageBytes    = "max_message_bytes"
	outFieldMaxBufferedRecords = "max_buffered_records"
	outFieldExactlyOnce        = "exactly_once"
)

// defaultHeaderExcludes are the metadata prefixes that never become record headers unless
// `metadata.exclude_prefixes` is set: the Kafka input's own keys (kafka_key, kafka_topic, ...),
// the pipeline's internal keys (rollup_original, rollup_rows, ...), the rollup's processing keys
// and the fallback output's error (the dead-letter mapping copies it into the `error` header).
var defaultHeaderExcludes = []string{"kafka_", "rollup_", "organization_id", "week_start", "fallback_error"}

func kafkaOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Services").
		Summary("Writes messages to Kafka topics with franz-go, waiting for the broker's acknowledgement of every record before acknowledging the message.").
		Description(`
Each message becomes one record: the value is the message's bytes, the key comes from `+"`key`"+`,
the timestamp is the time of writing, and metadata becomes record headers (see below). A batch is
acknowledged only once every one of its records is acknowledged by the broker (with `+"`acks: all`"+`,
by every in-sync replica), so the input commits an offset only after its output is safely stored.

### Failures are per message

A batch that partly fails reports exactly which messages failed, so a `+"`fallback`"+` or `+"`switch`"+`
output sends only those elsewhere (typically to a dead-letter topic, where the `+"`fallback_error`"+`
metadata holds the reason) and the delivered ones are not written twice.

- Retriable broker errors (leader changes, timeouts, not enough replicas) are retried by the client
  for up to `+"`timeout`"+`; after that the message fails with the last error. With idempotent writes a
  request whose outcome is unknown is retried until the broker answers, so a write can then take
  longer than `+"`timeout`"+` rather than risk a duplicate or a gap.
- A record too large for the topic fails for that message only, immediately and without being
  retried, so the pipeline never gets stuck replaying it. The client learns each topic's
  `+"`max.message.bytes`"+` from the broker the first time it writes to the topic and never groups
  records into a batch over that limit, so a large record cannot make its neighbours fail. If the
  limit cannot be read (no DescribeConfigs permission) and the broker refuses a batch as too large,
  each of its records is written again on its own, so only the one really too large fails.
- Bad credentials or missing cluster authorisation do not fail messages: the output disconnects
  and reconnects after `+"`auth_error_backoff`"+` (doubling up to 5 minutes), holding the messages, so a
  misconfiguration applies back-pressure instead of dead-lettering everything.
- Likewise a topic that does not exist (UNKNOWN_TOPIC_OR_PARTITION), may not be written
  (TOPIC_AUTHORIZATION_FAILED) or has an invalid name fails no message: the output holds the batch,
  reports itself disconnected (`+"`/ready`"+` answers 503) and logs the topic and the broker's error
  code; it asks the brokers again after 1 s, doubling to 15 s, and writes the held batch as soon as
  the topic exists or the ACL is granted, without a restart. Records of that batch already
  delivered to another topic are written again (at-least-once). When `+"`topic`"+` is a fixed name
  the output checks it when it first connects, with one log line.
- Every error that fails a message names its topic and, where the broker sent one, its error code.

### Headers

Every metadata key of the message becomes a header (values as strings, headers sorted by key),
except keys starting with one of `+"`metadata.exclude_prefixes`"+`. The default exclusions keep the
request's own headers (which the `+"`kafka`"+` input exposes as metadata) and drop what is internal:
`+"`kafka_`"+` (the input's `+"`kafka_key`"+`, `+"`kafka_topic`"+`, `+"`kafka_offset`"+` ...), `+"`rollup_`"+`
(`+"`rollup_original`"+`, `+"`rollup_rows`"+` ...), `+"`organization_id`"+`, `+"`week_start`"+` and
`+"`fallback_error`"+`. Setting `+"`exclude_prefixes`"+` replaces that list. When
`+"`include_prefixes`"+` or `+"`include_patterns`"+` is set, only keys matching one of them (and no
exclusion) are written. To write no headers at all, exclude the empty prefix: `+"`exclude_prefixes: [\"\"]`"+`.

### Metrics

`+"`kafka_produced_total`"+` and `+"`kafka_produced_bytes_total`"+` (key, value and header bytes before
compression) count delivered records, `+"`kafka_produce_errors_total`"+` failed messages; all by `+"`topic`"+`.`).
		Fields(
			service.NewInterpolatedStringField(outFieldTopic).
				Description("The topic to write each message to. Interpolated per message, so one output can route to several topics.").
				Examples("Scenario-Execute-Response", `${! @kafka_topic }-DLQ`),
			service.NewInterpolatedStringField(outFieldKey).
				Description("The record key, interpolated per message. Unset, or empty after interpolation, means no key (a null key).").
				Examples(`${! @organization_id }`, `${! @kafka_key }`).
				Optional(),
			service.NewStringAnnotatedEnumField(outFieldPartitioner, map[string]string{
				"crc32":        "CRC32 of the key modulo the partition count: librdkafka's `consistent_random`, the default of confluent-kafka producers (the seed service's), so keys land on the partitions they always did. Records without a key stick to one partition per batch.",
				"murmur2_hash": "Kafka's Java client partitioner: murmur2 of the key (as Kafka Streams, the Java producer and Redpanda Connect's `redpanda` output). Records without a key stick to one partition per batch.",
				"round_robin":  "Each record to the next partition, ignoring the key.",
				"least_backup": "The partition with the fewest buffered records, ignoring the key; avoids a slow broker at the cost of even load.",
				"manual":       "The partition given by `partition`.",
			}).
				Description("How a record's partition is chosen. Records with the same key share a partition only with `crc32`, `murmur2_hash` or `manual`.").
				Default("crc32"),
			service.NewInterpolatedStringField(outFieldPartition).
				Description("With `partitioner: manual`, the partition number to write to, interpolated per message. A value that is not a partition of the topic fails that message.").
				Example(`${! @kafka_partition }`).
				Optional().
				Advanced(),
			service.NewObjectField(outFieldMetadata,
				service.NewStringListField(outFieldMetaIncludePrefix).
					Description("Write only metadata keys starting with one of these prefixes (or matching `include_patterns`). Empty, with `include_patterns` empty: every key.").
					Default([]string{}).
					Example([]string{"x_", "trace"}),
				service.NewStringListField(outFieldMetaIncludePattern).
					Description("Write only metadata keys matching one of these regular expressions (or starting with an `include_prefixes` entry).").
					Default([]string{}).
					Example([]string{"^content-", ".*_id$"}),
				service.NewStringListField(outFieldMetaExcludePrefix).
					Description("Never write metadata keys starting with one of these prefixes, whatever the includes say. Setting this replaces the default list.").
					Default(defaultHeaderExcludes),
			).
				Description("Which message metadata becomes record headers. The default carries the request's headers over and keeps the input's and the pipeline's internal keys out."),
			service.NewOutputMaxInFlightField(),
			service.NewBatchPolicyField(outFieldBatching),
			service.NewStringAnnotatedEnumField(outFieldCompression, map[string]string{
				"none":   "No compression.",
				"gzip":   "gzip: small, slow.",
				"snappy": "Snappy: fast, modest ratio.",
				"lz4":    "LZ4: fast, modest ratio.",
				"zstd":   "Zstandard: best ratio for its speed; needs Kafka 2.1+ and consumers built with zstd.",
			}).
				Description("Compression of record batches. The default is `none` because this project's records are already compressed (`gzip_base64` responses, and dead letters holding the request as it was received, in the seed's format `base64(gzip(JSON))`): measured on a seed-sized request in that format, lz4, snappy and zstd save nothing and gzip saves a quarter for about 14 ms of CPU per MB, while every consumer can read uncompressed batches. Choose `zstd` (to about a tenth) or `lz4` (to about a sixth) when writing plain JSON (`output_encoding: json`). The size limit applies to the uncompressed batch.").
				Default("none"),
			service.NewBoolField(outFieldIdempotentWrite).
				Description("Idempotent writes: the broker drops the duplicates a retry would otherwise create and keeps each partition's records in order. Requires `acks: all` and, on clusters with ACLs, the IDEMPOTENT_WRITE permission.").
				Default(true).
				Advanced(),
			service.NewStringAnnotatedEnumField(outFieldAcks, map[string]string{
				"all":    "Every in-sync replica has the record (Kafka's `acks=all`/`-1`). Nothing acknowledged is lost while one in-sync replica survives.",
				"leader": "The partition leader has the record (`acks=1`); lost if the leader fails before replicating. Requires `idempotent_write: false`.",
				"none":   "No acknowledgement (`acks=0`): the message is acknowledged once written to the socket, and errors go unseen. Requires `idempotent_write: false`.",
			}).
				Description("How many replicas must have a record before the broker acknowledges it.").
				Default("all").
				Advanced(),
			service.NewDurationField(outFieldTimeout).
				Description("How long a record may take to be delivered, retries included, before its message fails (at least 1s); also the longest a broker may take to answer one produce request, and the bound on flushing at shutdown.").
				Default("10s"),
			service.NewStringField(outFieldMaxMessageBytes).
				Description("The largest record batch the client sends (key, value and headers before compression, plus about 70 bytes of framing). Per topic, the client uses the smaller of this and the topic's `max.message.bytes`, read from the broker the first time the output writes to the topic, and again when a record is refused for a limit read over 30 seconds before (so raising a topic's limit needs no restart). A record over the limit fails for its message only. Accepts a number of bytes or a size such as `1MB` or `16MiB`. The default lets the broker decide for records up to 100 MB; above about 100 MiB, raise the broker's `socket.request.max.bytes` too.").
				Default("100MB").
				Examples("1MB", "64MiB").
				Advanced(),
			service.NewIntField(outFieldMaxBufferedRecords).
				Description("The most records the client buffers (across all messages in flight) before writes wait for room. A back-stop: `max_in_flight` times the batch size is normally far below it.").
				Default(10000).
				Advanced(),
			service.NewBoolField(outFieldExactlyOnce).
				Description("Write into the transactions of the stream's `kafka` input with `exactly_once: true`: a message's record is committed together with the offset of the input record it answers (see that field). The client is then the input's transactional one, with this output's defaults: `partitioner`, `compression`, `idempotent_write`, `acks`, `max_message_bytes` and `max_buffered_records` may not be set, `timeout` bounds only the first connection (records are retried until the transaction times out), and a topic limit raised while running is seen from the next consumer session on.").
				Default(false),
		).
		Fields(connectionFields()...).
		LintRule(`root = [
  if this.acks.or("all") != "all" && this.idempotent_write.or(true) { "acks: " + this.acks + " requires idempotent_write: false (idempotent writes need acks: all)" },
  if this.partitioner.or("crc32") == "manual" && this.partition.or("") == "" { "partitioner: manual requires a partition" },
].filter(e -> e != null)`).
		Example("Responses with dead letters",
			"Write responses keyed by organisation; a response the broker refuses (too large, or failing after retries) goes to the dead-letter topic with the reason in `fallback_error`.",
			`
output:
  fallback:
    - kafka:
        seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:localhost:9092}" ]
        topic: Scenario-Execute-Response
        key: ${! @organization_id }
    - kafka:
        seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:localhost:9092}" ]
        topic: Scenario-Execute-DLQ
        key: ${! @kafka_key }
      processors:
        - mapping: |
            meta error = @fallback_error
            meta error_stage = "deliver"
            root = @rollup_original
`)
}

func init() {
	service.MustRegisterBatchOutput("kafka", kafkaOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			var pol service.BatchPolicy
			maxInFlight, err := conf.FieldMaxInFlight()
			if err != nil {
				return nil, pol, 0, err
			}
			if pol, err = conf.FieldBatchPolicy(outFieldBatching); err != nil {
				return nil, pol, 0, err
			}
			out, err := newKafkaOutputFromParsedConf(conf, mgr)
			return out, pol, maxInFlight, err
		})
}

// kafkaOutput writes message batches with one shared kgo client. Benthos calls WriteBatch from up
// to max_in_flight goroutines at once; everything below is safe for that.
type kafkaOutput struct {
	log     *service.Logger
	topic   *service.InterpolatedString
	key     *service.InterpolatedString // nil: no key
	part    *service.InterpolatedString // non-nil only with the manual partitioner
	headers *outHeaderFilter
	opts    []kgo.Opt
	timeout time.Duration
	fatal   *fatalBackoff
	limits  *topicLimits
	dest    *destinations
	static  string  // the topic when it is not interpolated ("" otherwise), checked at Connect
	hub     *txnHub // exactly-once: the client is the input's transactional one (transaction.go)

	produced, producedBytes, failures *service.MetricCounter

	connMu sync.Mutex
	client *kgo.Client

	// soloMu makes "write this record alone" possible on a shared client. kgo groups records of
	// one partition into one batch, also across concurrent WriteBatch calls, and the broker
	// refuses a whole batch when it is over the topic's limit. Ordinary writes hold the read
	// lock from their first Produce until their last record is acknowledged; retrying a refused
	// record on its own takes the write lock, which waits until no other record is in the client,
	// so the retried record is alone in its batch and its outcome is its own. Writers release the
	// read lock before taking the write lock (sync.RWMutex is not upgradable). Rare path: the
	// topic limits learned in limits keep kgo from building such batches in the first place.
	soloMu sync.RWMutex
}

func newKafkaOutputFromParsedConf(conf *service.ParsedConfig, mgr *service.Resources) (*kafkaOutput, error) {
	o := &kafkaOutput{log: mgr.Logger()}
	var err error
	if o.topic, err = conf.FieldInterpolatedString(outFieldTopic); err != nil {
		return nil, err
	}
	o.static, _ = o.topic.Static()
	o.dest = newDestinations(o.log)
	if conf.Contains(outFieldKey) {
		if o.key, err = conf.FieldInterpolatedString(outFieldKey); err != nil {
			return nil, err
		}
	}
	if o.headers, err = outHeaderFilterFromConfig(conf.Namespace(outFieldMetadata)); err != nil {
		return nil, fmt.Errorf("field %q: %w", outFieldMetadata, err)
	}
	if o.timeout, err = conf.FieldDuration(outFieldTimeout); err != nil {
		return nil, err
	}
	if o.timeout < time.Second {
		return nil, fmt.Errorf("field %q: must be at least 1s (the client's shortest delivery timeout), got %v", outFieldTimeout, o.timeout)
	}
	if o.fatal, err = fatalBackoffFromConfig(conf); err != nil {
		return nil, err
	}

	sizeStr, err := conf.FieldString(outFieldMaxMessageBytes)
	if err != nil {
		return nil, err
	}
	maxBytes, err := parseSize(sizeStr)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", outFieldMaxMessageBytes, err)
	}
	if maxBytes < outMinBatchBytes || maxBytes > outMaxBatchBytes {
		return nil, fmt.Errorf("field %q: %d bytes is outside [%d, %d]", outFieldMaxMessageBytes, maxBytes, outMinBatchBytes, outMaxBatchBytes)
	}
	o.limits = newTopicLimits(int32(maxBytes))
	if err := o.exactlyOnceFromConfig(conf, mgr); err != nil {
		return nil, err
	}

	prodOpts, err := o.producerOpts(conf)
	if err != nil {
		return nil, err
	}
	connOpts, err := connectionOptsFromConfig(conf, o.log)
	if err != nil {
		return nil, err
	}
	o.opts = append(connOpts, prodOpts...)

	m := mgr.Metrics()
	o.produced = m.NewCounter("kafka_produced_total", "topic")
	o.producedBytes = m.NewCounter("kafka_produced_bytes_total", "topic")
	o.failures = m.NewCounter("kafka_produce_errors_total", "topic")
	return o, nil
}

// producerOpts turns the producer fields into kgo options (and sets o.part for manual).
func (o *kafkaOutput) producerOpts(conf *service.ParsedConfig) ([]kgo.Opt, error) {
	partitioner, err := conf.FieldString(outFieldPartitioner)
	if err != nil {
		return nil, err
	}
	if partitioner == "manual" {
		if !conf.Contains(outFieldPartition) {
			return nil, fmt.Errorf("field %q: partitioner manual requires field %q", outFieldPartitioner, outFieldPartition)
		}
		if o.part, err = conf.FieldInterpolatedString(outFieldPartition); err != nil {
			return nil, err
		}
	}
	part, err := outPartitionerByName(partitioner)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", outFieldPartitioner, err)
	}
	compression, err := conf.FieldString(outFieldCompression)
	if err != nil {
		return nil, err
	}
	codec, err := outCodecByName(compression)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", outFieldCompression, err)
	}
	idempotent, err := conf.FieldBool(outFieldIdempotentWrite)
	if err != nil {
		return nil, err
	}
	acksName, err := conf.FieldString(outFieldAcks)
	if err != nil {
		return nil, err
	}
	var acks kgo.Acks
	switch acksName {
	case "all":
		acks = kgo.AllISRAcks()
	case "leader":
		acks = kgo.LeaderAck()
	case "none":
		acks = kgo.NoAck()
	default:
		return nil, fmt.Errorf("field %q: unknown value %q", outFieldAcks, acksName)
	}
	if idempotent && acksName != "all" {
		return nil, fmt.Errorf("field %q: acks %s requires %s: false", outFieldAcks, acksName, outFieldIdempotentWrite)
	}
	maxBuffered, err := conf.FieldInt(outFieldMaxBufferedRecords)
	if err != nil {
		return nil, err
	}
	if maxBuffered < 1 {
		return nil, fmt.Errorf("field %q: must be at least 1, got %d", outFieldMaxBufferedRecords, maxBuffered)
	}

	opts := []kgo.Opt{
		kgo.RecordPartitioner(part),
		kgo.ProducerBatchCompression(codec),
		kgo.RequiredAcks(acks),
		kgo.MaxBufferedRecords(maxBuffered),
		// The delivery timeout bounds retries of retriable errors; the request timeout is the
		// broker's time to answer one produce request, so several attempts fit in the budget.
		kgo.RecordDeliveryTimeout(o.timeout),
		kgo.ProduceRequestTimeout(min(o.timeout, 10*time.Second)),
		// kgo refreshes metadata before retrying a failed produce and waits for it; its default
		// minimum of 5s between refreshes would leave room for only one or two retries within
		// the default 10s timeout. One per second is still a light load on the brokers.
		kgo.MetadataMinAge(time.Second),
		// Per topic: min(max_message_bytes, the topic's max.message.bytes once learned).
		kgo.ProducerBatchMaxBytesFn(o.limits.batchMaxBytes),
		// A produce request carries at least one whole batch: leave room for its framing.
		kgo.BrokerMaxWriteBytes(max(100<<20, o.limits.configured+1<<20)),
	}
	if !idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return opts, nil
}

func (o *kafkaOutput) currentClient() *kgo.Client {
	if o.hub != nil {
		return o.hub.current()
	}
	o.connMu.Lock()
	defer o.connMu.Unlock()
	return o.client
}

// Connect creates the client once and pings a broker, so that a connected output means a broker
// answered with these credentials, then checks the topics it could not write (and, the first time,
// a fixed topic): see output_kafka_destination.go. A fatal error (credentials, TLS) or a topic still
// missing is returned wrapped in a back-off, which Benthos honours before calling Connect again.
func (o *kafkaOutput) Connect(ctx context.Context) error {
	// Waits only after WriteBatch reported a fatal error (see there).
	if err := o.fatal.wait(ctx); err != nil {
		return err
	}
	var cl *kgo.Client
	var err error
	if o.hub != nil {
		cl, err = o.hub.wait(ctx)
	} else {
		cl, err = o.connectClient(ctx)
	}
	if err != nil {
		return err
	}
	if err := o.dest.check(ctx, cl, o.static, o.timeout); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return service.NewErrBackOff(fmt.Errorf("kafka output: %w", err), o.dest.backoff.failed())
	}
	return nil
}

// connectClient creates the client if there is none and pings a broker with it.
func (o *kafkaOutput) connectClient(ctx context.Context) (*kgo.Client, error) {
	o.connMu.Lock()
	defer o.connMu.Unlock()

	cl, fresh := o.client, false
	if cl == nil {
		var err error
		if cl, err = kgo.NewClient(o.opts...); err != nil {
			return nil, fmt.Errorf("kafka output: %w", err)
		}
		fresh = true
	}
	pingCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := cl.Ping(pingCtx); err != nil {
		// Before Close, which ends the SASL watch: a broker that only hangs up on bad credentials
		// must still count as an authentication failure (a long back-off, not a retry a second).
		err = annotateClientErr(cl, err)
		// Never close a client that WriteBatch calls may still be using.
		if fresh {
			cl.Close()
		}
		err = fmt.Errorf("kafka output: no broker answered: %w", err)
		if isFatalClientErr(err) {
			return nil, service.NewErrBackOff(err, o.fatal.failed())
		}
		return nil, err
	}
	o.client = cl
	return cl, nil
}

// WriteBatch writes every message as one record and waits for all acknowledgements. It returns
// nil, a *service.BatchError naming the failed messages, or service.ErrNotConnected after a fatal
// client error (Benthos then reconnects through Connect, which waits out the back-off, and writes
// the whole batch again: records already delivered from it are written twice, at-least-once).
func (o *kafkaOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	cl := o.currentClient()
	if cl == nil {
		return service.ErrNotConnected
	}
	recs := make([]*kgo.Record, len(batch))
	errs := make([]error, len(batch))
	for i := range batch {
		recs[i], errs[i] = o.newRecord(batch, i)
	}
	o.limits.learn(ctx, cl, o.log, o.timeout, recs)
	for i, r := range recs {
		// Fail here what is over the limit by its payload alone (framing only adds to it), so it
		// never reaches a batch: kgo keeps the limit it saw when it discovered the topic, which is
		// max_message_bytes if that happened before the topic's own limit could be read.
		if r != nil && outRecordBytes(r) > int(o.limits.batchMaxBytes(r.Topic)) {
			errs[i] = kerr.MessageTooLarge
		}
	}

	o.refreshLimits(ctx, cl, recs, errs)
	o.produceAll(ctx, recs, errs)
	// A topic that cannot be written is a connection problem, not a failed message: hold the
	// batch (see output_kafka_destination.go).
	if err := o.dest.failed(recs, errs); err != nil {
		return service.ErrNotConnected
	}
	o.dest.clear()
	for _, err := range errs {
		if isFatalClientErr(err) {
			d := o.fatal.failed()
			o.log.Errorf("Kafka refused the output's client (%v); reconnecting in %v", err, d)
			return service.ErrNotConnected
		}
	}
	o.fatal.reset()
	// Shutting down (the context is done): fail the batch as a whole, not per message. A per-
	// message error would let a fallback output dead-letter records that only lacked time.
	if err := ctx.Err(); err != nil {
		return err
	}
	o.retryAlone(ctx, recs, errs)
	return o.outcome(batch, recs, errs)
}

// produceAll hands every record not failed yet to the client and waits for all their promises.
func (o *kafkaOutput) produceAll(ctx context.Context, recs []*kgo.Record, errs []error) {
	o.soloMu.RLock()
	defer o.soloMu.RUnlock()
	// The client as it is now, under soloMu: replaceClient swaps it only while nobody produces.
	cl := o.currentClient()
	var wg sync.WaitGroup
	for i, r := range recs {
		if errs[i] != nil {
			continue
		}
		wg.Add(1)
		// Each promise writes only its own index; wg.Wait orders those writes before any read.
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
}

// outcome updates the metrics and builds the batch's result.
func (o *kafkaOutput) outcome(batch service.MessageBatch, recs []*kgo.Record, errs []error) error {
	failed := 0
	var first error
	for i, err := range errs {
		topic := "unknown"
		if recs[i] != nil {
			topic = recs[i].Topic
		}
		if err == nil {
			o.produced.Incr(1, topic)
			o.producedBytes.Incr(int64(outRecordBytes(recs[i])), topic)
			continue
		}
		o.failures.Incr(1, topic)
		errs[i] = o.explain(recs[i], err)
		if failed++; first == nil {
			first = errs[i]
		}
	}
	if failed == 0 {
		return nil
	}
	// One failed message (the pipelines write one request per batch): its own error is the batch's,
	// so a fallback output's `fallback_error` (the dead letter's `error` header) is that reason.
	whole := first
	if len(batch) > 1 {
		whole = fmt.Errorf("%d of %d messages not delivered to Kafka, first: %w", failed, len(batch), first)
	}
	berr := service.NewBatchError(batch, whole)
	for i, err := range errs {
		if err != nil {
			berr.Failed(i, err)
		}
	}
	return berr
}

// explain turns a record's error into the human-readable reason a dead letter carries.
func (o *kafkaOutput) explain(r *kgo.Record, err error) error {
	switch {
	case r == nil:
		return err
	case isRecordTooLarge(err):
		n, limit := outRecordBytes(r), o.limits.batchMaxBytes(r.Topic)
		if n > int(limit) {
			return fmt.Errorf("record of %d bytes is too large for topic %q (limit %d bytes, the smaller of the topic's max.message.bytes and max_message_bytes): %w",
				n, r.Topic, limit, err)
		}
		// Near the limit (framing counts too), or a limit the broker has but we could not read.
		return fmt.Errorf("record of %d bytes is too large for topic %q with its framing: %w", n, r.Topic, err)
	default:
		return fmt.Errorf("writing to topic %q: %w", r.Topic, err)
	}
}

// Close flushes what is buffered, for at most `timeout`, and closes the client. Records still
// unacknowledged then fail, so their messages are nacked and delivered again later, not lost.
func (o *kafkaOutput) Close(ctx context.Context) error {
	if o.hub != nil {
		return nil // the input owns the transactional client, and ends its transactions
	}
	o.connMu.Lock()
	cl := o.client
	o.client = nil
	o.connMu.Unlock()
	if cl == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err := cl.Flush(fctx)
	cl.Close()
	if err != nil {
		return fmt.Errorf("kafka output: flushing at close: %w", err)
	}
	return nil
}

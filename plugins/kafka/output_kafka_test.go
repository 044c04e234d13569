package kafka

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestOutputKafkaConfig(t *testing.T) {
	pc, err := kafkaOutputSpec().ParseYAML(`
seed_brokers: [ "127.0.0.1:1" ]
topic: t
max_message_bytes: 2000000
`, nil)
	require.NoError(t, err)
	o, err := newKafkaOutputFromParsedConf(pc, service.MockResources())
	require.NoError(t, err)
	assert.Equal(t, int32(2000000), o.limits.configured)
	assert.Equal(t, defaultHeaderExcludes, o.headers.excludePrefixes)
	require.NoError(t, o.Close(context.Background()), "close without connect")

	bad := map[string]string{
		"acks leader with idempotence": "acks: leader",
		"manual without partition":     "partitioner: manual",
		"limit too large":              "max_message_bytes: 2GiB",
		"limit too small":              "max_message_bytes: 100",
		"bad pattern":                  "metadata: { include_patterns: [ '(' ] }",
		"timeout too short":            "timeout: 500ms",
	}
	for name, extra := range bad {
		pc, err := kafkaOutputSpec().ParseYAML("seed_brokers: [ \"127.0.0.1:1\" ]\ntopic: t\n"+extra, nil)
		require.NoError(t, err, name)
		_, err = newKafkaOutputFromParsedConf(pc, service.MockResources())
		assert.Error(t, err, name)
	}

	// The lint rules, as `rollup lint` applies them.
	for conf, want := range map[string]string{
		"acks: none":          "requires idempotent_write: false",
		"partitioner: manual": "requires a partition",
	} {
		err := service.NewStreamBuilder().AddOutputYAML("kafka:\n  seed_brokers: [ x ]\n  topic: t\n  " + conf)
		require.Error(t, err, conf)
		assert.Contains(t, err.Error(), want)
	}
	require.NoError(t, service.NewStreamBuilder().AddOutputYAML("kafka:\n  seed_brokers: [ x ]\n  topic: t\n  acks: none\n  idempotent_write: false"))
}

func TestOutputKafkaHeaderFilter(t *testing.T) {
	msg := outMsg("v", "x_trace", "t1", "traceparent", "00-ab", "kafka_key", "k", "rollup_original", "raw",
		"organization_id", "o", "week_start", "friday", "fallback_error", "boom", "error_stage", "deliver")
	cases := map[string]struct {
		include, patterns, exclude []string
		want                       []string
	}{
		"default":                   {exclude: defaultHeaderExcludes, want: []string{"error_stage", "traceparent", "x_trace"}},
		"prefix":                    {include: []string{"x_"}, exclude: defaultHeaderExcludes, want: []string{"x_trace"}},
		"pattern":                   {patterns: []string{"^trace"}, exclude: defaultHeaderExcludes, want: []string{"traceparent"}},
		"exclude wins over include": {include: []string{"kafka_", "x_"}, exclude: defaultHeaderExcludes, want: []string{"x_trace"}},
		"none":                      {exclude: []string{""}},
	}
	for name, c := range cases {
		f := &outHeaderFilter{includePrefixes: c.include, excludePrefixes: c.exclude}
		for _, p := range c.patterns {
			f.includePatterns = append(f.includePatterns, regexp.MustCompile(p))
		}
		var got []string
		for _, h := range f.headers(msg) {
			got = append(got, h.Key)
		}
		assert.Equal(t, c.want, got, name)
	}
}

// TestOutputKafkaStream writes through a stream (AddProducerFunc) and reads back with a plain
// consumer: topic interpolation, keys, values, headers, crc32 placement and the metrics.
func TestOutputKafkaStream(t *testing.T) {
	b := newOutBroker(t, false)
	topicA, topicB := b.topic(t, 3, nil), b.topic(t, 3, nil)

	builder, counts := newOutMetricsBuilder(t)
	require.NoError(t, builder.AddOutputYAML(fmt.Sprintf(`
kafka:
  seed_brokers: [ %q ]
  topic: ${! @dest }
  key: ${! @org.or("") }
`, strings.Join(b.addrs, ","))))
	produce, err := builder.AddProducerFunc()
	require.NoError(t, err)
	stream, err := builder.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()

	// Partitions expected by crc32 % 3, computed independently (Python's zlib.crc32); "org-2"
	// hashes above 2^31, where a signed implementation would differ.
	orgs := map[string]int32{"org-1": 2, "org-2": 0, "org-3": 2, "org-4": 0, "5a8acad4-2e10-44c3-856e-3477fae1fba8": 1}
	sent := 0
	for org := range orgs {
		for _, dest := range []string{topicA, topicB} {
			require.NoError(t, produce(ctx, outMsg("value of "+org, "dest", dest, "org", org,
				"x_trace", "trace-"+org, "kafka_offset", "42", "rollup_original", "raw", "organization_id", org)))
			sent++
		}
	}
	require.NoError(t, produce(ctx, outMsg("no key", "dest", topicA)))
	require.NoError(t, stream.Stop(ctx))
	require.NoError(t, <-done)

	for _, topic := range []string{topicA, topicB} {
		n := len(orgs)
		if topic == topicA {
			n++
		}
		for _, r := range b.read(t, topic, n) {
			if r.Key == nil {
				assert.Equal(t, "no key", string(r.Value))
				assert.Equal(t, map[string]string{"dest": topic}, outHeaderMap(r))
				continue
			}
			org := string(r.Key)
			assert.Equal(t, "value of "+org, string(r.Value))
			assert.Equal(t, orgs[org], r.Partition, "partition of key %s", org)
			assert.Equal(t, map[string]string{"dest": topic, "org": org, "x_trace": "trace-" + org}, outHeaderMap(r))
		}
	}
	assert.Equal(t, int64(len(orgs)+1), counts.get("kafka_produced_total", topicA))
	assert.Equal(t, int64(len(orgs)), counts.get("kafka_produced_total", topicB))
	assert.Positive(t, counts.get("kafka_produced_bytes_total", topicA))
	assert.Zero(t, counts.get("kafka_produce_errors_total", topicA))
	assert.Equal(t, sent+1, int(counts.get("kafka_produced_total", topicA)+counts.get("kafka_produced_total", topicB)))
}

// TestOutputKafkaTooLarge: a record over the topic's max.message.bytes fails for its message only,
// the others of the batch are delivered, and the output keeps working.
func TestOutputKafkaTooLarge(t *testing.T) {
	b := newOutBroker(t, false)
	topic := b.topic(t, 1, map[string]string{"max.message.bytes": "4096"})
	largest := b.largestProduce() // nil on a real broker
	o := newOutTestOutput(t, outTestYAML(b, topic, ""))
	ctx := context.Background()

	big := strings.Repeat("x", 10000)
	batch := service.MessageBatch{outMsg("s0"), outMsg(big), outMsg("s2"), outMsg(big), outMsg("s4")}
	failed := outWriteFailures(t, o, batch)
	require.Len(t, failed, 2)
	for _, i := range []int{1, 3} {
		require.Contains(t, failed, i)
		assert.ErrorIs(t, failed[i], kerr.MessageTooLarge)
		assert.Contains(t, failed[i].Error(), "record of 10000 bytes is too large for topic")
	}
	// The topic's limit was learned, so the client refused the big records by itself.
	assert.Equal(t, int32(4096), o.limits.batchMaxBytes(topic))
	if largest != nil {
		assert.Less(t, largest.Load(), int64(10000), "a big record reached the broker")
	}

	require.NoError(t, o.WriteBatch(ctx, service.MessageBatch{outMsg("s5")}), "the output goes on")
	var got []string
	for _, r := range b.read(t, topic, 4) {
		got = append(got, string(r.Value))
	}
	assert.Equal(t, []string{"s0", "s2", "s4", "s5"}, got)
}

// TestOutputKafkaTopicLimitRaised: a record refused for the topic's limit is written once an
// operator raises max.message.bytes, without a restart (issue 4, scenario 8: a DLQ that refused
// a dead letter recovers).
func TestOutputKafkaTopicLimitRaised(t *testing.T) {
	b := newOutBroker(t, false)
	topic := b.topic(t, 1, map[string]string{"max.message.bytes": "4096"})
	o := newOutTestOutput(t, outTestYAML(b, topic, ""))
	ctx := context.Background()

	big := strings.Repeat("x", 10000)
	failed := outWriteFailures(t, o, service.MessageBatch{outMsg(big)})
	require.Contains(t, failed, 0)
	assert.ErrorIs(t, failed[0], kerr.MessageTooLarge)

	_, err := b.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("65536")}}, topic)
	require.NoError(t, err)
	o.limits.maxAge = 0 // the learned limit is stale at once (30s in production)
	// A real broker applies the change asynchronously: retry as the pipeline's nack would.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = o.WriteBatch(ctx, service.MessageBatch{outMsg(big)})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.NoError(t, err, "the raised limit is seen without a restart")
	assert.Equal(t, int32(65536), o.limits.batchMaxBytes(topic))
	got := b.read(t, topic, 1)
	assert.Equal(t, big, string(got[0].Value))
}

// TestOutputKafkaTooLargeUnknownLimit: when the topic's limit cannot be read, kgo may put small
// records in one batch with a big one and the broker refuses the whole batch; the small ones are
// written again alone and only the big one fails.
func TestOutputKafkaTooLargeUnknownLimit(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 1, map[string]string{"max.message.bytes": "4096"})
	b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeConfigs}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	o := newOutTestOutput(t, outTestYAML(b, topic, ""))

	// Hold the first produce request until all four records are in the client, so that the
	// ones after the first are grouped into a batch with the big record.
	var once sync.Once
	b.fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() {
			b.fake.SleepControl(func() {
				for o.currentClient().BufferedProduceRecords() < 4 {
					time.Sleep(time.Millisecond)
				}
			})
		})
		return nil, nil, false
	})

	batch := service.MessageBatch{outMsg("s0"), outMsg("s1"), outMsg(strings.Repeat("x", 10000)), outMsg("s3")}
	failed := outWriteFailures(t, o, batch)
	require.Len(t, failed, 1)
	require.Contains(t, failed, 2)
	assert.ErrorIs(t, failed[2], kerr.MessageTooLarge)
	assert.Equal(t, o.limits.configured, o.limits.batchMaxBytes(topic), "limit unknown")

	var got []string
	for _, r := range b.read(t, topic, 3) {
		got = append(got, string(r.Value))
	}
	assert.ElementsMatch(t, []string{"s0", "s1", "s3"}, got)
}

// TestOutputKafkaTooLargeLimitLearnedLate: the topic was not visible to the first DescribeConfigs
// (a real broker creates topics asynchronously), so kgo discovered its partitions with
// max_message_bytes; once the limit is learned, a big record still fails alone, before any batch.
func TestOutputKafkaTooLargeLimitLearnedLate(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 1, map[string]string{"max.message.bytes": "4096"})
	unknown := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeConfigs}, Err: kerr.UnknownTopicOrPartition, Count: 1})
	largest := b.largestProduce()
	o := newOutTestOutput(t, outTestYAML(b, topic, ""))

	require.NoError(t, o.WriteBatch(context.Background(), service.MessageBatch{outMsg("s0")}))
	assert.Equal(t, 1, unknown.Hits())
	batch := service.MessageBatch{outMsg("s1"), outMsg(strings.Repeat("x", 10000)), outMsg("s3")}
	failed := outWriteFailures(t, o, batch)
	require.Len(t, failed, 1)
	assert.ErrorIs(t, failed[1], kerr.MessageTooLarge)
	assert.Equal(t, int32(4096), o.limits.batchMaxBytes(topic))
	assert.Less(t, largest.Load(), int64(10000), "refused before reaching a batch")
	assert.Len(t, b.read(t, topic, 3), 3)
}

// TestOutputKafkaFallbackDLQ: in a fallback output, the too-large message of a batch goes to the
// dead-letter topic with fallback_error, the rest to the main topic, and the stream goes on.
func TestOutputKafkaFallbackDLQ(t *testing.T) {
	b := newOutBroker(t, false)
	main := b.topic(t, 1, map[string]string{"max.message.bytes": "4096"})
	dlq := b.topic(t, 1, nil)

	builder, counts := newOutMetricsBuilder(t)
	seeds := strings.Join(b.addrs, ",")
	require.NoError(t, builder.AddOutputYAML(fmt.Sprintf(`
fallback:
  - kafka:
      seed_brokers: [ %q ]
      topic: %q
  - kafka:
      seed_brokers: [ %q ]
      topic: %q
    processors:
      - mapping: |
          meta error = @fallback_error
          meta error_stage = "deliver"
`, seeds, main, seeds, dlq)))
	produce, err := builder.AddBatchProducerFunc()
	require.NoError(t, err)
	stream, err := builder.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()

	big := strings.Repeat("x", 10000)
	require.NoError(t, produce(ctx, service.MessageBatch{outMsg("s0"), outMsg(big, "x_trace", "t"), outMsg("s2")}))
	require.NoError(t, produce(ctx, service.MessageBatch{outMsg("s3")}), "the stream goes on")
	// A batch of one (the pipelines write one request per batch): the reason is that message's own.
	require.NoError(t, produce(ctx, service.MessageBatch{outMsg(big + "!")}))
	require.NoError(t, stream.Stop(ctx))
	require.NoError(t, <-done)

	var got []string
	for _, r := range b.read(t, main, 3) {
		got = append(got, string(r.Value))
	}
	assert.Equal(t, []string{"s0", "s2", "s3"}, got)
	deads := b.read(t, dlq, 2)
	dead := deads[0]
	assert.Equal(t, big, string(dead.Value))
	alone := outHeaderMap(deads[1])
	assert.Contains(t, alone["error"], fmt.Sprintf("too large for topic %q", main), "the reason names the topic")
	assert.Contains(t, alone["error"], "MESSAGE_TOO_LARGE", "and the broker's error code")
	assert.NotContains(t, alone["error"], "messages not delivered", "not the batch's summary")
	h := outHeaderMap(dead)
	assert.Equal(t, "deliver", h["error_stage"])
	assert.Equal(t, "t", h["x_trace"])
	assert.Contains(t, h["error"], "bytes is too large for topic")
	assert.NotContains(t, h, "fallback_error", "excluded by default")
	assert.Equal(t, int64(2), counts.get("kafka_produce_errors_total", main))
	assert.Equal(t, int64(3), counts.get("kafka_produced_total", main))
	assert.Equal(t, int64(2), counts.get("kafka_produced_total", dlq))
}

// TestOutputKafkaProduceFaults: retriable produce errors (some after the broker stored the batch)
// are retried by the client; every message arrives exactly once.
func TestOutputKafkaProduceFaults(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 3, nil)
	o := newOutTestOutput(t, outTestYAML(b, topic, "key: ${! @k }"))
	notEnough := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: 3})
	// REQUEST_TIMED_OUT is answered after the batch is appended: only idempotence avoids a copy.
	timedOut := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.RequestTimedOut, Count: 3})

	const n = 60
	want := map[string]bool{}
	for i := 0; i < n; i += 6 {
		var batch service.MessageBatch
		for j := i; j < i+6; j++ {
			v := fmt.Sprintf("m%02d", j)
			want[v] = true
			batch = append(batch, outMsg(v, "k", fmt.Sprint(j%7)))
		}
		require.NoError(t, o.WriteBatch(context.Background(), batch))
	}
	assert.Equal(t, 3, notEnough.Hits())
	assert.Equal(t, 3, timedOut.Hits())
	got := map[string]bool{}
	for _, r := range b.read(t, topic, n) {
		got[string(r.Value)] = true
	}
	assert.Equal(t, want, got)
}

// TestOutputKafkaRetriesExhausted: a retriable error outlasting `timeout` fails the messages
// (so they can be nacked or dead-lettered), and the output works again once the broker recovers.
func TestOutputKafkaRetriesExhausted(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 1, nil)
	o := newOutTestOutput(t, outTestYAML(b, topic, "timeout: 1s"))
	fault := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: -1})

	batch := service.MessageBatch{outMsg("a"), outMsg("b")}
	failed := outWriteFailures(t, o, batch)
	require.Len(t, failed, 2)
	assert.ErrorIs(t, failed[0], kgo.ErrRecordTimeout)
	assert.Contains(t, failed[0].Error(), fmt.Sprintf("writing to topic %q", topic))

	fault.Remove()
	require.NoError(t, o.WriteBatch(context.Background(), service.MessageBatch{outMsg("c")}))
	assert.Equal(t, "c", string(b.read(t, topic, 1)[0].Value))
}

// TestOutputKafkaAuthorizationFailure: a fatal error while writing (the topic's ACL) does not fail
// the messages: the output reports itself disconnected, Connect waits out the back-off, and the
// batch is written once the broker accepts it.
func TestOutputKafkaAuthorizationFailure(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 1, nil)
	o := newOutTestOutput(t, outTestYAML(b, topic, "auth_error_backoff: 10ms"))
	denied := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.TopicAuthorizationFailed, Count: 1})

	ctx := context.Background()
	batch := service.MessageBatch{outMsg("a")}
	require.ErrorIs(t, o.WriteBatch(ctx, batch), service.ErrNotConnected)
	assert.Equal(t, 1, denied.Hits())
	// What Benthos does next: Connect (after the back-off), then the same batch again.
	require.NoError(t, o.Connect(ctx))
	require.NoError(t, o.WriteBatch(ctx, batch))
	assert.Equal(t, "a", string(b.read(t, topic, 1)[0].Value))
}

// TestOutputKafkaCloseBounded: Close gives up flushing after `timeout` when the broker does not
// answer, and the write still waiting gets an error for its message: nothing is acknowledged
// that was not stored.
func TestOutputKafkaCloseBounded(t *testing.T) {
	b := newOutBroker(t, true)
	topic := b.topic(t, 1, nil)
	pc, err := kafkaOutputSpec().ParseYAML(outTestYAML(b, topic, "timeout: 1s"), nil)
	require.NoError(t, err)
	o, err := newKafkaOutputFromParsedConf(pc, service.MockResources())
	require.NoError(t, err)
	require.NoError(t, o.Connect(context.Background()))

	release := make(chan struct{})
	defer close(release)
	held := make(chan struct{}, 1)
	b.fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		b.fake.KeepControl()
		held <- struct{}{}
		b.fake.SleepControl(func() { <-release })
		return nil, nil, false
	})

	written := make(chan error, 1)
	go func() { written <- o.WriteBatch(context.Background(), service.MessageBatch{outMsg("a")}) }()
	<-held // the record is in a produce request the broker sits on
	err = o.Close(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	werr := <-written
	require.Error(t, werr)
	assert.ErrorIs(t, werr, kgo.ErrClientClosed)
}

// TestOutputKafkaAuthFailure: wrong credentials make Connect fail with a long back-off, and the
// password appears nowhere in the error.
func TestOutputKafkaAuthFailure(t *testing.T) {
	b := newOutBroker(t, true, kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "right-password"))
	// kfake drops the connection on a wrong password; Kafka answers SASL_AUTHENTICATION_FAILED
	// first, which is what the client sees in production. Answer as Kafka does.
	b.fake.ControlKey(kmsg.SASLAuthenticate.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.fake.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	pc, err := kafkaOutputSpec().ParseYAML(outTestYAML(b, "t", `
auth_error_backoff: 45s
sasl:
  - mechanism: PLAIN
    username: admin
    password: wrong-password-123
`), nil)
	require.NoError(t, err)
	o, err := newKafkaOutputFromParsedConf(pc, service.MockResources())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = o.Connect(ctx)
	var boff *service.ErrBackOff
	require.ErrorAs(t, err, &boff)
	assert.Equal(t, 45*time.Second, boff.Wait)
	assert.True(t, isFatalClientErr(boff.Err), "%v", err)
	assert.NotContains(t, err.Error(), "wrong-password-123")
	assert.Nil(t, o.currentClient(), "no client kept")
	require.NoError(t, o.Close(ctx))
	assert.ErrorIs(t, o.WriteBatch(ctx, service.MessageBatch{outMsg("a")}), service.ErrNotConnected)
}

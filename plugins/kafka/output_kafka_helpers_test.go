// Test helpers of the kafka output: the broker (kfake or KAFKA_BOOTSTRAP_SERVERS), topics, reading
// back, and a metrics exporter that counts.

package kafka

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // fallback output, mapping
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// outBroker is the broker an output test talks to over TCP: the one named by
// KAFKA_BOOTSTRAP_SERVERS when set (CI's real Kafka), else an in-process kfake cluster. Tests that
// inject broker faults always use kfake (fake is set).
type outBroker struct {
	addrs []string
	fake  *kfake.Cluster // nil for a real broker
	cl    *kgo.Client
	adm   *kadm.Client
}

func newOutBroker(t *testing.T, forceFake bool, opts ...kfake.Opt) *outBroker {
	t.Helper()
	b := &outBroker{}
	if env := os.Getenv("KAFKA_BOOTSTRAP_SERVERS"); env != "" && !forceFake {
		b.addrs = strings.Split(env, ",")
	} else {
		c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
		require.NoError(t, err)
		t.Cleanup(c.Close)
		b.fake, b.addrs = c, c.ListenAddrs()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	b.cl, b.adm = cl, kadm.NewClient(cl)
	return b
}

// largestProduce makes the fake broker record the largest record payload of any partition in any
// produce request it receives, so that a test can tell whether a record reached the broker; nil on
// a real broker.
func (b *outBroker) largestProduce() *atomic.Int64 {
	if b.fake == nil {
		return nil
	}
	var largest atomic.Int64
	b.fake.ControlKey(kmsg.Produce.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		for _, t := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				if n := int64(len(p.Records)); n > largest.Load() {
					largest.Store(n)
				}
			}
		}
		return nil, nil, false // not handled: the broker answers as usual, and the control stays
	})
	return &largest
}

// topic creates a topic with a name unique to this run and the given configs.
func (b *outBroker) topic(t *testing.T, partitions int32, configs map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("out-%s-%d", strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()), time.Now().UnixNano())
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Replicated like every test topic (RF 3, min ISR 2 on the kafka.sh cluster, 1 on kfake).
	rf, cfg, err := devbroker.WithTestReplication(ctx, b.adm, cfg)
	require.NoError(t, err)
	_, err = b.adm.CreateTopic(ctx, partitions, rf, cfg, name)
	require.NoError(t, err, "creating topic %s", name)
	// A real broker creates topics asynchronously: wait until every partition's leader serves it
	// and every broker describes its configs (the output asks whichever broker kgo picks; one
	// that does not know the topic yet would leave its limit unlearned on a cluster).
	require.NoError(t, devbroker.WaitTopicServed(ctx, b.adm, name, int(partitions)))
	brokers, err := b.adm.ListBrokers(ctx)
	require.NoError(t, err)
	for _, br := range brokers {
		for {
			require.NoError(t, ctx.Err(), "broker %d never described topic %s", br.NodeID, name)
			req := kmsg.NewPtrDescribeConfigsRequest()
			rr := kmsg.NewDescribeConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, name
			req.Resources = append(req.Resources, rr)
			resp, err := req.RequestWith(ctx, b.cl.Broker(int(br.NodeID)))
			if err == nil && len(resp.Resources) == 1 && resp.Resources[0].ErrorCode == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return name
}

// read returns the topic's records once it holds n, and checks it holds exactly n (no duplicate).
func (b *outBroker) read(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "topic %s: read %d of %d records", topic, len(recs), n)
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		recs = append(recs, fs.Records()...)
	}
	ends, err := b.adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	require.Equal(t, int64(n), total, "records in topic %s", topic)
	return recs
}

func outTestYAML(b *outBroker, topic, extra string) string {
	return fmt.Sprintf("seed_brokers: [ %q ]\ntopic: %q\n%s", strings.Join(b.addrs, ","), topic, extra)
}

// newOutTestOutput parses conf through the spec, builds and connects the output, and closes it at
// the end of the test, checking Close.
func newOutTestOutput(t *testing.T, conf string) *kafkaOutput {
	t.Helper()
	pc, err := kafkaOutputSpec().ParseYAML(conf, nil)
	require.NoError(t, err)
	o, err := newKafkaOutputFromParsedConf(pc, service.MockResources())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, o.Connect(ctx))
	t.Cleanup(func() { require.NoError(t, o.Close(context.Background())) })
	return o
}

func outMsg(value string, meta ...string) *service.Message {
	m := service.NewMessage([]byte(value))
	for i := 0; i+1 < len(meta); i += 2 {
		m.MetaSetMut(meta[i], meta[i+1])
	}
	return m
}

// outWriteFailures writes batch and returns the indexes its BatchError names, with their errors.
func outWriteFailures(t *testing.T, o *kafkaOutput, batch service.MessageBatch) map[int]error {
	t.Helper()
	idx := batch.Index()
	err := o.WriteBatch(context.Background(), batch)
	var berr *service.BatchError
	require.ErrorAs(t, err, &berr)
	failed := map[int]error{}
	berr.WalkMessagesIndexedBy(idx, func(i int, _ *service.Message, err error) bool {
		if err != nil {
			failed[i] = err
		}
		return true
	})
	return failed
}

func outHeaderMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// outCounts is a metrics exporter that keeps counter totals by name and topic label.
type outCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *outCounts) get(name, topic string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name+"|"+topic]
}

type outCounter struct {
	c   *outCounts
	key string
}

func (o outCounter) Incr(n int64) {
	o.c.mu.Lock()
	o.c.m[o.key] += n
	o.c.mu.Unlock()
}
func (o outCounter) IncrFloat64(float64) {}
func (o outCounter) Set(int64)           {}
func (o outCounter) SetFloat64(float64)  {}
func (o outCounter) Timing(int64)        {}

func (c *outCounts) NewCounterCtor(name string, keys ...string) service.MetricsExporterCounterCtor {
	return func(values ...string) service.MetricsExporterCounter {
		topic := ""
		for i, k := range keys {
			if k == "topic" {
				topic = values[i]
			}
		}
		return outCounter{c: c, key: name + "|" + topic}
	}
}

func (c *outCounts) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return outCounter{c: c} }
}

func (c *outCounts) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return outCounter{c: c} }
}

func (c *outCounts) Close(context.Context) error { return nil }

// newOutMetricsBuilder returns a stream builder whose metrics land in the returned outCounts.
func newOutMetricsBuilder(t *testing.T) (*service.StreamBuilder, *outCounts) {
	t.Helper()
	counts := &outCounts{m: map[string]int64{}}
	env := service.NewEnvironment()
	require.NoError(t, env.RegisterMetricsExporter("out_test_counts", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return counts, nil }))
	builder := env.NewStreamBuilder()
	require.NoError(t, builder.SetMetricsYAML("out_test_counts: {}"))
	require.NoError(t, builder.SetLoggerYAML("level: warn"))
	return builder, counts
}

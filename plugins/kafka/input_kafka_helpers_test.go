package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Integration helpers. Every test talks to a broker over TCP: the one named by
// KAFKA_BOOTSTRAP_SERVERS when set (CI's real Kafka), otherwise an in-process kfake cluster.
// Topics and groups get unique names so runs against a shared broker do not interfere.

const waitDeadline = 90 * time.Second

func testBrokers(t *testing.T) string {
	t.Helper()
	if s := os.Getenv("KAFKA_BOOTSTRAP_SERVERS"); s != "" {
		return s
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

func uniqueName(t *testing.T, kind string) string {
	n := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("rollup-%s-%s-%d", kind, n, time.Now().UnixNano())
}

func adminClient(t *testing.T, brokers string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func createTopic(t *testing.T, adm *kadm.Client, partitions int32) string {
	t.Helper()
	name := uniqueName(t, "topic")
	resp, err := adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// produce writes records from..to-1 with key k-i, value v-i and header trace=t-i.
func produce(t *testing.T, brokers, topic string, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{
			Key:     []byte(fmt.Sprintf("k-%d", i)),
			Value:   []byte(fmt.Sprintf("v-%d", i)),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(fmt.Sprintf("t-%d", i))}},
		})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Errorf("produce: %v", err)
	}
}

// committedAndEnd returns the group's committed offset and the end offset per partition. A
// group the broker does not know yet has committed nothing.
func committedAndEnd(adm *kadm.Client, group, topic string) (committed, end map[int32]int64, err error) {
	ctx := context.Background()
	committed, end = map[int32]int64{}, map[int32]int64{}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	offs, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return committed, end, nil
	}
	if err != nil {
		return nil, nil, err
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			committed[o.Partition] = o.At
		}
	})
	return committed, end, nil
}

func allCommitted(committed, end map[int32]int64) bool {
	if len(end) == 0 {
		return false
	}
	for p, e := range end {
		if committed[p] != e {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the deadline passes; a liveness bound, not a speed check.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitDeadline, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inputConf(brokers, topic, group string, limit int) string {
	return fmt.Sprintf(`
kafka:
  seed_brokers: [ %q ]
  topics: [ %q ]
  consumer_group: %q
  checkpoint_limit: %d
  commit_period: 100ms
  heartbeat_interval: 250ms
  session_timeout: 6s
  rebalance_timeout: 20s
  fetch_max_wait: 100ms
  shutdown_timeout: 2s
`, brokers, topic, group, limit)
}

// po identifies one record.
type po struct {
	partition int32
	offset    int64
}

func recordID(msg *service.Message) po {
	p, _ := msg.MetaGetMut("kafka_partition")
	o, _ := msg.MetaGetMut("kafka_offset")
	return po{int32(p.(int64)), o.(int64)}
}

// tracker is the ground truth of a test: deliveries seen and records acknowledged.
type tracker struct {
	mu         sync.Mutex
	seen       map[po]int
	acked      map[po]bool
	deliveries int
	ackOrder   map[int32][]int64
}

func newTracker() *tracker {
	return &tracker{seen: map[po]int{}, acked: map[po]bool{}, ackOrder: map[int32][]int64{}}
}

func (tr *tracker) see(id po) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.seen[id]++
	tr.deliveries++
	return tr.seen[id]
}

func (tr *tracker) ack(id po) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.acked[id] = true
	tr.ackOrder[id.partition] = append(tr.ackOrder[id.partition], id.offset)
}

func (tr *tracker) counts() (unique, deliveries, acked int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.seen), tr.deliveries, len(tr.acked)
}

// lostAgainst counts offsets below end that were never seen.
func (tr *tracker) lostAgainst(end map[int32]int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	lost := 0
	for p, e := range end {
		for o := int64(0); o < e; o++ {
			if tr.seen[po{p, o}] == 0 {
				lost++
			}
		}
	}
	return lost
}

// checkCommitted reports an error if a committed offset passes a record not acknowledged.
func (tr *tracker) checkCommitted(committed map[int32]int64) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for p, c := range committed {
		for o := int64(0); o < c; o++ {
			if !tr.acked[po{p, o}] {
				return fmt.Errorf("partition %d committed at %d but offset %d is not acknowledged", p, c, o)
			}
		}
	}
	return nil
}

// stageProcessor runs a test function on each message in the pipeline.
type stageProcessor struct {
	fn func(ctx context.Context, msg *service.Message) error
}

func (s *stageProcessor) Process(ctx context.Context, msg *service.Message) (service.MessageBatch, error) {
	if err := s.fn(ctx, msg); err != nil {
		return nil, err
	}
	return service.MessageBatch{msg}, nil
}

func (s *stageProcessor) Close(context.Context) error { return nil }

// testMetrics is a metrics exporter that keeps the latest value of every series.
type testMetrics struct {
	mu   sync.Mutex
	vals map[string]int64
}

type metricSeries struct {
	m   *testMetrics
	key string
}

func (s metricSeries) Incr(n int64) { s.m.mu.Lock(); s.m.vals[s.key] += n; s.m.mu.Unlock() }
func (s metricSeries) Set(v int64)  { s.m.mu.Lock(); s.m.vals[s.key] = v; s.m.mu.Unlock() }
func (s metricSeries) Timing(int64) {}

func (m *testMetrics) series(name string, labels []string, values []string) metricSeries {
	key := name
	for i := range labels {
		key += "," + labels[i] + "=" + values[i]
	}
	return metricSeries{m: m, key: key}
}

func (m *testMetrics) NewCounterCtor(name string, labels ...string) service.MetricsExporterCounterCtor {
	return func(vs ...string) service.MetricsExporterCounter { return m.series(name, labels, vs) }
}

func (m *testMetrics) NewTimerCtor(name string, labels ...string) service.MetricsExporterTimerCtor {
	return func(vs ...string) service.MetricsExporterTimer { return m.series(name, labels, vs) }
}

func (m *testMetrics) NewGaugeCtor(name string, labels ...string) service.MetricsExporterGaugeCtor {
	return func(vs ...string) service.MetricsExporterGauge { return m.series(name, labels, vs) }
}

func (m *testMetrics) Close(context.Context) error { return nil }

// get returns the sum of the series named name that carry every given "label=value" (Benthos
// adds its own label and path labels to each series).
func (m *testMetrics) get(name string, labels ...string) (sum int64, found bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, v := range m.vals {
		parts := strings.Split(key, ",")
		if parts[0] != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && slices.Contains(parts[1:], l)
		}
		if ok {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// streamOpts configures runStream.
type streamOpts struct {
	input   string
	threads int
	stage   func(ctx context.Context, msg *service.Message) error // optional processor
	consume service.MessageHandlerFunc
	metrics *testMetrics
	logs    io.Writer // optional: the stream's log at INFO and above, as text
}

// runStream builds and starts a stream: kafka input, optional test processor, consumer func.
func runStream(t *testing.T, o streamOpts) *service.Stream {
	t.Helper()
	env := service.NewEnvironment()
	sb := env.NewStreamBuilder()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if o.logs != nil {
		sb.SetLogger(slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	} else {
		must(sb.SetLoggerYAML("level: " + cmp.Or(os.Getenv("TEST_LOG_LEVEL"), "warn")))
	}
	must(sb.AddInputYAML(o.input))
	if o.threads > 0 {
		sb.SetThreads(o.threads)
	}
	if o.stage != nil {
		must(env.RegisterProcessor("test_stage", service.NewConfigSpec(),
			func(*service.ParsedConfig, *service.Resources) (service.Processor, error) {
				return &stageProcessor{fn: o.stage}, nil
			}))
		must(sb.AddProcessorYAML("test_stage: {}"))
	}
	if o.metrics != nil {
		o.metrics.vals = map[string]int64{}
		must(env.RegisterMetricsExporter("test_metrics", service.NewConfigSpec(),
			func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return o.metrics, nil }))
		must(sb.SetMetricsYAML("test_metrics: {}"))
	}
	must(sb.AddConsumerFunc(o.consume))
	st, err := sb.Build()
	must(err)
	go func() { _ = st.Run(context.Background()) }()
	return st
}

// groupProgress is what the readiness gate sees of the running `kafka` inputs of group, and how
// many there are.
func groupProgress(group string) (inputProgress, int) {
	ins := snapshotInputs(group)
	if len(ins) == 0 {
		return inputProgress{}, 0
	}
	return ins[0], len(ins)
}

// totals sums the partitions' lag and in-flight records of one input.
func (ip inputProgress) totals() (lag int64, inFlight int) {
	for _, p := range ip.parts {
		lag += max(p.lag, 0)
		inFlight += p.inFlight
	}
	return lag, inFlight
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }

package kafka

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// The rule on synthetic snapshots, with a clock the test moves.
func TestReadinessRule(t *testing.T) {
	const stall = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := progressTracker{parts: map[*partitionState]*partitionWatch{}}
	a, b := &partitionState{}, &partitionState{}
	tpA, tpB := topicPartition{"req", 0}, topicPartition{"req", 1}
	in := func(parts ...partitionProgress) []inputProgress {
		return []inputProgress{{group: "g", topics: []string{"req"}, connected: true, parts: parts}}
	}
	part := func(id *partitionState, tp topicPartition, committed int64, held int, lag int64) partitionProgress {
		return partitionProgress{id: id, tp: tp, committed: committed, held: held, lag: lag, pending: held > 0 || lag > 1}
	}

	v := tr.evaluate(t0, nil, stall)
	assert.False(t, v.ready)
	assert.Equal(t, "none", v.key)

	v = tr.evaluate(t0, []inputProgress{{group: "g", topics: []string{"req"}}}, stall)
	assert.False(t, v.ready)
	assert.Contains(t, v.reason, "not connected")

	// Connected with no partitions (more replicas than partitions): ready.
	assert.True(t, tr.evaluate(t0, in(), stall).ready)

	// A is idle for longer than stall_time: still ready. B has work and commits move: ready.
	for i := range 5 {
		now := t0.Add(time.Duration(i) * stall)
		v = tr.evaluate(now, in(part(a, tpA, 5, 0, 0), part(b, tpB, int64(10+i), 3, 3)), stall)
		assert.True(t, v.ready, "step %d: %s", i, v.reason)
		assert.Zero(t, v.stalls[tpB], "a commit just moved")
		assert.Contains(t, v.stalls, tpA)
		assert.Zero(t, v.stalls[tpA], "an idle partition has no stall clock running")
	}

	// B commits once more, then stops with records held: ready until stall_time has passed, then not.
	base := t0.Add(5 * stall)
	v = tr.evaluate(base, in(part(a, tpA, 5, 0, 0), part(b, tpB, 15, 3, 7)), stall)
	require.True(t, v.ready)
	v = tr.evaluate(base.Add(stall-time.Second), in(part(a, tpA, 5, 0, 0), part(b, tpB, 15, 3, 7)), stall)
	assert.True(t, v.ready)
	assert.Equal(t, stall-time.Second, v.stalls[tpB])
	v = tr.evaluate(base.Add(stall), in(part(a, tpA, 5, 0, 0), part(b, tpB, 15, 3, 7)), stall)
	assert.False(t, v.ready)
	assert.Equal(t, "stalled:req/1", v.key)
	assert.Contains(t, v.reason, "partition req/1: 3 records pending (lag 7), no commit for 10s")
	// The reason's numbers change, its key does not (so it is reported once).
	v2 := tr.evaluate(base.Add(2*stall), in(part(a, tpA, 5, 0, 0), part(b, tpB, 15, 3, 9)), stall)
	assert.Equal(t, v.key, v2.key)
	assert.NotEqual(t, v.reason, v2.reason)

	// A commit of B: ready again at once.
	v = tr.evaluate(base.Add(2*stall+time.Second), in(part(a, tpA, 5, 0, 0), part(b, tpB, 16, 3, 8)), stall)
	assert.True(t, v.ready)

	// A single trailing offset (a transaction marker) with nothing held is not work.
	v = tr.evaluate(base.Add(10*stall), in(part(a, tpA, 5, 0, 1)), stall)
	assert.True(t, v.ready)
	assert.Zero(t, v.stalls[tpA])

	// A new assignment of the same partition starts a new clock, and B, gone, is forgotten.
	a2 := &partitionState{}
	v = tr.evaluate(base.Add(20*stall), in(part(a2, tpA, -1, 2, 2)), stall)
	assert.True(t, v.ready)
	assert.Len(t, tr.parts, 1)
	v = tr.evaluate(base.Add(21*stall), in(part(a2, tpA, -1, 2, 2)), stall)
	assert.False(t, v.ready)
	assert.Equal(t, "stalled:req/0", v.key)

	// Disconnection wins over stalls in the reason.
	v = tr.evaluate(base.Add(22*stall), []inputProgress{{group: "g", topics: []string{"req"}}}, stall)
	assert.False(t, v.ready)
	assert.True(t, strings.HasPrefix(v.key, "disconnected:"), v.key)
}

// Finished records that cannot be committed (commits refused) count as pending work.
func TestReadinessCheckpointerProgress(t *testing.T) {
	rec := &commitRecorder{}
	c := newCheckpointer(10, rec.commit)
	tp := topicPartition{"req", 0}
	c.assign([]topicPartition{tp})
	require.False(t, c.add(tp, 3, records(tp, 0, 3)))

	p := c.progress()
	require.Len(t, p, 1)
	assert.Equal(t, partitionProgress{id: c.parts[tp], tp: tp, committed: -1, pending: true, held: 3, lag: 3}, p[0])

	for _, d := range handOut(c, 3) {
		c.ack(d, nil)
	}
	p = c.progress()
	assert.True(t, p[0].pending, "finished but not committed")
	assert.Equal(t, 0, p[0].held)
	assert.Equal(t, int64(0), p[0].lag)

	require.NoError(t, c.commitAll(context.Background()))
	p = c.progress()
	assert.False(t, p[0].pending, "all committed")
	assert.Equal(t, int64(3), p[0].committed)
}

func TestReadinessSpec(t *testing.T) {
	spec := kafkaReadinessSpec()
	conf, err := spec.ParseYAML(`{}`, nil)
	require.NoError(t, err)
	g, err := newReadinessFromParsedConf(conf, service.MockResources())
	require.NoError(t, err)
	assert.Equal(t, 2*time.Minute, g.stall)
	assert.Equal(t, time.Second, g.interval)
	assert.Equal(t, "", g.group)
	require.NoError(t, g.Close(context.Background()))

	conf, err = spec.ParseYAML(`{stall_time: 500ms, check_interval: 1s}`, nil)
	require.NoError(t, err)
	_, err = newReadinessFromParsedConf(conf, service.MockResources())
	require.ErrorContains(t, err, "stall_time")
}

// The gate's Connect/Read protocol with a scripted snapshot.
func TestReadinessGateProtocol(t *testing.T) {
	conf, err := kafkaReadinessSpec().ParseYAML(`{stall_time: 10ms, check_interval: 1ms}`, nil)
	require.NoError(t, err)
	g, err := newReadinessFromParsedConf(conf, service.MockResources())
	require.NoError(t, err)
	var state atomic.Pointer[[]inputProgress]
	set := func(in []inputProgress) { state.Store(&in) }
	g.snapshot = func(string) []inputProgress { return *state.Load() }
	disconnected := []inputProgress{{group: "g", topics: []string{"req"}}}
	connected := []inputProgress{{group: "g", topics: []string{"req"}, connected: true}}

	// Before the first ready, Connect blocks without an error.
	set(disconnected)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Connect(ctx) }()
	time.Sleep(20 * time.Millisecond) // give it a few checks; it must still be waiting
	select {
	case err := <-done:
		t.Fatalf("Connect returned %v before the input was ready", err)
	default:
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	set(connected)
	require.NoError(t, g.Connect(context.Background()))

	// Read reports ErrNotConnected once the rule fails...
	set(disconnected)
	_, _, err = g.Read(context.Background())
	require.ErrorIs(t, err, service.ErrNotConnected)
	// ...Connect then returns the reason once, with a back-off...
	err = g.Connect(context.Background())
	var bo *service.ErrBackOff
	require.ErrorAs(t, err, &bo)
	assert.Contains(t, err.Error(), "not ready: kafka input (group \"g\", topics req) is not connected")
	// ...and blocks while the reason is the same, returning nil when ready again.
	go func() { done <- g.Connect(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Connect returned %v while still not ready", err)
	default:
	}
	set(connected)
	require.NoError(t, <-done)

	require.NoError(t, g.Close(context.Background()))
	_, _, err = g.Read(context.Background())
	require.ErrorIs(t, err, service.ErrEndOfInput)
}

//------------------------------------------------------------------------------
// Against a broker, through the Benthos HTTP server.

// gateOutput is a test output that blocks every Write while blocked is set.
type gateOutput struct {
	mu      sync.Mutex
	blocked bool
	release chan struct{}
	seen    map[string]bool // "partition/offset" of written records
}

func newGateOutput() *gateOutput {
	return &gateOutput{release: make(chan struct{}), seen: map[string]bool{}}
}

func (o *gateOutput) block() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.blocked = true
	o.release = make(chan struct{})
}

func (o *gateOutput) unblock() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.blocked = false
	close(o.release)
}

func (o *gateOutput) written() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

func (o *gateOutput) Connect(context.Context) error { return nil }
func (o *gateOutput) Close(context.Context) error   { return nil }

func (o *gateOutput) Write(ctx context.Context, msg *service.Message) error {
	o.mu.Lock()
	blocked, release := o.blocked, o.release
	o.mu.Unlock()
	if blocked {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p, _ := msg.MetaGetMut("kafka_partition")
	off, _ := msg.MetaGetMut("kafka_offset")
	o.mu.Lock()
	o.seen[fmt.Sprint(p, "/", off)] = true
	o.mu.Unlock()
	return nil
}

func freeHTTPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// httpGet returns the status code and body of GET url (code 0 when the server does not answer).
func httpGet(url string) (int, string) {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTP polls url until it answers code with a body containing want; it returns that body.
// The deadline only stops a broken build from hanging: no duration is asserted.
func waitHTTP(t *testing.T, what, url string, code int, want string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var lastCode int
	var lastBody string
	for {
		lastCode, lastBody = httpGet(url)
		if lastCode == code && strings.Contains(lastBody, want) {
			return lastBody
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s answered %d %q, want %d containing %q", what, url, lastCode, lastBody, code, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gatedStream runs kafka input + kafka_readiness in a broker, into out, with the HTTP server on.
func gatedStream(t *testing.T, brokers, topic, group string, out *gateOutput) (httpAddr string) {
	t.Helper()
	env := service.NewEnvironment()
	require.NoError(t, env.RegisterOutput("test_gate_output", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.Output, int, error) { return out, 1, nil }))
	httpAddr = freeHTTPAddr(t)
	sb := env.NewStreamBuilder()
	require.NoError(t, sb.SetYAML(fmt.Sprintf(`
http:
  enabled: true
  address: %s
logger:
  level: warn
metrics:
  prometheus:
    add_go_metrics: false
    add_process_metrics: false
input:
  broker:
    inputs:
      - kafka:
          seed_brokers: [ %q ]
          topics: [ %q ]
          consumer_group: %q
          checkpoint_limit: 8
          commit_period: 100ms
          heartbeat_interval: 250ms
          session_timeout: 6s
          fetch_max_wait: 100ms
          shutdown_timeout: 2s
      - label: readiness
        kafka_readiness:
          stall_time: 2s
          check_interval: 100ms
          consumer_group: %q
output:
  test_gate_output: {}
`, httpAddr, brokers, topic, group, group)))
	strm, err := sb.Build()
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(context.Background()) }()
	t.Cleanup(func() {
		assert.NoError(t, strm.StopWithin(30*time.Second))
		select {
		case err := <-runErr:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("stream did not stop")
		}
	})
	return httpAddr
}

func waitWritten(t *testing.T, out *gateOutput, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d records written", n), func() bool { return out.written() >= n })
}

func values(from, to int) []*kgo.Record {
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("v", i))})
	}
	return recs
}

// A stalled output turns /ready red once stall_time has passed without a commit while records
// wait; releasing it turns /ready green. /ping stays green throughout.
func TestReadinessStalledOutputOverHTTP(t *testing.T) {
	b := devbroker.NewTestBroker(t)
	topic := b.Topic(t, "ready-stall", 2, nil)
	group := b.Group("ready-stall")
	out := newGateOutput()
	addr := gatedStream(t, b.Addr, topic, group, out)
	ready, ping := "http://"+addr+"/ready", "http://"+addr+"/ping"

	b.Produce(t, topic, values(0, 6)...)
	waitWritten(t, out, 6)
	body := waitHTTP(t, "ready while consuming", ready, http.StatusOK, `"connected":true`)
	assert.Contains(t, body, `"label":"readiness"`)

	out.block()
	b.Produce(t, topic, values(6, 12)...)
	body = waitHTTP(t, "not ready while the output is stuck", ready, http.StatusServiceUnavailable, "no commit for")
	assert.Contains(t, body, "not ready: partition "+topic+"/")
	assert.Contains(t, body, "stall_time 2s")
	code, _ := httpGet(ping)
	assert.Equal(t, http.StatusOK, code, "/ping is liveness and stays green")
	st, n := groupProgress(group)
	require.Equal(t, 1, n)
	assert.True(t, st.connected, "the consumer itself was never interrupted")
	// Red only once the gate's own clock passed stall_time for some partition.
	fams := scrapeMetrics(t, "http://"+addr+"/metrics")
	assert.Equal(t, 0.0, sumValues(family(t, fams, "kafka_ready", dto.MetricType_GAUGE)))
	maxStall := 0.0
	for _, m := range family(t, fams, "kafka_partition_stall_seconds", dto.MetricType_GAUGE).GetMetric() {
		maxStall = max(maxStall, m.GetGauge().GetValue())
	}
	assert.GreaterOrEqual(t, maxStall, 2.0)

	out.unblock()
	waitHTTP(t, "ready again once the output moves", ready, http.StatusOK, `"connected":true`)
	waitWritten(t, out, 12)
	waitFor(t, "everything committed", func() bool {
		committed, end, err := committedAndEnd(b.Admin, group, topic)
		return err == nil && allCommitted(committed, end)
	})
	fams = scrapeMetrics(t, "http://"+addr+"/metrics")
	assert.Equal(t, 1.0, sumValues(family(t, fams, "kafka_ready", dto.MetricType_GAUGE)))
}

// A broker that goes away turns /ready red; when it comes back (same data) /ready turns green
// and consumption resumes, without restarting the stream. Uses its own embedded broker, also
// when KAFKA_BOOTSTRAP_SERVERS names a real one, since the test stops and restarts it.
func TestReadinessBrokerDownOverHTTP(t *testing.T) {
	dir := t.TempDir()
	topic := "ready-down"
	eb, err := devbroker.Start(devbroker.Options{Addr: "127.0.0.1:0", Partitions: 1, Topics: []string{topic}, DataDir: dir})
	require.NoError(t, err)
	brokerAddr := eb.Addr()
	var closeOnce sync.Once
	stop := func() { closeOnce.Do(eb.Close) }
	t.Cleanup(func() { stop() })
	produce := func(from, to int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic(topic))
		require.NoError(t, err)
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, cl.ProduceSync(ctx, values(from, to)...).FirstErr())
	}

	group := "ready-down-group"
	out := newGateOutput()
	addr := gatedStream(t, brokerAddr, topic, group, out)
	ready := "http://" + addr + "/ready"

	produce(0, 3)
	waitWritten(t, out, 3)
	waitHTTP(t, "ready while the broker is up", ready, http.StatusOK, `"connected":true`)

	stop()
	body := waitHTTP(t, "not ready with the broker down", ready, http.StatusServiceUnavailable, "not connected to its consumer group")
	assert.Contains(t, body, group)

	eb2, err := devbroker.Start(devbroker.Options{Addr: brokerAddr, Partitions: 1, Topics: []string{topic}, DataDir: dir})
	require.NoError(t, err, "restart the broker on %s", brokerAddr)
	t.Cleanup(eb2.Close)
	waitHTTP(t, "ready once the broker is back", ready, http.StatusOK, `"connected":true`)
	produce(3, 5)
	waitWritten(t, out, 5)
}

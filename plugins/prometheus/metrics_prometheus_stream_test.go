package prometheus

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // generate, drop
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// probeProc records custom metrics through mgr.Metrics(), the way our plugins do.
type probeProc struct {
	count *service.MetricCounter
	lat   *service.MetricTimer
	gauge *service.MetricGauge
}

func (p *probeProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	p.count.Incr(1, "probe")
	p.lat.Timing((2500 * time.Microsecond).Nanoseconds())
	p.gauge.Set(42, "probe")
	return service.MessageBatch{msg}, nil
}

func (p *probeProc) Close(context.Context) error { return nil }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func getMetrics(client *http.Client, url string) (contentType string, body []byte, err error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(resp.Body); err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Content-Type"), body, nil
}

// TestStreamServesMetricsOverHTTP runs a whole stream with `metrics: {prometheus: {}}` and the Benthos
// HTTP server enabled, then scrapes /metrics over TCP: the same api.New path `rollup run` uses.
func TestStreamServesMetricsOverHTTP(t *testing.T) {
	const messages = 5

	env := service.NewEnvironment() // a clone of the global one, so it holds `prometheus`
	require.NoError(t, env.RegisterProcessor("prom_probe", service.NewConfigSpec(),
		func(_ *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			m := mgr.Metrics()
			return &probeProc{
				count: m.NewCounter("rollup.probe-count", "kind"),
				lat:   m.NewTimer("rollup.probe-latency"),
				gauge: m.NewGauge("rollup.probe-gauge", "kind"),
			}, nil
		}))

	addr := freeAddr(t)
	sb := env.NewStreamBuilder()
	// One batch of five at start, then nothing for an hour: the stream stays up while we scrape.
	require.NoError(t, sb.SetYAML(fmt.Sprintf(`
http:
  enabled: true
  address: %s
input:
  generate:
    mapping: 'root = {"n": counter()}'
    interval: 1h
    batch_size: %d
pipeline:
  processors:
    - prom_probe: {}
output:
  drop: {}
metrics:
  prometheus:
    add_go_metrics: false
logger:
  level: warn
`, addr, messages)))
	strm, err := sb.Build()
	require.NoError(t, err)

	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(context.Background()) }()

	// Wait until the server answers and the batch has reached the output. This polls for a state,
	// it does not assert a duration; the deadline only stops a broken build from hanging.
	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + addr + "/metrics"
	var contentType string
	var body []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		contentType, body, err = getMetrics(client, url)
		if err == nil {
			fams := parseExposition(t, contentType, body)
			if f, ok := fams["output_sent"]; ok && sumCounters(f) >= messages {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "no complete /metrics before deadline: err=%v body:\n%s", err, body)
		time.Sleep(20 * time.Millisecond)
	}
	fams := parseExposition(t, contentType, body)

	// Benthos' own metrics, with the labels Benthos gives them.
	assert.Equal(t, float64(messages), sumCounters(mustFamily(t, fams, "input_received", dto.MetricType_COUNTER)))
	assert.Equal(t, float64(messages), sumCounters(mustFamily(t, fams, "output_sent", dto.MetricType_COUNTER)))
	procLat := mustFamily(t, fams, "processor_latency_ns", dto.MetricType_HISTOGRAM)
	require.NotEmpty(t, procLat.GetMetric())
	assert.Len(t, procLat.GetMetric()[0].GetHistogram().GetBucket(), len(defaultHistogramBuckets)+1) // +Inf

	// Our processor's metrics: Benthos adds the component's `label` and `path` labels.
	compLabels := func(extra map[string]string) map[string]string {
		l := map[string]string{"label": "", "path": "root.pipeline.processors.0"}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	c := series(t, fams, "rollup_probe_count", dto.MetricType_COUNTER, compLabels(map[string]string{"kind": "probe"}))
	assert.Equal(t, float64(messages), c.GetCounter().GetValue())
	g := series(t, fams, "rollup_probe_gauge", dto.MetricType_GAUGE, compLabels(map[string]string{"kind": "probe"}))
	assert.Equal(t, 42.0, g.GetGauge().GetValue())
	h := series(t, fams, "rollup_probe_latency", dto.MetricType_HISTOGRAM, compLabels(nil)).GetHistogram()
	assert.Equal(t, uint64(messages), h.GetSampleCount())
	assert.InDelta(t, messages*0.0025, h.GetSampleSum(), 1e-9)
	buckets := bucketCounts(h)
	assert.Equal(t, uint64(0), buckets[0.001])
	assert.Equal(t, uint64(messages), buckets[0.0025])
	assert.Contains(t, fams["rollup_probe_latency"].GetHelp(), "in seconds")

	// The YAML fields reach the exporter: process metrics on (default), Go metrics off.
	mustFamily(t, fams, "process_cpu_seconds_total", dto.MetricType_COUNTER)
	assert.NotContains(t, fams, "go_goroutines")

	// /stats is the same handler.
	_, statsBody, err := getMetrics(client, "http://"+addr+"/stats")
	require.NoError(t, err)
	assert.Contains(t, string(statsBody), "# TYPE rollup_probe_count counter")

	require.NoError(t, strm.StopWithin(20*time.Second))
	select {
	case err := <-runErr:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
}

func mustFamily(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) *dto.MetricFamily {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "family %q missing; have %v", name, familyNames(fams))
	require.Equal(t, typ, f.GetType(), "type of %q", name)
	return f
}

func sumCounters(f *dto.MetricFamily) float64 {
	var s float64
	for _, m := range f.GetMetric() {
		s += m.GetCounter().GetValue()
	}
	return s
}

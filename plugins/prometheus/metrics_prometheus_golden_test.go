package prometheus

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The golden files pin the exposition byte for byte (names, types, help, labels, and the values that
// do not depend on timing), so a rewrite of the exporter cannot rename or retype a metric that
// dashboards and alerts rely on. Regenerate with `go test ./plugins/prometheus/ -run Golden -update`
// only for a change meant to be visible, and say so in the commit.
var updateGolden = flag.Bool("update", false, "rewrite the golden expositions in testdata/")

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
}

func scrapeText(t *testing.T, e *promExporter) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.HandlerFunc()(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// TestGoldenExporterExposition drives the exporter directly with every kind and the naming edge
// cases (dots, dashes, colons, leading digits, reserved and clashing labels, prefix, label order),
// so every value is deterministic.
func TestGoldenExporterExposition(t *testing.T) {
	for _, tc := range []struct{ file, conf string }{
		{"exposition_histogram.txt", `{prefix: "rollup-prod.", add_process_metrics: false, add_go_metrics: false}`},
		{"exposition_summary.txt", `{use_histogram_timing: false, add_process_metrics: false, add_go_metrics: false}`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			e, _ := newTestExporter(t, tc.conf)
			e.NewCounterCtor("input_received", "label", "path")("kafka_in", "root.input").Incr(3)
			e.NewCounterCtor("rollup.requests-answered", "topic", "error.stage")("scenario", "decode").Incr(2)
			e.NewCounterCtor("rollup.requests-answered", "error.stage", "topic")("encode", "scenario").Incr(5)
			e.NewCounterCtor("kafka:lag_total", "a.b", "a-b", "__name__")("x", "y", "z").Incr(1)
			e.NewCounterCtor("9lives")().(interface{ IncrFloat64(float64) }).IncrFloat64(1.5)
			e.NewGaugeCtor("kafka_consumer_lag", "topic", "partition")("in", "0").Set(7)
			e.NewGaugeCtor("wöchentlich", "0partition")("bad\xffvalue").(interface{ SetFloat64(float64) }).SetFloat64(-0.25)
			tm := e.NewTimerCtor("processor_latency_ns", "label", "le", "quantile")("agg", "1", "2")
			for _, ns := range []int64{500_000, 5_000_000, 2_000_000_000, 250_000_000} {
				tm.Timing(ns)
			}
			checkGolden(t, tc.file, scrapeText(t, e))
		})
	}
}

// TestGoldenStreamExposition runs a stream like a deployment's (Benthos' own input, processor and
// output metrics plus a plugin's) and pins every family and series; sample values are blanked
// because timings and gauges vary from run to run.
func TestGoldenStreamExposition(t *testing.T) {
	env := service.NewEnvironment()
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
	require.NoError(t, sb.SetYAML(fmt.Sprintf(`
http:
  enabled: true
  address: %s
input:
  label: requests
  generate:
    mapping: 'root = {"n": counter()}'
    interval: 1h
    batch_size: 3
pipeline:
  processors:
    - label: probe
      prom_probe: {}
    - mapping: 'root = if this.n == 2 { throw("two") } else { this }'
output:
  label: sink
  drop: {}
metrics:
  prometheus:
    add_go_metrics: false
    add_process_metrics: false
logger:
  level: none
`, addr)))
	strm, err := sb.Build()
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(context.Background()) }()

	client := &http.Client{Timeout: 5 * time.Second}
	var body []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ct string
		ct, body, err = getMetrics(client, "http://"+addr+"/metrics")
		if err == nil {
			if f, ok := parseExposition(t, ct, body)["output_sent"]; ok && sumCounters(f) >= 3 {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "no complete /metrics before deadline: err=%v", err)
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, strm.StopWithin(20*time.Second))
	require.NoError(t, <-runErr)

	sample := regexp.MustCompile(`^([^#].*?) \S+$`)
	var out strings.Builder
	for line := range strings.Lines(string(body)) {
		out.WriteString(sample.ReplaceAllString(strings.TrimSuffix(line, "\n"), "$1 _"))
		out.WriteByte('\n')
	}
	checkGolden(t, "exposition_stream.txt", out.String())
}

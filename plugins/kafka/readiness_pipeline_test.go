package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // broker, switch, log, metric, mutation
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/pipelines"
	_ "github.com/rollup-dev/rollup/plugins/payload"    // payload_decode, payload_encode
	_ "github.com/rollup-dev/rollup/plugins/prometheus" // metrics: prometheus
	_ "github.com/rollup-dev/rollup/plugins/rollup"     // weekly_rollup
)

// The operator's view of pipelines/weekly-rollup.yaml on a broker: run it in-process with the
// Benthos HTTP server, produce good, bad and ignored requests, then check /metrics (scraped over
// HTTP, parsed with expfmt), /ready, /ping and the JSON log lines.
func TestReadinessPipelineOperations(t *testing.T) {
	b := devbroker.NewTestBroker(t)
	in := b.Topic(t, "ops-in", 2, nil)
	out := b.Topic(t, "ops-out", 1, nil)
	dlq := b.Topic(t, "ops-dlq", 1, nil)
	group := b.Group("ops")
	httpAddr := freeHTTPAddr(t)
	logPath := filepath.Join(t.TempDir(), "rollup.log")

	envVars := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": b.Addr,
		"KAFKA_GROUP_ID":          group,
		"INPUT_KAFKA_TOPIC":       in,
		"OUTPUT_KAFKA_TOPIC":      out,
		"DLQ_KAFKA_TOPIC":         dlq,
		"HTTP_ADDRESS":            httpAddr,
		"ROLLUP_THREADS":          "2",
		"LOG_LEVEL":               "INFO",
		"LOG_FORMAT":              "json",
	}
	require.NoError(t, pipelines.RegisterTemplates())
	conf, err := pipelines.File("weekly-rollup.yaml")
	require.NoError(t, err)
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) { v, ok := envVars[k]; return v, ok })
	require.NoError(t, sb.SetYAML(withReadinessGate(t, conf)))
	// `rollup run` enables the server by default, a StreamBuilder does not; logs go to a file so
	// that the test reads what the configured JSON formatter wrote.
	require.NoError(t, sb.SetFields("http.enabled", true, "logger.file.path", logPath))
	strm, err := sb.Build()
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(context.Background()) }()
	defer func() {
		require.NoError(t, strm.StopWithin(30*time.Second))
		require.NoError(t, <-runErr)
	}()

	// Three small requests (2 groups x 3 weeks x 168 rows), one undecodable, one not a rollup.
	type sent struct {
		org  string
		body []byte
	}
	var good []sent
	var recs []*kgo.Record
	rowsPer := 0
	for seed := range uint64(3) {
		o := gen.Defaults(100 + seed)
		o.Weeks = 3
		rowsPer = o.Rows()
		body := gen.Encode(gen.Request(o))
		good = append(good, sent{o.OrganizationID(), body})
		recs = append(recs, &kgo.Record{Key: []byte(o.OrganizationID()), Value: body})
	}
	badBody := []byte("%%% this is not a payload, it must never reach an info log %%%")
	recs = append(recs,
		&kgo.Record{Key: []byte("bad"), Value: badBody},
		&kgo.Record{Key: []byte("other"), Value: []byte(`{"event":"ping","organizationId":"org-ping","weekly":[]}`)})
	b.Produce(t, in, recs...)

	responses := b.ConsumeN(t, out, len(good), 2*time.Minute)
	deadLetters := b.ConsumeN(t, dlq, 1, 2*time.Minute)
	assert.Equal(t, "decode", header(deadLetters[0], "error_stage"))
	responseBytes := 0
	for _, r := range responses {
		responseBytes += len(r.Value)
	}
	waitFor(t, "every input offset committed", func() bool {
		committed, end, err := committedAndEnd(b.Admin, group, in)
		return err == nil && allCommitted(committed, end)
	})

	// /metrics: the lag gauges follow the commits and the readiness gate re-evaluates every
	// check_interval, so poll until they show lag 0 and ready.
	base := "http://" + httpAddr
	var fams map[string]*dto.MetricFamily
	waitFor(t, "lag 0 and ready in /metrics", func() bool {
		fams = scrapeMetrics(t, base+"/metrics")
		lag, ok := fams["kafka_consumer_lag"]
		ready, rok := fams["kafka_ready"]
		return ok && len(lag.GetMetric()) == 2 && sumValues(lag) == 0 && rok && sumValues(ready) == 1
	})

	// Consumer: lag and in-flight per partition, commits, commit errors, rebalances.
	for _, name := range []string{"kafka_consumer_lag", "kafka_in_flight"} {
		f := family(t, fams, name, dto.MetricType_GAUGE)
		for _, m := range f.GetMetric() {
			l := labelMap(m)
			assert.Equal(t, in, l["topic"], name)
			assert.Contains(t, []string{"0", "1"}, l["partition"], name)
			assert.Zero(t, m.GetGauge().GetValue(), "%s %v after the run", name, l)
		}
	}
	assert.GreaterOrEqual(t, sumValues(family(t, fams, "kafka_commits_total", dto.MetricType_COUNTER)), 1.0)
	if f, ok := fams["kafka_commit_errors_total"]; ok {
		assert.Zero(t, sumValues(f))
	}
	assert.GreaterOrEqual(t, sumValues(family(t, fams, "kafka_rebalances_total", dto.MetricType_COUNTER)), 1.0)

	// Requests: answered, rows, response bytes, latency histogram, dead letters by stage.
	assert.Equal(t, float64(len(good)), sumValues(family(t, fams, "rollup_requests_answered", dto.MetricType_COUNTER)))
	assert.Equal(t, float64(len(good)*rowsPer), sumValues(family(t, fams, "rollup_rows_aggregated", dto.MetricType_COUNTER)))
	assert.Equal(t, float64(responseBytes), sumValues(family(t, fams, "rollup_response_bytes", dto.MetricType_COUNTER)))
	lat := family(t, fams, "rollup_request_duration_seconds", dto.MetricType_HISTOGRAM)
	require.Len(t, lat.GetMetric(), 1)
	h := lat.GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(len(good)), h.GetSampleCount())
	assert.Greater(t, h.GetSampleSum(), 0.0)
	assert.Less(t, h.GetSampleSum(), 600.0, "seconds, not nanoseconds")
	dl := family(t, fams, "rollup_dead_letters", dto.MetricType_COUNTER)
	require.Len(t, dl.GetMetric(), 1)
	assert.Equal(t, "decode", labelMap(dl.GetMetric()[0])["error_stage"])
	assert.Equal(t, 1.0, dl.GetMetric()[0].GetCounter().GetValue())

	// Delivery, from the output plugin and Benthos.
	produced := family(t, fams, "kafka_produced_total", dto.MetricType_COUNTER)
	byTopic := map[string]float64{}
	for _, m := range produced.GetMetric() {
		byTopic[labelMap(m)["topic"]] += m.GetCounter().GetValue()
	}
	assert.Equal(t, map[string]float64{out: float64(len(good)), dlq: 1}, byTopic)
	assert.Equal(t, float64(len(recs)), sumValues(family(t, fams, "input_received", dto.MetricType_COUNTER)))
	assert.GreaterOrEqual(t, family(t, fams, "input_latency_ns", dto.MetricType_HISTOGRAM).GetMetric()[0].GetHistogram().GetSampleCount(), uint64(len(recs)))
	assert.Greater(t, sumValues(family(t, fams, "process_resident_memory_bytes", dto.MetricType_GAUGE)), 0.0)

	// Readiness: the gate's gauge, /ready and /ping.
	assert.Equal(t, 1.0, sumValues(family(t, fams, "kafka_ready", dto.MetricType_GAUGE)))
	code, body := httpGet(base + "/ready")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"label":"readiness"`)
	code, _ = httpGet(base + "/ping")
	assert.Equal(t, http.StatusOK, code)

	// Logs: JSON, one "request answered" per response with its fields, one "request
	// dead-lettered" with its stage, nothing for the ignored event but the processor's own line,
	// and no payload anywhere.
	lines := readJSONLines(t, logPath)
	var answered, dead []map[string]any
	for _, l := range lines {
		assert.Equal(t, "rollup", l["@service"])
		assert.NotEmpty(t, l["time"])
		switch l["msg"] {
		case "request answered":
			answered = append(answered, l)
		case "request dead-lettered":
			dead = append(dead, l)
		}
	}
	require.Len(t, answered, len(good))
	orgs := map[string][]byte{}
	for _, g := range good {
		orgs[g.org] = g.body
	}
	for _, l := range answered {
		assert.Equal(t, "info", l["level"])
		org, _ := l["organizationId"].(string)
		require.Contains(t, orgs, org)
		assert.Equal(t, in, l["source_topic"])
		assert.Contains(t, []any{0.0, 1.0}, l["source_partition"])
		assert.IsType(t, 0.0, l["source_offset"])
		assert.Equal(t, float64(rowsPer), l["rows"])
		assert.Equal(t, 2.0, l["groups"])
		assert.Equal(t, 6.0, l["weeks"], "weekly entries: 2 groups x 3 weeks")
		assert.Equal(t, float64(len(orgs[org])), l["request_bytes"])
		assert.Greater(t, l["response_bytes"], 0.0)
		d, ok := l["duration_ms"].(float64)
		assert.True(t, ok && d > 0, "duration_ms %v", l["duration_ms"])
	}
	require.Len(t, dead, 1)
	assert.Equal(t, "warning", dead[0]["level"])
	assert.Equal(t, "decode", dead[0]["error_stage"])
	assert.NotEmpty(t, dead[0]["error"])
	assert.Equal(t, in, dead[0]["source_topic"])
	assert.Equal(t, float64(len(badBody)), dead[0]["request_bytes"])

	raw, err := os.ReadFile(logPath)
	require.NoError(t, err)
	for _, g := range good {
		assert.NotContains(t, string(raw), string(g.body[len(g.body)/2:len(g.body)/2+32]), "a request payload in the logs")
	}
	for _, r := range responses {
		assert.NotContains(t, string(raw), string(r.Value[len(r.Value)/2:len(r.Value)/2+32]), "a response payload in the logs")
	}
	assert.NotContains(t, string(raw), "it must never reach an info log", "the bad payload in the logs")
}

// withReadinessGate returns the pipeline with its kafka input next to a kafka_readiness gate in
// a broker, unless the pipeline already has one.
func withReadinessGate(t *testing.T, conf []byte) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(conf, &doc))
	inputSection, ok := doc["input"].(map[string]any)
	require.True(t, ok, "pipeline has no input")
	if !strings.Contains(string(conf), "kafka_readiness") {
		doc["input"] = map[string]any{"broker": map[string]any{"inputs": []any{
			inputSection,
			map[string]any{"label": "readiness", "kafka_readiness": map[string]any{
				"stall_time": "2m", "consumer_group": "${KAFKA_GROUP_ID:weekly-aggregator}"}},
		}}}
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(out)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

func family(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) *dto.MetricFamily {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "metric %q missing from /metrics", name)
	require.Equal(t, typ, f.GetType(), "type of %q", name)
	require.NotEmpty(t, f.GetMetric(), "metric %q has no series", name)
	return f
}

func sumValues(f *dto.MetricFamily) float64 {
	var s float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.GetCounter().GetValue()
		case m.Gauge != nil:
			s += m.GetGauge().GetValue()
		}
	}
	return s
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "log line is not JSON: %s", sc.Text())
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out, "no log lines in %s", path)
	return out
}

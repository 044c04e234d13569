package prometheus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer collects log output; slog handlers may write from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestExporter(t *testing.T, yamlConf string) (*promExporter, *syncBuffer) {
	t.Helper()
	conf, err := prometheusMetricsSpec().ParseYAML(yamlConf, nil)
	require.NoError(t, err)
	logs := &syncBuffer{}
	e, err := newPrometheusExporterFromParsedConf(conf, service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, e.Close(context.Background())) })
	return e, logs
}

func parseExposition(t *testing.T, contentType string, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	require.True(t, strings.HasPrefix(contentType, "text/plain"), "content type %q", contentType)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err, "exposition:\n%s", body)
	return fams
}

// scrape serves one request through the exporter's handler, the same function Benthos mounts.
func scrape(t *testing.T, e *promExporter) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	e.HandlerFunc()(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return parseExposition(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
}

// series returns the metric of family name whose labels are exactly labels.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, labels map[string]string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "family %q missing; have %v", name, familyNames(fams))
	require.Equal(t, typ, fam.GetType(), "type of %q", name)
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) == len(labels) && assert.ObjectsAreEqual(labels, got) {
			return m
		}
	}
	require.FailNow(t, "series not found", "%q with labels %v in %v", name, labels, fam.GetMetric())
	return nil
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	return names
}

func bucketCounts(h *dto.Histogram) map[float64]uint64 {
	out := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		out[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	return out
}

//------------------------------------------------------------------------------

func TestSanitiseMetricName(t *testing.T) {
	for in, want := range map[string]string{
		"input_received":      "input_received",
		"rollup.rows-total":   "rollup_rows_total",
		"kafka:lag":           "kafka_lag",
		"9lives":              "_9lives",
		"a9":                  "a9",
		"with space/and\\sl":  "with_space_and_sl",
		"wöchentlich":         "w_chentlich",
		"bad\xffbyte":         "bad_byte",
		"":                    "_",
		"ALREADY_fine_Name_1": "ALREADY_fine_Name_1",
	} {
		assert.Equal(t, want, sanitiseMetricName(in), "input %q", in)
	}
}

func TestSanitiseLabelNames(t *testing.T) {
	tests := []struct {
		name             string
		keys             []string
		timer, histogram bool
		want             []string
	}{
		{"none", nil, false, false, nil},
		{"kept", []string{"label", "path"}, false, false, []string{"label", "path"}},
		{"dots and dashes", []string{"error.stage", "source-topic"}, false, false, []string{"error_stage", "source_topic"}},
		{"reserved prefix", []string{"__name__", "___x"}, false, false, []string{"_name__", "_x"}},
		{"leading digit", []string{"0partition"}, false, false, []string{"_0partition"}},
		{"duplicates after sanitising", []string{"a.b", "a-b", "a_b_2"}, false, false, []string{"a_b", "a_b_2", "a_b_2_2"}},
		{"le on a histogram", []string{"le", "quantile"}, true, true, []string{"exported_le", "quantile"}},
		{"quantile on a summary", []string{"le", "quantile"}, true, false, []string{"le", "exported_quantile"}},
		{"le on a counter is fine", []string{"le"}, false, true, []string{"le"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, sanitiseLabelNames(tt.keys, tt.timer, tt.histogram))
		})
	}
}

func TestSpecDefaults(t *testing.T) {
	e, _ := newTestExporter(t, `{}`)
	assert.Empty(t, e.prefix)
	assert.True(t, e.useHistogram)
	assert.Equal(t, defaultHistogramBuckets, e.buckets)
	assert.Equal(t, 0.001, e.buckets[0])
	assert.Equal(t, 60.0, e.buckets[len(e.buckets)-1])

	fams := scrape(t, e)
	series(t, fams, "go_goroutines", dto.MetricType_GAUGE, map[string]string{})
	series(t, fams, "process_cpu_seconds_total", dto.MetricType_COUNTER, map[string]string{})
}

func TestRuntimeCollectorsOff(t *testing.T) {
	e, _ := newTestExporter(t, `
add_process_metrics: false
add_go_metrics: false
`)
	e.NewCounterCtor("only_me")().Incr(1)
	fams := scrape(t, e)
	assert.Equal(t, []string{"only_me"}, familyNames(fams))
}

func TestBucketValidation(t *testing.T) {
	for name, buckets := range map[string]string{
		"empty":      `[]`,
		"unsorted":   `[1, 0.5]`,
		"duplicated": `[0.1, 0.1]`,
	} {
		t.Run(name, func(t *testing.T) {
			conf, err := prometheusMetricsSpec().ParseYAML("histogram_buckets: "+buckets, nil)
			require.NoError(t, err)
			_, err = newPrometheusExporterFromParsedConf(conf, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), pmFieldHistogramBuckets)
		})
	}
}

func TestKindsValuesAndHelp(t *testing.T) {
	e, _ := newTestExporter(t, `
add_process_metrics: false
add_go_metrics: false
histogram_buckets: [0.001, 0.01, 1]
`)
	e.NewCounterCtor("rollup.requests-answered", "topic")("scenario").Incr(3)
	e.NewCounterCtor("rollup.requests-answered", "topic")("scenario").(interface{ IncrFloat64(float64) }).IncrFloat64(0.5)
	e.NewGaugeCtor("kafka.lag", "topic", "partition")("scenario", "2").Set(7)
	e.NewGaugeCtor("kafka.ratio")().(interface{ SetFloat64(float64) }).SetFloat64(0.25)
	timer := e.NewTimerCtor("rollup.latency_ns", "stage")("aggregate")
	timer.Timing(500_000)       // 0.5ms
	timer.Timing(5_000_000)     // 5ms
	timer.Timing(2_000_000_000) // 2s, above every bucket

	fams := scrape(t, e)
	c := series(t, fams, "rollup_requests_answered", dto.MetricType_COUNTER, map[string]string{"topic": "scenario"})
	assert.Equal(t, 3.5, c.GetCounter().GetValue())
	g := series(t, fams, "kafka_lag", dto.MetricType_GAUGE, map[string]string{"topic": "scenario", "partition": "2"})
	assert.Equal(t, 7.0, g.GetGauge().GetValue())
	assert.Equal(t, 0.25, series(t, fams, "kafka_ratio", dto.MetricType_GAUGE, map[string]string{}).GetGauge().GetValue())

	h := series(t, fams, "rollup_latency_ns", dto.MetricType_HISTOGRAM, map[string]string{"stage": "aggregate"}).GetHistogram()
	assert.Equal(t, uint64(3), h.GetSampleCount())
	assert.InDelta(t, 2.0055, h.GetSampleSum(), 1e-12)
	assert.Equal(t, map[float64]uint64{0.001: 1, 0.01: 2, 1: 2, math.Inf(1): 3}, bucketCounts(h))
	assert.Contains(t, fams["rollup_latency_ns"].GetHelp(), "in seconds")
	assert.Contains(t, fams["rollup_requests_answered"].GetHelp(), "rollup.requests-answered")
}

func TestSummaryTiming(t *testing.T) {
	e, _ := newTestExporter(t, `
add_process_metrics: false
add_go_metrics: false
use_histogram_timing: false
`)
	tm := e.NewTimerCtor("t", "quantile")("x")
	for range 4 {
		tm.Timing(250_000_000)
	}
	fams := scrape(t, e)
	s := series(t, fams, "t", dto.MetricType_SUMMARY, map[string]string{"exported_quantile": "x"}).GetSummary()
	assert.Equal(t, uint64(4), s.GetSampleCount())
	assert.InDelta(t, 1.0, s.GetSampleSum(), 1e-12)
	require.Len(t, s.GetQuantile(), 3)
	assert.InDelta(t, 0.25, s.GetQuantile()[0].GetValue(), 1e-12)
}

func TestPrefix(t *testing.T) {
	e, _ := newTestExporter(t, `
prefix: rollup-prod.
add_process_metrics: false
add_go_metrics: false
`)
	e.NewCounterCtor("input_received")().Incr(1)
	e.NewGaugeCtor("in.flight")().Set(2)
	assert.ElementsMatch(t, []string{"rollup_prod_input_received", "rollup_prod_in_flight"}, familyNames(scrape(t, e)))
}

func TestSameNameAndLabelsShareOneVector(t *testing.T) {
	e, logs := newTestExporter(t, `{add_process_metrics: false, add_go_metrics: false}`)

	// Two components, one metric: the second listing its labels in another order.
	first := e.NewCounterCtor("dead_letters", "stage", "topic")
	second := e.NewCounterCtor("dead_letters", "topic", "stage")
	dotted := e.NewCounterCtor("dead.letters", "stage", "topic") // sanitises to the same name
	first("decode", "in").Incr(1)
	second("in", "decode").Incr(2)
	dotted("decode", "in").Incr(4)
	second("in", "encode").Incr(8)

	e.mu.Lock()
	assert.Len(t, e.vecs, 1)
	e.mu.Unlock()

	fams := scrape(t, e)
	assert.Equal(t, 7.0, series(t, fams, "dead_letters", dto.MetricType_COUNTER, map[string]string{"stage": "decode", "topic": "in"}).GetCounter().GetValue())
	assert.Equal(t, 8.0, series(t, fams, "dead_letters", dto.MetricType_COUNTER, map[string]string{"stage": "encode", "topic": "in"}).GetCounter().GetValue())
	assert.Empty(t, logs.String())
}

func TestConflictsAndBadValuesNeverPanic(t *testing.T) {
	e, logs := newTestExporter(t, `{add_process_metrics: false}`)

	e.NewCounterCtor("requests", "topic")("a").Incr(1)

	// Same name as another kind, or with other labels: refused, original untouched.
	e.NewGaugeCtor("requests", "topic")("a").Set(100)
	e.NewCounterCtor("requests", "topic", "partition")("a", "0").Incr(100)
	// A name owned by the Go collector.
	e.NewGaugeCtor("go_goroutines")().Set(-1)
	// Wrong number of label values: dropped, warned once.
	ctor := e.NewCounterCtor("requests", "topic")
	ctor("a", "extra").Incr(100)
	ctor().Incr(100)
	// Negative counter deltas are ignored (client_golang would panic).
	ctor("a").Incr(-5)
	ctor("a").(interface{ IncrFloat64(float64) }).IncrFloat64(-0.5)
	// Invalid UTF-8 label values are repaired rather than refused; the caller's slice is not changed.
	vals := []string{"bad\xfftopic"}
	ctor(vals...).Incr(1)
	assert.Equal(t, "bad\xfftopic", vals[0])

	fams := scrape(t, e)
	assert.Equal(t, 1.0, series(t, fams, "requests", dto.MetricType_COUNTER, map[string]string{"topic": "a"}).GetCounter().GetValue())
	assert.Equal(t, 1.0, series(t, fams, "requests", dto.MetricType_COUNTER, map[string]string{"topic": "bad\uFFFDtopic"}).GetCounter().GetValue())
	assert.NotEqual(t, -1.0, series(t, fams, "go_goroutines", dto.MetricType_GAUGE, map[string]string{}).GetGauge().GetValue())

	out := logs.String()
	assert.Contains(t, out, `is already a counter, refusing it as a gauge`)
	assert.Contains(t, out, `already has labels`)
	assert.Contains(t, out, `cannot register gauge \"go_goroutines\"`)
	assert.Equal(t, 1, strings.Count(out, "dropping updates to counter"), out)
}

func TestConcurrentRegistrationAndUpdates(t *testing.T) {
	e, logs := newTestExporter(t, `{add_process_metrics: false, add_go_metrics: false}`)
	const workers, perWorker = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Benthos calls the ctor per update for plugin metrics, so do the same here.
				e.NewCounterCtor("shared", "worker_parity")(fmt.Sprint(w % 2)).Incr(1)
				e.NewTimerCtor("shared_latency")().Timing(int64(i))
				e.NewGaugeCtor("shared_gauge")().Set(int64(w))
			}
		})
	}
	wg.Wait()

	fams := scrape(t, e)
	even := series(t, fams, "shared", dto.MetricType_COUNTER, map[string]string{"worker_parity": "0"}).GetCounter().GetValue()
	odd := series(t, fams, "shared", dto.MetricType_COUNTER, map[string]string{"worker_parity": "1"}).GetCounter().GetValue()
	assert.Equal(t, float64(workers*perWorker/2), even)
	assert.Equal(t, float64(workers*perWorker/2), odd)
	assert.Equal(t, uint64(workers*perWorker), series(t, fams, "shared_latency", dto.MetricType_HISTOGRAM, map[string]string{}).GetHistogram().GetSampleCount())
	assert.Empty(t, logs.String())
}

func BenchmarkCounterCtorIncr(b *testing.B) {
	conf, err := prometheusMetricsSpec().ParseYAML(`{}`, nil)
	require.NoError(b, err)
	e, err := newPrometheusExporterFromParsedConf(conf, nil)
	require.NoError(b, err)
	ctor := e.NewCounterCtor("input_received", "label", "path")
	b.ReportAllocs()
	for b.Loop() {
		ctor("kafka_in", "root.input").Incr(1)
	}
}

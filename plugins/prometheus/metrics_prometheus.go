// Package prometheus provides the `prometheus` metrics exporter: every metric Benthos and our plugins
// create is kept in a private client_golang registry and served in the Prometheus text format on the
// service-wide HTTP server's `/metrics` (and `/stats`) endpoint.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	pmFieldPrefix             = "prefix"
	pmFieldAddProcessMetrics  = "add_process_metrics"
	pmFieldAddGoMetrics       = "add_go_metrics"
	pmFieldHistogramBuckets   = "histogram_buckets"
	pmFieldUseHistogramTiming = "use_histogram_timing"
)

// defaultHistogramBuckets spans 1ms to 60s: a rollup of a few rows takes about a millisecond, a
// 500k-row request tens of seconds, and Kafka round trips sit in between.
var defaultHistogramBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// summaryObjectives are the quantiles exported for timers when use_histogram_timing is false.
var summaryObjectives = map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001}

func prometheusMetricsSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Summary("Serves metrics in the Prometheus text format on the service-wide HTTP server at `/metrics` (and `/stats`).").
		Description(`
Every metric of the pipeline (Benthos' own, such as `+"`input_received`"+`, `+"`output_sent`"+`,
`+"`processor_latency_ns`"+`, and those of our plugins) is kept in a registry private to this exporter and
served on the HTTP server configured under `+"`http`"+` (default `+"`0.0.0.0:4195`"+`), which must be enabled.
Point a Prometheus scrape job at `+"`http://<host>:4195/metrics`"+`.

Mapping of metric kinds:

- counters become Prometheus counters (names are kept as Benthos gives them, no `+"`_total`"+` suffix);
- gauges become Prometheus gauges;
- timers become histograms (or summaries, see `+"`use_histogram_timing`"+`). Benthos measures timers in
  nanoseconds; this exporter converts every observation to **seconds**, so a timer named
  `+"`processor_latency_ns`"+` holds seconds despite its suffix (its help text says so). The names are
  kept so dashboards written for Redpanda Connect's exporter work unchanged.

Names are sanitised to Prometheus rules: every character other than ASCII letters, digits and `+"`_`"+`
(dots, dashes, colons, spaces, non-ASCII) becomes `+"`_`"+`, and a leading digit gets a `+"`_`"+` in front.
Label names get the same treatment; a label named `+"`le`"+` on a histogram (or `+"`quantile`"+` on a summary)
is exported as `+"`exported_le`"+` (`+"`exported_quantile`"+`) because Prometheus reserves those. Label values
that are not valid UTF-8 have the bad bytes replaced by U+FFFD.

Two components that create the same metric name with the same kind and label names share one series
set. A name reused with another kind or other label names is refused with a warning in the logs and its
updates are dropped; the process keeps running.

The `+"`mapping`"+` field beside this exporter (a Benthos feature) can rename, relabel or drop metrics
before they reach it.`).
		Field(service.NewStringField(pmFieldPrefix).
			Description("A prefix for every metric name created by the pipeline, joined with `_` (`rollup` turns `input_received` into `rollup_input_received`). It is sanitised like metric names. The `go_*` and `process_*` metrics keep their standard names.").
			Default("").
			Example("rollup")).
		Field(service.NewBoolField(pmFieldAddProcessMetrics).
			Description("Whether to export the standard `process_*` metrics of the running process: CPU seconds, resident and virtual memory, open file descriptors, start time.").
			Default(true).
			Advanced()).
		Field(service.NewBoolField(pmFieldAddGoMetrics).
			Description("Whether to export the standard `go_*` metrics of the Go runtime: goroutines, heap, garbage collection pauses.").
			Default(true).
			Advanced()).
		Field(service.NewFloatListField(pmFieldHistogramBuckets).
			Description("Upper bounds, in seconds, of the histogram buckets used for timers when `use_histogram_timing` is true. Must be non-empty and strictly increasing; the `+Inf` bucket is always added.").
			Default(toAnySlice(defaultHistogramBuckets)).
			Example([]any{0.01, 0.1, 1, 10}).
			Advanced()).
		Field(service.NewBoolField(pmFieldUseHistogramTiming).
			Description("Whether timers are exported as histograms (true, the default: aggregatable across instances, buckets from `histogram_buckets`) or as summaries with the 0.5, 0.9 and 0.99 quantiles over a sliding 10 minute window (false). Either way values are in seconds.").
			Default(true).
			Advanced()).
		Example("Defaults", "Serve every metric at `http://0.0.0.0:4195/metrics`.", `
http:
  address: 0.0.0.0:4195
metrics:
  prometheus: {}
`).
		Example("Prefixed, without runtime metrics", "Name the pipeline's metrics `rollup_*` and leave out the `go_*` and `process_*` series.", `
metrics:
  prometheus:
    prefix: rollup
    add_process_metrics: false
    add_go_metrics: false
`)
}

func init() {
	service.MustRegisterMetricsExporter("prometheus", prometheusMetricsSpec(),
		func(conf *service.ParsedConfig, log *service.Logger) (service.MetricsExporter, error) {
			return newPrometheusExporterFromParsedConf(conf, log)
		})
}

//------------------------------------------------------------------------------

// promExporter implements service.MetricsExporter. Benthos calls the New*Ctor methods from many
// components (and goroutines) while the pipeline starts, and the returned constructors from every
// message path, so the registration map is guarded by mu while the constructors touch only their own
// immutable binding and client_golang's already concurrency-safe vectors.
type promExporter struct {
	log          *service.Logger
	prefix       string
	useHistogram bool
	buckets      []float64

	reg     *prometheus.Registry
	handler http.Handler

	mu   sync.Mutex
	vecs map[string]*promVec // by sanitised, prefixed name
}

// Benthos' HTTP server (internal/api.New) and StreamBuilder.SetHTTPMux look for this optional method on
// the exporter to mount /metrics and /stats; without it nothing is served.
var (
	_ service.MetricsExporter                     = (*promExporter)(nil)
	_ interface{ HandlerFunc() http.HandlerFunc } = (*promExporter)(nil)
)

func newPrometheusExporterFromParsedConf(conf *service.ParsedConfig, log *service.Logger) (*promExporter, error) {
	prefix, err := conf.FieldString(pmFieldPrefix)
	if err != nil {
		return nil, err
	}
	addProcess, err := conf.FieldBool(pmFieldAddProcessMetrics)
	if err != nil {
		return nil, err
	}
	addGo, err := conf.FieldBool(pmFieldAddGoMetrics)
	if err != nil {
		return nil, err
	}
	buckets, err := conf.FieldFloatList(pmFieldHistogramBuckets)
	if err != nil {
		return nil, err
	}
	if err := validateBuckets(buckets); err != nil {
		return nil, fmt.Errorf("field %q: %w", pmFieldHistogramBuckets, err)
	}
	useHistogram, err := conf.FieldBool(pmFieldUseHistogramTiming)
	if err != nil {
		return nil, err
	}

	e := &promExporter{
		log:          log,
		useHistogram: useHistogram,
		buckets:      buckets,
		reg:          prometheus.NewRegistry(),
		vecs:         map[string]*promVec{},
	}
	if prefix != "" {
		e.prefix = strings.TrimRight(sanitiseMetricName(prefix), "_") + "_"
	}
	if addProcess {
		if err := e.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("registering process collector: %w", err)
		}
	}
	if addGo {
		if err := e.reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("registering go collector: %w", err)
		}
	}
	// ContinueOnError: one broken collector must not blank the whole scrape.
	e.handler = promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{
		ErrorLog:      promErrorLog{log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return e, nil
}

func validateBuckets(b []float64) error {
	if len(b) == 0 {
		return errors.New("must list at least one bucket")
	}
	for i, v := range b {
		if math.IsNaN(v) {
			return fmt.Errorf("bucket %d is NaN", i)
		}
		if i > 0 && v <= b[i-1] {
			return fmt.Errorf("buckets must be strictly increasing: bucket %d (%v) is not above bucket %d (%v)", i, v, i-1, b[i-1])
		}
	}
	return nil
}

// HandlerFunc serves the registry in the format negotiated with the scraper (text 0.0.4 by default).
func (e *promExporter) HandlerFunc() http.HandlerFunc {
	return e.handler.ServeHTTP
}

// Close has nothing to flush: Prometheus pulls. The registry stays readable so a scrape that races
// the shutdown still gets an answer.
func (e *promExporter) Close(context.Context) error {
	return nil
}

//------------------------------------------------------------------------------

// The metric kinds of Benthos, as named in log messages.
const (
	kindCounter = "counter"
	kindGauge   = "gauge"
	kindTimer   = "timer"
)

// promVec is one registered vector: the label names are in the order the first caller gave them.
// vec is the *MetricVec every client_golang vector embeds, so one lookup serves all kinds; the
// Metric it returns is a Counter, Gauge or Observer according to kind.
type promVec struct {
	kind       string
	name       string
	labelNames []string
	vec        *prometheus.MetricVec
	warned     atomic.Bool // one warning per vector for refused label values
}

// binding is what one New*Ctor call returns. keys is set only when this caller listed the vector's
// label names in another order: its values are then looked up by name (client_golang's
// GetMetricWith) rather than by position.
type binding struct {
	vec  *promVec
	keys []string
	log  *service.Logger
}

func (e *promExporter) NewCounterCtor(name string, labelKeys ...string) service.MetricsExporterCounterCtor {
	b := e.bind(kindCounter, name, labelKeys)
	return func(labelValues ...string) service.MetricsExporterCounter { return promSeries{b.metric(labelValues)} }
}

func (e *promExporter) NewGaugeCtor(name string, labelKeys ...string) service.MetricsExporterGaugeCtor {
	b := e.bind(kindGauge, name, labelKeys)
	return func(labelValues ...string) service.MetricsExporterGauge { return promSeries{b.metric(labelValues)} }
}

func (e *promExporter) NewTimerCtor(name string, labelKeys ...string) service.MetricsExporterTimerCtor {
	b := e.bind(kindTimer, name, labelKeys)
	return func(labelValues ...string) service.MetricsExporterTimer { return promSeries{b.metric(labelValues)} }
}

// metric returns the series for the label values, or nil when the binding was refused or the values
// do not fit the labels (in practice a wrong count, a caller bug): the updates are then dropped
// rather than panicking in the message path, with one warning per vector. Invalid UTF-8 is repaired
// first, as client_golang refuses it and Benthos labels can carry topic names or paths from user data.
func (b *binding) metric(labelValues []string) prometheus.Metric {
	if b == nil {
		return nil
	}
	values := labelValues
	if slices.ContainsFunc(values, func(v string) bool { return !utf8.ValidString(v) }) {
		values = make([]string, len(labelValues)) // never write into the caller's slice
		for i, v := range labelValues {
			values[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	var m prometheus.Metric
	var err error
	if b.keys != nil && len(values) == len(b.keys) {
		labels := make(prometheus.Labels, len(values))
		for i, k := range b.keys {
			labels[k] = values[i]
		}
		m, err = b.vec.vec.GetMetricWith(labels)
	} else {
		m, err = b.vec.vec.GetMetricWithLabelValues(values...)
	}
	if err != nil {
		if b.vec.warned.CompareAndSwap(false, true) {
			b.log.Warnf("prometheus: dropping updates to %s %q: label values %q do not fit labels %q: %v",
				b.vec.kind, b.vec.name, labelValues, b.vec.labelNames, err)
		}
		return nil
	}
	return m
}

// bind returns the binding for name and labels, creating and registering the vector on first use.
// It returns nil (updates dropped, warning logged) when the name is taken by another kind or label set.
func (e *promExporter) bind(kind string, name string, labelKeys []string) *binding {
	fqName := e.prefix + sanitiseMetricName(name)
	labels := sanitiseLabelNames(labelKeys, kind == kindTimer, e.useHistogram)

	e.mu.Lock()
	defer e.mu.Unlock()

	if v, ok := e.vecs[fqName]; ok {
		if v.kind != kind {
			e.log.Warnf("prometheus: metric %q (from %q) is already a %s, refusing it as a %s; its updates are dropped",
				fqName, name, v.kind, kind)
			return nil
		}
		if slices.Equal(v.labelNames, labels) {
			return &binding{vec: v, log: e.log}
		}
		if !slices.Equal(slices.Sorted(slices.Values(v.labelNames)), slices.Sorted(slices.Values(labels))) {
			e.log.Warnf("prometheus: %s %q (from %q) already has labels %q, refusing labels %q; its updates are dropped",
				kind, fqName, name, v.labelNames, labels)
			return nil
		}
		return &binding{vec: v, keys: labels, log: e.log}
	}

	v := &promVec{kind: kind, name: fqName, labelNames: labels}
	var c prometheus.Collector
	switch kind {
	case kindCounter:
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: fqName, Help: fmt.Sprintf("Benthos counter %s.", name)}, labels)
		v.vec, c = cv.MetricVec, cv
	case kindGauge:
		gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: fqName, Help: fmt.Sprintf("Benthos gauge %s.", name)}, labels)
		v.vec, c = gv.MetricVec, gv
	case kindTimer:
		help := fmt.Sprintf("Benthos timer %s, in seconds (converted from the nanoseconds Benthos measures).", name)
		if e.useHistogram {
			hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fqName, Help: help, Buckets: e.buckets}, labels)
			v.vec, c = hv.MetricVec, hv
		} else {
			sv := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: fqName, Help: help, Objectives: summaryObjectives}, labels)
			v.vec, c = sv.MetricVec, sv
		}
	}
	if err := e.reg.Register(c); err != nil {
		// Only a clash with the go_* / process_* collectors can get here: our own names are deduplicated
		// by the map above.
		e.log.Warnf("prometheus: cannot register %s %q (from %q): %v; its updates are dropped", kind, fqName, name, err)
		return nil
	}
	e.vecs[fqName] = v
	return &binding{vec: v, log: e.log}
}

//------------------------------------------------------------------------------

// sanitiseMetricName maps name onto the Prometheus metric name rules with prometheus/common's
// underscore escaping, plus two rules of ours that dashboards already depend on: a leading digit is
// kept behind a "_" (escaping would replace it), and colons, legal but reserved for recording rules,
// become "_" too.
func sanitiseMetricName(name string) string {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		name = "_" + name
	}
	return strings.ReplaceAll(model.EscapeName(name, model.UnderscoreEscaping), ":", "_")
}

// sanitiseLabelNames maps label names onto the Prometheus rules: the metric name rules, no leading
// "__" (reserved), no "le" on histograms or "quantile" on summaries, and no duplicates (two names that
// sanitise alike, such as "a.b" and "a-b", get a numeric suffix, as a vector cannot repeat a label).
func sanitiseLabelNames(keys []string, timer, histogram bool) []string {
	if len(keys) == 0 {
		return nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		n := sanitiseMetricName(k)
		if strings.HasPrefix(n, "__") {
			n = "_" + strings.TrimLeft(n, "_")
		}
		if timer && ((histogram && n == "le") || (!histogram && n == "quantile")) {
			n = "exported_" + n
		}
		base := n
		for s := 2; slices.Contains(out[:i], n); s++ {
			n = fmt.Sprintf("%s_%d", base, s)
		}
		out[i] = n
	}
	return out
}

func toAnySlice(fs []float64) []any {
	out := make([]any, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

//------------------------------------------------------------------------------

// promSeries adapts one client_golang series to the Benthos metric interfaces. bind hands a counter
// constructor only counter vectors (and so on), so each method finds the interface it expects; a
// refused series (nil) matches none and its updates are dropped.
type promSeries struct{ m prometheus.Metric }

func (p promSeries) Incr(n int64) { p.IncrFloat64(float64(n)) }

// IncrFloat64 ignores negative and NaN deltas: client_golang panics on them and a counter cannot go down.
func (p promSeries) IncrFloat64(f float64) {
	if c, ok := p.m.(prometheus.Counter); ok && f > 0 {
		c.Add(f)
	}
}

func (p promSeries) Set(v int64) { p.SetFloat64(float64(v)) }

func (p promSeries) SetFloat64(v float64) {
	if g, ok := p.m.(prometheus.Gauge); ok {
		g.Set(v)
	}
}

// Timing receives nanoseconds (the Benthos convention) and records seconds.
func (p promSeries) Timing(ns int64) {
	if o, ok := p.m.(prometheus.Observer); ok {
		o.Observe(float64(ns) / 1e9)
	}
}

// promErrorLog passes promhttp's gathering errors to the Benthos logger.
type promErrorLog struct{ log *service.Logger }

func (l promErrorLog) Println(v ...any) {
	l.log.Warnf("prometheus: %s", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

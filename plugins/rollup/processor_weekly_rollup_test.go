package rollup

import (
	"context"
	"strings"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the stream's defaults (tracer none)
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestProc(t *testing.T, yaml string) *weeklyRollupProc {
	t.Helper()
	conf, err := weeklyRollupSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	proc, err := newWeeklyRollupFromParsedConf(conf, service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proc.Close(context.Background())) })
	return proc
}

func TestProcessorDefaults(t *testing.T) {
	proc := newTestProc(t, `{}`)
	c := proc.agg.p
	assert.Equal(t, DefaultConfig().Dimensions, c.dims)
	assert.Equal(t, "Week", c.timeField)
	assert.Equal(t, "weekly", c.rowsField)
	assert.Equal(t, 4, c.defaultStart)
	assert.Equal(t, "_", c.sep)
	assert.Equal(t, 2000000, c.maxRows)
	require.Len(t, c.metrics, 8)
	for i, m := range DefaultConfig().Metrics {
		assert.Equal(t, m.Name, c.metrics[i].name)
	}

	req := request("", row("2023-07-28 13:00:00", `"Volume":120.0,"Base AHT":372.5`),
		row("2023-07-29T01:00:00Z", `"Volume":30,"Base AHT":null`))
	out, err := proc.Process(context.Background(), service.NewMessage(req))
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.NoError(t, out[0].GetError())
	b, err := out[0].AsBytes()
	require.NoError(t, err)
	assert.Equal(t, `{"event":"rollup","organizationId":"org-1","week_start":"friday","weekly":{"a_b_c":[`+
		`{"Week":"2023-07-28","Volume":150.0,"Abandons":0.0,"Top Line Agents (FTE)":0.0,"Base AHT":372.5,`+
		`"Handled Threshold":0.0,"Service Level (X Seconds)":null,"Acceptable Wait Time":null,"Total Queue Time":0.0}]}}`, string(b))
	for k, want := range map[string]string{
		MetaOrganizationID: "org-1", MetaRows: "2", MetaGroups: "1", MetaWeeks: "1", MetaWeekStart: "friday",
	} {
		got, ok := out[0].MetaGet(k)
		assert.True(t, ok, k)
		assert.Equal(t, want, got, k)
	}
	_, ok := out[0].MetaGet(MetaErrorStage)
	assert.False(t, ok)
}

func TestProcessorConfigured(t *testing.T) {
	proc := newTestProc(t, `
dimensions: [ Call Center ]
time_field: ts
rows_field: rows
default_week_start: Mon
key_separator: "/"
max_rows: 10
metrics:
  - { name: Volume, rule: sum }
  - { name: Base AHT, rule: weighted_mean, by: Volume }
  - { name: Service Level (X Seconds), rule: min }
  - { name: Service Level (X Seconds) max, rule: MAX }
  - { name: Abandons, rule: count }
`)
	req := `{"event":"rollup","organizationId":"o","rows":[` +
		`{"Call Center":"c","ts":"2023-07-24","Volume":10,"Base AHT":100,"Service Level (X Seconds)":0.5,"Service Level (X Seconds) max":1,"Abandons":3},` +
		`{"Call Center":"c","ts":"2023-07-30","Volume":30,"Base AHT":200,"Service Level (X Seconds)":0.25,"Abandons":null}]}`
	out, err := proc.Process(context.Background(), service.NewMessage([]byte(req)))
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.NoError(t, out[0].GetError())
	b, err := out[0].AsBytes()
	require.NoError(t, err)
	assert.Equal(t, `{"event":"rollup","organizationId":"o","week_start":"monday","weekly":{"c":[`+
		`{"Week":"2023-07-24","Volume":40.0,"Base AHT":175.0,"Service Level (X Seconds)":0.25,`+
		`"Service Level (X Seconds) max":1.0,"Abandons":1}]}}`, string(b))
	ws, _ := out[0].MetaGet(MetaWeekStart)
	assert.Equal(t, "monday", ws)
}

func TestProcessorFailures(t *testing.T) {
	proc := newTestProc(t, `max_rows: 1`)
	for req, tc := range map[string]struct{ stage, err string }{
		`{"event":"rollup","organizationId":"o","weekly":[{"Contact Type":"a"}]}`: {StageValidate, `row 0 field "Staff Type": missing`},
		string(request("", row("2023-07-28", ""), row("2023-07-29", ""))):         {StageValidate, "request has more than 1 rows (max_rows)"},
		`{"event":"rollup","organizationId":"o","weekly":{}}`:                     {StageValidate, `field "weekly": expected a list of rows, got object`},
		`not json`: {StageValidate, "request is not valid JSON"},
	} {
		in := service.NewMessage([]byte(req))
		out, err := proc.Process(context.Background(), in)
		require.NoError(t, err)
		require.Len(t, out, 1, req)
		require.Error(t, out[0].GetError(), req)
		assert.Contains(t, out[0].GetError().Error(), tc.err)
		stage, _ := out[0].MetaGet(MetaErrorStage)
		assert.Equal(t, tc.stage, stage, req)
		b, _ := out[0].AsBytes()
		assert.Equal(t, req, string(b), "a failed message keeps its content")
	}
}

func TestProcessorOverflowStage(t *testing.T) {
	proc := newTestProc(t, `{}`)
	req := string(request("", row("2023-07-28", `"Volume":1.5e308`), row("2023-07-28", `"Volume":1.5e308`)))
	out, err := proc.Process(context.Background(), service.NewMessage([]byte(req)))
	require.NoError(t, err)
	require.Len(t, out, 1)
	assert.EqualError(t, out[0].GetError(), `group "a_b_c" week 2023-07-28 metric "Volume": the sum is not finite (float64 overflow)`)
	stage, _ := out[0].MetaGet(MetaErrorStage)
	assert.Equal(t, StageAggregate, stage)
	org, _ := out[0].MetaGet(MetaOrganizationID)
	assert.Equal(t, "org-1", org)
}

func TestProcessorDropsOtherEvents(t *testing.T) {
	proc := newTestProc(t, `{}`)
	for _, req := range []string{`{"event":"heartbeat","organizationId":"o"}`, `{"organizationId":"o","weekly":[]}`} {
		out, err := proc.Process(context.Background(), service.NewMessage([]byte(req)))
		require.NoError(t, err)
		assert.Empty(t, out, req)
	}
}

func TestProcessorConfigErrors(t *testing.T) {
	for yaml, want := range map[string]string{
		`metrics: [ { name: x, rule: weighted_mean } ]`: "weighted_mean requires `by`",
		`metrics: [ { name: x, rule: median } ]`:        `unknown rule "median"`,
		`dimensions: []`:                                "dimensions must not be empty",
		`default_week_start: someday`:                   "unknown day",
		`metrics: []`:                                   "metrics must not be empty",
	} {
		conf, err := weeklyRollupSpec().ParseYAML(yaml, nil)
		require.NoError(t, err, yaml)
		_, err = newWeeklyRollupFromParsedConf(conf, service.MockResources())
		require.Error(t, err, yaml)
		assert.Contains(t, err.Error(), want, yaml)
	}
}

func TestProcessorLintRules(t *testing.T) {
	linter := service.NewEnvironment().NewComponentConfigLinter()
	for yaml, want := range map[string]string{
		`weekly_rollup: { metrics: [ { name: x, rule: weighted_mean } ] }`: "metric x: weighted_mean requires by",
		`weekly_rollup: { metrics: [ { name: x, rule: median } ] }`:        "median",
		`weekly_rollup: { dimensions: [] }`:                                "dimensions must not be empty",
		`weekly_rollup: { metrics: [] }`:                                   "metrics must not be empty",
		`weekly_rollup: { default_week_start: someday }`:                   "default_week_start must be a day name",
	} {
		lints, err := linter.LintProcessorYAML([]byte(yaml))
		require.NoError(t, err, yaml)
		var all []string
		for _, l := range lints {
			all = append(all, l.What)
		}
		assert.Contains(t, strings.Join(all, "\n"), want, yaml)
	}
	lints, err := linter.LintProcessorYAML([]byte(`weekly_rollup: { default_week_start: SAT, metrics: [ { name: x, rule: weighted_mean, by: y } ] }`))
	require.NoError(t, err)
	assert.Empty(t, lints)
}

// The registered processor in a stream: a response with its metadata, a dropped event, a failed
// request that flows on marked with its stage.
func TestProcessorInStream(t *testing.T) {
	b := service.NewStreamBuilder()
	require.NoError(t, b.SetLoggerYAML(`level: off`))
	require.NoError(t, b.AddProcessorYAML(`weekly_rollup: { default_week_start: sunday }`))
	produce, err := b.AddProducerFunc()
	require.NoError(t, err)
	type out struct {
		body, stage, rows, ws string
		err                   error
	}
	got := make(chan out, 3)
	require.NoError(t, b.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		body, _ := m.AsBytes()
		stage, _ := m.MetaGet(MetaErrorStage)
		rows, _ := m.MetaGet(MetaRows)
		ws, _ := m.MetaGet(MetaWeekStart)
		got <- out{string(body), stage, rows, ws, m.GetError()}
		return nil
	}))
	stream, err := b.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()

	require.NoError(t, produce(ctx, service.NewMessage(request("", row("2023-07-28", `"Volume":5`)))))
	r := <-got
	require.NoError(t, r.err)
	assert.Equal(t, "1", r.rows)
	assert.Equal(t, "sunday", r.ws)
	assert.Contains(t, r.body, `"weekly":{"a_b_c":[{"Week":"2023-07-23","Volume":5.0`)

	require.NoError(t, produce(ctx, service.NewMessage([]byte(`{"event":"noop","organizationId":"o"}`))))
	require.NoError(t, produce(ctx, service.NewMessage([]byte(`{"event":"rollup"}`))))
	r = <-got // the noop event was dropped: the next message out is the failed one
	require.Error(t, r.err)
	assert.Equal(t, StageValidate, r.stage)
	assert.Equal(t, `{"event":"rollup"}`, r.body)

	require.NoError(t, stream.Stop(ctx))
	require.NoError(t, <-done)
}

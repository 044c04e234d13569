package rollup

import (
	"context"
	"strconv"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	wrFieldDimensions       = "dimensions"
	wrFieldTimeField        = "time_field"
	wrFieldRowsField        = "rows_field"
	wrFieldDefaultWeekStart = "default_week_start"
	wrFieldMetrics          = "metrics"
	wrFieldMetricName       = "name"
	wrFieldMetricRule       = "rule"
	wrFieldMetricBy         = "by"
	wrFieldKeySeparator     = "key_separator"
	wrFieldMaxRows          = "max_rows"
)

// Metadata keys set by the processor.
const (
	MetaOrganizationID = "organization_id"
	MetaRows           = "rollup_rows"
	MetaGroups         = "rollup_groups"
	MetaWeeks          = "rollup_weeks"
	MetaWeekStart      = "week_start"
	MetaErrorStage     = "error_stage"
)

func weeklyRollupSpec() *service.ConfigSpec {
	def := DefaultConfig()
	defMetrics := make([]any, len(def.Metrics))
	for i, m := range def.Metrics {
		defMetrics[i] = map[string]any{wrFieldMetricName: m.Name, wrFieldMetricRule: m.Rule}
	}
	return service.NewConfigSpec().
		Stable().
		Categories("Rollup").
		Summary("Rolls a scenario request's hourly rows up into weekly summaries per group: request JSON in, response JSON out.").
		Description(`
The message must hold the request as JSON (decode it first with `+"`payload_decode`"+`):

`+"```json"+`
{"event": "rollup", "organizationId": "5a8a...", "week_start": "friday",
 "weekly": [{"Contact Type": "Medical", "Staff Type": "Medical - English", "Call Center": "Default Center",
             "Week": "2023-07-28 13:00:00", "Volume": 120.0, "Base AHT": 372.5, ...}]}
`+"```"+`

It is replaced by the response, compact JSON:

`+"```json"+`
{"event":"rollup","organizationId":"5a8a...","week_start":"friday",
 "weekly":{"Medical_Medical - English_Default Center":[{"Week":"2023-07-28","Volume":20808.0,"Base AHT":372.59,...}]}}
`+"```"+`

### Request

- `+"`week_start`"+`: `+validWeekStarts+`. Missing or null: `+"`default_week_start`"+`.
  Echoed in the response in lower case, full name.
- `+"`organizationId`"+`: a string, required.
- The rows (field `+"`rows_field`"+`, a list; empty gives `+"`\"weekly\":{}`"+`): each an object whose `+"`dimensions`"+`
  are strings, whose `+"`time_field`"+` is a timestamp `+"`YYYY-MM-DD`"+`, `+"`YYYY-MM-DD HH:MM:SS[.fraction]`"+` or RFC 3339
  (`+"`T`"+`, optional `+"`Z`"+` or offset), and whose metric columns are numbers or null (missing counts as null).
  Other fields are ignored. A row belongs to the calendar date written in it (the offset is not applied,
  the time is ignored); its week is the latest date on or before it whose weekday is the week start.
- An `+"`event`"+` other than `+"`rollup`"+` (or none) is logged at info level and the message is dropped, which
  acknowledges it.
- The request must be valid UTF-8 JSON with an object at the top. Of duplicate keys the last counts (as
  in Python and Go). Numbers beyond the float64 range (`+"`1e400`"+`) are refused.

### Response

`+"`weekly`"+` (this key whatever `+"`rows_field`"+` is) maps each group key (the dimension values joined by `+"`key_separator`"+`, sorted) to its weeks,
oldest first: `+"`Week`"+` (the week's first day) then the metrics in configured order. Numbers are written
as Python's json.dumps writes floats (`+"`20808.0`, `1e-05`"+`); `+"`count`"+` is an integer; null where a rule has
no value.

### Rules

- `+"`sum`"+`: sum of non-null values, 0 when all are null.
- `+"`mean`"+`: mean of non-null values, null when all are null.
- `+"`min`, `max`"+`: of non-null values, null when all are null.
- `+"`count`"+`: number of non-null values.
- `+"`weighted_mean`"+`: Σ(x·w)/Σw over rows where both the value x and the weight w (column `+"`by`"+`) are
  non-null; null when Σw is 0.

Sums use compensated (Neumaier) summation.

### Metadata

On success: `+"`organization_id`, `rollup_rows`, `rollup_groups`, `rollup_weeks`"+` (weekly entries, one per
group and week) and `+"`week_start`"+`. On failure the message keeps its content, is marked failed with an error
naming what is wrong (row index and field for row errors), and gets `+"`error_stage`"+`: `+"`validate`"+` for a bad
request (invalid JSON or UTF-8, wrong types, missing fields, unknown week start, bad timestamp, more rows
than `+"`max_rows`"+`), `+"`aggregate`"+` when a result is not a finite float64 (overflow).

### Performance

Rows are read in one pass straight into per-day accumulators (several million rows per second per
core). Rare shapes (duplicate keys, deeply nested extra fields) and every error go through an exact
encoding/json path that gives identical answers, only slower.`).
		Fields(
			service.NewStringListField(wrFieldDimensions).
				Description("Row fields (strings) that identify a group, in key order.").
				Default(anySlice(def.Dimensions)).
				LintRule(`root = if this.type() == "array" && this.length() == 0 { [ "dimensions must not be empty" ] }`),
			service.NewStringField(wrFieldTimeField).
				Description("Row field holding the row's timestamp.").
				Default(def.TimeField),
			service.NewStringField(wrFieldRowsField).
				Description("Request field holding the list of rows (the seed's name, kept).").
				Default(def.RowsField),
			service.NewStringField(wrFieldDefaultWeekStart).
				Description("Week start used when the request has no `week_start` or it is null. "+validWeekStarts+".").
				Default(def.DefaultWeekStart).
				LintRule(`root = if !["monday","tuesday","wednesday","thursday","friday","saturday","sunday","mon","tue","wed","thu","fri","sat","sun"].contains(this.lowercase()) { [ "default_week_start must be a day name: `+validWeekStarts+`" ] }`),
			service.NewObjectListField(wrFieldMetrics,
				service.NewStringField(wrFieldMetricName).
					Description("Row field read, and the key written in each weekly entry."),
				service.NewStringEnumField(wrFieldMetricRule, Rules...).
					Description("How a week's values are reduced."),
				service.NewStringField(wrFieldMetricBy).
					Description("Weight column of `weighted_mean` (numbers or null); not allowed with other rules.").
					Optional(),
			).
				Description("Output metrics in output order. The default is the contract's: five sums and three means.").
				Default(defMetrics).
				Example([]any{
					map[string]any{"name": "Volume", "rule": "sum"},
					map[string]any{"name": "Base AHT", "rule": "weighted_mean", "by": "Volume"},
					map[string]any{"name": "Service Level (X Seconds)", "rule": "min"},
				}).
				// Runs on the list and on each element (Benthos lints both levels of a list field).
				LintRule(`root = if this.type() != "array" { deleted() } else if this.length() == 0 { [ "metrics must not be empty" ] } else {
  this.filter(m -> m.type() == "object" && m.rule.or("") == "weighted_mean" && m.by.or("") == "").map_each(m -> "metric %v: weighted_mean requires by (the weight column)".format(m.name.or("")))
}`),
			service.NewStringField(wrFieldKeySeparator).
				Description("Joins the dimension values into the group key.").
				Default(def.KeySeparator),
			service.NewIntField(wrFieldMaxRows).
				Description("Requests with more rows than this fail at stage `validate`.").
				Default(def.MaxRows).
				Advanced(),
		).
		Example("Weighted AHT", "Base AHT weighted by Volume, and the weekly minimum service level.", `
pipeline:
  processors:
    - payload_decode: {}
    - weekly_rollup:
        default_week_start: monday
        metrics:
          - { name: Volume, rule: sum }
          - { name: Base AHT, rule: weighted_mean, by: Volume }
          - { name: Service Level (X Seconds), rule: min }
`)
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func init() {
	service.MustRegisterProcessor("weekly_rollup", weeklyRollupSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			return newWeeklyRollupFromParsedConf(conf, mgr)
		})
}

// configFromParsed reads the processor's fields into a Config.
func configFromParsed(conf *service.ParsedConfig) (c Config, err error) {
	if c.Dimensions, err = conf.FieldStringList(wrFieldDimensions); err != nil {
		return c, err
	}
	if c.TimeField, err = conf.FieldString(wrFieldTimeField); err != nil {
		return c, err
	}
	if c.RowsField, err = conf.FieldString(wrFieldRowsField); err != nil {
		return c, err
	}
	if c.DefaultWeekStart, err = conf.FieldString(wrFieldDefaultWeekStart); err != nil {
		return c, err
	}
	if c.KeySeparator, err = conf.FieldString(wrFieldKeySeparator); err != nil {
		return c, err
	}
	if c.MaxRows, err = conf.FieldInt(wrFieldMaxRows); err != nil {
		return c, err
	}
	mconfs, err := conf.FieldObjectList(wrFieldMetrics)
	if err != nil {
		return c, err
	}
	for _, mc := range mconfs {
		var m Metric
		if m.Name, err = mc.FieldString(wrFieldMetricName); err != nil {
			return c, err
		}
		if m.Rule, err = mc.FieldString(wrFieldMetricRule); err != nil {
			return c, err
		}
		m.Rule = strings.ToLower(m.Rule)
		if mc.Contains(wrFieldMetricBy) {
			if m.By, err = mc.FieldString(wrFieldMetricBy); err != nil {
				return c, err
			}
		}
		c.Metrics = append(c.Metrics, m)
	}
	return c, nil
}

type weeklyRollupProc struct {
	agg *Aggregator
	log *service.Logger
}

func newWeeklyRollupFromParsedConf(conf *service.ParsedConfig, mgr *service.Resources) (*weeklyRollupProc, error) {
	c, err := configFromParsed(conf)
	if err != nil {
		return nil, err
	}
	agg, err := NewAggregator(c)
	if err != nil {
		return nil, err
	}
	return &weeklyRollupProc{agg: agg, log: mgr.Logger()}, nil
}

// Process may run on several pipeline threads at once: the Aggregator keeps no per-request state in
// shared fields (its scratch comes from a sync.Pool).
func (w *weeklyRollupProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	req, err := msg.AsBytes()
	if err != nil {
		msg.MetaSet(MetaErrorStage, StageValidate)
		msg.SetError(err)
		return service.MessageBatch{msg}, nil
	}
	resp, info, err := w.agg.Rollup(req)
	if err != nil {
		stage := StageOf(err)
		if stage == "" {
			stage = StageValidate
		}
		if info.OrganizationID != "" {
			msg.MetaSet(MetaOrganizationID, info.OrganizationID)
		}
		msg.MetaSet(MetaErrorStage, stage)
		msg.SetError(err)
		return service.MessageBatch{msg}, nil
	}
	if info.Skipped {
		w.log.With("organizationId", info.OrganizationID).
			Infof("Dropping request: event %s is not rollup", quoteShort(info.Event))
		return nil, nil
	}
	msg.SetBytes(resp)
	msg.MetaSet(MetaOrganizationID, info.OrganizationID)
	msg.MetaSet(MetaRows, strconv.Itoa(info.Rows))
	msg.MetaSet(MetaGroups, strconv.Itoa(info.Groups))
	msg.MetaSet(MetaWeeks, strconv.Itoa(info.Weeks))
	msg.MetaSet(MetaWeekStart, info.WeekStart)
	return service.MessageBatch{msg}, nil
}

// quoteShort quotes an event value for a log line, cut to 64 bytes: it comes from the request.
func quoteShort(s string) string {
	if s == "" {
		return "(none)"
	}
	return quoteValue(s)
}

// quoteValue quotes a value taken from a request for an error text, cut to 64 bytes. Errors travel
// in a dead letter's `error` header and in a log line: a megabyte-long value must not ride along,
// or the dead letter could outgrow the DLQ topic's size limit and block its partition.
func quoteValue(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

// cutValue is quoteValue without the quotes, for values that need none (a JSON number).
func cutValue(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (w *weeklyRollupProc) Close(context.Context) error { return nil }

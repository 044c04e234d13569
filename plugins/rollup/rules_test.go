package rollup

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// request builds a request from row objects written as JSON.
func request(weekStart string, rows ...string) []byte {
	ws := ""
	if weekStart != "" {
		ws = `"week_start":"` + weekStart + `",`
	}
	return []byte(`{"event":"rollup","organizationId":"org-1",` + ws + `"weekly":[` + strings.Join(rows, ",") + `]}`)
}

// row writes a row of group a/b/c at ts with the given extra JSON members.
func row(ts string, members string) string {
	s := `{"Contact Type":"a","Staff Type":"b","Call Center":"c","Week":"` + ts + `"`
	if members != "" {
		s += "," + members
	}
	return s + "}"
}

// rollBoth rolls req up on both paths, requires the same bytes, and returns them.
func rollBoth(t *testing.T, agg *Aggregator, req []byte) ([]byte, Info, error) {
	t.Helper()
	resp, info, err := agg.Rollup(req)
	eresp, einfo, eerr := agg.RollupExact(req)
	require.Equal(t, string(eresp), string(resp), "fast and exact responses differ")
	require.Equal(t, eerr, err)
	einfo.Fallback = info.Fallback
	require.Equal(t, einfo, info)
	return resp, info, err
}

type weekEntry map[string]any

// weeksOf decodes a response's weeks of one group.
func weeksOf(t *testing.T, resp []byte, group string) []weekEntry {
	t.Helper()
	var r struct {
		Weekly map[string][]weekEntry `json:"weekly"`
	}
	require.NoError(t, json.Unmarshal(resp, &r), string(resp))
	w, ok := r.Weekly[group]
	require.True(t, ok, "group %q missing in %s", group, resp)
	return w
}

func TestEveryRuleWithNulls(t *testing.T) {
	c := DefaultConfig()
	c.Metrics = []Metric{
		{Name: "s", Rule: RuleSum}, {Name: "m", Rule: RuleMean}, {Name: "lo", Rule: RuleMin},
		{Name: "hi", Rule: RuleMax}, {Name: "n", Rule: RuleCount}, {Name: "wm", Rule: RuleWeightedMean, By: "w"},
		{Name: "allnull", Rule: RuleSum}, {Name: "allnullmean", Rule: RuleMean}, {Name: "allnullmin", Rule: RuleMin},
		{Name: "allnullmax", Rule: RuleMax}, {Name: "allnullcount", Rule: RuleCount},
		{Name: "x", Rule: RuleWeightedMean, By: "zero"},
	}
	agg, err := NewAggregator(c)
	require.NoError(t, err)
	req := request("friday",
		// Three days of one week (Friday 2023-07-28 .. Thursday 2023-08-03), nulls and missing keys.
		row("2023-07-28 01:00:00", `"s":1.5,"m":10,"lo":5,"hi":5,"n":1,"wm":100,"w":1,"allnull":null,"allnullmean":null,"x":1,"zero":0`),
		row("2023-07-28 02:00:00", `"s":null,"m":null,"lo":-2.5,"hi":null,"n":null,"wm":200,"w":3,"x":2,"zero":0`),
		row("2023-07-30", `"s":2.5,"m":20,"lo":null,"hi":7.25,"n":0,"wm":null,"w":5,"allnullmin":null`),
		row("2023-08-03T23:59:59+05:30", `"s":-1,"m":30,"lo":3,"hi":-9,"n":7,"wm":50,"w":null`),
		// The next week: all null but the sum.
		row("2023-08-04", `"s":null,"m":null,"lo":null,"hi":null,"n":null,"wm":null,"w":null`),
	)
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.Equal(t, Info{Event: "rollup", OrganizationID: "org-1", WeekStart: "friday", Rows: 5, Groups: 1, Weeks: 2}, info)
	assert.Equal(t, `{"event":"rollup","organizationId":"org-1","week_start":"friday","weekly":{"a_b_c":[`+
		`{"Week":"2023-07-28","s":3.0,"m":20.0,"lo":-2.5,"hi":7.25,"n":3,"wm":175.0,"allnull":0.0,"allnullmean":null,`+
		`"allnullmin":null,"allnullmax":null,"allnullcount":0,"x":null},`+
		`{"Week":"2023-08-04","s":0.0,"m":null,"lo":null,"hi":null,"n":0,"wm":null,"allnull":0.0,"allnullmean":null,`+
		`"allnullmin":null,"allnullmax":null,"allnullcount":0,"x":null}]}}`, string(resp))
}

// Neumaier summation keeps what naive summation loses.
func TestCompensatedSum(t *testing.T) {
	c := DefaultConfig()
	c.Metrics = []Metric{{Name: "v", Rule: RuleSum}, {Name: "m", Rule: RuleMean}}
	agg, err := NewAggregator(c)
	require.NoError(t, err)
	var rows []string
	rows = append(rows, row("2023-07-28", `"v":1e16,"m":1e16`))
	for i := 0; i < 10; i++ {
		rows = append(rows, row("2023-07-29", `"v":1,"m":1`))
	}
	rows = append(rows, row("2023-07-30", `"v":-1e16,"m":-1e16`))
	resp, _, err := rollBoth(t, agg, request("", rows...))
	require.NoError(t, err)
	w := weeksOf(t, resp, "a_b_c")
	assert.Equal(t, 10.0, w[0]["v"])
	assert.Equal(t, 10.0/12, w[0]["m"])
}

func TestOverflowIsAnAggregateError(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := request("", row("2023-07-28", `"Volume":1.5e308`), row("2023-07-29", `"Volume":1.5e308`))
	_, _, err = rollBoth(t, agg, req)
	require.Error(t, err)
	assert.Equal(t, StageAggregate, StageOf(err))
	assert.EqualError(t, err, `group "a_b_c" week 2023-07-28 metric "Volume": the sum is not finite (float64 overflow)`)

	c := DefaultConfig()
	c.Metrics = []Metric{{Name: "x", Rule: RuleWeightedMean, By: "w"}}
	agg, err = NewAggregator(c)
	require.NoError(t, err)
	_, _, err = rollBoth(t, agg, request("", row("2023-07-28", `"x":1e300,"w":1e300`)))
	assert.Equal(t, StageAggregate, StageOf(err))
	assert.ErrorContains(t, err, `metric "x": the weighted mean is not finite`)

	// Values near the limit whose result is finite are fine.
	agg, err = NewAggregator(DefaultConfig())
	require.NoError(t, err)
	resp, _, err := rollBoth(t, agg, request("", row("2023-07-28", `"Volume":1.7e308,"Base AHT":1.7e308`),
		row("2023-07-28", `"Volume":-1e308,"Base AHT":0`)))
	require.NoError(t, err)
	w := weeksOf(t, resp, "a_b_c")
	assert.InEpsilon(t, 0.7e308, w[0]["Volume"], 1e-15)
	assert.False(t, math.IsInf(w[0]["Base AHT"].(float64), 0))
}

func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no dimensions":          {func(c *Config) { c.Dimensions = nil }, "dimensions must not be empty"},
		"duplicate dimension":    {func(c *Config) { c.Dimensions = []string{"a", "a"} }, `dimension "a" is listed twice`},
		"no metrics":             {func(c *Config) { c.Metrics = nil }, "metrics must not be empty"},
		"unknown rule":           {func(c *Config) { c.Metrics[0].Rule = "median" }, `unknown rule "median"`},
		"weighted without by":    {func(c *Config) { c.Metrics[3].Rule = RuleWeightedMean }, "weighted_mean requires `by`"},
		"by without weighted":    {func(c *Config) { c.Metrics[0].By = "Volume" }, "`by` applies only to weighted_mean"},
		"duplicate metric":       {func(c *Config) { c.Metrics[1].Name = "Volume" }, `metric "Volume" is listed twice`},
		"metric is a dimension":  {func(c *Config) { c.Metrics[1].Name = "Call Center" }, `metric "Call Center" is also a dimension`},
		"weight is the time":     {func(c *Config) { c.Metrics[0] = Metric{Name: "x", Rule: RuleWeightedMean, By: "Week"} }, `weight "Week" is also a dimension or the time field`},
		"bad default week start": {func(c *Config) { c.DefaultWeekStart = "someday" }, `default_week_start: unknown day "someday"`},
		"max_rows":               {func(c *Config) { c.MaxRows = 0 }, "max_rows must be at least 1"},
		"rows field clash":       {func(c *Config) { c.RowsField = "event" }, `rows_field "event" clashes`},
		"empty time field":       {func(c *Config) { c.TimeField = "" }, "time_field must not be empty"},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			_, err := NewAggregator(c)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
}

func TestCustomDimensionsAndSeparator(t *testing.T) {
	c := DefaultConfig()
	c.Dimensions = []string{"Call Center", "Contact Type"}
	c.KeySeparator = " | "
	c.TimeField = "ts"
	c.RowsField = "rows"
	c.Metrics = []Metric{{Name: "Volume", Rule: RuleSum}, {Name: "Base AHT", Rule: RuleWeightedMean, By: "Volume"}}
	agg, err := NewAggregator(c)
	require.NoError(t, err)
	req := []byte(`{"event":"rollup","organizationId":"o","rows":[` +
		`{"Call Center":"x","Contact Type":"y","ts":"2023-07-28","Volume":2,"Base AHT":100},` +
		`{"Call Center":"x","Contact Type":"y","ts":"2023-07-29","Volume":6,"Base AHT":300}]}`)
	resp, _, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.Equal(t, `{"event":"rollup","organizationId":"o","week_start":"friday","weekly":{"x | y":[`+
		`{"Week":"2023-07-28","Volume":8.0,"Base AHT":250.0}]}}`, string(resp))
}

// Dimension tuples that join to the same key are one group, as in the seed (it grouped by the key).
func TestGroupIdentityIsTheJoinedKey(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := request("",
		`{"Contact Type":"a_b","Staff Type":"c","Call Center":"d","Week":"2023-07-28","Volume":1}`,
		`{"Contact Type":"a","Staff Type":"b_c","Call Center":"d","Week":"2023-07-28","Volume":2}`)
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.Equal(t, 1, info.Groups)
	assert.Equal(t, 3.0, weeksOf(t, resp, "a_b_c_d")[0]["Volume"])
}

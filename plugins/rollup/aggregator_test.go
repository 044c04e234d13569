package rollup

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBadRequests(t *testing.T) {
	good := row("2023-07-28 13:00:00", `"Volume":1`)
	for name, tc := range map[string]struct {
		req  string
		want string
	}{
		"empty":               {``, "request is not valid JSON (byte offset 0): unexpected end of JSON input"},
		"invalid JSON":        {`{"event":"rollup",}`, "request is not valid JSON (byte offset 19): invalid character '}'"},
		"truncated":           {string(request("", good))[:60], "request is not valid JSON (byte offset 60): unexpected end of JSON input"},
		"trailing garbage":    {string(request("", good)) + "x", "request is not valid JSON"},
		"two documents":       {string(request("", good)) + "{}", "request is not valid JSON"},
		"top-level array":     {`[` + string(request("", good)) + `]`, "request must be a JSON object, got array"},
		"top-level string":    {`"rollup"`, "request must be a JSON object, got string"},
		"top-level null":      {`null`, "request must be a JSON object, got null"},
		"non-UTF-8":           {`{"event":"rollup","organizationId":"o` + "\xff" + `","weekly":[]}`, "request is not valid UTF-8 (byte offset 37)"},
		"non-UTF-8 in a row":  {string(request("", row("2023-07-28", `"Notes":"caf`+"\xe9"+`"`))), "request is not valid UTF-8"},
		"missing org":         {`{"event":"rollup","weekly":[]}`, `field "organizationId": missing (expected a string)`},
		"org not a string":    {`{"event":"rollup","organizationId":42,"weekly":[]}`, `field "organizationId": expected a string, got number`},
		"unknown week_start":  {string(request("someday", good)), `field "week_start": unknown day "someday"; valid values: monday, tuesday`},
		"week_start a number": {`{"event":"rollup","organizationId":"o","week_start":4,"weekly":[]}`, `field "week_start": expected a day name, got number; valid values: monday`},
		"weekly missing":      {`{"event":"rollup","organizationId":"o"}`, `field "weekly": missing (expected a list of rows)`},
		"weekly an object":    {`{"event":"rollup","organizationId":"o","weekly":{}}`, `field "weekly": expected a list of rows, got object`},
		"weekly null":         {`{"event":"rollup","organizationId":"o","weekly":null}`, `field "weekly": expected a list of rows, got null`},
		"row not an object":   {string(request("", good, `[1]`)), `row 1: expected an object, got array`},
		"dimension missing":   {string(request("", good, `{"Contact Type":"a","Staff Type":"b","Week":"2023-07-28"}`)), `row 1 field "Call Center": missing (expected a string)`},
		"dimension null":      {string(request("", good, good, `{"Contact Type":"a","Staff Type":null,"Call Center":"c","Week":"2023-07-28"}`)), `row 2 field "Staff Type": expected a string, got null`},
		"dimension a number":  {string(request("", `{"Contact Type":1,"Staff Type":"b","Call Center":"c","Week":"2023-07-28"}`)), `row 0 field "Contact Type": expected a string, got number`},
		"time missing":        {string(request("", `{"Contact Type":"a","Staff Type":"b","Call Center":"c"}`)), `row 0 field "Week": missing (expected a timestamp string)`},
		"time a number":       {string(request("", `{"Contact Type":"a","Staff Type":"b","Call Center":"c","Week":20230728}`)), `row 0 field "Week": expected a timestamp string, got number`},
		"invalid date":        {string(request("", good, row("2023-02-30", ""))), `row 1 field "Week": invalid timestamp "2023-02-30": day 30 is out of range for 2023-02`},
		"bad timestamp":       {string(request("", row("28/07/2023", ""))), `row 0 field "Week": invalid timestamp "28/07/2023": expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS[.fraction] or RFC 3339`},
		"metric a string":     {string(request("", good, row("2023-07-28", `"Volume":"12"`))), `row 1 field "Volume": expected a number or null, got string`},
		"metric a boolean":    {string(request("", row("2023-07-28", `"Base AHT":true`))), `row 0 field "Base AHT": expected a number or null, got boolean`},
		"metric an object":    {string(request("", row("2023-07-28", `"Total Queue Time":{"v":1}`))), `row 0 field "Total Queue Time": expected a number or null, got object`},
		"metric out of range": {string(request("", row("2023-07-28", `"Volume":1e400`))), `row 0 field "Volume": number 1e400 is out of the float64 range`},
		"number with plus":    {string(request("", row("2023-07-28", `"Volume":+1`))), "request is not valid JSON"},
		"number leading zero": {string(request("", row("2023-07-28", `"Volume":01`))), "request is not valid JSON"},
		"NaN":                 {string(request("", row("2023-07-28", `"Volume":NaN`))), "request is not valid JSON"},
		"control char":        {string(request("", `{"Contact Type":"a`+"\n"+`","Staff Type":"b","Call Center":"c","Week":"2023-07-28"}`)), "request is not valid JSON"},
		"bad escape":          {string(request("", `{"Contact Type":"a\x","Staff Type":"b","Call Center":"c","Week":"2023-07-28"}`)), "request is not valid JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			agg, err := NewAggregator(DefaultConfig())
			require.NoError(t, err)
			resp, info, err := agg.Rollup([]byte(tc.req))
			require.Error(t, err)
			assert.Nil(t, resp)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, StageValidate, StageOf(err))
			assert.True(t, info.Fallback, "errors come from the exact path")
			assert.False(t, info.Skipped)
		})
	}
}

func TestMaxRows(t *testing.T) {
	c := DefaultConfig()
	c.MaxRows = 3
	agg, err := NewAggregator(c)
	require.NoError(t, err)
	r := row("2023-07-28", `"Volume":1`)
	_, info, err := rollBoth(t, agg, request("", r, r, r))
	require.NoError(t, err)
	assert.Equal(t, 3, info.Rows)
	_, _, err = rollBoth(t, agg, request("", r, r, r, r))
	assert.EqualError(t, err, "request has more than 3 rows (max_rows)")
	assert.Equal(t, StageValidate, StageOf(err))
}

func TestEventNotRollupIsSkipped(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	for req, want := range map[string]Info{
		`{"event":"ping","organizationId":"o1","weekly":[]}`:            {Event: "ping", OrganizationID: "o1"},
		`{"organizationId":"o2","weekly":[{"bad":1}]}`:                  {OrganizationID: "o2"},
		`{"event":"Rollup","organizationId":"o3"}`:                      {Event: "Rollup", OrganizationID: "o3"},
		`{"event":null,"organizationId":5}`:                             {Event: "null"},
		`{"weekly":"nope","event":{"kind": "rollup"},"week_start":"x"}`: {Event: `{"kind": "rollup"}`},
		`{}`: {},
	} {
		resp, info, err := rollBoth(t, agg, []byte(req))
		require.NoError(t, err, req)
		assert.Nil(t, resp, req)
		want.Skipped = true
		info.Fallback = false
		assert.Equal(t, want, info, req)
	}
}

func TestEmptyWeeklyAndWeekStartDefaults(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	for req, want := range map[string]string{
		`{"event":"rollup","organizationId":"o","weekly":[]}`:                       "friday",
		`{"event":"rollup","organizationId":"o","week_start":null,"weekly":[ ]}`:    "friday",
		`{"event":"rollup","organizationId":"o","week_start":"MON","weekly":[]}`:    "monday",
		`{"weekly":[],"week_start":"Sunday","organizationId":"o","event":"rollup"}`: "sunday",
	} {
		resp, info, err := rollBoth(t, agg, []byte(req))
		require.NoError(t, err, req)
		assert.False(t, info.Fallback)
		assert.Equal(t, `{"event":"rollup","organizationId":"o","week_start":"`+want+`","weekly":{}}`, string(resp))
	}
}

// Duplicate keys keep their last value (encoding/json and Python agree); the fast path hands over.
func TestDuplicateKeysLastWins(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := []byte(`{"event":"rollup","organizationId":"first","organizationId":"o","weekly":[` +
		`{"Contact Type":"x","Contact Type":"a","Staff Type":"b","Call Center":"c","Week":"2023-07-28","Volume":"bad","Volume":2}],` +
		`"week_start":"monday","week_start":"friday"}`)
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.True(t, info.Fallback)
	assert.Equal(t, "o", info.OrganizationID)
	assert.Equal(t, 2.0, weeksOf(t, resp, "a_b_c")[0]["Volume"])
	assert.Contains(t, string(resp), `"week_start":"friday"`)
}

func TestEscapedStrings(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := []byte(`{"event":"rollup","organizationId":"org \"1\"\u00e9","weekly":[` +
		`{"Contact Type":"Caf\u00e9","Staff Type":"tab\there","Call Center":"back\\slash \ud83d\ude00","Week":"2023-07-28","Volume":1},` +
		`{"Contact Type":"Café","Staff Type":"tab\u0009here","Call Center":"back\\slash 😀","Week":"2023-07-29","Volume":2}]}`)
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.False(t, info.Fallback, "escapes are decoded on the fast path")
	assert.Equal(t, 1, info.Groups)
	assert.Equal(t, `{"event":"rollup","organizationId":"org \"1\"é","week_start":"friday","weekly":{`+
		`"Café_tab\there_back\\slash 😀":[{"Week":"2023-07-28","Volume":3.0,"Abandons":0.0,"Top Line Agents (FTE)":0.0,`+
		`"Base AHT":null,"Handled Threshold":0.0,"Service Level (X Seconds)":null,"Acceptable Wait Time":null,"Total Queue Time":0.0}]}}`,
		string(resp))
	var decoded map[string]any
	require.NoError(t, json.Unmarshal(resp, &decoded))
	assert.Equal(t, `org "1"é`, decoded["organizationId"])
}

// The fast path and the exact path give the same bytes over every shape of request, and the fast path
// takes them all.
func TestPathsAgree(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	starts := []string{"", "null", "monday", "Tuesday", "WED", "thursday", "fri", "Saturday", "sun"}
	forms := []string{"space", "iso", "isoz", "offset", "date", "frac", "mixed"}
	for i := 0; i < 60; i++ {
		o := genOpts{
			seed: uint64(i), groups: 1 + i%13, hours: 24 + (i*37)%200, ts: forms[i%len(forms)],
			weekStart: starts[i%len(starts)], nulls: []float64{0, 0.1, 0.9}[i%3], missing: []float64{0, 0.05}[i%2],
			extra: i%4 == 1, shuffle: i%3 == 2, keyOrder: i%5 == 3, pretty: i%6 == 4, numbers: i%4 == 2,
			topOrder: i%7 == 5, escapes: i%8 == 7, start: []string{"2023-07-28", "2024-02-20", "1999-12-27"}[i%3],
		}
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			req := genRequest(o)
			require.True(t, json.Valid(req))
			resp, info, err := rollBoth(t, agg, req)
			require.NoError(t, err)
			assert.False(t, info.Fallback, "the fast path takes every generated request")
			assert.Equal(t, o.groups, info.Groups)
			assert.Equal(t, o.groups*o.hours, info.Rows)
			assert.True(t, json.Valid(resp))
		})
	}
}

// Shuffling rows changes only the order of additions: the same groups, weeks and nulls, values equal to
// within rounding.
func TestShuffledRowsSameAnswer(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	o := genOpts{seed: 7, groups: 5, hours: 24 * 21, ts: "mixed", weekStart: "wednesday", nulls: 0.2, extra: true}
	want, _, err := agg.Rollup(genRequest(o))
	require.NoError(t, err)
	for seed := uint64(0); seed < 4; seed++ {
		o.shuffle, o.keyOrder = true, seed%2 == 0
		got, info, err := agg.Rollup(genRequest(o))
		require.NoError(t, err)
		assert.False(t, info.Fallback)
		assertSameAnswer(t, want, got, 1e-12)
	}
}

// assertSameAnswer compares two responses: same structure and nulls, numbers to rel relative.
func assertSameAnswer(t *testing.T, want, got []byte, rel float64) {
	t.Helper()
	var w, g map[string]any
	require.NoError(t, json.Unmarshal(want, &w))
	require.NoError(t, json.Unmarshal(got, &g))
	var walk func(path string, a, b any)
	walk = func(path string, a, b any) {
		switch a := a.(type) {
		case map[string]any:
			bm, ok := b.(map[string]any)
			require.True(t, ok, path)
			require.ElementsMatch(t, keys(a), keys(bm), path)
			for k := range a {
				walk(path+"/"+k, a[k], bm[k])
			}
		case []any:
			bl, ok := b.([]any)
			require.True(t, ok, path)
			require.Len(t, bl, len(a), path)
			for i := range a {
				walk(fmt.Sprintf("%s[%d]", path, i), a[i], bl[i])
			}
		case float64:
			bf, ok := b.(float64)
			require.True(t, ok, path)
			require.LessOrEqual(t, math.Abs(a-bf), rel*math.Max(math.Abs(a), math.Abs(bf)), "%s: %v vs %v", path, a, bf)
		default:
			require.Equal(t, a, b, path)
		}
	}
	walk("", w, g)
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// The fixtures were made by gen_requests.py; their .pandas.json answers by seed_peer.py's pandas
// aggregation (testdata/crosscheck.py --fixtures). The contract asks for agreement to 1e-9.
func TestFixturesAgreeWithPandas(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	files, err := filepath.Glob("testdata/fixtures/*.pandas.json")
	require.NoError(t, err)
	require.Len(t, files, 2)
	for _, f := range files {
		req, err := os.ReadFile(strings.TrimSuffix(f, ".pandas.json") + ".json")
		require.NoError(t, err)
		want, err := os.ReadFile(f)
		require.NoError(t, err)
		resp, info, err := rollBoth(t, agg, req)
		require.NoError(t, err, f)
		assert.False(t, info.Fallback)
		var got map[string]any
		require.NoError(t, json.Unmarshal(resp, &got))
		delete(got, "event")
		normalized, err := json.Marshal(got)
		require.NoError(t, err)
		assertSameAnswer(t, want, normalized, 1e-9)
	}
}

// Requests run concurrently on one Aggregator give the answers they give alone (run with -race).
func TestConcurrentUse(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	reqs := make([][]byte, 8)
	want := make([][]byte, 8)
	for i := range reqs {
		reqs[i] = genRequest(genOpts{seed: uint64(i), groups: 1 + i, hours: 100, ts: "mixed", shuffle: i%2 == 0, escapes: i == 5})
		want[i], _, err = agg.Rollup(reqs[i])
		require.NoError(t, err)
	}
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func(w int) {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 0; n < 50; n++ {
				i := rng.IntN(len(reqs))
				got, _, err := agg.Rollup(reqs[i])
				if err == nil && string(got) != string(want[i]) {
					err = fmt.Errorf("request %d: different answer", i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < 4; w++ {
		require.NoError(t, <-errs)
	}
}

// Escapes anywhere (keys, values, the week start, the event) decode as encoding/json decodes them,
// lone surrogates included, on the fast path.
func TestEscapesEverywhere(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := []byte(`{"\u0065vent":"roll\u0075p","organizationId":"o","week_st\u0061rt":"\u004donday","w\u0065ekly":[` +
		`{"Contact\u0020Type":"\ud800x","Staff Type":"\udc00\ud83d\ud83d\ude00","Call Center":"\/","\u0057eek":"2023-07-2\u0038T10:00:00\u005a","V\u006flume":1.5},` +
		`{"Contact Type":"\uD800x","Staff Type":"\uDC00\uD83D\uD83D\uDE00","Call Center":"/","Week":"2023-07-25","Volume":2}]}`)
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.False(t, info.Fallback)
	assert.Equal(t, "monday", info.WeekStart)
	assert.Equal(t, 1, info.Groups, "escaped and literal forms are one group")
	w := weeksOf(t, resp, "\uFFFDx_\uFFFD\uFFFD😀_/")
	require.Len(t, w, 1)
	assert.Equal(t, "2023-07-24", w[0]["Week"])
	assert.Equal(t, 3.5, w[0]["Volume"])

	for _, s := range []string{`a\u0000b`, `\ud800`, `\udfff\ud800`, `\ud800\u0041`, `\ud83d\ude00\ud83d`, `\t\n\r\b\f\\\"\/`,
		`\u00E9\u00e9`, `x\ud800\udc00y`, `\uDBFF\uDFFF`, `é😀`} {
		var want string
		require.NoError(t, json.Unmarshal([]byte(`"`+s+`"`), &want), s)
		end, esc, ok := scanString([]byte(s+`"`), 0)
		require.True(t, ok, s)
		assert.Equal(t, len(s), end, s)
		assert.Equal(t, strings.Contains(s, `\`), esc, s)
		assert.Equal(t, want, string(unescape(nil, []byte(s))), s)
	}
	for _, s := range []string{`\x`, `\u12`, `\u12G4`, "a\x01", `\`, "\xff", `\'`} {
		_, _, ok := scanString([]byte(s+`"`), 0)
		assert.False(t, ok, s)
	}
}

// The fast path's row-prefix shortcut never carries a group or date over a row that had no prefix or
// another one.
func TestRowPrefixShortcut(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	a1 := `{"Contact Type":"a","Staff Type":"s","Call Center":"c","Week":"2023-07-28 01:00:00","Volume":1}`
	a2 := `{"Contact Type":"a","Staff Type":"s","Call Center":"c","Week":"2023-07-28 02:00:00","Volume":2}`
	bNoPrefix := `{"Volume":10,"Contact Type":"b","Staff Type":"s","Call Center":"c","Week":"2023-08-10 01:00:00"}`
	bTimeFirst := `{"Week":"2023-08-11","Contact Type":"b","Staff Type":"s","Call Center":"c","Volume":100}`
	cTimeFirst := `{"Week":"2023-08-11 05:00:00","Contact Type":"c","Staff Type":"s","Call Center":"c","Volume":1000}`
	bEscaped := `{"Contact Type":"\u0062","Staff Type":"s","Call Center":"c","Week":"2023-07-2\u0038 03:00:00","Volume":10000}`
	resp, info, err := rollBoth(t, agg, request("", a1, a2, bNoPrefix, a2, bTimeFirst, cTimeFirst, a1, bEscaped, a2, a1))
	require.NoError(t, err)
	assert.False(t, info.Fallback)
	assert.Equal(t, 3, info.Groups)
	a := weeksOf(t, resp, "a_s_c")
	require.Len(t, a, 1)
	assert.Equal(t, 1.0+2+2+1+2+1, a[0]["Volume"])
	b := weeksOf(t, resp, "b_s_c")
	require.Len(t, b, 3)
	assert.Equal(t, []any{"2023-07-28", 10000.0, "2023-08-04", 10.0, "2023-08-11", 100.0},
		[]any{b[0]["Week"], b[0]["Volume"], b[1]["Week"], b[1]["Volume"], b[2]["Week"], b[2]["Volume"]})
	c := weeksOf(t, resp, "c_s_c")
	assert.Equal(t, []any{"2023-08-11", 1000.0}, []any{c[0]["Week"], c[0]["Volume"]})
}

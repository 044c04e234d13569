package e2e

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// TestRequestToResponse sends one generated request with headers through weekly-rollup.yaml and
// checks the response record from the outside: key, headers, the value decoded with the standard
// library, aggregates recomputed here from the generated rows, and that the input's offset is
// committed only once the response is on the broker.
func TestRequestToResponse(t *testing.T) {
	f := newFixture(t, 3, 3)
	startStream(t, "weekly-rollup.yaml", f.env(), nil)

	opts := gen.Defaults(11)
	opts.Weeks = 3
	// A Sunday start: the first and last friday-weeks are partial, so the bucketing is visible.
	opts.Start = time.Date(2023, 7, 30, 10, 0, 0, 0, time.UTC)
	opts.WeekStart = "Friday" // echoed as "friday"
	opts.Nulls = 0.02
	js := gen.Request(opts)
	reqHeaders := []kgo.RecordHeader{
		{Key: "trace-id", Value: []byte("e2e-request-1")},
		{Key: "x-tenant", Value: []byte("café")},
		{Key: "x-empty", Value: []byte{}},
	}
	in := &kgo.Record{Key: []byte("request-key-1"), Value: gen.Encode(js), Headers: reqHeaders}
	f.b.Produce(t, f.in, in)
	k := srcKey{f.in, in.Partition, in.Offset}

	// Poll the committed offset and the outcomes, in that order: once the commit passes the
	// input, its response must already be readable.
	var resp *kgo.Record
	deadline := time.Now().Add(outcomeTimeout)
	for resp == nil {
		c, hasCommit := committed(t, f.b, f.group, f.in)[k.partition]
		o := collectOutcomes(t, f)
		if len(o.dead[k]) > 0 {
			e, _ := header(o.dead[k][0], "error")
			t.Fatalf("request was dead-lettered: %s", e)
		}
		if hasCommit && c > k.offset && len(o.responses[k]) == 0 {
			t.Fatalf("offset %d committed (at %d) before its response was on the broker", k.offset, c)
		}
		if hasCommit && c > k.offset {
			if n := len(o.responses[k]); n != 1 {
				t.Fatalf("want exactly one response, got %d", n)
			}
			resp = o.responses[k][0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no committed response within %v (commit %d, present %v, outcomes %d)", outcomeTimeout, c, hasCommit, o.count(k))
		}
		time.Sleep(50 * time.Millisecond)
	}

	if got, want := string(resp.Key), opts.OrganizationID(); got != want {
		t.Errorf("response key %q, want organizationId %q", got, want)
	}
	wantHeaders := map[string]string{
		"trace-id": "e2e-request-1", "x-tenant": "café", "x-empty": "",
		"source_topic": f.in, "source_partition": itoa(int64(k.partition)), "source_offset": itoa(k.offset),
	}
	checkHeadersExactly(t, "response", headerMap(t, resp), wantHeaders)

	got := decodeResponse(t, resp.Value)
	if got.Event != "rollup" || got.OrganizationID != opts.OrganizationID() || got.WeekStart != "friday" {
		t.Errorf("response event=%q organizationId=%q week_start=%q, want rollup, %q, friday",
			got.Event, got.OrganizationID, got.WeekStart, opts.OrganizationID())
	}
	compareWeekly(t, got.Weekly, referenceWeekly(t, js, time.Friday))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// checkHeadersExactly compares a record's headers with want: same keys, same values.
func checkHeadersExactly(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: header %q missing (headers %v)", what, k, got)
		case g != v:
			t.Errorf("%s: header %q = %q, want %q", what, k, g, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected header %q = %q (internal metadata leaking?)", what, k, v)
		}
	}
}

// weekAgg accumulates, for one group and week, the metrics the test checks.
type weekAgg struct {
	volume, queue         float64 // sums
	aht, awt              float64 // sums for means
	ahtN, awtN, volN, qtN int
}

// referenceWeekly recomputes the rollup from the request JSON with plain loops: week = the latest
// weekStart day on or before the row's calendar date; sums skip nulls (0 if all null), means skip
// nulls (null if all null).
func referenceWeekly(t *testing.T, js []byte, weekStart time.Weekday) map[string]map[string]*weekAgg {
	t.Helper()
	var req struct {
		Weekly []map[string]any `json:"weekly"`
	}
	if err := json.Unmarshal(js, &req); err != nil {
		t.Fatalf("generated request: %v", err)
	}
	out := map[string]map[string]*weekAgg{}
	for i, row := range req.Weekly {
		group := row["Contact Type"].(string) + "_" + row["Staff Type"].(string) + "_" + row["Call Center"].(string)
		ts := row["Week"].(string)
		day, err := time.Parse("2006-01-02", ts[:10])
		if err != nil {
			t.Fatalf("row %d Week %q: %v", i, ts, err)
		}
		back := (int(day.Weekday()) - int(weekStart) + 7) % 7
		week := day.AddDate(0, 0, -back).Format("2006-01-02")
		if out[group] == nil {
			out[group] = map[string]*weekAgg{}
		}
		a := out[group][week]
		if a == nil {
			a = &weekAgg{}
			out[group][week] = a
		}
		add := func(name string, sum *float64, n *int) {
			if v, ok := row[name].(float64); ok {
				*sum += v
				*n++
			}
		}
		add("Volume", &a.volume, &a.volN)
		add("Total Queue Time", &a.queue, &a.qtN)
		add("Base AHT", &a.aht, &a.ahtN)
		add("Acceptable Wait Time", &a.awt, &a.awtN)
	}
	return out
}

func compareWeekly(t *testing.T, got map[string][]map[string]any, want map[string]map[string]*weekAgg) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("response has %d groups, want %d", len(got), len(want))
	}
	for group, weeks := range want {
		gw, ok := got[group]
		if !ok {
			t.Errorf("group %q missing from the response", group)
			continue
		}
		keys := make([]string, 0, len(weeks))
		for w := range weeks {
			keys = append(keys, w)
		}
		sort.Strings(keys)
		if len(gw) != len(keys) {
			t.Errorf("group %q: %d weeks, want %d (%v)", group, len(gw), len(keys), keys)
			continue
		}
		for i, w := range keys {
			entry, a := gw[i], weeks[w]
			if entry["Week"] != w {
				t.Errorf("group %q week %d: Week %v, want %s (oldest first)", group, i, entry["Week"], w)
				continue
			}
			checkNum(t, group, w, "Volume", entry["Volume"], a.volume, true)
			checkNum(t, group, w, "Total Queue Time", entry["Total Queue Time"], a.queue, true)
			checkNum(t, group, w, "Base AHT", entry["Base AHT"], a.aht/float64(a.ahtN), a.ahtN > 0)
			checkNum(t, group, w, "Acceptable Wait Time", entry["Acceptable Wait Time"], a.awt/float64(a.awtN), a.awtN > 0)
		}
	}
}

// checkNum compares to 1e-9 relative; present=false means the value must be null.
func checkNum(t *testing.T, group, week, field string, got any, want float64, present bool) {
	t.Helper()
	if !present {
		if got != nil {
			t.Errorf("%s %s %s = %v, want null", group, week, field, got)
		}
		return
	}
	g, ok := got.(float64)
	if !ok {
		t.Errorf("%s %s %s = %v (%T), want %v", group, week, field, got, got, want)
		return
	}
	if d := math.Abs(g - want); d > 1e-9*math.Max(math.Abs(g), math.Abs(want)) {
		t.Errorf("%s %s %s = %.12g, want %.12g (computed here)", group, week, field, g, want)
	}
}

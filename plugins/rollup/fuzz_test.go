package rollup

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fuzzAggregators are the configurations the fuzz target runs: the contract's, and one with every rule
// and a small max_rows.
func fuzzAggregators(tb testing.TB) []*Aggregator {
	c := DefaultConfig()
	c.MaxRows = 40
	c.Metrics = []Metric{
		{Name: "Volume", Rule: RuleSum}, {Name: "Base AHT", Rule: RuleWeightedMean, By: "Volume"},
		{Name: "Service Level (X Seconds)", Rule: RuleMin}, {Name: "Abandons", Rule: RuleMax},
		{Name: "Total Queue Time", Rule: RuleCount}, {Name: "Acceptable Wait Time", Rule: RuleMean},
	}
	var aggs []*Aggregator
	for _, cfg := range []Config{DefaultConfig(), c} {
		a, err := NewAggregator(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		aggs = append(aggs, a)
	}
	return aggs
}

// FuzzWeeklyRollup: no input makes Rollup panic, and wherever the fast path answers, the exact path
// gives the same bytes, the same error (text and stage) and the same Info.
func FuzzWeeklyRollup(f *testing.F) {
	for i := uint64(0); i < 12; i++ {
		f.Add(genRequest(genOpts{seed: i, groups: 1 + int(i%2), hours: 2 + int(i*5%9), ts: []string{"space", "mixed", "offset", "date"}[i%4],
			weekStart: []string{"", "null", "Mon", "sunday"}[i%4], nulls: 0.2, missing: 0.1, extra: i%2 == 0,
			keyOrder: i%3 == 0, escapes: i%4 == 1, pretty: i%5 == 2, numbers: i%2 == 1, topOrder: i%3 == 2}))
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"event":"rollup"}`, `{"event":"rollup","organizationId":"o","weekly":[]}`,
		`{"event":"rollup","organizationId":"o","weekly":[{"Contact Type":"a","Staff Type":"b","Call Center":"c","Week":"2023-02-30"}]}`,
		`{"event":"rollup","organizationId":"o","weekly":[{"Contact Type":"a","Staff Type":"b","Call Center":"c","Week":"2023-07-28","Volume":1e308},{"Contact Type":"a","Staff Type":"b","Call Center":"c","Week":"2023-07-29","Volume":1e308}]}`,
		`{"event":"rollup","organizationId":"o","weekly":[{"Contact Type":"\ud800","Staff Type":"\u00e9\ud83d\ude00","Call Center":"\"","Week":"2023-07-28","Volume":-0.0}]}`,
	} {
		f.Add([]byte(s))
	}
	if files, _ := filepath.Glob("testdata/fixtures/*[a-z].json"); len(files) > 0 {
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil && !bytes.HasSuffix([]byte(name), []byte(".pandas.json")) {
				f.Add(b[:min(len(b), 4000)]) // a truncated fixture: invalid, but a realistic start
			}
		}
	}
	aggs := fuzzAggregators(f)
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, agg := range aggs {
			eresp, einfo, eerr := agg.RollupExact(req)
			resp, info, err := agg.rollupFastOnly(req)
			if err == errHandOver {
				resp, info, err = agg.Rollup(req)
				if !info.Fallback {
					t.Fatalf("Rollup did not use the exact path after a hand-over")
				}
			}
			if !bytes.Equal(resp, eresp) {
				t.Fatalf("responses differ:\nfast  %s\nexact %s", resp, eresp)
			}
			if (err == nil) != (eerr == nil) || err != nil && (err.Error() != eerr.Error() || StageOf(err) != StageOf(eerr)) {
				t.Fatalf("errors differ: fast %v, exact %v", err, eerr)
			}
			if err != nil && StageOf(err) == "" {
				t.Fatalf("error without a stage: %v", err)
			}
			info.Fallback, einfo.Fallback = false, false
			if info != einfo {
				t.Fatalf("infos differ:\nfast  %+v\nexact %+v", info, einfo)
			}
		}
	})
}

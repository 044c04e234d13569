package rollup

import (
	"testing"
)

// BenchmarkRollup100k rolls up a gen_requests.py-like request of 100,000 hourly rows (5 groups of
// 20,000 hours, "YYYY-MM-DD HH:MM:SS" timestamps, Python-style numbers) on each path, and the same rows
// shuffled (no two consecutive rows share group and day: the fast path's worst realistic case). rows/s
// is per benchmark goroutine (run with -cpu 1 for one core).
func BenchmarkRollup100k(b *testing.B) {
	o := genOpts{seed: 1, groups: 5, hours: 20000, ts: "space", weekStart: "friday"}
	req := genRequest(o)
	o.shuffle = true
	shuffled := genRequest(o)
	agg, err := NewAggregator(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		req  []byte
		fn   func([]byte) ([]byte, Info, error)
	}{{"fast", req, agg.Rollup}, {"fast_shuffled", shuffled, agg.Rollup}, {"exact", req, agg.RollupExact}} {
		b.Run(bc.name, func(b *testing.B) {
			req := bc.req
			_, info, err := bc.fn(req)
			if err != nil {
				b.Fatal(err)
			}
			if info.Rows != 100000 || info.Groups != 5 || info.Fallback != (bc.name == "exact") {
				b.Fatalf("unexpected %+v", info)
			}
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := bc.fn(req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(info.Rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

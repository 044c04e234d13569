package rollup

import (
	"testing"

	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/plugins/payload"
)

// BenchmarkChain100k is one request's whole processing path as the pipelines run it, on one
// core (`make bench` uses -cpu 1): base64 → gunzip → weekly rollup → gzip → base64, for a
// 100k-row request in the seed's wire format. rows/s is the figure issue 2 targets.
func BenchmarkChain100k(b *testing.B) {
	o := gen.Large100k(42)
	wire := gen.Encode(gen.Request(o))
	agg, err := NewAggregator(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		js, err := payload.Decode(wire, 0)
		if err != nil {
			b.Fatal(err)
		}
		resp, info, err := agg.Rollup(js)
		if err != nil || info.Rows != o.Rows() {
			b.Fatalf("rollup: %v (%d rows)", err, info.Rows)
		}
		if _, err := payload.Encode(string(payload.FormatGzipBase64), resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(o.Rows())*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

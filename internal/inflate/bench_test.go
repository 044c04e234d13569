package inflate

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/rollup-dev/rollup/internal/gen"
)

// BenchmarkGunzip inflates the chain benchmark's 100k-row request (34 MB of JSON) as the seed
// sends it (zlib level 9, like Python's gzip.compress) and as our generator does (klauspost
// level 5), with this package and with klauspost/compress/gzip into a presized buffer. Run with
// -cpu 1; MB/s is of output.
func BenchmarkGunzip(b *testing.B) {
	js := gen.Request(gen.Large100k(42))
	for _, enc := range []string{"stdlib-9", "klauspost-5"} {
		src := compressors[enc](js)
		b.Run(enc+"/inflate", func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				out, err := Gunzip(make([]byte, 0, len(js)+Slack), src, len(js))
				if err != nil || len(out) != len(js) {
					b.Fatal(err)
				}
			}
		})
		b.Run(enc+"/klauspost", func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			var zr gzip.Reader
			for b.Loop() {
				out := make([]byte, len(js)+1)
				if err := zr.Reset(bytes.NewReader(src)); err != nil {
					b.Fatal(err)
				}
				if n, err := io.ReadFull(&zr, out); err != io.ErrUnexpectedEOF || n != len(js) {
					b.Fatal(n, err)
				}
			}
		})
	}
}

package inflate

import (
	"bytes"
	"io"
	"testing"

	stdflate "compress/flate"
)

// FuzzGunzip feeds arbitrary bytes to gunzip and to the reference (klauspost's
// gzip reader, checked against Go's): both must refuse them, or both give the
// same output. Mutated gzip streams
// mostly fail their CRC, so FuzzInflate below reaches deeper into DEFLATE.
func FuzzGunzip(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		_ = agree(t, src)
	})
}

// FuzzInflate decodes arbitrary bytes as a raw DEFLATE stream, against Go's
// compress/flate, and checks the stream's end: the bytes after it are where a
// gzip trailer would be read.
func FuzzInflate(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		if len(seed) > 18 {
			f.Add(seed[10 : len(seed)-8]) // the DEFLATE stream inside
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		const limit = 1 << 20
		br := bytes.NewReader(src)
		want, wantErr := io.ReadAll(io.LimitReader(stdflate.NewReader(br), limit+1))
		if wantErr == nil && len(want) > limit {
			return // both refuse it, for different reasons
		}
		d := new(decoder)
		d.in, d.limit = src, limit
		_, err := d.inflate()
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("errors differ: inflate %v, compress/flate %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if got := d.out[:d.op]; !bytes.Equal(got, want) {
			t.Fatalf("outputs differ: %d bytes vs %d, first difference at %d", len(got), len(want), firstDiff(got, want))
		}
		// compress/flate reads exactly up to the stream's last byte from a bytes.Reader.
		if end := len(src) - br.Len(); d.pos != end {
			t.Fatalf("stream ends at %d, compress/flate says %d", d.pos, end)
		}
	})
}

// fuzzSeeds are small streams of every block kind and both encoders.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, in := range [][]byte{nil, []byte("a"), []byte("hello, hello, hello, world"),
		bytes.Repeat([]byte("ab"), 100), []byte(`{"weekly":[{"Volume":6.0,"AHT":298.00481825097677}]}`)} {
		for _, c := range []string{"klauspost-5", "klauspost-0", "klauspost--2", "stdlib-9", "stdlib-1"} {
			seeds = append(seeds, compressors[c](in))
		}
	}
	return seeds
}

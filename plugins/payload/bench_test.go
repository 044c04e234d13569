package payload

import (
	"bytes"
	"sync"
	"testing"
)

// seedRows gives a request of about 6.6 MB of JSON, the seed's size.
const seedRows = 20_000

var seedJSON = sync.OnceValue(func() []byte { return sampleRequestJSON(seedRows) })

// Throughput (b.SetBytes) is counted in decoded JSON bytes for every
// benchmark, so MB/s figures compare across formats and directions.

func benchmarkDecode(b *testing.B, f Format, gz gunzipFunc) {
	js := seedJSON()
	b.Logf("request: %d rows, %d bytes of JSON", seedRows, len(js))
	in, err := Encode(string(f), js)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(js)))
	for b.Loop() {
		out, _, err := decodeWith(in, DefaultMaxDecodedBytes, gz)
		if err != nil || len(out) != len(js) {
			b.Fatalf("decode: %v, %d bytes", err, len(out))
		}
	}
	b.ReportMetric(float64(len(in)), "encoded-bytes")
	if out, _, _ := decodeWith(in, DefaultMaxDecodedBytes, gz); !bytes.Equal(out, js) {
		b.Fatal("round trip differs")
	}
}

func benchmarkEncode(b *testing.B, f Format) {
	js := seedJSON()
	b.ReportAllocs()
	b.SetBytes(int64(len(js)))
	var size int
	for b.Loop() {
		out, err := Encode(string(f), js)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "encoded-bytes")
}

func BenchmarkDecodeGzipBase64(b *testing.B) { benchmarkDecode(b, FormatGzipBase64, gunzip) }
func BenchmarkEncodeGzipBase64(b *testing.B) { benchmarkEncode(b, FormatGzipBase64) }
func BenchmarkDecodeZstdBase64(b *testing.B) { benchmarkDecode(b, FormatZstdBase64, gunzip) }
func BenchmarkEncodeZstdBase64(b *testing.B) { benchmarkEncode(b, FormatZstdBase64) }
func BenchmarkDecodeGzip(b *testing.B)       { benchmarkDecode(b, FormatGzip, gunzip) }
func BenchmarkDecodeZstd(b *testing.B)       { benchmarkDecode(b, FormatZstd, gunzip) }

// BenchmarkDecodeGzipKlauspost is BenchmarkDecodeGzip with payload_decode's `decoder: klauspost`.
func BenchmarkDecodeGzipKlauspost(b *testing.B) { benchmarkDecode(b, FormatGzip, gunzipKlauspost) }

package payload

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// fuzzCap keeps each execution cheap while leaving room for real payloads.
const fuzzCap = 64 << 10

// fuzzRefZstd is an independent decoder (not from the package's pool, default
// options) used as an oracle.
var fuzzRefZstd = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	return d
})

func FuzzPayloadDecode(f *testing.F) {
	js := sampleRequestJSON(30)
	gz := stdGzip(f, js)
	zs := refZstd(f, js, true)
	zsStream := refZstd(f, js, false)
	var bomb bytes.Buffer
	bw := must(gzip.NewWriterLevel(&bomb, gzip.BestCompression))
	writeZeros(bw, 1<<20)
	must(0, bw.Close())
	flipped := bytes.Clone(gz)
	flipped[len(flipped)-6] ^= 1

	for _, seed := range [][]byte{
		js,
		[]byte(" \n[1,2]"),
		gz,
		zs,
		zsStream,
		append(bytes.Clone(zs), zs...),
		b64(gz),
		append(b64(gz), '\r', '\n'),
		[]byte(base64.RawURLEncoding.EncodeToString(gz)),
		b64(zs),
		[]byte(base64.URLEncoding.EncodeToString(zsStream)),
		bomb.Bytes(),
		b64(bomb.Bytes()),
		gz[:len(gz)/2],
		flipped,
		zs[:len(zs)-3],
		b64([]byte("not compressed")),
		[]byte("H4sI!!!!"),
		{},
		{0x00, 0xff, 0x1f},
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, raw []byte) {
		orig := bytes.Clone(raw)
		out, format, err := decode(raw, fuzzCap)
		if !bytes.Equal(raw, orig) {
			t.Fatal("decode modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with a non-nil result", err)
			}
			return
		}
		if len(out) > fuzzCap {
			t.Fatalf("result of %d bytes is over the cap of %d", len(out), fuzzCap)
		}
		switch format {
		case FormatJSON:
			if !bytes.Equal(out, raw) {
				t.Fatal("raw JSON was changed")
			}
		case FormatGzip:
			r, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("accepted gzip that compress/gzip refuses: %v", err)
			}
			ref, err := io.ReadAll(io.LimitReader(r, fuzzCap+1))
			if err != nil || !bytes.Equal(ref, out) {
				t.Fatalf("compress/gzip disagrees: err=%v, %d vs %d bytes", err, len(ref), len(out))
			}
		case FormatZstd:
			ref, err := fuzzRefZstd().DecodeAll(raw, nil)
			if err != nil || !bytes.Equal(ref, out) {
				t.Fatalf("reference zstd decoder disagrees: err=%v, %d vs %d bytes", err, len(ref), len(out))
			}
		case FormatGzipBase64, FormatZstdBase64:
		default:
			t.Fatalf("unknown format %q on success", format)
		}
	})
}

package payload

import (
	"encoding/base64"
	"fmt"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// gzipWriters pools gzip writers of one compression level. Each pooled entry
// carries its own scratch buffer, so a warm encode allocates only its output.
type gzipWriters struct {
	level int
	pool  sync.Pool // of *gzipEncoder
}

type gzipEncoder struct {
	zw  *gzip.Writer
	buf appendWriter
}

// appendWriter is an io.Writer that appends to a byte slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// newGzipWriters checks the level once (NewWriterLevel is the only place that
// validates it), so that get never fails on it later.
func newGzipWriters(level int) (*gzipWriters, error) {
	if _, err := gzip.NewWriterLevel(nil, level); err != nil {
		return nil, err
	}
	return &gzipWriters{level: level}, nil
}

var defaultGzipWriters = sync.OnceValue(func() *gzipWriters {
	return &gzipWriters{level: gzip.DefaultCompression}
})

func (g *gzipWriters) get() *gzipEncoder {
	if e, ok := g.pool.Get().(*gzipEncoder); ok {
		return e
	}
	zw, err := gzip.NewWriterLevel(nil, g.level)
	if err != nil {
		panic(fmt.Sprintf("gzip level %d was checked at construction: %v", g.level, err))
	}
	return &gzipEncoder{zw: zw}
}

func (g *gzipWriters) put(e *gzipEncoder) {
	if cap(e.buf.b) > maxPooledScratch {
		e.buf.b = nil
	}
	g.pool.Put(e)
}

// compress gzips src into the encoder's scratch buffer and hands it to use,
// which must copy what it keeps: the buffer returns to the pool afterwards.
func (g *gzipWriters) compress(src []byte, use func(gz []byte) []byte) ([]byte, error) {
	e := g.get()
	defer g.put(e)
	e.buf.b = e.buf.b[:0]
	e.zw.Reset(&e.buf)
	if _, err := e.zw.Write(src); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := e.zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return use(e.buf.b), nil
}

// sharedZstdEncoder is one encoder for the whole process: EncodeAll is safe
// for concurrent use and runs at most GOMAXPROCS encodes at once, each on the
// calling goroutine. WithZeroFrames makes empty input a valid (empty) frame
// rather than zero bytes, which a decoder would take for an empty payload.
var sharedZstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithZeroFrames(true))
})

// encode produces f from JSON bytes. The result is a new slice (json itself
// for FormatJSON).
func encode(f Format, json []byte, gz *gzipWriters) ([]byte, error) {
	switch f {
	case FormatJSON:
		return json, nil
	case FormatGzip:
		return gz.compress(json, clone)
	case FormatGzipBase64:
		return gz.compress(json, toBase64)
	case FormatZstd, FormatZstdBase64:
		enc, err := sharedZstdEncoder()
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
		bufp := getScratch(len(json)/4 + 64)
		defer putScratch(bufp)
		*bufp = enc.EncodeAll(json, (*bufp)[:0])
		if f == FormatZstd {
			return clone(*bufp), nil
		}
		return toBase64(*bufp), nil
	}
	return nil, fmt.Errorf("unknown payload format %q", f)
}

// clone copies b into a slice of exactly its length.
func clone(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// toBase64 encodes b as standard, padded base64 into an exactly sized slice.
func toBase64(b []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(out, b)
	return out
}

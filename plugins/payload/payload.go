// Package payload holds the codecs between a Kafka record value and the JSON
// the rollup works on: the processors payload_decode (record value to JSON,
// format detected from the bytes) and payload_encode (JSON to the configured
// wire format), and the two functions behind them, Decode and Encode, for code
// outside a pipeline (benchmarks, the demo command).
//
// Both directions reuse their codec state: gzip readers and writers and zstd
// decoders live in sync.Pools, and one zstd encoder is shared (its EncodeAll is
// safe for concurrent use). What is handed back to the caller is always a
// fresh slice of its own (or, for raw JSON, the input itself), never a pooled
// buffer.
//
// gzip is inflated by internal/inflate, our own decoder; docs/decoder.md says
// why, how it is checked, and when to switch to klauspost/compress instead.
package payload

import (
	"fmt"
	"strings"
	"sync"
)

// Format names a wire format of a payload.
type Format string

// The formats Decode detects and Encode produces.
const (
	// FormatJSON is plain JSON, passed through untouched.
	FormatJSON Format = "json"
	// FormatGzip is gzip (RFC 1952) of JSON.
	FormatGzip Format = "gzip"
	// FormatZstd is a Zstandard (RFC 8878) frame of JSON.
	FormatZstd Format = "zstd"
	// FormatGzipBase64 is standard, padded base64 of gzip of JSON: the seed's format.
	FormatGzipBase64 Format = "gzip_base64"
	// FormatZstdBase64 is standard, padded base64 of zstd of JSON.
	FormatZstdBase64 Format = "zstd_base64"
)

// DefaultMaxDecodedBytes is the decoded-size cap Decode applies when given
// a cap of zero or less, and the default of payload_decode's max_decoded_bytes.
const DefaultMaxDecodedBytes = 256 << 20

// encodeFormats lists the formats Encode accepts, in the order the docs name them.
var encodeFormats = []Format{FormatGzipBase64, FormatGzip, FormatZstd, FormatZstdBase64, FormatJSON}

func parseFormat(s string) (Format, error) {
	for _, f := range encodeFormats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(encodeFormats))
	for i, f := range encodeFormats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown payload format %q (valid: %s)", s, strings.Join(names, ", "))
}

// Decode turns a record value into JSON bytes. The format is detected from the
// bytes: raw JSON (first non-whitespace byte '{' or '['), gzip, zstd, or
// base64 (standard or URL-safe alphabet, padding optional, surrounding
// whitespace ignored) of gzip or zstd. Anything else is an error naming what
// was seen.
//
// maxDecoded caps the size of the result (DefaultMaxDecodedBytes when <= 0).
// The cap is enforced while decompressing: no more than maxDecoded+1 bytes are
// ever inflated, so a compression bomb costs little memory or time.
//
// Raw JSON is returned as is (the same slice, not a copy). Otherwise the
// result is a new slice owned by the caller; raw is never modified.
func Decode(raw []byte, maxDecoded int) ([]byte, error) {
	out, _, err := decode(raw, maxDecoded)
	return out, err
}

// Encode turns JSON bytes into format: "gzip_base64" (the seed's format),
// "gzip", "zstd", "zstd_base64" or "json" (returned as is, not copied). gzip
// uses klauspost/compress's default level (gzip.DefaultCompression, which
// that package maps to level 5), zstd its default level (roughly zstd level 3).
// Base64 is the standard alphabet with padding. The result is a new slice
// owned by the caller; json is never modified.
func Encode(format string, json []byte) ([]byte, error) {
	f, err := parseFormat(format)
	if err != nil {
		return nil, err
	}
	return encode(f, json, defaultGzipWriters())
}

// Scratch buffers for intermediate bytes that never leave the package (the
// binary inside base64 on decode, the compressed bytes before base64 or the
// final copy on encode). A buffer over maxPooledScratch is dropped instead of
// pooled so one huge message does not pin its memory for the process's life.
const maxPooledScratch = 64 << 20

var scratchPool sync.Pool // of *[]byte

// getScratch returns an empty buffer with capacity at least n.
func getScratch(n int) *[]byte {
	p, _ := scratchPool.Get().(*[]byte)
	if p == nil {
		b := make([]byte, 0, n)
		return &b
	}
	if cap(*p) < n {
		*p = make([]byte, 0, n)
	}
	*p = (*p)[:0]
	return p
}

func putScratch(p *[]byte) {
	if cap(*p) > maxPooledScratch {
		return
	}
	scratchPool.Put(p)
}

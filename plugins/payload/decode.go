package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/rollup-dev/rollup/internal/inflate"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// errEmpty is the error for a zero-length (or whitespace-only) payload.
var errEmpty = errors.New("empty payload")

// capError reports a payload whose decoded size is over the cap. The text is
// the one the docs promise; detail, when set, says how it was noticed.
type capError struct {
	max    int
	detail string
}

func (e *capError) Error() string {
	if e.detail != "" {
		return fmt.Sprintf("decoded payload exceeds max_decoded_bytes (%d): %s", e.max, e.detail)
	}
	return fmt.Sprintf("decoded payload exceeds max_decoded_bytes (%d)", e.max)
}

// decode is Decode that also says which format it found.
func decode(raw []byte, maxDecoded int) ([]byte, Format, error) {
	return decodeWith(raw, maxDecoded, gunzip)
}

// gunzipFunc decompresses a whole gzip stream (codec names it in errors) into a new slice of at
// most maxDecoded bytes: gunzip (internal/inflate) or gunzipKlauspost, which payload_decode's
// `decoder` field chooses between. Both give the same output and the same errors.
type gunzipFunc func(src []byte, maxDecoded int, codec string) ([]byte, error)

// decodeWith is decode with gzip decompressed by gz.
func decodeWith(raw []byte, maxDecoded int, gz gunzipFunc) ([]byte, Format, error) {
	if maxDecoded <= 0 {
		maxDecoded = DefaultMaxDecodedBytes
	}
	maxDecoded = min(maxDecoded, math.MaxInt-1) // readCapped reads up to maxDecoded+1
	if len(raw) == 0 {
		return nil, "", errEmpty
	}
	// Binary magics first: they cannot be confused with text.
	if bytes.HasPrefix(raw, gzipMagic) {
		out, err := gz(raw, maxDecoded, "gzip")
		return out, FormatGzip, err
	}
	if bytes.HasPrefix(raw, zstdMagic) {
		out, err := unzstd(raw, maxDecoded, "zstd")
		return out, FormatZstd, err
	}
	i := 0
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	if i == len(raw) {
		return nil, "", errEmpty
	}
	if raw[i] == '{' || raw[i] == '[' {
		// Raw JSON: handed on as is, without a copy. Syntax is the next stage's job.
		if len(raw) > maxDecoded {
			return nil, "", &capError{max: maxDecoded, detail: fmt.Sprintf("raw JSON of %d bytes", len(raw))}
		}
		return raw, FormatJSON, nil
	}
	return unbase64(raw, maxDecoded, gz)
}

// isSpace reports JSON whitespace, which is also what base64 text may be
// surrounded by (a trailing newline from a shell or a file, CRLF from a tool).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// unbase64 decodes base64 text into a pooled scratch buffer and decompresses
// what it holds. The scratch buffer can go back to the pool at the end because
// the decompressors always write into a fresh output slice.
func unbase64(raw []byte, maxDecoded int, gz gunzipFunc) ([]byte, Format, error) {
	start := 0
	for start < len(raw) && isSpace(raw[start]) {
		start++
	}
	end := len(raw)
	for end > start && isSpace(raw[end-1]) {
		end--
	}
	s := raw[start:end]
	// Padding is optional: strip it and decode with the raw (unpadded) encodings.
	for k := 0; k < 2 && len(s) > 0 && s[len(s)-1] == '='; k++ {
		s = s[:len(s)-1]
	}
	// The standard alphabet first (what the seed sends); the URL-safe one only when that fails,
	// which costs nothing up front, unlike scanning the payload for '-' or '_'.
	bufp := getScratch(base64.RawStdEncoding.DecodedLen(len(s)))
	defer putScratch(bufp)
	buf := (*bufp)[:base64.RawStdEncoding.DecodedLen(len(s))]
	n, err := base64.RawStdEncoding.Decode(buf, s)
	if err != nil && bytes.ContainsAny(s, "-_") {
		n, err = base64.RawURLEncoding.Decode(buf, s)
	}
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			err = base64.CorruptInputError(int64(ce) + int64(start)) // offset in the payload as received
		}
		return nil, "", fmt.Errorf("payload is neither JSON, gzip, zstd nor base64 (first bytes %s): %w", firstBytes(raw), err)
	}
	bin := buf[:n]
	switch {
	case bytes.HasPrefix(bin, gzipMagic):
		out, err := gz(bin, maxDecoded, "gzip (inside base64)")
		return out, FormatGzipBase64, err
	case bytes.HasPrefix(bin, zstdMagic):
		out, err := unzstd(bin, maxDecoded, "zstd (inside base64)")
		return out, FormatZstdBase64, err
	case len(bin) == 0:
		return nil, "", errEmpty
	default:
		return nil, "", fmt.Errorf("payload is base64 but decodes to neither gzip nor zstd (first decoded bytes %s)", firstBytes(bin))
	}
}

// firstBytes renders the start of a payload for an error message: hex, and
// the same bytes quoted so text is recognisable.
func firstBytes(b []byte) string {
	const n = 8
	if len(b) > n {
		b = b[:n]
	}
	return fmt.Sprintf("0x%x %q", b, b)
}

// codecError names the codec and the underlying error, calling out truncation.
func codecError(codec string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s payload is truncated: %w", codec, err)
	}
	return fmt.Errorf("%s payload is corrupt: %w", codec, err)
}

// readCapped reads r to EOF into a new slice that starts with capacity hint
// and never grows past maxDecoded+1 bytes: reading that one byte more than the
// cap is how an oversized payload is detected, so at most maxDecoded+1 bytes
// are inflated (plus what the decompressor holds internally, one window).
// The hint should be the expected size plus one, so an exact guess reaches
// EOF without a last, doubling grow.
func readCapped(r io.Reader, hint, maxDecoded int) ([]byte, error) {
	limit := maxDecoded + 1
	hint = min(max(hint, 512), limit)
	if hint > presizeLimit {
		hint = presizeLimit // a larger payload grows by doubling, as append would
	}
	buf := make([]byte, 0, hint)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				return nil, &capError{max: maxDecoded}
			}
			grown := make([]byte, len(buf), min(2*cap(buf), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxDecoded {
			return nil, &capError{max: maxDecoded}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// presizeRatio bounds how much an output buffer is sized up front from what the payload claims
// (gzip's ISIZE, zstd's frame content size) relative to its real size: JSON seldom compresses
// beyond 10:1, and a buffer too small only grows. Without it, a few KB claiming 250 MB would make
// each thread reserve that much before the payload turns out corrupt. presizeLimit does the same
// for large inputs (past it, growth by doubling costs little against the decoding itself).
const (
	presizeRatio = 32
	presizeLimit = 256 << 20

	// zstdWindowRatio bounds a streamed zstd frame's window against its input: an honest frame
	// needing a window over 8 MiB and over 1024 times its compressed size does not occur in practice.
	zstdWindowRatio = 1024
)

// maxDeflateRatio is the most deflate can expand: 258 bytes per 2-bit symbol
// gives a ratio just over 1032:1. An ISIZE above this times the input is a lie.
const maxDeflateRatio = 1032

// gzipSizeHint guesses the decoded size from the gzip trailer's ISIZE (size
// mod 2^32 of the last member). It is only a hint for pre-sizing: the trailer
// of a truncated or corrupt stream is arbitrary bytes, so a value that is over
// the cap or impossible for the input size is ignored, never acted on.
func gzipSizeHint(src []byte, maxDecoded int) int {
	fallback := len(src) * 4
	if len(src) < 18 { // 10-byte header + 8-byte trailer
		return fallback
	}
	isize := int64(binary.LittleEndian.Uint32(src[len(src)-4:]))
	if isize == 0 || isize > int64(maxDecoded) || isize > int64(len(src))*maxDeflateRatio {
		return fallback
	}
	return int(isize)
}

// gzipTrailerOverCap refuses a gzip stream whose trailer declares more than the cap, before anything
// is inflated. The trailer's ISIZE is the last member's size mod 2^32, so the whole is at least that
// much, when it is possible for this input at all (a truncated stream ends in arbitrary bytes). A
// bomb with a forged trailer is stopped by the decoder, at the cap.
func gzipTrailerOverCap(src []byte, maxDecoded int) error {
	if len(src) >= 18 {
		isize := int64(binary.LittleEndian.Uint32(src[len(src)-4:]))
		if isize > int64(maxDecoded) && isize <= int64(len(src))*maxDeflateRatio {
			return &capError{max: maxDecoded, detail: fmt.Sprintf("the gzip trailer declares %d bytes", isize)}
		}
	}
	return nil
}

// gunzip decompresses a gzip stream (all members) into a new slice, checking
// the CRC-32 and length of every member. internal/inflate does the work: it
// decodes straight into one flat slice, about twice as fast as klauspost's
// streaming gzip reader (its BenchmarkGunzip).
func gunzip(src []byte, maxDecoded int, codec string) ([]byte, error) {
	if err := gzipTrailerOverCap(src, maxDecoded); err != nil {
		return nil, err
	}
	hint := min(gzipSizeHint(src, maxDecoded), presizeRatio*len(src), presizeLimit, maxDecoded)
	out, err := inflate.Gunzip(make([]byte, 0, hint+inflate.Slack), src, maxDecoded)
	if errors.Is(err, inflate.ErrTooLarge) {
		return nil, &capError{max: maxDecoded}
	}
	if err != nil {
		return nil, codecError(codec, err)
	}
	return out, nil
}

// gzipReader is a pooled klauspost gzip reader with the bytes.Reader it reads
// from, so a decode allocates neither.
type gzipReader struct {
	zr gzip.Reader
	br bytes.Reader
}

var gzipReaders = sync.Pool{New: func() any { return new(gzipReader) }}

// gunzipKlauspost is gunzip on klauspost/compress's streaming gzip reader,
// read to EOF (so every member's CRC-32 and length are checked) through
// readCapped, which stops at the cap.
func gunzipKlauspost(src []byte, maxDecoded int, codec string) ([]byte, error) {
	if err := gzipTrailerOverCap(src, maxDecoded); err != nil {
		return nil, err
	}
	d := gzipReaders.Get().(*gzipReader)
	defer func() {
		d.br.Reset(nil) // drop the reference to src before pooling
		gzipReaders.Put(d)
	}()
	d.br.Reset(src)
	if err := d.zr.Reset(&d.br); err != nil {
		return nil, codecError(codec, err)
	}
	out, err := readCapped(&d.zr, min(gzipSizeHint(src, maxDecoded)+1, presizeRatio*len(src)), maxDecoded)
	var ce *capError
	if errors.As(err, &ce) {
		return nil, err
	}
	if err != nil {
		return nil, codecError(codec, err)
	}
	return out, nil
}

// zstdDecoder is a pooled single-goroutine zstd decoder. With concurrency 1
// it starts no goroutines, so one dropped by the pool needs no Close.
type zstdDecoder struct {
	d      *zstd.Decoder
	br     bytes.Reader
	maxMem uint64 // the WithDecoderMaxMemory value d currently has
}

const (
	// minZstdWindow is the smallest window limit, whatever the cap or input:
	// 8 MiB is the window common encoders use for streams of unknown size
	// (klauspost's and the zstd CLI's defaults), so a small cap or a small
	// payload must not refuse an ordinary frame.
	minZstdWindow = 8 << 20

	// maxZstdRatio bounds how far zstd input can expand: each block of at
	// most 128 KiB costs at least 4 bytes (3-byte header, 1-byte RLE). A
	// frame declaring more than its input could hold is corrupt.
	maxZstdRatio = (128 << 10) / 4
)

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		// DecodeAll writes only into the capacity it is given (the frame's
		// declared size, checked against the cap first), never past it.
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(minZstdWindow),
	)
	if err != nil {
		// Only invalid options fail, and these are constants.
		panic(fmt.Sprintf("zstd decoder options: %v", err))
	}
	return &zstdDecoder{d: d, maxMem: minZstdWindow}
}}

// reset points z at r (nil to release the input) with WithDecoderMaxMemory
// set to maxMem, which bounds the total size in DecodeAll and the window of
// each frame when streaming. Safe without locks: a decoder taken from the
// pool is ours alone until it goes back.
func (z *zstdDecoder) reset(r io.Reader, maxMem uint64) error {
	if z.maxMem == maxMem {
		return z.d.Reset(r)
	}
	z.maxMem = maxMem
	return z.d.ResetWithOptions(r, zstd.WithDecoderMaxMemory(maxMem))
}

// putZstdDecoder pools z again, unless keep is false: a stream decode keeps a
// ring buffer of the frame's window, which for a large window is not worth
// holding on to.
func putZstdDecoder(z *zstdDecoder, keep bool) {
	z.br.Reset(nil)
	if !keep || z.reset(nil, z.maxMem) != nil {
		z.d.Close()
		return
	}
	zstdDecoders.Put(z)
}

// unzstd decompresses all zstd frames in src into a new slice.
//
// The first frame's header is read first. A declared content size over the
// cap is refused from the header alone, and one larger than the input could
// hold is corrupt. Otherwise, with a declared size, DecodeAll writes straight
// into an exactly sized slice it may not grow. If more frames follow, that
// capacity runs out and the stream decode below starts over.
//
// The stream decode (no declared size, or several frames) enforces the cap
// over all frames in readCapped. The stream decoder sets aside a ring of each
// frame's window up front, so the window is limited to the larger of 8 MiB
// and what the input could decode to, and to the larger of 8 MiB and the cap:
// a few hostile bytes cannot make it reserve the cap.
func unzstd(src []byte, maxDecoded int, codec string) ([]byte, error) {
	inputBound := uint64(len(src)) * maxZstdRatio
	capWindow := max(uint64(maxDecoded), minZstdWindow)
	var h zstd.Header
	headerOK := h.Decode(src) == nil && !h.Skippable
	if headerOK && h.HasFCS {
		if h.FrameContentSize > uint64(maxDecoded) {
			return nil, &capError{max: maxDecoded, detail: fmt.Sprintf("zstd frame declares %d bytes", h.FrameContentSize)}
		}
		if h.FrameContentSize > inputBound {
			return nil, fmt.Errorf("%s payload is corrupt: frame declares %d bytes, more than %d bytes of input can hold", codec, h.FrameContentSize, len(src))
		}
	}

	z := zstdDecoders.Get().(*zstdDecoder)
	// One exactly sized allocation for an honest frame; a declared size out of proportion to the
	// input (possible for a few hostile bytes) goes the streaming way, which grows as it decodes.
	if headerOK && h.HasFCS && h.FrameContentSize <= uint64(presizeRatio*len(src)) {
		if err := z.reset(nil, capWindow); err != nil {
			putZstdDecoder(z, false)
			return nil, codecError(codec, err)
		}
		out, err := z.d.DecodeAll(src, make([]byte, 0, int(h.FrameContentSize)))
		if err == nil || !errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			putZstdDecoder(z, true)
			if err != nil {
				return nil, zstdError(codec, err, maxDecoded, capWindow, capWindow)
			}
			return out, nil
		}
	}

	window := h.WindowSize
	if h.SingleSegment {
		window = h.FrameContentSize
	}
	defer putZstdDecoder(z, headerOK && window <= minZstdWindow)
	streamWindow := min(capWindow, max(minZstdWindow, inputBound))
	if headerOK && h.SingleSegment {
		// A single-segment frame's window is its declared size, and the decoder reserves it up
		// front: bound it by what the input could plausibly need (zstdWindowRatio), not by what
		// it could in theory hold, so 8 KB of hostile bytes declaring 250 MiB reserve little.
		streamWindow = min(streamWindow, max(minZstdWindow, uint64(len(src))*zstdWindowRatio))
	}
	z.br.Reset(src)
	if err := z.reset(&z.br, streamWindow); err != nil {
		return nil, codecError(codec, err)
	}
	hint := len(src) * 4
	if headerOK && h.HasFCS {
		// Several frames: at least twice the first (within the presize bound).
		hint = min(2*int(h.FrameContentSize)+1, presizeRatio*len(src))
	}
	out, err := readCapped(z.d, hint, maxDecoded)
	if err != nil {
		return nil, zstdError(codec, err, maxDecoded, streamWindow, capWindow)
	}
	return out, nil
}

// zstdError turns a decoder error into the package's wording. A frame that
// needs more memory than the limit is over the cap when the cap set the limit,
// and corrupt when the input's size did (its window is larger than the input
// could ever fill).
func zstdError(codec string, err error, maxDecoded int, limit, capWindow uint64) error {
	var ce *capError
	switch {
	case errors.As(err, &ce):
		return err
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
		if limit < capWindow {
			return fmt.Errorf("%s payload is corrupt: frame window over %d bytes, more than the input could fill: %w", codec, limit, err)
		}
		return &capError{max: maxDecoded, detail: fmt.Sprintf("zstd frame window over the decoder limit of %d bytes: %v", limit, err)}
	}
	return codecError(codec, err)
}

package payload

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wrap76 line-wraps base64 text as MIME tools do.
func wrap76(b []byte) []byte {
	var out []byte
	for len(b) > 76 {
		out = append(out, b[:76]...)
		out = append(out, '\r', '\n')
		b = b[76:]
	}
	return append(out, b...)
}

func TestPayloadDecodeAcceptedForms(t *testing.T) {
	js := sampleRequestJSON(200)
	gz := stdGzip(t, js)
	zs := refZstd(t, js, true)
	zsStream := refZstd(t, js, false)

	var named bytes.Buffer
	nw := gzip.NewWriter(&named)
	nw.Name, nw.Comment, nw.Extra = "request.json", "from a tool that sets header fields", []byte("xx")
	_, err := nw.Write(js)
	require.NoError(t, err)
	require.NoError(t, nw.Close())

	half := len(js) / 2
	multiGzip := append(stdGzip(t, js[:half]), stdGzip(t, js[half:])...)
	multiZstd := append(refZstd(t, js[:half], true), refZstd(t, js[half:], true)...)
	mixedZstd := append(refZstd(t, js[:half], true), refZstd(t, js[half:], false)...)

	urlB64 := []byte(base64.URLEncoding.EncodeToString(gz))
	require.True(t, bytes.ContainsAny(urlB64, "-_"), "test input must use the URL-safe characters")
	rawURLB64 := []byte(base64.RawURLEncoding.EncodeToString(zs))
	noPad := []byte(base64.RawStdEncoding.EncodeToString(gz))
	require.NotEqual(t, len(noPad)%4, 0, "test input must need padding")

	tests := []struct {
		name   string
		in     []byte
		format Format
	}{
		{"raw JSON object", js, FormatJSON},
		{"raw JSON with leading whitespace", append([]byte(" \r\n\t"), js...), FormatJSON},
		{"raw JSON array", []byte(`[{"a":1}]`), FormatJSON},
		{"gzip", gz, FormatGzip},
		{"gzip with name, comment and extra header fields", named.Bytes(), FormatGzip},
		{"gzip of two members", multiGzip, FormatGzip},
		{"zstd with content size", zs, FormatZstd},
		{"zstd stream without content size", zsStream, FormatZstd},
		{"zstd of two frames with content size", multiZstd, FormatZstd},
		{"zstd of a sized frame then an unsized one", mixedZstd, FormatZstd},
		{"base64 gzip", b64(gz), FormatGzipBase64},
		{"base64 gzip with trailing LF", append(b64(gz), '\n'), FormatGzipBase64},
		{"base64 gzip with trailing CRLF and spaces", append(b64(gz), " \t\r\n"...), FormatGzipBase64},
		{"base64 gzip with leading whitespace", append([]byte("\n "), b64(gz)...), FormatGzipBase64},
		{"base64 gzip without padding", noPad, FormatGzipBase64},
		{"base64 gzip wrapped at 76 columns", wrap76(b64(gz)), FormatGzipBase64},
		{"URL-safe base64 gzip", urlB64, FormatGzipBase64},
		{"base64 zstd", b64(zs), FormatZstdBase64},
		{"base64 zstd stream with trailing newline", append(b64(zsStream), '\n'), FormatZstdBase64},
		{"URL-safe base64 zstd without padding", rawURLB64, FormatZstdBase64},
	}
	p := newDecodeProc(t, `{}`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := js
			if tc.format == FormatJSON {
				want = tc.in
			}
			out := runProc(t, p, bytes.Clone(tc.in))
			require.NoError(t, out.GetError())
			assert.Equal(t, want, content(t, out))
			assert.Equal(t, string(tc.format), meta(out, metaPayloadFormat))
			_, failed := out.MetaGet(metaErrorStage)
			assert.False(t, failed)
		})
	}
}

func TestDecodeRawJSONIsNotCopied(t *testing.T) {
	in := []byte(`  {"event":"rollup"}`)
	out, err := Decode(in, 0)
	require.NoError(t, err)
	require.Len(t, out, len(in))
	assert.Same(t, &in[0], &out[0])
}

func TestPayloadDecodeBadInputs(t *testing.T) {
	js := sampleRequestJSON(200)
	gz := stdGzip(t, js)
	zs := refZstd(t, js, true)
	zsStream := refZstd(t, js, false)

	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	random[0] = 0x80 // not a magic, not whitespace, not base64

	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", []byte{}, "empty payload"},
		{"only whitespace", []byte(" \r\n\t "), "empty payload"},
		{"only padding", []byte("===="), "payload is neither JSON, gzip, zstd nor base64"},
		{"bad base64", []byte("H4sIAAAA!!!!"), `payload is neither JSON, gzip, zstd nor base64 (first bytes 0x4834734941414141 "H4sIAAAA"): illegal base64 data at input byte 8`},
		{"base64 with a bad length", []byte("H4sIA"), "illegal base64 data at input byte 4"},
		{"mixed base64 alphabets", []byte("H4sI+AAA-AAA"), "payload is neither JSON, gzip, zstd nor base64"},
		{"base64 of garbage", b64([]byte("hello world, not compressed")), `payload is base64 but decodes to neither gzip nor zstd (first decoded bytes 0x68656c6c6f20776f "hello wo")`},
		{"base64 of plain JSON", b64(js), "payload is base64 but decodes to neither gzip nor zstd"},
		{"plain text", []byte("<html><body>502 Bad Gateway</body></html>"), `payload is neither JSON, gzip, zstd nor base64 (first bytes 0x3c68746d6c3e3c62 "<html><b")`},
		{"JSON scalar", []byte(`"rollup"`), "payload is neither JSON, gzip, zstd nor base64"},
		{"random binary", random, "payload is neither JSON, gzip, zstd nor base64 (first bytes 0x80"},
		{"gzip magic only", gz[:2], "gzip payload is truncated: unexpected EOF"},
		{"gzip cut in the header", gz[:7], "gzip payload is truncated: unexpected EOF"},
		{"gzip cut in the data", gz[:len(gz)/2], "gzip payload is truncated: unexpected EOF"},
		{"gzip cut in the trailer", gz[:len(gz)-3], "gzip payload is truncated: unexpected EOF"},
		{"gzip with a flipped CRC byte", flip(gz, len(gz)-6), "gzip payload is corrupt: gzip: invalid checksum"},
		{"gzip with a flipped length byte", flip(gz, len(gz)-2), "gzip payload is corrupt: gzip: invalid checksum"},
		{"gzip with a flipped data byte", flip(gz, len(gz)/2), "gzip payload is corrupt"},
		{"gzip with trailing garbage", append(bytes.Clone(gz), "garbage!!!"...), "gzip payload is corrupt: gzip: invalid header"},
		{"base64 of truncated gzip", b64(gz[:len(gz)-10]), "gzip (inside base64) payload is truncated: unexpected EOF"},
		{"base64 of corrupt gzip", b64(flip(gz, len(gz)-6)), "gzip (inside base64) payload is corrupt: gzip: invalid checksum"},
		{"zstd magic only", zs[:4], "zstd payload is"},
		{"zstd cut in the data", zs[:len(zs)/2], "zstd payload is"},
		{"zstd stream cut in the data", zsStream[:len(zsStream)/2], "zstd payload is"},
		{"zstd cut in the checksum", zs[:len(zs)-2], "zstd payload is"},
		{"zstd with a flipped checksum byte", flip(zs, len(zs)-1), "zstd payload is corrupt"},
		{"zstd stream with a flipped checksum byte", flip(zsStream, len(zsStream)-1), "zstd payload is corrupt"},
		{"base64 of truncated zstd", b64(zs[:len(zs)/2]), "zstd (inside base64) payload is"},
	}
	p := newDecodeProc(t, `{}`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.in)
			out := runProc(t, p, in)
			err := out.GetError()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, "decode", meta(out, metaErrorStage))
			assert.Equal(t, tc.in, content(t, out), "a failed message keeps its content")
			_, ok := out.MetaGet(metaPayloadFormat)
			assert.False(t, ok)
		})
	}
}

// TestPayloadDecodeTruncatedAnywhere cuts each compressed form at every
// length: each prefix must fail with the codec's error, never succeed or panic.
func TestPayloadDecodeTruncatedAnywhere(t *testing.T) {
	js := sampleRequestJSON(20)
	for name, full := range map[string][]byte{
		"gzip":        stdGzip(t, js),
		"zstd":        refZstd(t, js, true),
		"zstd stream": refZstd(t, js, false),
	} {
		t.Run(name, func(t *testing.T) {
			codec := strings.Fields(name)[0]
			magic := map[string]int{"gzip": len(gzipMagic), "zstd": len(zstdMagic)}[codec]
			for n := magic; n < len(full); n++ {
				_, err := Decode(full[:n], 1<<20)
				require.Error(t, err, "prefix of %d bytes", n)
				require.Contains(t, err.Error(), codec+" payload is", "prefix of %d bytes", n)
			}
		})
	}
}

func TestPayloadDecodeCapBoundaries(t *testing.T) {
	const maxDecoded = 4096
	body := func(n int) []byte {
		b := bytes.Repeat([]byte(`{"a":1},`), n/8+1)[:n]
		b[0] = '['
		return b
	}
	exact, over := body(maxDecoded), body(maxDecoded+1)
	forms := map[string]func([]byte) []byte{
		"json":        func(b []byte) []byte { return b },
		"gzip":        func(b []byte) []byte { return stdGzip(t, b) },
		"gzip_base64": func(b []byte) []byte { return b64(stdGzip(t, b)) },
		"zstd sized":  func(b []byte) []byte { return refZstd(t, b, true) },
		"zstd stream": func(b []byte) []byte { return refZstd(t, b, false) },
		"zstd two frames": func(b []byte) []byte {
			return append(refZstd(t, b[:100], true), refZstd(t, b[100:], true)...)
		},
	}
	p := newDecodeProc(t, fmt.Sprintf(`max_decoded_bytes: %d`, maxDecoded))
	for name, enc := range forms {
		t.Run(name, func(t *testing.T) {
			out := runProc(t, p, enc(exact))
			require.NoError(t, out.GetError())
			assert.Equal(t, exact, content(t, out))

			in := enc(over)
			out = runProc(t, p, bytes.Clone(in))
			require.Error(t, out.GetError())
			assert.Contains(t, out.GetError().Error(), "decoded payload exceeds max_decoded_bytes (4096)")
			assert.Equal(t, "decode", meta(out, metaErrorStage))
			assert.Equal(t, in, content(t, out))
		})
	}
	_, err := Decode(refZstd(t, over, true), maxDecoded)
	assert.EqualError(t, err, "decoded payload exceeds max_decoded_bytes (4096): zstd frame declares 4097 bytes")
}

func TestPayloadDecodeMaxEncodedBytes(t *testing.T) {
	p := newDecodeProc(t, `max_encoded_bytes: 10`)
	out := runProc(t, p, []byte(`{"a":"0123"}`))
	require.EqualError(t, out.GetError(), "encoded payload is 12 bytes, over max_encoded_bytes (10)")
	assert.Equal(t, "decode", meta(out, metaErrorStage))
	assert.Equal(t, `{"a":"0123"}`, string(content(t, out)))

	out = runProc(t, p, []byte(`{"a":"01"}`))
	require.NoError(t, out.GetError())
	assert.Equal(t, "json", meta(out, metaPayloadFormat))
}

func TestPayloadDecodeConfig(t *testing.T) {
	p := newDecodeProc(t, `{}`)
	assert.Equal(t, DefaultMaxDecodedBytes, p.maxDecoded)
	assert.Equal(t, 268435456, p.maxDecoded)
	assert.Equal(t, 0, p.maxEncoded)

	for _, yaml := range []string{`max_decoded_bytes: 0`, `max_encoded_bytes: -1`} {
		conf, err := payloadDecodeProcSpec().ParseYAML(yaml, nil)
		require.NoError(t, err)
		_, err = newPayloadDecodeFromParsedConf(conf, nil)
		assert.Error(t, err, yaml)
	}
	assert.Equal(t, []string{"max_decoded_bytes must be at least 1"},
		lintProcessor(t, "payload_decode:\n  max_decoded_bytes: 0\n"))
	assert.Equal(t, []string{"max_encoded_bytes must be 0 (no cap) or more"},
		lintProcessor(t, "payload_decode:\n  max_encoded_bytes: -5\n"))
	assert.Empty(t, lintProcessor(t, "payload_decode:\n  max_decoded_bytes: 1048576\n"))
}

func TestPayloadDecodeSpecExamplesLint(t *testing.T) {
	// The examples in the docs are full configs; lint their processors.
	assert.Empty(t, lintProcessor(t, "payload_decode: {}\n"))
	assert.Empty(t, lintProcessor(t, "payload_decode:\n  max_decoded_bytes: 134217728\n  max_encoded_bytes: 16777216\n"))
}

// TestPayloadDecodeOutputsAreIndependent checks that pooled state never leaks
// into results: outputs decoded one after another, and many at once from
// several goroutines, keep their own bytes.
func TestPayloadDecodeOutputsAreIndependent(t *testing.T) {
	var inputs, wants [][]byte
	for i := range 8 {
		js := sampleRequestJSON(50 + 30*i)
		wants = append(wants, js)
		switch i % 4 {
		case 0:
			inputs = append(inputs, b64(stdGzip(t, js)))
		case 1:
			inputs = append(inputs, stdGzip(t, js))
		case 2:
			inputs = append(inputs, b64(refZstd(t, js, true)))
		default:
			inputs = append(inputs, refZstd(t, js, false))
		}
	}
	var first [][]byte
	for _, in := range inputs {
		out, err := Decode(in, 0)
		require.NoError(t, err)
		first = append(first, out)
	}
	for i, out := range first {
		require.Equal(t, wants[i], out, "output %d changed after later decodes", i)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for k := range 20 {
				i := (g + k) % len(inputs)
				out, err := Decode(inputs[i], 0)
				if err != nil || !bytes.Equal(out, wants[i]) {
					errs <- fmt.Errorf("goroutine %d input %d: err=%v equal=%v", g, i, err, bytes.Equal(out, wants[i]))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPayloadDecodeZstdWindowLimit: the stream decoder sets aside a frame's
// window of memory, so a window is allowed up to the larger of 8 MiB and the
// cap, and no larger than 8 MiB or what the input could decode to.
func TestPayloadDecodeZstdWindowLimit(t *testing.T) {
	stream16MiB := func(js []byte) []byte {
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf, zstd.WithWindowSize(16<<20))
		require.NoError(t, err)
		_, err = enc.Write(js)
		require.NoError(t, err)
		require.NoError(t, enc.Flush()) // the header goes out before the size is known
		require.NoError(t, enc.Close())
		var h zstd.Header
		require.NoError(t, h.Decode(buf.Bytes()))
		require.Equal(t, uint64(16<<20), h.WindowSize)
		return buf.Bytes()
	}
	js := sampleRequestJSON(20)
	in := stream16MiB(js)
	require.Greater(t, len(in)*maxZstdRatio, 16<<20, "input large enough to justify the window")

	_, err := Decode(in, 1<<20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "decoded payload exceeds max_decoded_bytes (1048576): zstd frame window over the decoder limit of 8388608 bytes")

	out, err := Decode(in, 32<<20)
	require.NoError(t, err)
	assert.Equal(t, js, out)

	tiny := stream16MiB([]byte(`{"event":"rollup","weekly":[]}`))
	require.Less(t, len(tiny)*maxZstdRatio, 8<<20)
	_, err = Decode(tiny, 32<<20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "zstd payload is corrupt: frame window over 8388608 bytes, more than the input could fill")
}

// TestPayloadDecodeDecodersAgree runs the same payloads through both gzip decoders (decoder: fast
// and decoder: klauspost) and requires the same outcome: the same bytes and format, or the same
// error text, so switching decoders changes nothing a dead-letter consumer or dashboard can see.
func TestPayloadDecodeDecodersAgree(t *testing.T) {
	const maxDecoded = 1 << 20
	js := sampleRequestJSON(200)
	gz := stdGzip(t, js)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	exact := bytes.Repeat([]byte(" "), maxDecoded)
	exact[0], exact[len(exact)-1] = '[', ']'
	over := append(bytes.Clone(exact), ' ')
	var bomb bytes.Buffer
	bw := must(gzip.NewWriterLevel(&bomb, gzip.BestCompression))
	writeZeros(bw, 16<<20)
	must(0, bw.Close())
	forge := func(b []byte) []byte { // a trailer claiming 1000 bytes: only the decoder can stop it
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[len(b)-4:], 1000)
		return b
	}
	forgedBomb := forge(bomb.Bytes())

	cases := map[string][]byte{
		"gzip":                          gz,
		"gzip of nothing":               stdGzip(t, nil),
		"gzip of two members":           append(stdGzip(t, js[:100]), stdGzip(t, js[100:])...),
		"gzip_base64":                   b64(gz),
		"gzip_base64 url-safe":          []byte(base64.RawURLEncoding.EncodeToString(gz)),
		"gzip_base64 wrapped":           wrap76(b64(gz)),
		"zstd":                          refZstd(t, js, true),
		"zstd_base64":                   b64(refZstd(t, js, false)),
		"json":                          js,
		"gzip at the cap":               stdGzip(t, exact),
		"gzip one byte over the cap":    stdGzip(t, over),
		"gzip over the cap, forged":     forge(stdGzip(t, over)),
		"gzip bomb":                     bomb.Bytes(),
		"gzip bomb with forged ISIZE":   forgedBomb,
		"gzip_base64 bomb":              b64(forgedBomb),
		"gzip magic only":               gz[:2],
		"gzip cut in the header":        gz[:7],
		"gzip cut in the data":          gz[:len(gz)/2],
		"gzip cut in the trailer":       gz[:len(gz)-3],
		"gzip with a flipped CRC":       flip(gz, len(gz)-6),
		"gzip with a flipped length":    flip(gz, len(gz)-2),
		"gzip with a flipped header":    flip(gz, 3),
		"gzip with a flipped data byte": flip(gz, len(gz)/2),
		"gzip with trailing garbage":    append(bytes.Clone(gz), "garbage!!!"...),
		"base64 of truncated gzip":      b64(gz[:len(gz)-10]),
		"base64 of corrupt gzip":        b64(flip(gz, len(gz)-6)),
		"zstd truncated":                refZstd(t, js, true)[:100],
		"not a payload":                 []byte("<html>502</html>"),
		"empty":                         nil,
	}
	// Every prefix of a small stream: each decoder must call each cut truncated, at the same place.
	small := stdGzip(t, sampleRequestJSON(3))
	for n := 2; n < len(small); n++ {
		cases[fmt.Sprintf("gzip cut at %d of %d", n, len(small))] = small[:n]
	}

	fast := newDecodeProc(t, fmt.Sprintf("max_decoded_bytes: %d", maxDecoded))
	klauspost := newDecodeProc(t, fmt.Sprintf("max_decoded_bytes: %d\ndecoder: klauspost", maxDecoded))
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := runProc(t, fast, bytes.Clone(in)), runProc(t, klauspost, bytes.Clone(in))
			assert.Equal(t, fmt.Sprint(a.GetError()), fmt.Sprint(b.GetError()))
			assert.Equal(t, content(t, a), content(t, b))
			assert.Equal(t, meta(a, metaPayloadFormat), meta(b, metaPayloadFormat))
			assert.Equal(t, meta(a, metaErrorStage), meta(b, metaErrorStage))
		})
	}
	// The expected outcomes, so that agreeing on a wrong answer fails too.
	for name, want := range map[string]string{
		"gzip one byte over the cap":  "decoded payload exceeds max_decoded_bytes (1048576): the gzip trailer declares 1048577 bytes",
		"gzip over the cap, forged":   "decoded payload exceeds max_decoded_bytes (1048576)",
		"gzip bomb":                   "decoded payload exceeds max_decoded_bytes (1048576): the gzip trailer declares 16777216 bytes",
		"gzip bomb with forged ISIZE": "decoded payload exceeds max_decoded_bytes (1048576)",
		"gzip_base64 bomb":            "decoded payload exceeds max_decoded_bytes (1048576)",
		"gzip cut in the data":        "gzip payload is truncated: unexpected EOF",
		"gzip with a flipped CRC":     "gzip payload is corrupt: gzip: invalid checksum",
		"gzip with trailing garbage":  "gzip payload is corrupt: gzip: invalid header",
		"base64 of truncated gzip":    "gzip (inside base64) payload is truncated: unexpected EOF",
	} {
		out := runProc(t, klauspost, bytes.Clone(cases[name]))
		assert.EqualError(t, out.GetError(), want, name)
	}
	for name, want := range map[string][]byte{"gzip": js, "gzip of two members": js, "gzip_base64": js, "gzip at the cap": exact} {
		out := runProc(t, klauspost, bytes.Clone(cases[name]))
		require.NoError(t, out.GetError(), name)
		assert.Equal(t, want, content(t, out), name)
	}
}

// TestPayloadDecodeDecodersAgreeOnBitFlips flips every bit of a small gzip stream, header and
// trailer included: both decoders must accept or refuse each the same way, with the same text but
// for the offset in flate's "corrupt input before offset N", which each decoder reports from where
// it noticed the damage (the decoder field's docs say so).
func TestPayloadDecodeDecodersAgreeOnBitFlips(t *testing.T) {
	offset := regexp.MustCompile(`offset \d+`)
	src := stdGzip(t, sampleRequestJSON(3))
	for i := range src {
		for bit := range 8 {
			in := bytes.Clone(src)
			in[i] ^= 1 << bit
			a, fa, errA := decodeWith(in, 1<<20, gunzip)
			b, fb, errB := decodeWith(in, 1<<20, gunzipKlauspost)
			require.Equal(t, offset.ReplaceAllString(fmt.Sprint(errA), "offset N"), offset.ReplaceAllString(fmt.Sprint(errB), "offset N"), "byte %d bit %d", i, bit)
			require.Equal(t, a, b, "byte %d bit %d", i, bit)
			require.Equal(t, fa, fb, "byte %d bit %d", i, bit)
		}
	}
}

func TestPayloadDecodeDecoderConfig(t *testing.T) {
	assert.Equal(t, reflect.ValueOf(gunzip).Pointer(), reflect.ValueOf(newDecodeProc(t, `{}`).gunzip).Pointer(), "fast is the default")
	assert.Equal(t, reflect.ValueOf(gunzipKlauspost).Pointer(), reflect.ValueOf(newDecodeProc(t, `decoder: klauspost`).gunzip).Pointer())

	assert.Empty(t, lintProcessor(t, "payload_decode:\n  decoder: klauspost\n"))
	lints := lintProcessor(t, "payload_decode:\n  decoder: zlib\n")
	require.Len(t, lints, 1)
	assert.Contains(t, lints[0], "zlib")

	// A config that skipped the linter is refused by the constructor, not run with a default.
	conf, err := payloadDecodeProcSpec().ParseYAML(`decoder: zlib`, nil)
	require.NoError(t, err)
	_, err = newPayloadDecodeFromParsedConf(conf, nil)
	assert.EqualError(t, err, `decoder must be "fast" or "klauspost", got "zlib"`)
}

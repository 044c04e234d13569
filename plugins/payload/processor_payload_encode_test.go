package payload

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// independentDecode undoes each format with the standard library (base64,
// gzip) or a fresh klauspost zstd decoder: never this package's code.
func independentDecode(t *testing.T, f Format, b []byte) []byte {
	t.Helper()
	unb64 := func(b []byte) []byte {
		out, err := base64.StdEncoding.DecodeString(string(b)) // padded standard alphabet, as the seed's consumers
		require.NoError(t, err)
		return out
	}
	switch f {
	case FormatJSON:
		return b
	case FormatGzip:
		return stdGunzip(t, b)
	case FormatGzipBase64:
		return stdGunzip(t, unb64(b))
	case FormatZstd:
		return refUnzstd(t, b)
	case FormatZstdBase64:
		return refUnzstd(t, unb64(b))
	}
	t.Fatalf("no independent decoder for %q", f)
	return nil
}

func TestPayloadEncodeFormats(t *testing.T) {
	js := sampleRequestJSON(500)
	dec := newDecodeProc(t, `{}`)
	for _, f := range encodeFormats {
		t.Run(string(f), func(t *testing.T) {
			p := newEncodeProc(t, fmt.Sprintf(`format: %s`, f))
			in := bytes.Clone(js)
			out := runProc(t, p, in)
			require.NoError(t, out.GetError())
			encoded := bytes.Clone(content(t, out))
			assert.Equal(t, js, in, "input bytes are not modified")
			assert.Equal(t, js, independentDecode(t, f, encoded))
			if f != FormatJSON {
				assert.Less(t, len(encoded), len(js)/3, "compressed")
			}

			// And back through payload_decode, which must detect the format.
			back := runProc(t, dec, encoded)
			require.NoError(t, back.GetError())
			assert.Equal(t, js, content(t, back))
			assert.Equal(t, string(f), meta(back, metaPayloadFormat))
		})
	}
}

func TestPayloadEncodeDefaults(t *testing.T) {
	p := newEncodeProc(t, `{}`)
	assert.Equal(t, FormatGzipBase64, p.format)
	js := []byte(`{"event":"rollup"}`)
	out := runProc(t, p, js)
	require.NoError(t, out.GetError())
	b := content(t, out)
	assert.Equal(t, js, independentDecode(t, FormatGzipBase64, b))
	assert.True(t, bytes.HasPrefix(b, []byte("H4sI")), "base64 of the gzip magic")
	assert.Equal(t, 0, len(b)%4, "padded")
}

func TestPayloadEncodeGzipLevels(t *testing.T) {
	js := sampleRequestJSON(300)
	sizes := map[int]int{}
	for level := -3; level <= 9; level++ {
		p := newEncodeProc(t, fmt.Sprintf("format: gzip\ngzip_level: %d", level))
		out := runProc(t, p, js)
		require.NoError(t, out.GetError(), "level %d", level)
		b := content(t, out)
		assert.Equal(t, js, independentDecode(t, FormatGzip, b), "level %d", level)
		sizes[level] = len(b)
	}
	assert.Greater(t, sizes[0], len(js), "level 0 stores")
	assert.Less(t, sizes[9], len(js)/4, "level 9 compresses")

	for _, yaml := range []string{"gzip_level: 10", "gzip_level: -4"} {
		conf, err := payloadEncodeProcSpec().ParseYAML(yaml, nil)
		require.NoError(t, err)
		_, err = newPayloadEncodeFromParsedConf(conf, nil)
		assert.ErrorContains(t, err, "gzip_level", yaml)
	}
	assert.Equal(t, []string{"gzip_level must be between -3 and 9"}, lintProcessor(t, "payload_encode:\n  gzip_level: 10\n"))
}

func TestPayloadEncodeConfigErrors(t *testing.T) {
	conf, err := payloadEncodeProcSpec().ParseYAML(`format: brotli`, nil)
	require.NoError(t, err)
	_, err = newPayloadEncodeFromParsedConf(conf, nil)
	assert.EqualError(t, err, `format: unknown payload format "brotli" (valid: gzip_base64, gzip, zstd, zstd_base64, json)`)
	assert.NotEmpty(t, lintProcessor(t, "payload_encode:\n  format: brotli\n"))
	assert.Empty(t, lintProcessor(t, "payload_encode:\n  format: zstd_base64\n"))
}

// TestPayloadEncodeErrorStage drives the failure path, which valid configs
// cannot reach (compressing bytes in memory does not fail), with a format the
// constructor would have refused.
func TestPayloadEncodeErrorStage(t *testing.T) {
	p := &payloadEncodeProc{format: "bogus", gzip: defaultGzipWriters()}
	out := runProc(t, p, []byte(`{"a":1}`))
	require.EqualError(t, out.GetError(), `encoding bogus: unknown payload format "bogus"`)
	assert.Equal(t, "encode", meta(out, metaErrorStage))
	assert.Equal(t, `{"a":1}`, string(content(t, out)))
}

func TestEncodeExported(t *testing.T) {
	js := []byte(`{"event":"rollup","weekly":{}}`)
	same, err := Encode("json", js)
	require.NoError(t, err)
	assert.Same(t, &js[0], &same[0], "json is passed through without a copy")

	_, err = Encode("lz4", js)
	assert.EqualError(t, err, `unknown payload format "lz4" (valid: gzip_base64, gzip, zstd, zstd_base64, json)`)

	for _, f := range encodeFormats {
		b, err := Encode(string(f), js)
		require.NoError(t, err)
		assert.Equal(t, js, independentDecode(t, f, b), f)
		back, err := Decode(b, 1024)
		require.NoError(t, err)
		assert.Equal(t, js, back, f)
	}
}

func TestPayloadEncodeEmptyInput(t *testing.T) {
	for _, f := range []Format{FormatGzip, FormatGzipBase64, FormatZstd, FormatZstdBase64} {
		b, err := Encode(string(f), nil)
		require.NoError(t, err)
		assert.NotEmpty(t, b, "%s of nothing is still a valid, non-empty %s", f, f)
		assert.Empty(t, independentDecode(t, f, b), f)
	}
}

// TestPayloadEncodeOutputsAreIndependent checks outputs never share pooled
// memory: earlier results survive later encodes, including concurrent ones.
func TestPayloadEncodeOutputsAreIndependent(t *testing.T) {
	var inputs [][]byte
	for i := range 6 {
		inputs = append(inputs, sampleRequestJSON(40+25*i))
	}
	for _, f := range encodeFormats {
		var outs [][]byte
		for _, in := range inputs {
			b, err := Encode(string(f), in)
			require.NoError(t, err)
			outs = append(outs, b)
		}
		for i, b := range outs {
			assert.Equal(t, inputs[i], independentDecode(t, f, b), "%s output %d after later encodes", f, i)
		}
	}

	var wg sync.WaitGroup
	results := make([][]byte, 48)
	for g := range len(results) {
		wg.Go(func() {
			f := encodeFormats[g%len(encodeFormats)]
			b, err := Encode(string(f), inputs[g%len(inputs)])
			if err == nil {
				results[g] = b
			}
		})
	}
	wg.Wait()
	for g, b := range results {
		require.NotNil(t, b, "encode %d failed", g)
		f := encodeFormats[g%len(encodeFormats)]
		assert.Equal(t, inputs[g%len(inputs)], independentDecode(t, f, b), "concurrent encode %d (%s)", g, f)
	}
}

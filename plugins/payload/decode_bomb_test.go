package payload

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	bombSize = 200 << 20 // decoded size of every bomb below
	bombCap  = 1 << 20   // max_decoded_bytes they are decoded with
	// bombAllocBudget is what decoding one bomb may allocate in total. Inflating
	// it would take 200 MiB; the cap allows about 1 MiB plus codec state.
	bombAllocBudget = 64 << 20
)

var zeros1MiB = make([]byte, 1<<20)

// writeZeros streams n bytes of zeros into w without holding them in memory.
func writeZeros(w io.Writer, n int) {
	for n > 0 {
		k := min(n, len(zeros1MiB))
		must(w.Write(zeros1MiB[:k]))
		n -= k
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Bombs are built once: making them is the slow part of these tests.
var bombs = sync.OnceValue(func() map[string][]byte {
	out := map[string][]byte{}

	var g bytes.Buffer
	gw := must(gzip.NewWriterLevel(&g, gzip.BestCompression))
	writeZeros(gw, bombSize)
	must(0, gw.Close())
	out["gzip"] = g.Bytes()

	forged := bytes.Clone(g.Bytes())
	binary.LittleEndian.PutUint32(forged[len(forged)-4:], 1000) // ISIZE claims 1000 bytes
	out["gzip with a forged ISIZE"] = forged
	out["gzip_base64"] = b64(g.Bytes())

	var m bytes.Buffer
	mw := must(gzip.NewWriterLevel(&m, gzip.BestCompression))
	writeZeros(mw, 512<<10)
	must(0, mw.Close())
	out["gzip of 400 members"] = bytes.Repeat(m.Bytes(), bombSize/(512<<10))

	var z bytes.Buffer
	zw := must(zstd.NewWriter(&z))
	writeZeros(zw, bombSize)
	must(0, zw.Close())
	out["zstd stream"] = z.Bytes()
	out["zstd_base64"] = b64(z.Bytes())

	var zs bytes.Buffer
	zw.ResetContentSize(&zs, bombSize)
	writeZeros(zw, bombSize)
	must(0, zw.Close())
	out["zstd declaring its size"] = zs.Bytes()

	frame := zw.EncodeAll(zeros1MiB[:512<<10], nil)
	out["zstd of 400 sized frames"] = bytes.Repeat(frame, bombSize/(512<<10))
	return out
})

func TestPayloadDecodeBombs(t *testing.T) {
	p := newDecodeProc(t, `max_decoded_bytes: 1048576`)
	for name, bomb := range bombs() {
		t.Run(name, func(t *testing.T) {
			require.Less(t, len(bomb), 2<<20, "a bomb is small on the wire")
			in := bytes.Clone(bomb)

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			out := runProc(t, p, in)
			runtime.ReadMemStats(&after)

			err := out.GetError()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "decoded payload exceeds max_decoded_bytes (1048576)")
			assert.Equal(t, "decode", meta(out, metaErrorStage))
			assert.True(t, bytes.Equal(bomb, content(t, out)), "content unchanged")
			allocated := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, allocated, uint64(bombAllocBudget), "bytes allocated while refusing the bomb")
			t.Logf("%d bytes in, %d bytes allocated, error: %v", len(bomb), allocated, err)
		})
	}
}

// TestPayloadDecodeBombUnderDefaultCap: with the 256 MiB default the same
// 200 MiB of zeros is a legitimate (if odd) payload and decodes in full.
func TestPayloadDecodeBombUnderDefaultCap(t *testing.T) {
	out, err := Decode(bombs()["gzip_base64"], 0)
	require.NoError(t, err)
	require.Len(t, out, bombSize)
	assert.Equal(t, -1, bytes.IndexFunc(out[:1<<20], func(r rune) bool { return r != 0 }))
}

// TestPayloadDecodeLyingSizeHints: a few bytes that claim a large decoded size
// (a zstd frame header, a gzip trailer) must not make the decoder reserve that
// much memory, even when the claim is within the cap.
func TestPayloadDecodeLyingSizeHints(t *testing.T) {
	h := zstd.Header{SingleSegment: true, HasFCS: true, FrameContentSize: 200 << 20}
	zs, err := h.AppendTo(nil)
	require.NoError(t, err)
	zs = append(zs, 0x01, 0x00, 0x00) // a last, empty raw block: 0 bytes where 200 MiB were declared

	gz := stdGzip(t, []byte(`{"a":1}`))
	binary.LittleEndian.PutUint32(gz[len(gz)-4:], 200<<20) // ISIZE claims 200 MiB

	for name, in := range map[string][]byte{"zstd": zs, "gzip": gz} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Decode(in, 0) // default 256 MiB cap: the claim is within it
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name+" payload is corrupt")
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20))
		})
	}
}

// TestPayloadDecodeLyingSizeHintsMidSized: a few hundred KB that claim 250 MiB, small enough for
// the claim to be a possible deflate or zstd ratio, must not make the decoder reserve 250 MiB
// before it finds the payload corrupt (each pipeline thread would).
func TestPayloadDecodeLyingSizeHintsMidSized(t *testing.T) {
	noise := make([]byte, 256<<10)
	for i := range noise {
		noise[i] = byte(i*7919 + i/251) // varied enough not to compress much
	}
	gz := stdGzip(t, noise)
	binary.LittleEndian.PutUint32(gz[len(gz)-4:], 250<<20) // ISIZE claims 250 MiB

	h := zstd.Header{SingleSegment: true, HasFCS: true, FrameContentSize: 250 << 20}
	zs, err := h.AppendTo(nil)
	require.NoError(t, err)
	zs = append(zs, make([]byte, 8<<10)...) // 8 KB of garbage blocks behind a 250 MiB claim

	for name, in := range map[string][]byte{"zstd": zs, "gzip": gz} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Decode(in, 0)
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(32<<20), "allocated for a lying size claim")
		})
	}
}

// TestPayloadDecodeGzipBombRefusedFromTrailer: a gzip bomb over the default cap, with an honest
// trailer, is refused before anything is inflated (the trailer says how large it is).
func TestPayloadDecodeGzipBombRefusedFromTrailer(t *testing.T) {
	var g bytes.Buffer
	gw := must(gzip.NewWriterLevel(&g, gzip.BestCompression))
	writeZeros(gw, 300<<20)
	must(0, gw.Close())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Decode(b64(g.Bytes()), 0)
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "decoded payload exceeds max_decoded_bytes (268435456): the gzip trailer declares 314572800 bytes")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "inflated before refusing")
}

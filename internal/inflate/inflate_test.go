package inflate

import (
	"bytes"
	stdflate "compress/flate"
	stdgzip "compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rollup-dev/rollup/internal/gen"
)

// reference decodes src with klauspost/compress/gzip, the decoder this one
// replaced. It follows RFC 1952 on headers where Go's compress/gzip does not
// (it refuses reserved flag bits), but it has one bug in DEFLATE that this
// package must not copy (see TestStaleDistanceCodeRefused): where it accepts
// a stream that Go's compress/gzip refuses, refusal is right.
func reference(src []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	if zr, err := stdgzip.NewReader(bytes.NewReader(src)); err != nil {
		return nil, fmt.Errorf("klauspost accepts, compress/gzip refuses: %w", err)
	} else if _, err := io.ReadAll(zr); err != nil {
		return nil, fmt.Errorf("klauspost accepts, compress/gzip refuses: %w", err)
	}
	return out, nil
}

// agree checks that gunzip and the reference both refuse src, or both give
// the same bytes. It returns gunzip's error. It calls gunzip, not Gunzip, so
// that a panic is not turned into an error and fails the test.
func agree(t testing.TB, src []byte) error {
	t.Helper()
	want, wantErr := reference(src)
	got, err := new(decoder).gunzip(nil, src, 1<<30)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("reference refuses (%v), Gunzip gives %d bytes; input %d bytes %x", wantErr, len(got), len(src), head(src))
		}
		return err
	}
	if err != nil {
		t.Fatalf("reference gives %d bytes, Gunzip refuses: %v; input %d bytes %x", len(want), err, len(src), head(src))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("outputs differ: %d bytes vs %d, first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	return nil
}

func head(b []byte) []byte { return b[:min(len(b), 64)] }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// compressors make gzip streams of different shapes: every level of both
// encoders (stored, Huffman-only, fixed and dynamic blocks, short and long
// matches), with and without header fields.
var compressors = func() map[string]func([]byte) []byte {
	m := map[string]func([]byte) []byte{}
	for _, level := range []int{-2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
		m[fmt.Sprintf("klauspost-%d", level)] = func(b []byte) []byte {
			var z bytes.Buffer
			w, err := gzip.NewWriterLevel(&z, level)
			if err != nil {
				panic(err)
			}
			w.Write(b)
			w.Close()
			return z.Bytes()
		}
		m[fmt.Sprintf("stdlib-%d", level)] = func(b []byte) []byte {
			var z bytes.Buffer
			w, err := stdgzip.NewWriterLevel(&z, level)
			if err != nil {
				panic(err)
			}
			w.Name, w.Comment, w.Extra = "request.json", "a comment", []byte("extra field")
			w.Write(b)
			w.Close()
			return z.Bytes()
		}
	}
	return m
}()

// inputs are the kinds of bytes a payload holds, and some it should not.
func inputs() map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100_000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	// Short-distance repeats (distances 1 to 7) and long runs.
	var short bytes.Buffer
	for i := 0; i < 3000; i++ {
		short.WriteString("ab ab abc abc abcd abcde abcdef abcdefg 0.0,0.0,0.0 ")
		short.Write(bytes.Repeat([]byte{byte(i)}, i%300))
	}
	o := gen.Defaults(7)
	o.Weeks = 3
	return map[string][]byte{
		"empty":    {},
		"one byte": {'{'},
		"text":     []byte("hello, hello, hello, world"),
		"random":   random,
		"short":    short.Bytes(),
		"zeros":    make([]byte, 300_000),
		"request":  gen.Request(o),
	}
}

func TestGunzipAgreesWithKlauspost(t *testing.T) {
	for in, b := range inputs() {
		for name, compress := range compressors {
			t.Run(in+"/"+name, func(t *testing.T) {
				require.NoError(t, agree(t, compress(b)))
			})
		}
	}
}

func TestGunzipMembers(t *testing.T) {
	a := compressors["klauspost-5"]([]byte("first member "))
	b := compressors["stdlib-9"](bytes.Repeat([]byte("second member "), 1000))
	empty := compressors["stdlib-0"](nil)
	joined := bytes.Join([][]byte{a, empty, b, a}, nil)
	got, err := Gunzip([]byte("prefix "), joined, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "prefix first member "+string(bytes.Repeat([]byte("second member "), 1000))+"first member ", string(got))
	require.NoError(t, agree(t, joined))

	// A distance may not reach into the previous member's output, nor into
	// what dst held. The member's trailer is what a decoder that let it would
	// check: three copies of the byte before it.
	var ce flate.CorruptInputError
	err = agree(t, append(bytes.Clone(a), crossMember(' ')...))
	require.ErrorAs(t, err, &ce)
	_, err = new(decoder).gunzip([]byte("prefix"), crossMember('x'), 1<<20)
	require.ErrorAs(t, err, &ce)
}

// crossMember is a gzip member whose DEFLATE stream starts with a
// back-reference (a fixed-code block: length 3, distance 1), with the trailer
// of "ccc", what the reference would give if it could reach c before it.
func crossMember(c byte) []byte {
	var bw bitWriter
	bw.write(1, 1)             // final
	bw.write(1, 2)             // fixed codes
	bw.writeCode(0b0000001, 7) // symbol 257: length 3
	bw.writeCode(0b00000, 5)   // distance symbol 0: distance 1
	bw.writeCode(0b0000000, 7) // end of block
	return gzipMember(bw.bytes(), []byte{c, c, c})
}

// gzipMember wraps a raw DEFLATE stream in a gzip member whose trailer is
// that of out.
func gzipMember(deflate, out []byte) []byte {
	m := append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}, deflate...)
	m = binary.LittleEndian.AppendUint32(m, crc32.ChecksumIEEE(out))
	return binary.LittleEndian.AppendUint32(m, uint32(len(out)))
}

// bitWriter writes DEFLATE bit fields: values least significant bit first,
// Huffman codewords most significant bit first.
type bitWriter struct {
	b     []byte
	nbits uint
}

func (w *bitWriter) write(v uint32, n uint) {
	for i := uint(0); i < n; i++ {
		if w.nbits%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (w.nbits % 8)
		w.nbits++
	}
}

func (w *bitWriter) writeCode(code uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.write(code>>uint(i)&1, 1)
	}
}

func (w *bitWriter) bytes() []byte { return w.b }

func TestGunzipCorruptionsAgree(t *testing.T) {
	o := gen.Defaults(3)
	o.Weeks = 1
	js := gen.Request(o)[:4000]
	for _, name := range []string{"klauspost-5", "stdlib-9", "klauspost-1", "stdlib-0", "klauspost--2"} {
		src := compressors[name](js)
		t.Run(name, func(t *testing.T) {
			for n := 0; n < len(src); n++ {
				err := agree(t, src[:n])
				if n >= 10 { // past the header, a cut stream is reported as truncated
					require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d of %d", n, len(src))
				}
			}
			for bit := 0; bit < 8*len(src); bit++ {
				c := bytes.Clone(src)
				c[bit/8] ^= 1 << (bit % 8)
				_ = agree(t, c)
			}
		})
	}
}

func TestGunzipErrors(t *testing.T) {
	good := compressors["klauspost-5"]([]byte("some text, some text"))
	flip := func(i int) []byte { c := bytes.Clone(good); c[i] ^= 0xff; return c }
	for _, tc := range []struct {
		name string
		src  []byte
		want error
	}{
		{"magic only", good[:2], io.ErrUnexpectedEOF},
		{"not gzip", []byte("0123456789abcdef"), gzip.ErrHeader},
		{"CRC", flip(len(good) - 6), gzip.ErrChecksum},
		{"length", flip(len(good) - 2), gzip.ErrChecksum},
		{"trailing garbage", append(bytes.Clone(good), "garbage!!!"...), gzip.ErrHeader},
		{"trailing bytes too few for a header", append(bytes.Clone(good), 1, 2, 3), io.ErrUnexpectedEOF},
		{"reserved flag", func() []byte { c := bytes.Clone(good); c[3] |= 0x80; return c }(), gzip.ErrHeader},
		{"reserved block type", append(bytes.Clone(good[:10]), 0x07, 0, 0, 0, 0, 0, 0, 0, 0), flate.CorruptInputError(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Gunzip(nil, tc.src, 1<<20)
			var ce flate.CorruptInputError
			if errors.As(tc.want, &ce) {
				require.ErrorAs(t, err, &ce)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
			_ = agree(t, tc.src)
		})
	}
}

func TestGunzipLimit(t *testing.T) {
	js := bytes.Repeat([]byte("0123456789"), 10_000)
	for name, compress := range compressors {
		src := compress(js)
		t.Run(name, func(t *testing.T) {
			got, err := Gunzip(nil, src, len(js))
			require.NoError(t, err)
			require.Equal(t, js, got)
			_, err = Gunzip(nil, src, len(js)-1)
			require.ErrorIs(t, err, ErrTooLarge)
			// A buffer given with room is used without a copy.
			dst := make([]byte, 0, len(js)+Slack)
			got, err = Gunzip(dst, src, len(js))
			require.NoError(t, err)
			require.Same(t, &dst[:1][0], &got[0])
		})
	}
}

// A bomb is stopped at the limit: the output never grows past it.
func TestGunzipBombStopsAtLimit(t *testing.T) {
	const limit = 1<<20 + 100_000 // not a power of two: the last step is cut to the limit
	bomb := compressors["klauspost-9"](make([]byte, 64<<20))
	_, err := Gunzip(nil, bomb, limit)
	require.ErrorIs(t, err, ErrTooLarge)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _ = Gunzip(nil, bomb, limit)
	runtime.ReadMemStats(&after)
	// Doubling from 4 KiB to 1 MiB, then limit+Slack: under three times the limit in all.
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(3*(limit+Slack)))
}

// A limit near MaxInt means no limit; adding the slack to it must not overflow.
func TestGunzipHugeLimit(t *testing.T) {
	js := bytes.Repeat([]byte("x"), 10_000)
	src := compressors["klauspost-5"](js)
	for _, limit := range []int{math.MaxInt, math.MaxInt - 1, math.MaxInt - Slack} {
		got, err := new(decoder).gunzip(nil, src, limit)
		require.NoError(t, err, "limit %d", limit)
		require.Equal(t, js, got)
	}
}

// klauspost/compress's decoder keeps a block's distance code when the next
// block's is empty (its huffmanDecoder.init returns before clearing its
// table), so a match in that block decodes with the stale code. Go's
// compress/flate refuses the stream as corrupt, and so does this package.
func TestStaleDistanceCodeRefused(t *testing.T) {
	lit := make([]int, 259)
	lit['a'], lit[256], lit[257], lit[258] = 2, 2, 2, 2
	var bw bitWriter
	b1 := newDynamicBlock(lit, []int{1, 1})
	b1.header(&bw, false)
	b1.lit(&bw, 'a')
	b1.lit(&bw, 257) // length 3
	b1.dist(&bw, 0)  // distance 1
	b1.lit(&bw, 256)
	b2 := newDynamicBlock(lit, []int{0}) // an empty distance code
	b2.header(&bw, true)
	b2.lit(&bw, 'a')
	b2.lit(&bw, 257)
	bw.write(0, 1) // what block 1's distance code reads as distance 1
	b2.lit(&bw, 256)
	raw := bw.bytes()

	_, err := io.ReadAll(stdflate.NewReader(bytes.NewReader(raw)))
	require.Error(t, err, "compress/flate")
	got, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw)))
	require.NoError(t, err, "klauspost's flate (if it refuses now, its bug is fixed)")
	require.Equal(t, "aaaaaaaa", string(got))

	var ce flate.CorruptInputError
	_, err = new(decoder).gunzip(nil, gzipMember(raw, got), 1<<20)
	require.ErrorAs(t, err, &ce)
}

// dynamicBlock writes a dynamic-Huffman block with the given codeword lengths
// (a flat precode: each length 0 to 15 is the 4-bit codeword of its value).
type dynamicBlock struct {
	litLens, distLens   []int
	litCodes, distCodes []uint32
}

func newDynamicBlock(lit, dist []int) *dynamicBlock {
	return &dynamicBlock{litLens: lit, distLens: dist, litCodes: canonical(lit), distCodes: canonical(dist)}
}

func (b *dynamicBlock) header(bw *bitWriter, final bool) {
	if final {
		bw.write(1, 1)
	} else {
		bw.write(0, 1)
	}
	bw.write(2, 2)
	bw.write(uint32(len(b.litLens)-257), 5)
	bw.write(uint32(len(b.distLens)-1), 5)
	bw.write(numPre-4, 4)
	for _, s := range codeOrder {
		if s < 16 {
			bw.write(4, 3)
		} else {
			bw.write(0, 3) // the repeat codes are not used
		}
	}
	for _, l := range append(append([]int{}, b.litLens...), b.distLens...) {
		bw.writeCode(uint32(l), 4)
	}
}

func (b *dynamicBlock) lit(bw *bitWriter, s int)  { bw.writeCode(b.litCodes[s], uint(b.litLens[s])) }
func (b *dynamicBlock) dist(bw *bitWriter, s int) { bw.writeCode(b.distCodes[s], uint(b.distLens[s])) }

// canonical assigns canonical Huffman codewords to codeword lengths.
func canonical(lens []int) []uint32 {
	var count [16]uint32
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [16]uint32
	for l, code := 1, uint32(0); l < 16; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	codes := make([]uint32, len(lens))
	for s, l := range lens {
		if l > 0 {
			codes[s] = next[l]
			next[l]++
		}
	}
	return codes
}

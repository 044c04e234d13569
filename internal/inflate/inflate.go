// Package inflate decodes DEFLATE (RFC 1951) inside gzip (RFC 1952) from a
// byte slice into one flat output slice.
//
// It exists for speed. Inflating a request is most of the service's CPU time,
// and a streaming decoder (compress/flate, klauspost's flate) keeps a 32 KiB
// window, copies every byte from it to the caller, and reads its input a byte
// at a time through an interface. Here the whole compressed input is in
// memory and the output is one slice, so back-references copy within the
// output 8 bytes at a time, the bit buffer is refilled 8 bytes at a time, and
// Huffman codes are decoded with one table lookup (libdeflate's design), two
// literals at once where both codewords fit the table's index bits. On the
// service's requests it is about twice as fast as klauspost's gzip reader
// (BenchmarkGunzip).
//
// It accepts the streams klauspost/compress/gzip accepts, with the same
// output, but for one bug of klauspost's (see Gunzip); the tests and the fuzz
// targets check that against klauspost's and Go's decoders. docs/decoder.md
// is the maintainer's summary: why this package exists, how it is checked, and
// when to fall back to klauspost's decoder.
package inflate

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/flate"
)

// ErrTooLarge is returned when the output would exceed the caller's limit. No
// more than the limit (plus a few bytes of slack) is ever allocated.
var ErrTooLarge = errors.New("inflate: output exceeds the limit")

// Slack is how far past the end of a back-reference a copy may write (it
// copies at least 32 bytes), so the output always has this much spare room. A caller
// that knows the output size n passes a dst of capacity n+Slack.
const Slack = 32

// decoder holds one stream's state. The hot loop (huffmanBlock) copies the
// fields it uses into locals and writes them back when it returns.
type decoder struct {
	in    []byte
	pos   int    // next byte of in to load into bits
	bits  uint64 // the bit buffer, least significant bit first
	nbits uint   // valid bits in bits, counting virtual ones
	virt  uint   // zero bytes loaded from past the end of in

	out   []byte // out[:op] is decoded; len(out) is the room there is (len == cap)
	op    int
	base  int // where this DEFLATE stream's output starts: no distance reaches before it
	limit int // out never holds more than limit bytes of output

	lit  [litTableSize]uint32
	dist [distTableSize]uint32
	pre  [1 << preBits]uint32
	lens [maxLit + maxDist]uint8
}

// corrupt reports corrupt input at the byte being decoded.
func (d *decoder) corrupt() error {
	return flate.CorruptInputError(int64(d.pos))
}

// truncated reports whether a bit from past the end of the input has been
// consumed. Virtual bytes are zeros loaded so the refill never has to stop
// short; they are always the most recently loaded, so they are all still
// in the buffer unless some were consumed.
func (d *decoder) truncated() bool {
	return d.nbits < 8*d.virt
}

// refill makes d.bits hold at least 56 bits (some of them virtual zeros when
// the input runs out).
func (d *decoder) refill() error {
	if d.pos+8 <= len(d.in) {
		d.bits |= binary.LittleEndian.Uint64(d.in[d.pos:]) << (d.nbits & 63)
		d.pos += int((63 - d.nbits) >> 3)
		d.nbits |= 56
		return nil
	}
	for d.nbits < 56 { // stops at 63 at most: the 8-byte refill needs nbits < 64
		if d.pos < len(d.in) {
			d.bits |= uint64(d.in[d.pos]) << d.nbits
			d.pos++
		} else {
			d.virt++
		}
		d.nbits += 8
	}
	if d.virt > 8 {
		return io.ErrUnexpectedEOF // more than the buffer holds: some were consumed
	}
	return nil
}

// take consumes n bits (n <= 32); the caller has made sure they are loaded.
func (d *decoder) take(n uint) uint32 {
	v := uint32(d.bits & (1<<n - 1))
	d.bits >>= n
	d.nbits -= n
	return v
}

// grow makes room for need bytes of output (need <= limit) plus the copy slack.
func (d *decoder) grow(need int) {
	if need+Slack <= len(d.out) {
		return
	}
	n := min(max(2*len(d.out), need+Slack, 4096), d.limit+Slack)
	out := make([]byte, n)
	copy(out, d.out[:d.op])
	d.out = out
}

// inflate decodes one DEFLATE stream starting at d.in[d.pos], appending to
// d.out, and returns the CRC-32 of what it wrote. Afterwards d.pos is the
// first byte after the stream. The CRC is taken block by block, while the
// block's output is still in cache.
func (d *decoder) inflate() (uint32, error) {
	d.bits, d.nbits, d.virt = 0, 0, 0
	d.base = d.op
	var crc uint32
	for final := false; !final; {
		if err := d.refill(); err != nil {
			return 0, err
		}
		final = d.take(1) == 1
		typ := d.take(2)
		start := d.op
		var err error
		switch typ {
		case 0:
			err = d.storedBlock()
		case 1:
			err = d.huffmanBlock(fixedLit, fixedDist)
		case 2:
			if err = d.readCodes(); err == nil {
				err = d.huffmanBlock(&d.lit, &d.dist)
			}
		default:
			err = d.corrupt() // reserved block type
		}
		if d.truncated() {
			// Bits from past the end were consumed: whatever went wrong (or
			// seemed right), the input was cut short.
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
		crc = crc32.Update(crc, crc32.IEEETable, d.out[start:d.op])
	}
	// The stream ends at the byte holding its last bit: give back the whole
	// bytes still in the buffer (the virtual ones were never in the input).
	d.pos -= int(d.nbits/8) - int(d.virt)
	d.bits, d.nbits, d.virt = 0, 0, 0
	return crc, nil
}

// storedBlock copies an uncompressed block: LEN, NLEN (its complement), then
// LEN bytes, starting at the next byte boundary.
func (d *decoder) storedBlock() error {
	d.take(d.nbits & 7)
	if d.truncated() {
		return io.ErrUnexpectedEOF
	}
	d.pos -= int(d.nbits/8) - int(d.virt)
	d.bits, d.nbits, d.virt = 0, 0, 0
	if d.pos+4 > len(d.in) {
		return io.ErrUnexpectedEOF
	}
	n := int(binary.LittleEndian.Uint16(d.in[d.pos:]))
	if uint16(n) != ^binary.LittleEndian.Uint16(d.in[d.pos+2:]) {
		return d.corrupt()
	}
	d.pos += 4
	if d.pos+n > len(d.in) {
		return io.ErrUnexpectedEOF
	}
	if d.op+n > d.limit {
		return ErrTooLarge
	}
	d.grow(d.op + n)
	d.op += copy(d.out[d.op:], d.in[d.pos:d.pos+n])
	d.pos += n
	return nil
}

// codeOrder is the order the precode's codeword lengths are sent in.
var codeOrder = [numPre]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// readCodes reads a dynamic block's header and builds d.lit and d.dist.
func (d *decoder) readCodes() error {
	if err := d.refill(); err != nil {
		return err
	}
	nlit := int(d.take(5)) + 257
	ndist := int(d.take(5)) + 1
	npre := int(d.take(4)) + 4
	if nlit > 286 || ndist > 30 {
		return d.corrupt()
	}
	var preLens [numPre]uint8
	for i := 0; i < npre; i++ {
		if d.nbits < 3 {
			if err := d.refill(); err != nil {
				return err
			}
		}
		preLens[codeOrder[i]] = uint8(d.take(3))
	}
	if !build(d.pre[:], preLens[:], preTemplates[:], preBits) {
		return d.corrupt()
	}
	lens := d.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		// One refill covers a precode codeword (<= 7 bits) and its extra bits (<= 7).
		if err := d.refill(); err != nil {
			return err
		}
		e := d.pre[d.bits&(1<<preBits-1)]
		d.take(uint(e & 0xff))
		if e&fBad != 0 {
			return d.corrupt()
		}
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return d.corrupt() // nothing to repeat
			}
			rep, val = 3+int(d.take(2)), lens[i-1]
		case 17:
			rep = 3 + int(d.take(3))
		default: // 18
			rep = 11 + int(d.take(7))
		}
		if i+rep > len(lens) {
			return d.corrupt()
		}
		for end := i + rep; i < end; i++ {
			lens[i] = val
		}
	}
	if d.truncated() {
		return io.ErrUnexpectedEOF
	}
	if !build(d.lit[:], lens[:nlit], litTemplates[:], litBits) ||
		!build(d.dist[:], lens[nlit:], distTemplates[:], distBits) {
		return d.corrupt()
	}
	return nil
}

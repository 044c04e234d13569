package inflate

import "encoding/binary"

// huffmanBlock decodes one Huffman-coded block with the given tables, up to
// and including its end-of-block symbol.
//
// Most symbols go through fastSymbols, which checks the ends of the input and
// the output once per symbol, up front, and makes no calls, so its state stays
// in registers (Go saves every live register around a call). Near either end
// it returns, and slowSymbol decodes one symbol with every check, growing the
// output when it has to.
func (d *decoder) huffmanBlock(lt *[litTableSize]uint32, dt *[distTableSize]uint32) error {
	for {
		switch d.fastSymbols(lt, dt) {
		case endOfBlock:
			return nil
		case badSymbol:
			return d.corrupt()
		}
		eob, err := d.slowSymbol(lt, dt)
		if eob || err != nil {
			return err
		}
	}
}

// What stopped fastSymbols.
const (
	nearEnd    = iota // too close to the end of the input or the output
	endOfBlock        // the end-of-block symbol was decoded
	badSymbol         // a bad codeword, or a distance before the stream's start
)

// maxMatch is the longest back-reference.
const maxMatch = 258

// fastSymbols decodes symbols while a whole step (up to three literal lookups
// of one or two literals each, or one match) fits without a check: 8 bytes of
// input are left for the refill, and the output has room for maxMatch bytes
// plus the copy slack, within the limit.
//
// One refill (to at least 56 bits) covers one step: three literal lookups (15
// bits each at most, a pair fits in litBits), or a litlen codeword (15), its
// extra bits (5), a distance codeword (15) and its extra bits (13), 48 in all.
func (d *decoder) fastSymbols(lt *[litTableSize]uint32, dt *[distTableSize]uint32) int {
	in, pos, bits, nbits := d.in, d.pos, d.bits, d.nbits
	// The output as seen from this stream's start, so that a distance is
	// valid when it is at most op (one register fewer than a base offset).
	out, op := d.out[d.base:], d.op-d.base
	inEnd := len(in) - 8
	outEnd := min(len(d.out)-Slack, d.limit) - maxMatch - d.base
	if pos > inEnd || op > outEnd {
		return nearEnd
	}
	bits |= binary.LittleEndian.Uint64(in[pos:]) << (nbits & 63)
	pos += int((63 - nbits) >> 3)
	nbits |= 56
	// The next symbol's main-table entry is looked up as soon as its bits are
	// known, before the refill and the copy of the current symbol, so that the
	// table load overlaps them. That is sound when at least litBits bits are in
	// the buffer: a refill only adds bits above them.
	e := lt[bits&(1<<litBits-1)]
	status := nearEnd
	for pos <= inEnd && op <= outEnd {
		// Here nbits >= 56. (Shift counts are masked with 63, a no-op for them, so
		// that Go need not handle counts of 64 or more.)
		if e&fSub != 0 {
			e = lt[e>>16+uint32(bits>>litBits)&(1<<(e>>8&15)-1)]
		}
		if e&fLit != 0 {
			bits >>= e & 63
			nbits -= uint(e & 63)
			// One literal or two (fTwo): both bytes are written either way, the
			// second lands in the slack when it is not one.
			binary.LittleEndian.PutUint16(out[op:], uint16(e>>16))
			op += 1 + int(e>>11&1)
			// Up to two more lookups before the refill: three take at most 45 of
			// the 56 bits, leaving litBits for the next lookup. Written out rather
			// than as a loop: the loop measured about 4 % slower.
			e = lt[bits&(1<<litBits-1)]
			if e&fLit != 0 {
				bits >>= e & 63
				nbits -= uint(e & 63)
				binary.LittleEndian.PutUint16(out[op:], uint16(e>>16))
				op += 1 + int(e>>11&1)
				e = lt[bits&(1<<litBits-1)]
				if e&fLit != 0 {
					bits >>= e & 63
					nbits -= uint(e & 63)
					binary.LittleEndian.PutUint16(out[op:], uint16(e>>16))
					op += 1 + int(e>>11&1)
					e = lt[bits&(1<<litBits-1)]
				}
			}
			bits |= binary.LittleEndian.Uint64(in[pos:]) << (nbits & 63)
			pos += int((63 - nbits) >> 3)
			nbits |= 56
			continue
		}
		if e&flagMask != 0 { // end of block, or a bad codeword
			bits >>= e & 63
			nbits -= uint(e & 63)
			status = endOfBlock
			if e&fBad != 0 {
				status = badSymbol
			}
			break
		}

		// A length, then its distance.
		n := e & 63
		length := int(e>>16) + int(bits>>(n&63)&(1<<(e>>8&15)-1))
		n += e >> 8 & 15
		bits >>= n & 63
		nbits -= uint(n)
		de := dt[bits&(1<<distBits-1)]
		if de&fSub != 0 {
			de = dt[de>>16+uint32(bits>>distBits)&(1<<(de>>8&15)-1)]
		}
		n = de & 63
		dist := int(de>>16) + int(bits>>(n&63)&(1<<(de>>8&15)-1))
		n += de >> 8 & 15
		bits >>= n & 63
		nbits -= uint(n)
		if de&fBad != 0 || dist > op {
			status = badSymbol
			break
		}
		bits |= binary.LittleEndian.Uint64(in[pos:]) << (nbits & 63)
		pos += int((63 - nbits) >> 3)
		nbits |= 56
		e = lt[bits&(1<<litBits-1)]

		// Copies go 8 bytes at a time, each chunk stored before the next is
		// loaded: a chunk then reads only bytes already written, however the
		// match overlaps itself, as long as the distance is at least 8. Most
		// matches are short, so the first 32 bytes go without a loop (and its
		// mispredicted exit); what is written past the match lands in the slack.
		src := op - dist
		switch {
		case dist >= 8:
			to, from := out[op:], out[src:]
			_, _ = to[31], from[31] // one bounds check each for the four chunks
			binary.LittleEndian.PutUint64(to, binary.LittleEndian.Uint64(from))
			binary.LittleEndian.PutUint64(to[8:], binary.LittleEndian.Uint64(from[8:]))
			binary.LittleEndian.PutUint64(to[16:], binary.LittleEndian.Uint64(from[16:]))
			binary.LittleEndian.PutUint64(to[24:], binary.LittleEndian.Uint64(from[24:]))
			if length > 32 {
				if dist >= length { // no overlap: memmove is quicker for the long ones
					copy(out[op+32:op+length], out[src+32:src+length])
				} else {
					for i := 32; i < length; i += 8 {
						binary.LittleEndian.PutUint64(out[op+i:], binary.LittleEndian.Uint64(out[src+i:]))
					}
				}
			}
		case dist == 1:
			v := uint64(out[src]) * 0x0101010101010101
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(out[op+i:], v)
			}
		default:
			for i := 0; i < length; i++ {
				out[op+i] = out[src+i]
			}
		}
		op += length
	}
	d.pos, d.bits, d.nbits, d.op = pos, bits, nbits, op+d.base
	return status
}

// slowSymbol decodes one symbol (a literal, a match or the end of the block)
// with every check: the input may run out (the refill then loads virtual
// zeros, which inflate notices if they are consumed) and the output may need
// to grow. It reports whether the symbol ended the block.
func (d *decoder) slowSymbol(lt *[litTableSize]uint32, dt *[distTableSize]uint32) (bool, error) {
	if err := d.refill(); err != nil {
		return false, err
	}
	e := lt[d.bits&(1<<litBits-1)]
	if e&fSub != 0 {
		e = lt[e>>16+uint32(d.bits>>litBits)&(1<<(e>>8&15)-1)]
	}
	switch {
	case e&fLit != 0:
		d.take(uint(e & 0xff))
		n := 1 + int(e>>11&1) // fTwo: two literals
		if err := d.room(n); err != nil {
			return false, err
		}
		d.out[d.op] = byte(e >> 16)
		if n == 2 {
			d.out[d.op+1] = byte(e >> 24)
		}
		d.op += n
		return false, nil
	case e&fBad != 0:
		d.take(uint(e & 0xff))
		return false, d.corrupt()
	case e&fEOB != 0:
		d.take(uint(e & 0xff))
		return true, nil
	}
	length := int(e>>16) + int(d.bits>>(e&0xff)&(1<<(e>>8&15)-1))
	d.take(uint(e&0xff + e>>8&15))
	de := dt[d.bits&(1<<distBits-1)]
	if de&fSub != 0 {
		de = dt[de>>16+uint32(d.bits>>distBits)&(1<<(de>>8&15)-1)]
	}
	dist := int(de>>16) + int(d.bits>>(de&0xff)&(1<<(de>>8&15)-1))
	d.take(uint(de&0xff + de>>8&15))
	if de&fBad != 0 || dist > d.op-d.base {
		return false, d.corrupt()
	}
	if err := d.room(length); err != nil {
		return false, err
	}
	for i := range length {
		d.out[d.op+i] = d.out[d.op-dist+i]
	}
	d.op += length
	return false, nil
}

// room makes space for n more bytes of output at d.op, or says why not.
func (d *decoder) room(n int) error {
	if d.op+n > d.limit {
		return ErrTooLarge
	}
	d.grow(d.op + n)
	return nil
}

package inflate

import "math/bits"

// A table entry is one uint32:
//
//	bits  0-7   codeword length: how many bits of the stream the entry consumes
//	bits  8-11  extra bits that follow the codeword (lengths, distances); for a
//	            subtable pointer, how many bits index the subtable
//	bits 12-15  flags (below)
//	bits 16-31  value: a literal byte, a base length or distance, a precode
//	            symbol, or where a subtable starts
//
// A length or distance entry has no flag, so the hot loop tells it apart
// from a literal with one test.
const (
	fBad = 1 << 12 // a symbol the format forbids, or a codeword no symbol has
	fEOB = 1 << 13 // end of block
	fSub = 1 << 14 // main-table entry: the code is longer, look in the subtable
	fLit = 1 << 15 // literal byte

	// fTwo marks a literal entry holding two literals (value bits 16-23, then
	// 24-31) whose codewords together fit the main table. It sits in the extra
	// bits field, which literals do not use.
	fTwo = 1 << 11

	flagMask = fBad | fEOB | fSub | fLit
)

// Main table sizes (libdeflate's choice: most litlen codewords fit in 11 bits,
// most distance codewords in 8). Longer codewords go to subtables after the
// main table, all of one size per code: 2^(longest - main bits) entries.
const (
	litBits  = 11
	distBits = 8
	preBits  = 7 // precode codewords are at most 7 bits: no subtables

	maxLit  = 288 // litlen symbols, 286 and 287 forbidden
	maxDist = 32  // distance symbols, 30 and 31 forbidden
	numPre  = 19

	// Subtable space. A complete code fills each subtable exactly, and a
	// subtable needs at least two codewords (one alone would be shorter than
	// the main bits), so there are at most symbols/2 subtables, each of at
	// most 2^(15 - main bits) entries.
	litTableSize  = 1<<litBits + (286/2)<<(15-litBits)
	distTableSize = 1<<distBits + (30/2)<<(15-distBits)
)

// Per-symbol entry templates: everything but the codeword length.
var (
	litTemplates  [maxLit]uint32
	distTemplates [maxDist]uint32
	preTemplates  [numPre]uint32
)

func init() {
	lengthBase := [29]uint32{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
		35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra := [29]uint32{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
		3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase := [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
		257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	for s := range litTemplates {
		switch {
		case s < 256:
			litTemplates[s] = fLit | uint32(s)<<16
		case s == 256:
			litTemplates[s] = fEOB
		case s < 286:
			litTemplates[s] = lengthBase[s-257]<<16 | lengthExtra[s-257]<<8
		default:
			litTemplates[s] = fBad
		}
	}
	for s := range distTemplates {
		if s < 30 {
			distTemplates[s] = distBase[s]<<16 | uint32(max(s/2-1, 0))<<8
		} else {
			distTemplates[s] = fBad
		}
	}
	for s := range preTemplates {
		preTemplates[s] = uint32(s) << 16
	}
	// The fixed codes of RFC 1951 section 3.2.6.
	var lens [maxLit]uint8
	for s := range lens {
		switch {
		case s < 144:
			lens[s] = 8
		case s < 256:
			lens[s] = 9
		case s < 280:
			lens[s] = 7
		default:
			lens[s] = 8
		}
	}
	fixedLit = new([litTableSize]uint32)
	fixedDist = new([distTableSize]uint32)
	var dlens [maxDist]uint8
	for s := range dlens {
		dlens[s] = 5
	}
	if !build(fixedLit[:], lens[:], litTemplates[:], litBits) || !build(fixedDist[:], dlens[:], distTemplates[:], distBits) {
		panic("inflate: fixed Huffman codes do not build")
	}
}

// The fixed-code tables, built once.
var fixedLit *[litTableSize]uint32
var fixedDist *[distTableSize]uint32

// build fills table with the decoding table of the canonical Huffman code
// whose codeword lengths are lens (index = symbol), using templ for each
// symbol's entry. It reports false for a code the format does not allow:
// over-subscribed, or incomplete other than a single one-bit codeword (which
// zlib writes, and Go's compress/flate accepts, for a one-symbol distance
// code). An empty code is allowed; every lookup in it is fBad. These are
// exactly compress/flate's rules, so both accept the same streams.
func build(table []uint32, lens []uint8, templ []uint32, tableBits uint) bool {
	var count [16]uint16
	for _, l := range lens {
		count[l&15]++
	}
	count[0] = 0
	left, total, maxLen := 1, 0, uint(0)
	for l := uint(1); l < 16; l++ {
		left = left<<1 - int(count[l])
		if left < 0 {
			return false // over-subscribed
		}
		total += int(count[l])
		if count[l] != 0 {
			maxLen = l
		}
	}
	main := table[:1<<tableBits]
	if left != 0 {
		if total != 0 && (total != 1 || count[1] != 1) {
			return false // incomplete
		}
		// Empty, or one 1-bit codeword: the codewords without a symbol are bad.
		for i := range main {
			main[i] = fBad | 1
		}
	}

	// Symbols sorted by (length, symbol): canonical codewords are assigned in
	// this order, counting up.
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + count[l]
	}
	var sorted [maxLit]uint16
	for s, l := range lens {
		if l != 0 {
			sorted[offs[l]] = uint16(s)
			offs[l]++
		}
	}

	subBits := uint(0)
	if maxLen > tableBits {
		subBits = maxLen - tableBits
	}
	next := uint32(1) << tableBits // where the next subtable goes
	prefix, start := ^uint32(0), uint32(0)
	code, curLen := uint32(0), uint(0)
	for _, s := range sorted[:total] {
		ln := uint(lens[s])
		code <<= ln - curLen
		curLen = ln
		// The stream holds codewords most significant bit first, the bit
		// buffer least significant first: index by the reversed codeword.
		rev := uint32(bits.Reverse16(uint16(code))) >> (16 - ln)
		code++
		e := templ[s] | uint32(ln)
		if ln <= tableBits {
			for i := rev; i < 1<<tableBits; i += 1 << ln {
				main[i] = e
			}
			continue
		}
		// A long codeword: its first tableBits bits pick the subtable. Canonical
		// order keeps the codewords sharing those bits together.
		if p := rev & (1<<tableBits - 1); p != prefix {
			if int(next)+1<<subBits > len(table) {
				return false // cannot happen for a complete code (see the table sizes)
			}
			prefix, start = p, next
			next += 1 << subBits
			main[p] = fSub | start<<16 | uint32(subBits)<<8 | uint32(tableBits)
		}
		for i := rev >> tableBits; i < 1<<subBits; i += 1 << (ln - tableBits) {
			table[start+i] = e
		}
	}
	if tableBits == litBits {
		pairLiterals(main)
	}
	return true
}

// pairLiterals turns main-table literal entries into two-literal ones where
// the next codeword is a literal that also fits in the entry's index bits: one
// lookup then decodes both (numbers in JSON are runs of short literal codes).
// Going down from the top, each entry reads the one it leads to, at a lower
// index, before that is changed.
func pairLiterals(main []uint32) {
	for i := len(main) - 1; i >= 0; i-- {
		e1 := main[i]
		if e1&(fLit|fTwo) != fLit {
			continue
		}
		l1 := e1 & 63
		e2 := main[i>>l1]
		if e2&(fLit|fTwo) != fLit || l1+e2&63 > litBits {
			continue
		}
		main[i] = fLit | fTwo | (e1>>16|(e2>>16)<<8)<<16 | (l1 + e2&63)
	}
}

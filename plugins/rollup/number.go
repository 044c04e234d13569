package rollup

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

// parseNumber converts the JSON number at src[i] to exactly the float64 strconv.ParseFloat (what
// encoding/json uses) gives for it, and returns the index after it. ok is false for a malformed number
// or one out of the float64 range.
//
// Up to 19 digits are read into an integer mantissa (eight fraction digits at once where possible), then
// converted as strconv does, without reading the digits again: Clinger's exact fast path (the mantissa
// and 10^|e| are exact float64s, so one IEEE operation rounds correctly), else the Eisel-Lemire
// algorithm, else (more digits, extreme exponents, the rare ambiguous case) strconv.ParseFloat itself.
// Every one of these gives the correctly rounded value, so the results are bit-identical.
func parseNumber(src []byte, i int) (float64, int, bool) {
	start := i
	neg := src[i] == '-'
	if neg {
		i++
	}
	// The digit loops do not check for overflow: with more than 19 digits m is discarded below.
	var m uint64
	nd, frac, exp := 0, 0, 0
	switch {
	case i >= len(src):
		return 0, i, false
	case src[i] == '0':
		i++
	case src[i]-'1' <= 8:
		for ; i < len(src) && src[i]-'0' <= 9; i++ {
			m = m*10 + uint64(src[i]-'0')
			nd++
		}
	default:
		return 0, i, false
	}
	switch {
	case i+2 < len(src) && src[i] == '.' && src[i+1] == '0' && src[i+2]-'0' > 9:
		// "6.0", Python's repr of a whole float and the commonest number in requests: the value is
		// the integer part, with no division by a power of ten (whose latency shows).
		i += 2
	case i < len(src) && src[i] == '.':
		i++
		d := i
		// Long fractions (uniform random values have 16 or 17 digits): eight digits at once first.
		// For short runs the plain loop is faster than any SWAR trick (measured).
		if len(src)-i >= 8 {
			if v := binary.LittleEndian.Uint64(src[i:]); isEightDigits(v) {
				m = m*100000000 + eightDigits(v)
				i += 8
			}
		}
		for ; i < len(src) && src[i]-'0' <= 9; i++ {
			m = m*10 + uint64(src[i]-'0')
		}
		if i == d {
			return 0, i, false
		}
		frac = i - d
		nd += frac
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		eneg := false
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			eneg = src[i] == '-'
			i++
		}
		d := i
		for ; i < len(src) && src[i]-'0' <= 9; i++ {
			if exp < 100000 {
				exp = exp*10 + int(src[i]-'0')
			}
		}
		if i == d {
			return 0, i, false
		}
		if eneg {
			exp = -exp
		}
	}
	if nd <= 19 {
		e := exp - frac
		if m <= 1<<53 && e >= -22 && e <= 22 {
			f := float64(m)
			if e > 0 {
				f *= exactPow10[e]
			} else if e < 0 {
				f /= exactPow10[-e]
			}
			if neg {
				f = -f
			}
			return f, i, true
		}
		if f, ok := eiselLemire64(m, e, neg); ok {
			return f, i, true
		}
	}
	f, err := strconv.ParseFloat(string(src[start:i]), 64)
	return f, i, err == nil
}

var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
	1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// isEightDigits tells whether eight bytes, loaded little-endian, are all ASCII digits.
func isEightDigits(v uint64) bool {
	return (v&0xF0F0F0F0F0F0F0F0)|(((v+0x0606060606060606)&0xF0F0F0F0F0F0F0F0)>>4) == 0x3333333333333333
}

// eightDigits converts eight ASCII digits, loaded little-endian (the first digit in the low byte).
func eightDigits(v uint64) uint64 {
	v -= 0x3030303030303030
	v = v*10 + v>>8
	v = ((v&0x000000FF000000FF)*(100+1000000<<32) + (v>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return v & 0xFFFFFFFF
}

// Powers of ten for Eisel-Lemire, 10^e for e in [elMin, elMax], each as the 128 most significant
// bits of its binary expansion, truncated, with the top bit set: the table strconv uses, over the
// exponents this data needs (others go to strconv.ParseFloat). Computed once with math/big.
const (
	elMin = -64
	elMax = 64
)

var elPow10 = func() (t [elMax - elMin + 1][2]uint64) {
	one, ten := big.NewInt(1), big.NewInt(10)
	for e := elMin; e <= elMax; e++ {
		p := new(big.Int).Exp(ten, big.NewInt(int64(abs(e))), nil)
		var q *big.Int
		if e >= 0 {
			if n := p.BitLen(); n > 128 {
				q = p.Rsh(p, uint(n-128))
			} else {
				q = p.Lsh(p, uint(128-n))
			}
		} else {
			// 2^(127+bitlen(p)) / p lies in (2^127, 2^128): p is not a power of two.
			q = new(big.Int).Quo(new(big.Int).Lsh(one, uint(127+p.BitLen())), p)
		}
		lo := new(big.Int).And(q, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
		t[e-elMin] = [2]uint64{q.Rsh(q, 64).Uint64(), lo}
	}
	return t
}()

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// eiselLemire64 is the Eisel-Lemire algorithm as strconv implements it (after
// https://nigeltao.github.io/blog/2020/eisel-lemire.html): man * 10^exp10 correctly rounded, or ok
// false when the table does not cover exp10 or the result cannot be decided cheaply.
func eiselLemire64(man uint64, exp10 int, neg bool) (float64, bool) {
	if man == 0 {
		if neg {
			return math.Copysign(0, -1), true
		}
		return 0, true
	}
	if exp10 < elMin || exp10 > elMax {
		return 0, false
	}
	pow := elPow10[exp10-elMin]
	exp2 := 1 + (exp10*108853)>>15 // 1 + floor(exp10 * log2(10)), exact for |exp10| <= 500
	clz := bits.LeadingZeros64(man)
	man <<= uint(clz)
	retExp2 := uint64(exp2+63+1023) - uint64(clz)
	xHi, xLo := bits.Mul64(man, pow[0])
	if xHi&0x1FF == 0x1FF && xLo+man < man {
		yHi, yLo := bits.Mul64(man, pow[1])
		mergedHi, mergedLo := xHi, xLo+yHi
		if mergedLo < xLo {
			mergedHi++
		}
		if mergedHi&0x1FF == 0x1FF && mergedLo+1 == 0 && yLo+man < man {
			return 0, false
		}
		xHi, xLo = mergedHi, mergedLo
	}
	msb := xHi >> 63
	retMantissa := xHi >> (msb + 9)
	retExp2 -= 1 ^ msb
	if xLo == 0 && xHi&0x1FF == 0 && retMantissa&3 == 1 {
		return 0, false // half-way ambiguity
	}
	retMantissa += retMantissa & 1
	retMantissa >>= 1
	if retMantissa>>53 > 0 {
		retMantissa >>= 1
		retExp2++
	}
	if retExp2-1 >= 0x7FF-1 {
		return 0, false // subnormal, or out of range
	}
	b := retExp2<<52 | retMantissa&(1<<52-1)
	if neg {
		b |= 1 << 63
	}
	return math.Float64frombits(b), true
}

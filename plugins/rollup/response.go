package rollup

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// respond folds the (group, day) cells into weeks and writes the response:
//
//	{"event":"rollup","organizationId":...,"week_start":...,"weekly":{key:[{"Week":...,metrics...}]}}
//
// Groups in byte order of their keys (Python's code-point order, as the seed's groupby sorted them),
// weeks oldest first, metrics in configured order. Both paths end here, so the bytes of an answer depend
// only on the cells, and the cells only on the rows in request order.
func (a *Aggregator) respond(st *state, orgID string, start int, info *Info) ([]byte, error) {
	p := a.p
	nG := len(st.groupKeys)

	// Cells grouped by group key order (counting sort), then by day within a group.
	byKey := make([]int32, nG) // group ids in key order; one small allocation per request
	for i := range byKey {
		byKey[i] = int32(i)
	}
	slices.SortFunc(byKey, func(x, y int32) int { return strings.Compare(st.groupKeys[x], st.groupKeys[y]) })
	rank := st.order[:0]
	rank = slices.Grow(rank, nG+1+len(st.cellDay))[:nG+1]
	for i, g := range byKey {
		rank[g] = int32(i)
	}
	starts := make([]int32, nG+1)
	for _, g := range st.cellGrp {
		starts[rank[g]+1]++
	}
	for i := 1; i <= nG; i++ {
		starts[i] += starts[i-1]
	}
	cells := rank[nG+1 : nG+1+len(st.cellDay)]
	fill := slices.Clone(starts[:nG])
	for c, g := range st.cellGrp {
		r := rank[g]
		cells[fill[r]] = int32(c)
		fill[r]++
	}
	st.order = rank

	out := st.out[:0]
	out = append(out, `{"event":"rollup","organizationId":`...)
	out = appendJSONString(out, orgID)
	out = append(out, `,"week_start":"`...)
	out = append(out, weekdayNames[start]...)
	out = append(out, `","weekly":{`...)
	weeks := 0
	week := st.week
	s := p.stride
	for i, g := range byKey {
		gc := cells[starts[i]:starts[i+1]]
		if !slices.IsSortedFunc(gc, func(x, y int32) int { return int(st.cellDay[x]) - int(st.cellDay[y]) }) {
			slices.SortFunc(gc, func(x, y int32) int { return int(st.cellDay[x]) - int(st.cellDay[y]) })
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, st.groupKeys[g])
		out = append(out, ":["...)
		for j := 0; j < len(gc); {
			wk := weekOf(st.cellDay[gc[j]], start)
			copy(week, st.acc[int(gc[j])*s:int(gc[j])*s+s])
			for j++; j < len(gc) && weekOf(st.cellDay[gc[j]], start) == wk; j++ {
				p.merge(week, st.acc[int(gc[j])*s:int(gc[j])*s+s])
			}
			if weeks > 0 && out[len(out)-1] == '}' {
				out = append(out, ',')
			}
			out = append(out, `{"Week":"`...)
			out = appendDate(out, wk)
			out = append(out, '"')
			for k := range p.metrics {
				m := &p.metrics[k]
				v, null, integer := m.result(week)
				out = append(out, m.key...)
				switch {
				case null:
					out = append(out, "null"...)
				case integer:
					out = strconv.AppendInt(out, int64(v), 10)
				case math.IsInf(v, 0) || math.IsNaN(v):
					st.out = out
					return nil, aggregateErr(fmt.Errorf("group %s week %s metric %q: the %s is not finite "+
						"(float64 overflow)", quoteValue(st.groupKeys[g]), appendDate(nil, wk), m.name, ruleNames[m.rule]))
				default:
					out = appendPyFloat(out, v)
				}
			}
			out = append(out, '}')
			weeks++
		}
		out = append(out, ']')
	}
	out = append(out, "}}"...)
	st.out = out
	info.Groups, info.Weeks = nG, weeks
	return slices.Clone(out), nil
}

var ruleNames = [...]string{kSum: "sum", kMean: "mean", kMin: "min", kMax: "max", kCount: "count", kWMean: "weighted mean"}

// appendPyFloat appends f as Python's repr (and so json.dumps) writes it: the shortest digits that
// round-trip, fixed notation with at least one fractional digit (20808.0) when the decimal exponent
// is in [-4, 16), otherwise d[.ddd]e±XX (1e-05, 1.5e+16). f must be finite.
func appendPyFloat(dst []byte, f float64) []byte {
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±dd[d]
	if b[0] == '-' {
		dst = append(dst, '-')
		b = b[1:]
	}
	ei := 1
	for b[ei] != 'e' {
		ei++
	}
	exp := 0
	for _, c := range b[ei+2:] {
		exp = exp*10 + int(c-'0')
	}
	if b[ei+1] == '-' {
		exp = -exp
	}
	// The significant digits, without the point.
	var dg [24]byte
	digits := append(dg[:0], b[0])
	if ei > 1 {
		digits = append(digits, b[2:ei]...)
	}
	nd := len(digits)
	if exp < -4 || exp >= 16 {
		dst = append(dst, digits[0])
		if nd > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	}
	point := exp + 1 // digits before the decimal point
	switch {
	case point <= 0:
		dst = append(dst, "0."...)
		for ; point < 0; point++ {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	case point < nd:
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		return append(dst, digits[point:]...)
	default:
		dst = append(dst, digits...)
		for ; point > nd; point-- {
			dst = append(dst, '0')
		}
		return append(dst, ".0"...)
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Quotes, backslashes and control characters are
// escaped as Python's json.dumps escapes them; other characters, non-ASCII included, are written as
// they are (the input is valid UTF-8, checked on both paths).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[last:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		last = i + 1
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}

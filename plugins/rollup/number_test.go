package rollup

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// parseNumber must give strconv.ParseFloat's bits for every JSON number: random digit strings of every
// length with fractions and exponents, and hand-picked edge cases.
func TestParseNumberMatchesParseFloat(t *testing.T) {
	suffixes := []string{",", "}", "]", " ", `,"Abandons":12345678}`, "\n\t,\"x\":\"\xfa\xff12\"", "e", ".", "-"}
	k := 0
	check := func(s string) {
		t.Helper()
		k++
		src := []byte(s + suffixes[k%len(suffixes)])
		want, err := strconv.ParseFloat(s, 64)
		got, end, ok := parseNumber(src, 0)
		if suffix := src[len(s)]; suffix == 'e' || suffix == '.' || suffix == '-' {
			// Not a number's end: the number is then malformed or continues; only check no panic.
			return
		}
		if ok != (err == nil) || ok && (end != len(s) || math.Float64bits(want) != math.Float64bits(got)) {
			t.Fatalf("%s: parseNumber gives %v (ok %v, end %d), ParseFloat %v (%v)", s, got, ok, end, want, err)
		}
	}
	for _, s := range []string{"0", "-0", "0.0", "-0.0", "1", "120.0", "372.59467512129856", "0.85099",
		"2747.4994444444", "1e22", "1e23", "9007199254740993", "9007199254740992", "18446744073709551615",
		"18446744073709551616", "123456789012345678901234567890", "0.000000000000000000000000001",
		"1.7976931348623157e308", "1.7976931348623159e308", "4.9e-324", "2.2250738585072011e-308",
		"1e-400", "1e400", "-1E+2", "1e-64", "1e64", "1e-65", "1e65", "0.1e-63", "12345678.12345678",
		"9999999999999999999", "99999999999999999999", "0.30000000000000004", "1.00000000000000011102230246251565404236316680908203125",
		"7.2057594037927933e16", "5e-324", "100000000000000000000000", "0e999999", "1e0000000000000000000001",
		"6.0", "-6.0", "1.0e5", "1.0E-5", "9007199254740993.0", "12345678901234567890.0", "1.00", "1.01", "1.0e400"} {
		check(s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		return b.String()
	}
	for n := 0; n < 200000; n++ {
		s := ""
		if rng.IntN(2) == 0 {
			s = "-"
		}
		ip := digits(1 + rng.IntN(20))
		ip = strings.TrimLeft(ip, "0")
		if ip == "" {
			ip = "0"
		}
		s += ip
		if rng.IntN(4) != 0 {
			s += "." + digits(1+rng.IntN(22))
		}
		if rng.IntN(3) == 0 {
			s += []string{"e", "E", "e+", "e-", "E-"}[rng.IntN(5)] + strconv.Itoa(rng.IntN(80))
		}
		check(s)
	}
	for n := 0; n < 50000; n++ { // shortest representations of random doubles
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		check(strconv.FormatFloat(f, 'g', -1, 64))
		check(strconv.FormatFloat(f, 'f', -1, 64))
	}
	for _, s := range []string{"", "-", "01", "1.", ".5", "+1", "1e", "1e+", "-a", "1.e5"} {
		_, end, ok := parseNumber([]byte(s+" "), 0)
		if ok {
			// Valid prefixes ("01" reads "0") end before the rest, which the caller rejects.
			require.Less(t, end, len(s), s)
		}
	}
}

package rollup

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata/pyfloat.txt holds float64 bit patterns and Python's repr of them (what json.dumps writes):
// the thresholds of exponent notation, subnormals, extremes, random bit patterns, rounded decimals.
func TestPyFloatMatchesPythonRepr(t *testing.T) {
	f, err := os.Open("testdata/pyfloat.txt")
	require.NoError(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		hex, want, ok := strings.Cut(line, " ")
		require.True(t, ok, line)
		bits, err := strconv.ParseUint(hex, 16, 64)
		require.NoError(t, err)
		v := math.Float64frombits(bits)
		got := string(appendPyFloat(nil, v))
		require.Equal(t, want, got, "bits %s", hex)
		back, err := strconv.ParseFloat(got, 64)
		require.NoError(t, err)
		require.Equal(t, bits, math.Float64bits(back), "round trip of %s", got)
		n++
	}
	require.NoError(t, sc.Err())
	assert.Greater(t, n, 700)
}

func TestPyFloatSamples(t *testing.T) {
	for v, want := range map[float64]string{
		20808.0: "20808.0", 2747.4994444444: "2747.4994444444", 0.85099: "0.85099", 1e-05: "1e-05",
		0.0001: "0.0001", 1.5e16: "1.5e+16", 1e16: "1e+16", 9999999999999998.0: "9999999999999998.0",
		123e-7: "1.23e-05", 1e100: "1e+100", 5e-324: "5e-324", -2.5: "-2.5", 0: "0.0",
	} {
		assert.Equal(t, want, string(appendPyFloat(nil, v)))
	}
	assert.Equal(t, "-0.0", string(appendPyFloat(nil, math.Copysign(0, -1))))
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
		"café 東京 😀", "</script>&", "\u2028\u2029"} {
		b := appendJSONString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(b, &back), string(b))
		assert.Equal(t, s, back)
	}
	assert.Equal(t, `"a\"b\\c\n\u0001é"`, string(appendJSONString(nil, "a\"b\\c\n\x01é")))
}

// Groups are written in byte order of their keys, which is Python's code-point order for UTF-8.
func TestGroupsSortedByKey(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	var rows []string
	names := []string{"b", "a", "Z", "é", "東", "😀", "ａ", "a b", "a"}
	for _, n := range names {
		rows = append(rows, `{"Contact Type":"`+n+`","Staff Type":"s","Call Center":"c","Week":"2023-07-28"}`)
	}
	resp, info, err := rollBoth(t, agg, request("", rows...))
	require.NoError(t, err)
	assert.Equal(t, 8, info.Groups)
	order := []string{"Z_s_c", "a b_s_c", "a_s_c", "b_s_c", "é_s_c", "東_s_c", "ａ_s_c", "😀_s_c"}
	last := -1
	for _, k := range order {
		i := strings.Index(string(resp), `"`+k+`"`)
		require.Greater(t, i, last, k)
		last = i
	}
}

// Weeks are oldest first whatever the row order, and days of one week merge across the request.
func TestWeeksOldestFirst(t *testing.T) {
	agg, err := NewAggregator(DefaultConfig())
	require.NoError(t, err)
	req := request("monday",
		row("2023-08-14", `"Volume":1`), row("2023-07-31", `"Volume":2`), row("2023-08-06", `"Volume":4`),
		row("2023-08-07T00:00:00Z", `"Volume":8`), row("2023-07-31 23:00:00", `"Volume":16`))
	resp, info, err := rollBoth(t, agg, req)
	require.NoError(t, err)
	assert.Equal(t, 3, info.Weeks)
	w := weeksOf(t, resp, "a_b_c")
	require.Len(t, w, 3)
	assert.Equal(t, []any{"2023-07-31", 22.0}, []any{w[0]["Week"], w[0]["Volume"]})
	assert.Equal(t, []any{"2023-08-07", 8.0}, []any{w[1]["Week"], w[1]["Volume"]})
	assert.Equal(t, []any{"2023-08-14", 1.0}, []any{w[2]["Week"], w[2]["Volume"]})
}

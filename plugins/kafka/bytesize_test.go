package kafka

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		// What the input's and the output's size fields accepted before they shared this parser.
		"1MiB": 1 << 20, "25MB": 25e6, "512": 512, "64 KiB": 64 << 10,
		"100MB": 100e6, " 64 kib ": 64 << 10, "2GB": 2e9,
		// Where the two old parsers disagreed: units in any case.
		"64mib": 64 << 20, "64MIB": 64 << 20, "64Mib": 64 << 20, "1kb": 1000, "1gib": 1 << 30,
		"0": 0, "0B": 0, "100B": 100, "100 b": 100, "1GiB": 1 << 30, "1GB": 1e9, "1KB": 1000,
		"\t2 MiB\n":                       2 << 20,
		strconv.Itoa(maxSize):             maxSize,
		strconv.Itoa(maxSize>>30) + "GiB": (maxSize >> 30) << 30,
	} {
		got, err := parseSize(in)
		require.NoError(t, err, "%q", in)
		assert.Equal(t, want, got, "%q", in)
	}

	for _, in := range []string{
		"", "  ", "MB", "B", "1.5MB", "0.5", "-1", "+1", "1,000", "1e3", "0x10", "10 parsecs",
		"64 k", "64M", "1Mi", "1TB", "1TiB", "1 MB B", "MiB 64", "١٢", "12٣",
	} {
		_, err := parseSize(in)
		require.Error(t, err, "%q", in)
		assert.Contains(t, err.Error(), "is not a byte size", "%q", in)
	}

	// Past maxSize, including 2^53+1, which float64 rounds down to 2^53.
	for _, in := range []string{strconv.Itoa(maxSize + 1), strconv.Itoa(maxSize + 2), "8388608GiB", "99999999999999999999999", "9999999999GiB"} {
		_, err := parseSize(in)
		assert.Error(t, err, "%q", in)
	}
}

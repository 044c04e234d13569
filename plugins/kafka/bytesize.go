package kafka

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
)

// sizeUnits are the units parseSize accepts, lower-cased: none or B for bytes, the decimal KB, MB and
// GB (powers of 1000, as Kafka's own docs count) and the binary KiB, MiB and GiB (powers of 1024).
// go-humanize knows more (k, Mi, TB, EiB, ...); they are left out so that every size in a config
// reads one way, and no Kafka limit needs them.
var sizeUnits = []string{"", "b", "kb", "mb", "gb", "kib", "mib", "gib"}

// maxSize is the largest size parseSize returns: go-humanize computes in float64, which holds every
// whole number below 2^53 (8 PiB) exactly and rounds above it, never below 2^53, so a result over
// maxSize always means an input over it.
const maxSize = 1<<53 - 1

// parseSize reads a byte size from a config field. The grammar, for every Kafka field that takes one:
//
//	size   = space* digits space* unit? space*
//	digits = one or more ASCII digits (a whole number: no sign, fraction, exponent or separators)
//	unit   = B | KB | MB | GB | KiB | MiB | GiB, in any case ("64mib" is 64 MiB)
//
// So "1048576", "100B", "1MB" (1,000,000), "1MiB" (1,048,576) and " 64 kib " are sizes, and "",
// "MB", "1.5MB", "-1", "1,000", "10 parsecs" and "1TB" are not. Zero is a size; whether a field
// accepts it, and its upper bound, are for the caller to check. The arithmetic (unit tables,
// multiplication, overflow) is go-humanize's ParseBytes, whose grammar is wider: the checks above
// narrow it to this one.
//
// Every size field of the input and the output reads through it, so "64mib" means the same in both.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	digits := len(t) - len(strings.TrimLeft(t, "0123456789"))
	if digits == 0 || !slices.Contains(sizeUnits, strings.ToLower(strings.TrimSpace(t[digits:]))) {
		return 0, fmt.Errorf("%q is not a byte size: want a whole number of bytes, optionally followed by B, KB, MB, GB, KiB, MiB or GiB", s)
	}
	n, err := humanize.ParseBytes(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte size: %w", s, err)
	}
	if n > maxSize {
		return 0, fmt.Errorf("%q is too large for a byte size (at most %d bytes)", s, uint64(maxSize))
	}
	return int64(n), nil
}

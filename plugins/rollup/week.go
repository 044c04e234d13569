package rollup

import (
	"errors"
	"fmt"
	"strings"
)

// Days are counted as in the proleptic Gregorian calendar, day 0 = 1970-01-01. Rows are aggregated per
// (group, day) and the days are folded into weeks only when the response is written, so the week start
// is needed only at the end and the request's key order does not matter.

// weekdayNames is indexed by Python's date.weekday(): Monday = 0 ... Sunday = 6, as the seed used it.
var weekdayNames = [7]string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

// validWeekStarts is quoted in error messages and in the processor's docs.
const validWeekStarts = "monday, tuesday, wednesday, thursday, friday, saturday, sunday " +
	"(any case, or their first three letters: mon ... sun)"

// parseWeekStart maps a day name (full or three-letter, any case) to its weekday number.
func parseWeekStart(s string) (int, error) {
	if len(s) >= 3 && len(s) <= 9 {
		l := strings.ToLower(s)
		for i, n := range weekdayNames {
			if l == n || l == n[:3] {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unknown day %s; valid values: %s", quoteValue(s), validWeekStarts)
}

// daysFromCivil returns the day number of a proleptic Gregorian date (H. Hinnant's algorithm).
func daysFromCivil(y, m, d int) int32 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 0 here: years are 1..9999
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int32(era*146097 + doe - 719468)
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int32) (y, m, d int) {
	zz := int(z) + 719468
	era := zz / 146097
	if zz < 0 {
		era = (zz - 146096) / 146097
	}
	doe := zz - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// weekday returns Python's weekday (Monday = 0) of a day number; 1970-01-01 was a Thursday (3).
func weekday(day int32) int {
	return int(((day+3)%7 + 7) % 7)
}

// weekOf returns the latest day on or before day whose weekday is start.
func weekOf(day int32, start int) int32 {
	return day - int32((weekday(day)-start+7)%7)
}

// appendDate appends a day number as YYYY-MM-DD.
func appendDate(dst []byte, day int32) []byte {
	y, m, d := civilFromDays(day)
	return append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// timestampForms is quoted in timestamp errors.
const timestampForms = "expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS[.fraction] or RFC 3339"

var errBadTimestampSyntax = errors.New(timestampForms)

// digits2 reads two ASCII digits; ok is false when either is not a digit.
func digits2(b []byte) (int, bool) {
	a, c := b[0]-'0', b[1]-'0'
	if a > 9 || c > 9 {
		return 0, false
	}
	return int(a)*10 + int(c), true
}

// parseDate parses exactly YYYY-MM-DD (year 0001-9999) into a day number; impossible dates such as
// 2023-02-30 are errors.
func parseDate(b []byte) (int32, error) {
	if len(b) != 10 || b[4] != '-' || b[7] != '-' {
		return 0, errBadTimestampSyntax
	}
	yh, ok1 := digits2(b[0:2])
	yl, ok2 := digits2(b[2:4])
	m, ok3 := digits2(b[5:7])
	d, ok4 := digits2(b[8:10])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, errBadTimestampSyntax
	}
	y := yh*100 + yl
	switch {
	case y == 0:
		return 0, errors.New("year 0000 is out of range (0001-9999)")
	case m < 1 || m > 12:
		return 0, fmt.Errorf("month %02d is out of range", m)
	case d < 1 || d > daysIn(y, m):
		return 0, fmt.Errorf("day %02d is out of range for %04d-%02d", d, y, m)
	}
	return daysFromCivil(y, m, d), nil
}

// checkTimeSuffix validates what follows the date: nothing, or a 'T', 't' or ' ' separator, HH:MM:SS,
// an optional fraction (.digits) and an optional zone (Z, z or +HH:MM / -HH:MM). The time and the zone
// are validated but ignored: a row belongs to the calendar date written in it (CONTRACT.md).
func checkTimeSuffix(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) < 9 || (b[0] != 'T' && b[0] != 't' && b[0] != ' ') || b[3] != ':' || b[6] != ':' {
		return errBadTimestampSyntax
	}
	hh, ok1 := digits2(b[1:3])
	mm, ok2 := digits2(b[4:6])
	ss, ok3 := digits2(b[7:9])
	if !ok1 || !ok2 || !ok3 {
		return errBadTimestampSyntax
	}
	if hh > 23 || mm > 59 || ss > 59 {
		return fmt.Errorf("time %02d:%02d:%02d is out of range", hh, mm, ss)
	}
	b = b[9:]
	if len(b) > 0 && b[0] == '.' {
		n := 1
		for n < len(b) && b[n] >= '0' && b[n] <= '9' {
			n++
		}
		if n == 1 {
			return errBadTimestampSyntax
		}
		b = b[n:]
	}
	switch {
	case len(b) == 0:
		return nil
	case len(b) == 1 && (b[0] == 'Z' || b[0] == 'z'):
		return nil
	case len(b) == 6 && (b[0] == '+' || b[0] == '-') && b[3] == ':':
		oh, ok1 := digits2(b[1:3])
		om, ok2 := digits2(b[4:6])
		if !ok1 || !ok2 {
			return errBadTimestampSyntax
		}
		if oh > 23 || om > 59 {
			return fmt.Errorf("zone offset %s is out of range", b)
		}
		return nil
	}
	return errBadTimestampSyntax
}

// parseTimestamp returns the day number of the calendar date written at the start of a row timestamp.
func parseTimestamp(b []byte) (int32, error) {
	if len(b) < 10 {
		return 0, fmt.Errorf("invalid timestamp %s: %w", quoteValue(string(b)), errBadTimestampSyntax)
	}
	day, err := parseDate(b[:10])
	if err == nil {
		err = checkTimeSuffix(b[10:])
	}
	if err != nil {
		if err == errBadTimestampSyntax {
			return 0, fmt.Errorf("invalid timestamp %s: %w", quoteValue(string(b)), err)
		}
		return 0, fmt.Errorf("invalid timestamp %s: %w (%s)", quoteValue(string(b)), err, timestampForms)
	}
	return day, nil
}

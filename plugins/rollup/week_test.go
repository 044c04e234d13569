package rollup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseWeekStart(t *testing.T) {
	for in, want := range map[string]int{
		"monday": 0, "Tuesday": 1, "WEDNESDAY": 2, "thu": 3, "Fri": 4, "SAT": 5, "sUnDaY": 6, "friday": 4,
	} {
		got, err := parseWeekStart(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "fr", "frid", "friday ", " friday", "funday", "montag", "1", "mondays"} {
		_, err := parseWeekStart(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), "valid values: monday, tuesday, wednesday, thursday, friday, saturday, sunday")
	}
}

// Week starts worked out by hand from a calendar: 2023-07-28 is a Friday, 2024-02-29 a Thursday,
// 2023-01-01 a Sunday, 2000-03-01 a Wednesday.
func TestWeekOfEachStartDay(t *testing.T) {
	cases := []struct {
		date  string
		start string
		week  string
	}{
		{"2023-07-28", "friday", "2023-07-28"},
		{"2023-07-28", "saturday", "2023-07-22"},
		{"2023-07-28", "sunday", "2023-07-23"},
		{"2023-07-28", "monday", "2023-07-24"},
		{"2023-07-28", "tuesday", "2023-07-25"},
		{"2023-07-28", "wednesday", "2023-07-26"},
		{"2023-07-28", "thursday", "2023-07-27"},
		{"2023-08-03", "friday", "2023-07-28"}, // Thursday: the last day of the week from 07-28
		{"2023-08-04", "friday", "2023-08-04"},
		{"2024-03-01", "monday", "2024-02-26"}, // across the leap day
		{"2024-03-01", "thursday", "2024-02-29"},
		{"2024-02-29", "friday", "2024-02-23"},
		{"2023-01-01", "monday", "2022-12-26"}, // across the new year
		{"2023-01-01", "sunday", "2023-01-01"},
		{"2023-01-01", "saturday", "2022-12-31"},
		{"2000-03-01", "tuesday", "2000-02-29"}, // 2000 is a leap year
		{"1900-03-01", "wednesday", "1900-02-28"},
		{"0001-01-07", "monday", "0001-01-01"},
	}
	for _, c := range cases {
		day, err := parseDate([]byte(c.date))
		require.NoError(t, err, c.date)
		start, err := parseWeekStart(c.start)
		require.NoError(t, err)
		assert.Equal(t, c.week, string(appendDate(nil, weekOf(day, start))), "%s from %s", c.date, c.start)
	}
}

// The day arithmetic agrees with the time package over every day of 1600-2400, and at the ends of
// the supported range.
func TestDayNumbersAgreeWithTimePackage(t *testing.T) {
	check := func(d time.Time) {
		s := d.Format("2006-01-02")
		day, err := parseDate([]byte(s))
		require.NoError(t, err, s)
		require.Equal(t, int32(d.Unix()/86400), day, s)
		require.Equal(t, s, string(appendDate(nil, day)))
		require.Equal(t, (int(d.Weekday())+6)%7, weekday(day), s)
	}
	for d := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2400; d = d.AddDate(0, 0, 1) {
		check(d)
	}
	check(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC))
	check(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
}

func TestTimestampForms(t *testing.T) {
	want, err := parseDate([]byte("2023-07-28"))
	require.NoError(t, err)
	for _, ts := range []string{
		"2023-07-28",
		"2023-07-28 13:00:00",
		"2023-07-28 23:59:59.999999999",
		"2023-07-28 00:00:00.5",
		"2023-07-28T13:00:00",
		"2023-07-28t13:00:00",
		"2023-07-28T13:00:00Z",
		"2023-07-28T13:00:00z",
		"2023-07-28T13:00:00.123Z",
		"2023-07-28T23:30:00+05:30", // the offset is not applied: the date as written
		"2023-07-28T00:30:00-08:00",
		"2023-07-28T13:00:00.000001+00:00",
		"2023-07-28 13:00:00Z",
	} {
		day, err := parseTimestamp([]byte(ts))
		require.NoError(t, err, ts)
		assert.Equal(t, want, day, ts)
	}
}

func TestInvalidTimestamps(t *testing.T) {
	for ts, reason := range map[string]string{
		"2023-02-29":                "day 29 is out of range for 2023-02",
		"2023-02-30":                "day 30 is out of range for 2023-02",
		"2023-04-31":                "day 31 is out of range for 2023-04",
		"2023-13-01":                "month 13 is out of range",
		"2023-00-10":                "month 00 is out of range",
		"2023-01-00":                "day 00 is out of range",
		"0000-01-01":                "year 0000 is out of range",
		"2023-07-28 24:00:00":       "time 24:00:00 is out of range",
		"2023-07-28 12:60:00":       "out of range",
		"2023-07-28 12:00:60":       "out of range",
		"2023-07-28T12:00:00+24:00": "zone offset +24:00 is out of range",
		"2023-7-28":                 timestampForms,
		"23-07-28":                  timestampForms,
		"2023/07/28":                timestampForms,
		"20230728":                  timestampForms,
		"2023-07-28 13:00":          timestampForms,
		"2023-07-28T13:00:00.":      timestampForms,
		"2023-07-28T13:00:00+0530":  timestampForms,
		"2023-07-28T13:00:00 Z":     timestampForms,
		"2023-07-28X13:00:00":       timestampForms,
		"2023-07-28 ":               timestampForms,
		"2023-07-28T13:00:00,5":     timestampForms,
		"":                          timestampForms,
		"yesterday":                 timestampForms,
		"２０２３-07-28":                timestampForms,
	} {
		_, err := parseTimestamp([]byte(ts))
		require.Error(t, err, ts)
		assert.Contains(t, err.Error(), reason, ts)
		assert.Contains(t, err.Error(), "invalid timestamp", ts)
	}
}

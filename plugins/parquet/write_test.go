package parquet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// sampleResponse covers two groups, a null metric, a metric missing from one row, a metric first seen in
// the second group, and the week 2023-07-28 (19566 days after 1970-01-01).
const sampleResponse = `{"event":"rollup","organizationId":"5a8acad4-2e10-44c3-856e-3477fae1fba8","week_start":"friday",
 "weekly":{
  "Medical_Medical - English_Default Center":[
   {"Week":"2023-07-28","Volume":20808.0,"Abandons":363,"Base AHT":372.59467512129856},
   {"Week":"2023-08-04","Volume":0,"Abandons":null,"Base AHT":null}],
  "Medical_Medical - Spanish_Default Center":[
   {"Week":"2023-07-28","Volume":1.5e3,"Base AHT":-0.25,"Service Level (X Seconds)":0.85099}]}}`

func writeBytes(t testing.TB, resp string, opts Options) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	n, err := WriteResponse(&buf, []byte(resp), opts)
	must(t, err, "WriteResponse")
	return buf.Bytes(), n
}

// readBack opens b with parquet-go's own reader and returns the file and all its rows.
func readBack(t testing.TB, b []byte) (*pq.File, []pq.Row) {
	t.Helper()
	f, err := pq.OpenFile(bytes.NewReader(b), int64(len(b)))
	must(t, err, "OpenFile")
	r := pq.NewReader(bytes.NewReader(b))
	defer r.Close()
	var rows []pq.Row
	for {
		batch := make([]pq.Row, 16)
		n, err := r.ReadRows(batch)
		for _, row := range batch[:n] {
			rows = append(rows, row.Clone())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err, "ReadRows")
	}
	equal(t, f.NumRows(), int64(len(rows)), "rows read")
	return f, rows
}

func columnNames(f *pq.File) []string {
	var names []string
	for _, fld := range f.Schema().Fields() {
		names = append(names, fld.Name())
	}
	return names
}

// cell renders a value for comparison: "null", a string, a date's day number or a float.
func cell(v pq.Value) string {
	if v.IsNull() {
		return "null"
	}
	switch v.Kind() {
	case pq.ByteArray:
		return string(v.ByteArray())
	case pq.Int32:
		return fmt.Sprintf("d%d", v.Int32())
	case pq.Double:
		return fmt.Sprintf("%v", v.Double())
	}
	return "?" + v.String()
}

func cells(row pq.Row) []string {
	out := make([]string, len(row))
	for i, v := range row {
		out[i] = cell(v)
	}
	return out
}

func TestWriteResponseSchemaAndValues(t *testing.T) {
	b, n := writeBytes(t, sampleResponse, Options{})
	if path := os.Getenv("ROLLUP_PARQUET_OUT"); path != "" {
		// CI checks this file with pyarrow against the response it came from:
		// test/reference/check_parquet.py "$ROLLUP_PARQUET_OUT" --response "$ROLLUP_PARQUET_OUT.response.json"
		must(t, os.WriteFile(path, b, 0o644), "writing ROLLUP_PARQUET_OUT")
		must(t, os.WriteFile(path+".response.json", []byte(sampleResponse), 0o644), "writing the response")
	}
	equal(t, 3, n, "rows written")
	f, rows := readBack(t, b)

	equal(t, []string{"Contact Type", "Staff Type", "Call Center", "Week", "Volume", "Abandons",
		"Base AHT", "Service Level (X Seconds)", "organizationId"}, columnNames(f), "columns")
	// Logical types as written in the file's footer (not as parquet-go maps them back).
	logical := map[string]string{}
	for _, el := range f.Metadata().Schema[1:] {
		if el.LogicalType.Value != nil {
			logical[el.Name] = el.LogicalType.Value.String()
		}
	}
	for _, fld := range f.Schema().Fields() {
		typ := fld.Type()
		switch fld.Name() {
		case "Contact Type", "Staff Type", "Call Center", "organizationId":
			check(t, fld.Required(), "%s is required", fld.Name())
			equal(t, pq.ByteArray, typ.Kind(), "%s kind", fld.Name())
			check(t, logical[fld.Name()] == "STRING", "%s is a STRING, got %q", fld.Name(), logical[fld.Name()])
		case "Week":
			check(t, fld.Required(), "Week is required")
			equal(t, pq.Int32, typ.Kind(), "Week kind")
			check(t, logical["Week"] == "DATE", "Week has logical type DATE, got %q", logical["Week"])
		default:
			check(t, logical[fld.Name()] == "", "%s has no logical type, got %q", fld.Name(), logical[fld.Name()])
			check(t, fld.Optional(), "%s is nullable", fld.Name())
			equal(t, pq.Double, typ.Kind(), "%s kind", fld.Name())
		}
	}
	ws, ok := f.Lookup("week_start")
	check(t, ok, "key-value metadata week_start is written")
	equal(t, "friday", ws, "week_start")
	for _, cc := range f.Metadata().RowGroups[0].Columns {
		equal(t, format.Snappy, cc.MetaData.Codec, "codec of %v", cc.MetaData.PathInSchema)
	}

	org := "5a8acad4-2e10-44c3-856e-3477fae1fba8"
	want := [][]string{
		{"Medical", "Medical - English", "Default Center", "d19566", "20808", "363", "372.59467512129856", "null", org},
		{"Medical", "Medical - English", "Default Center", "d19573", "0", "null", "null", "null", org},
		{"Medical", "Medical - Spanish", "Default Center", "d19566", "1500", "null", "-0.25", "0.85099", org},
	}
	equal(t, len(want), len(rows), "rows")
	for i := range min(len(want), len(rows)) {
		equal(t, want[i], cells(rows[i]), "row %d", i)
	}
}

func TestWriteResponseFixedMetrics(t *testing.T) {
	b, _ := writeBytes(t, sampleResponse, Options{Metrics: []string{"Service Level (X Seconds)", "Volume", "Absent"}})
	f, rows := readBack(t, b)
	equal(t, []string{"Contact Type", "Staff Type", "Call Center", "Week",
		"Service Level (X Seconds)", "Volume", "Absent", "organizationId"}, columnNames(f), "columns")
	equal(t, []string{"null", "20808", "null"}, cells(rows[0])[4:7], "row 0 metrics")
	equal(t, []string{"0.85099", "1500", "null"}, cells(rows[2])[4:7], "row 2 metrics")
}

func TestWriteResponseCompression(t *testing.T) {
	for name, codec := range map[string]format.CompressionCodec{
		CompressionZstd: format.Zstd, CompressionGzip: format.Gzip, CompressionNone: format.Uncompressed,
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := writeBytes(t, sampleResponse, Options{Compression: name})
			f, rows := readBack(t, b)
			equal(t, 3, len(rows), "rows")
			for _, cc := range f.Metadata().RowGroups[0].Columns {
				equal(t, codec, cc.MetaData.Codec, "codec of %v", cc.MetaData.PathInSchema)
			}
		})
	}
	_, err := WriteResponse(io.Discard, []byte(sampleResponse), Options{Compression: "lzo"})
	errContains(t, err, `unknown compression "lzo"`, "compression lzo")
}

func TestWriteResponseNoGroups(t *testing.T) {
	b, n := writeBytes(t, `{"event":"rollup","organizationId":"o","week_start":null,"weekly":{}}`, Options{})
	equal(t, 0, n, "rows written")
	f, rows := readBack(t, b)
	equal(t, 0, len(rows), "rows read")
	equal(t, []string{"Contact Type", "Staff Type", "Call Center", "Week", "organizationId"}, columnNames(f), "columns")
	_, ok := f.Lookup("week_start")
	check(t, !ok, "null week_start is not written")
}

func TestGroupKeyResolution(t *testing.T) {
	resp := func(key string, row string) string {
		return `{"organizationId":"o","weekly":{` + mustJSON(key) + `:[{"Week":"2024-01-05",` + row + `"V":1}]}}`
	}
	dims := func(t *testing.T, r string, opts Options) ([]string, error) {
		var buf bytes.Buffer
		if _, err := WriteResponse(&buf, []byte(r), opts); err != nil {
			return nil, err
		}
		_, rows := readBack(t, buf.Bytes())
		if len(rows) != 1 {
			t.Fatalf("want 1 row, got %d", len(rows))
		}
		nd := len(opts.withDefaults().Dimensions)
		return cells(rows[0])[:nd], nil
	}
	tests := []struct {
		name    string
		resp    string
		opts    Options
		want    []string
		wantErr string
	}{
		{name: "plain key", resp: resp("a_b_c", ""), want: []string{"a", "b", "c"}},
		{name: "empty values", resp: resp("a__", ""), want: []string{"a", "", ""}},
		{name: "rows carry the values", resp: resp("x_y_z_w",
			`"Contact Type":"x_y","Staff Type":"z","Call Center":"w",`), want: []string{"x_y", "z", "w"}},
		{name: "side channel", resp: resp("x_y_z_w", ""),
			opts: Options{GroupDimensions: map[string][]string{"x_y_z_w": {"x", "y_z", "w"}}},
			want: []string{"x", "y_z", "w"}},
		{name: "ambiguous key: surplus in last dimension", resp: resp("x_y_z_w", ""), want: []string{"x", "y", "z_w"}},
		{name: "ambiguous key rejected", resp: resp("x_y_z_w", ""), opts: Options{RejectAmbiguousKeys: true},
			wantErr: `group key "x_y_z_w" is ambiguous`},
		{name: "too few parts", resp: resp("x_y", ""), wantErr: `group key "x_y" has 2 parts`},
		{name: "other separator", resp: resp("a|b_1|c", ""), opts: Options{KeySeparator: "|"},
			want: []string{"a", "b_1", "c"}},
		{name: "one dimension", resp: resp("a_b", ""), opts: Options{Dimensions: []string{"Queue"}},
			want: []string{"a_b"}},
		{name: "row carries some dimensions", resp: resp("a_b_c", `"Staff Type":"b",`),
			wantErr: `row carries 1 of the 3 dimensions`},
		{name: "side channel of wrong length", resp: resp("a_b_c", ""),
			opts: Options{GroupDimensions: map[string][]string{"a_b_c": {"a"}}}, wantErr: "give 1 values, want 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dims(t, tc.resp, tc.opts)
			if tc.wantErr != "" {
				errContains(t, err, tc.wantErr, "WriteResponse")
				return
			}
			must(t, err, "WriteResponse")
			equal(t, tc.want, got, "dimension values")
		})
	}
}

func TestParseGroupDimensions(t *testing.T) {
	got, err := ParseGroupDimensions([]byte(`{"a_b_c":["a","b","c"],
		"x_y_z_w":{"Call Center":"w","Staff Type":"y_z","Contact Type":"x"}}`), nil)
	must(t, err, "ParseGroupDimensions")
	equal(t, map[string][]string{"a_b_c": {"a", "b", "c"}, "x_y_z_w": {"x", "y_z", "w"}}, got, "parsed")

	for in, wantErr := range map[string]string{
		`[]`:                       "group dimensions",
		`{"k":["a"]}`:              `"k": 1 values, want 3`,
		`{"k":{"Staff Type":"a"}}`: `missing "Contact Type"`,
		`{"k":3}`:                  "want a list of strings or an object of strings",
	} {
		_, err := ParseGroupDimensions([]byte(in), nil)
		errContains(t, err, wantErr, "%s", in)
	}
}

func TestWriteResponseErrors(t *testing.T) {
	tests := map[string]struct{ resp, wantErr string }{
		"not JSON":           {`{"weekly":`, "unexpected EOF"},
		"not an object":      {`[1]`, `response: want an object, got a list`},
		"trailing data":      {`{"organizationId":"o","weekly":{}} {}`, "data after the JSON object"},
		"no organizationId":  {`{"weekly":{}}`, `no "organizationId"`},
		"organizationId num": {`{"organizationId":1,"weekly":{}}`, `field "organizationId": want a string, got a number`},
		"week_start number":  {`{"organizationId":"o","week_start":5,"weekly":{}}`, `field "week_start": want a string`},
		"weekly a list":      {`{"organizationId":"o","weekly":[]}`, `field "weekly": want an object, got a list`},
		"group not a list":   {`{"organizationId":"o","weekly":{"a_b_c":{}}}`, `group "a_b_c": want a list, got an object`},
		"row not an object":  {`{"organizationId":"o","weekly":{"a_b_c":[1]}}`, `group "a_b_c" week 0: row: want an object, got a number`},
		"metric a string": {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","V":1},{"Week":"2023-08-04","V":"1"}]}}`,
			`group "a_b_c" week 1: field "V": want a number or null, got a string`},
		"metric an object":  {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","V":{}}]}}`, `field "V": want a number or null, got an object`},
		"metric a boolean":  {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","V":true}]}}`, `got a boolean`},
		"no Week":           {`{"organizationId":"o","weekly":{"a_b_c":[{"V":1}]}}`, `missing field "Week"`},
		"Week with time":    {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28 13:00:00"}]}}`, `field "Week": want a date YYYY-MM-DD, got "2023-07-28 13:00:00"`},
		"Week impossible":   {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-02-30"}]}}`, `want a date YYYY-MM-DD`},
		"dimension numeric": {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","Contact Type":1}]}}`, `field "Contact Type": want a string`},
		"metric named like a column": {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","organizationId":1}]}}`,
			`column "organizationId" appears twice`},
		"empty metric name": {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","":1}]}}`, "empty column name"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := WriteResponse(&buf, []byte(tc.resp), Options{})
			errContains(t, err, tc.wantErr, "WriteResponse")
			equal(t, 0, n, "rows")
			equal(t, 0, buf.Len(), "bytes written for an invalid response")
		})
	}
	_, err := WriteResponse(io.Discard, []byte(sampleResponse), Options{Metrics: []string{"V", "V"}})
	errContains(t, err, `metric "V" listed twice`, "duplicate metric")
	_, err = WriteResponse(io.Discard, []byte(sampleResponse), Options{Metrics: []string{"Week"}})
	errContains(t, err, `column "Week" appears twice`, "metric named Week")
}

func TestWriteResponseInvalidUTF8(t *testing.T) {
	// encoding/json replaces invalid UTF-8 with U+FFFD, so the file's strings are always valid UTF-8.
	b, _ := writeBytes(t, "{\"organizationId\":\"o\xff\",\"weekly\":{\"a_b\xfe_c\":[{\"Week\":\"2023-07-28\"}]}}", Options{})
	_, rows := readBack(t, b)
	equal(t, []string{"a", "b\uFFFD", "c", "d19566", "o\uFFFD"}, cells(rows[0]), "row")
}

func TestEpochDays(t *testing.T) {
	for in, want := range map[string]int32{
		"1970-01-01": 0, "2023-07-28": 19566, "1969-12-31": -1, "2000-02-29": 11016, "0001-01-01": -719162,
		"9999-12-31": 2932896,
	} {
		got, err := epochDays(in)
		must(t, err, "%s", in)
		equal(t, want, got, "%s", in)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// seedSizedResponse builds a response like the seed's: groups x weeks rows of eight metrics.
func seedSizedResponse(groups, weeks int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"event":"rollup","organizationId":"5a8acad4-2e10-44c3-856e-3477fae1fba8","week_start":"friday","weekly":{`)
	for g := 0; g < groups; g++ {
		if g > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"Medical_Medical - Lang%d_Default Center":[`, g)
		for w := 0; w < weeks; w++ {
			if w > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"Week":"%s","Volume":%d.0,"Abandons":363.0,"Top Line Agents (FTE)":2747.4994444444,`+
				`"Base AHT":372.59467512129856,"Handled Threshold":18177.0,"Service Level (X Seconds)":0.85099,`+
				`"Acceptable Wait Time":30.0,"Total Queue Time":null}`, dateOf(19566+7*w), 20000+w)
		}
		sb.WriteByte(']')
	}
	sb.WriteString(`}}`)
	return []byte(sb.String())
}

func dateOf(days int) string {
	y, m, d := civil(days)
	return fmt.Sprintf("%04d-%02d-%02d", y, m, d)
}

// civil is Howard Hinnant's days-to-civil, independent of the time package used by epochDays.
func civil(z int) (int, int, int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func TestSeedSizedRoundTrip(t *testing.T) {
	b, n := writeBytes(t, string(seedSizedResponse(4, 58)), Options{})
	equal(t, 4*58, n, "rows written")
	_, rows := readBack(t, b)
	equal(t, 4*58, len(rows), "rows read")
	for i, row := range rows {
		w := i % 58
		equal(t, int32(19566+7*w), row[3].Int32(), "row %d week", i)
		equal(t, float64(20000+w), row[4].Double(), "row %d volume", i)
		check(t, row[11].IsNull(), "row %d total queue time is null", i)
	}
}

func BenchmarkWriteResponse(b *testing.B) {
	resp := seedSizedResponse(4, 58)
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WriteResponse(io.Discard, resp, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

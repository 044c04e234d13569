package rollup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The exact path: encoding/json decides what the request says, row by row, into the same accumulators
// as the fast path. It is the reference for the fast path and the only source of error texts, so its
// checks come in one fixed order whatever the key order of the request: UTF-8, JSON syntax, top-level
// object, event (not "rollup": skip), organizationId, week_start, the rows field, then the first bad
// row (dimensions, time field, value columns, in configured order) or the row count; finally the
// aggregate stage (overflow) when writing.
//
// A duplicate key keeps its last value, as with encoding/json's maps and Python's json: a repeated
// rows field starts the aggregation over. The rows are streamed from the request (json.Decoder), not
// copied, so a large request needs little more memory here than on the fast path.

func (a *Aggregator) rollupExact(st *state, req []byte) ([]byte, Info, error) {
	p := a.p
	info := Info{Fallback: true}
	if !utf8.Valid(req) {
		off := 0
		for off < len(req) {
			r, n := utf8.DecodeRune(req[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return nil, info, validateErr(fmt.Errorf("request is not valid UTF-8 (byte offset %d)", off))
	}
	if !json.Valid(req) { // the whole request first; Unmarshal then explains what is wrong
		var syn *json.SyntaxError
		if err := json.Unmarshal(req, new(any)); errors.As(err, &syn) {
			return nil, info, validateErr(fmt.Errorf("request is not valid JSON (byte offset %d): %w", syn.Offset, err))
		}
		return nil, info, validateErr(errors.New("request is not valid JSON"))
	}
	if k := jsonKind(req); k != "object" {
		return nil, info, validateErr(fmt.Errorf("request must be a JSON object, got %s", k))
	}

	// One pass over the top-level object; the request is valid JSON, so the decoder cannot fail.
	var (
		top              = map[string]json.RawMessage{}
		rowsSeen         bool
		rowsErr          error
		rowsKind         string
		row              map[string]any
		dims             = make([]string, len(p.dims))
		dec              = json.NewDecoder(bytes.NewReader(req))
		nextKind         = func() string { return jsonKind(bytes.TrimLeft(req[dec.InputOffset():], " \t\r\n,:")) }
		tokenErr, decErr error
	)
	dec.UseNumber()           // numbers stay text for strconv.ParseFloat, as encoding/json itself converts them
	_, tokenErr = dec.Token() // '{'
	for tokenErr == nil && decErr == nil && dec.More() {
		var t json.Token
		if t, tokenErr = dec.Token(); tokenErr != nil {
			break
		}
		key := t.(string)
		if key != p.rowsField {
			var raw json.RawMessage
			decErr = dec.Decode(&raw)
			top[key] = raw
			continue
		}
		// A rows field (again): the last one counts.
		st.reset()
		rowsSeen, rowsErr, info.Rows = true, nil, 0
		if rowsKind = nextKind(); rowsKind != "array" {
			var raw json.RawMessage
			decErr = dec.Decode(&raw)
			continue
		}
		if _, tokenErr = dec.Token(); tokenErr != nil { // '['
			break
		}
		for n := 0; dec.More(); n++ {
			if rowsErr == nil && n >= p.maxRows {
				rowsErr = fmt.Errorf("request has more than %d rows (max_rows)", p.maxRows)
			}
			if rowsErr == nil {
				if k := nextKind(); k != "object" {
					rowsErr = fmt.Errorf("row %d: expected an object, got %s", n, k)
				}
			}
			if rowsErr != nil { // consume the rest of the rows, they no longer count
				var skip json.RawMessage
				if decErr = dec.Decode(&skip); decErr != nil {
					break
				}
				continue
			}
			clear(row) // Decode adds to a non-nil map: reuse it, emptied
			if decErr = dec.Decode(&row); decErr != nil {
				break
			}
			rowsErr = a.exactRow(st, n, row, dims)
			info.Rows++
		}
		if decErr == nil {
			_, tokenErr = dec.Token() // ']'
		}
	}
	if err := errors.Join(tokenErr, decErr); err != nil {
		return nil, info, validateErr(fmt.Errorf("request: %w", err))
	}

	if raw, ok := top["event"]; ok {
		if jsonKind(raw) == "string" {
			_ = json.Unmarshal(raw, &info.Event) // a valid JSON string: cannot fail
		} else {
			info.Event = string(raw)
		}
	}
	orgRaw, hasOrg := top["organizationId"]
	orgIsString := hasOrg && jsonKind(orgRaw) == "string"
	if orgIsString {
		_ = json.Unmarshal(orgRaw, &info.OrganizationID)
	}
	if info.Event != "rollup" {
		info.Skipped, info.Rows = true, 0
		return nil, info, nil
	}
	if !orgIsString {
		if !hasOrg {
			return nil, info, validateErr(errors.New(`field "organizationId": missing (expected a string)`))
		}
		return nil, info, validateErr(fmt.Errorf(`field "organizationId": expected a string, got %s`, jsonKind(orgRaw)))
	}

	start := p.defaultStart
	if raw, ok := top["week_start"]; ok && jsonKind(raw) != "null" {
		var ws string
		if jsonKind(raw) != "string" {
			return nil, info, validateErr(fmt.Errorf(`field "week_start": expected a day name, got %s; valid values: %s`,
				jsonKind(raw), validWeekStarts))
		}
		_ = json.Unmarshal(raw, &ws)
		var err error
		if start, err = parseWeekStart(ws); err != nil {
			return nil, info, validateErr(fmt.Errorf(`field "week_start": %w`, err))
		}
	}
	info.WeekStart = weekdayNames[start]

	switch {
	case !rowsSeen:
		return nil, info, validateErr(fmt.Errorf("field %q: missing (expected a list of rows)", p.rowsField))
	case rowsKind != "array":
		return nil, info, validateErr(fmt.Errorf("field %q: expected a list of rows, got %s", p.rowsField, rowsKind))
	case rowsErr != nil:
		return nil, info, validateErr(rowsErr)
	}
	resp, err := a.respond(st, info.OrganizationID, start, &info)
	return resp, info, err
}

// exactRow validates one decoded row and folds it into its (group, day) cell.
func (a *Aggregator) exactRow(st *state, n int, row map[string]any, dims []string) error {
	p := a.p
	for i, d := range p.dims {
		v, ok := row[d]
		if !ok {
			return fmt.Errorf("row %d field %q: missing (expected a string)", n, d)
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("row %d field %q: expected a string, got %s", n, d, kindOf(v))
		}
		dims[i] = s
	}
	tv, ok := row[p.timeField]
	if !ok {
		return fmt.Errorf("row %d field %q: missing (expected a timestamp string)", n, p.timeField)
	}
	ts, ok := tv.(string)
	if !ok {
		return fmt.Errorf("row %d field %q: expected a timestamp string, got %s", n, p.timeField, kindOf(tv))
	}
	day, err := parseTimestamp([]byte(ts))
	if err != nil {
		return fmt.Errorf("row %d field %q: %w", n, p.timeField, err)
	}
	for s, name := range p.slots {
		st.has[s] = false
		switch v := row[name].(type) {
		case nil: // null, or missing: a missing value column counts as null
		case json.Number:
			// strconv.ParseFloat is what encoding/json uses for a float64.
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return fmt.Errorf("row %d field %q: number %s is out of the float64 range", n, name, cutValue(string(v)))
			}
			st.vals[s], st.has[s] = f, true
		default:
			return fmt.Errorf("row %d field %q: expected a number or null, got %s", n, name, kindOf(v))
		}
	}
	g := st.group([]byte(strings.Join(dims, p.sep)))
	p.accumulate(st.cell(g, day), st.vals, st.has)
	return nil
}

// kindOf names the JSON type of a value decoded with UseNumber.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	}
	return "object"
}

// jsonKind names the type of a valid JSON value from its first byte.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

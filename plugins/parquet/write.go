// Package parquet turns weekly rollup responses (CONTRACT.md, "Response") into Parquet files: the
// `rollup_parquet` processor and WriteResponse, which commands such as `rollup demo --parquet-dir` call
// directly.
package parquet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// Column names the writer adds besides the dimensions and metrics.
const (
	WeekColumn         = "Week"
	OrganizationColumn = "organizationId"
)

// Compression codec names accepted in Options.Compression and the processor's `compression` field.
const (
	CompressionSnappy = "snappy"
	CompressionZstd   = "zstd"
	CompressionGzip   = "gzip"
	CompressionNone   = "none"
)

// DefaultDimensions returns the contract's dimension columns, in group-key order.
func DefaultDimensions() []string {
	return []string{"Contact Type", "Staff Type", "Call Center"}
}

// Options controls WriteResponse. The zero value gives the contract's defaults.
type Options struct {
	// Dimensions are the dimension column names, in the order their values are joined in the group key.
	// Empty: DefaultDimensions().
	Dimensions []string
	// Metrics fixes the metric columns and their order. Empty: every metric key of the response, in order
	// of first appearance. With a fixed list, other keys in the rows are ignored and a listed metric a row
	// lacks is null.
	Metrics []string
	// KeySeparator joins the dimension values in the group key. Empty: "_".
	KeySeparator string
	// Compression is one of snappy (default when empty), zstd, gzip, none.
	Compression string
	// GroupDimensions, when it has an entry for a group key, gives that group's dimension values (in
	// Dimensions order) and so avoids splitting the key. See ParseGroupDimensions.
	GroupDimensions map[string][]string
	// RejectAmbiguousKeys makes a group key that holds more separators than Dimensions need (so a value
	// contains the separator) an error, when neither the rows nor GroupDimensions give the values. By
	// default the surplus stays in the last dimension.
	RejectAmbiguousKeys bool
}

func (o Options) withDefaults() Options {
	if len(o.Dimensions) == 0 {
		o.Dimensions = DefaultDimensions()
	}
	if o.KeySeparator == "" {
		o.KeySeparator = "_"
	}
	if o.Compression == "" {
		o.Compression = CompressionSnappy
	}
	return o
}

func codecOf(name string) (compress.Codec, error) {
	switch name {
	case CompressionSnappy:
		return &pq.Snappy, nil
	case CompressionZstd:
		return &pq.Zstd, nil
	case CompressionGzip:
		return &pq.Gzip, nil
	case CompressionNone:
		return &pq.Uncompressed, nil
	}
	return nil, fmt.Errorf("unknown compression %q (valid: snappy, zstd, gzip, none)", name)
}

// WriteResponse writes the rollup response JSON resp to w as one Parquet file: one row per group and
// week with the dimension columns (strings), Week (DATE), one nullable DOUBLE per metric, and
// organizationId (string), in that column order. It returns the number of rows written. Nothing is
// written to w when the response is invalid.
func WriteResponse(w io.Writer, resp []byte, opts Options) (rows int, err error) {
	opts = opts.withDefaults()
	codec, err := codecOf(opts.Compression)
	if err != nil {
		return 0, err
	}
	r, err := parseResponse(resp, opts)
	if err != nil {
		return 0, err
	}
	t, err := r.table(opts)
	if err != nil {
		return 0, err
	}
	wopts := []pq.WriterOption{t.schema, pq.Compression(codec)}
	if r.weekStart != "" {
		wopts = append(wopts, pq.KeyValueMetadata("week_start", r.weekStart))
	}
	pw := pq.NewWriter(w, wopts...)
	if _, err := pw.WriteRows(t.rows); err != nil {
		return 0, fmt.Errorf("writing parquet rows: %w", err)
	}
	if err := pw.Close(); err != nil {
		return 0, fmt.Errorf("closing parquet writer: %w", err)
	}
	return len(t.rows), nil
}

// ParseGroupDimensions parses a side channel that maps each group key to its dimension values, either as
// a list in dims order ({"a_b_c": ["a", "b", "c"]}) or as an object by dimension name
// ({"a_b_c": {"Contact Type": "a", ...}}). Every entry must give every dimension.
func ParseGroupDimensions(b []byte, dims []string) (map[string][]string, error) {
	if len(dims) == 0 {
		dims = DefaultDimensions()
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("group dimensions: %w", err)
	}
	out := make(map[string][]string, len(raw))
	for key, v := range raw {
		var list []string
		if err := json.Unmarshal(v, &list); err == nil {
			if len(list) != len(dims) {
				return nil, fmt.Errorf("group dimensions for %q: %d values, want %d", key, len(list), len(dims))
			}
			out[key] = list
			continue
		}
		var byName map[string]string
		if err := json.Unmarshal(v, &byName); err != nil {
			return nil, fmt.Errorf("group dimensions for %q: want a list of strings or an object of strings", key)
		}
		list = make([]string, len(dims))
		for i, d := range dims {
			s, ok := byName[d]
			if !ok {
				return nil, fmt.Errorf("group dimensions for %q: missing %q", key, d)
			}
			list[i] = s
		}
		out[key] = list
	}
	return out, nil
}

// response is the parsed rollup response, in the order of the JSON text.
type response struct {
	orgID     string
	hasOrg    bool
	weekStart string
	groups    []group
	metrics   []string
	metricIdx map[string]int
}

type group struct {
	key  string
	rows []weekRow
}

type weekRow struct {
	days int32
	dims []string  // the row's own dimension values; nil when the row does not carry them
	vals []float64 // by metric index; shorter than the metric count when later metrics are missing
	set  []bool    // vals[i] is a number (false: null or missing)
}

type parser struct {
	dec      *json.Decoder
	opts     Options
	dimIdx   map[string]int
	fixed    bool // opts.Metrics given: metricIdx is fixed
	response response
}

func parseResponse(b []byte, opts Options) (*response, error) {
	p := &parser{
		dec:    json.NewDecoder(bytes.NewReader(b)),
		opts:   opts,
		dimIdx: make(map[string]int, len(opts.Dimensions)),
		fixed:  len(opts.Metrics) > 0,
	}
	p.dec.UseNumber()
	for i, d := range opts.Dimensions {
		p.dimIdx[d] = i
	}
	p.response.metricIdx = map[string]int{}
	for _, m := range opts.Metrics {
		if _, dup := p.response.metricIdx[m]; dup {
			return nil, fmt.Errorf("metric %q listed twice", m)
		}
		p.response.metricIdx[m] = len(p.response.metrics)
		p.response.metrics = append(p.response.metrics, m)
	}
	if err := p.top(); err != nil {
		return nil, err
	}
	if !p.response.hasOrg {
		return nil, errors.New(`response has no "organizationId"`)
	}
	return &p.response, nil
}

// token is dec.Token, where the end of the input can only come too early.
func (p *parser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}

func (p *parser) delim(want json.Delim, what string) error {
	tok, err := p.token()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%s: want %s, got %s", what, describe(want), describe(tok))
	}
	return nil
}

func (p *parser) key() (string, error) {
	tok, err := p.token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want an object key, got %s", describe(tok))
	}
	return s, nil
}

func (p *parser) skip() error {
	var raw json.RawMessage
	return p.dec.Decode(&raw)
}

func (p *parser) top() error {
	if err := p.delim('{', "response"); err != nil {
		return err
	}
	for p.dec.More() {
		k, err := p.key()
		if err != nil {
			return fmt.Errorf("response: %w", err)
		}
		switch k {
		case "organizationId":
			s, err := p.stringValue()
			if err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
			p.response.orgID, p.response.hasOrg = s, true
		case "week_start":
			tok, err := p.token()
			if err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
			switch v := tok.(type) {
			case string:
				p.response.weekStart = v
			case nil:
			default:
				return fmt.Errorf("field %q: want a string, got %s", k, describe(tok))
			}
		case "weekly":
			if err := p.weekly(); err != nil {
				return err
			}
		default:
			if err := p.skip(); err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
		}
	}
	if err := p.delim('}', "response"); err != nil {
		return err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return errors.New("response: data after the JSON object")
	}
	return nil
}

func (p *parser) stringValue() (string, error) {
	tok, err := p.token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %s", describe(tok))
	}
	return s, nil
}

func (p *parser) weekly() error {
	if err := p.delim('{', `field "weekly"`); err != nil {
		return err
	}
	for p.dec.More() {
		k, err := p.key()
		if err != nil {
			return fmt.Errorf(`field "weekly": %w`, err)
		}
		g := group{key: k}
		if err := p.delim('[', fmt.Sprintf("group %q", k)); err != nil {
			return err
		}
		for i := 0; p.dec.More(); i++ {
			row, err := p.row()
			if err != nil {
				return fmt.Errorf("group %q week %d: %w", k, i, err)
			}
			g.rows = append(g.rows, row)
		}
		if err := p.delim(']', fmt.Sprintf("group %q", k)); err != nil {
			return err
		}
		p.response.groups = append(p.response.groups, g)
	}
	return p.delim('}', `field "weekly"`)
}

func (p *parser) row() (weekRow, error) {
	var r weekRow
	hasWeek, ndims := false, 0
	if err := p.delim('{', "row"); err != nil {
		return r, err
	}
	for p.dec.More() {
		name, err := p.key()
		if err != nil {
			return r, err
		}
		if name == WeekColumn {
			s, err := p.stringValue()
			if err != nil {
				return r, fmt.Errorf("field %q: %w", name, err)
			}
			if r.days, err = epochDays(s); err != nil {
				return r, fmt.Errorf("field %q: %w", name, err)
			}
			hasWeek = true
			continue
		}
		if d, ok := p.dimIdx[name]; ok {
			s, err := p.stringValue()
			if err != nil {
				return r, fmt.Errorf("field %q: %w", name, err)
			}
			if r.dims == nil {
				r.dims = make([]string, len(p.opts.Dimensions))
			}
			r.dims[d] = s
			ndims++
			continue
		}
		idx, ok := p.response.metricIdx[name]
		if !ok {
			if p.fixed {
				if err := p.skip(); err != nil {
					return r, fmt.Errorf("field %q: %w", name, err)
				}
				continue
			}
			idx = len(p.response.metrics)
			p.response.metricIdx[name] = idx
			p.response.metrics = append(p.response.metrics, name)
		}
		tok, err := p.token()
		if err != nil {
			return r, fmt.Errorf("field %q: %w", name, err)
		}
		for len(r.vals) <= idx {
			r.vals = append(r.vals, 0)
			r.set = append(r.set, false)
		}
		switch v := tok.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return r, fmt.Errorf("field %q: %w", name, err)
			}
			r.vals[idx], r.set[idx] = f, true
		case nil:
		default:
			return r, fmt.Errorf("field %q: want a number or null, got %s", name, describe(tok))
		}
	}
	if err := p.delim('}', "row"); err != nil {
		return r, err
	}
	if !hasWeek {
		return r, fmt.Errorf("missing field %q", WeekColumn)
	}
	if r.dims != nil && ndims != len(p.opts.Dimensions) {
		// A row that names some dimensions but not all is a schema mismatch, not a key to guess at.
		return r, fmt.Errorf("row carries %d of the %d dimensions %q", ndims, len(p.opts.Dimensions), p.opts.Dimensions)
	}
	return r, nil
}

// epochDays converts "YYYY-MM-DD" to days since 1970-01-01, the Parquet DATE representation. We store
// the int32 ourselves: parquet-go v0.32.0 writes wrong values for time.Time fields tagged date.
func epochDays(s string) (int32, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("want a date YYYY-MM-DD, got %q", s)
	}
	// Midnight UTC is a whole number of days from the epoch, so the division is exact (also before 1970).
	return int32(t.Unix() / 86400), nil
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		if v == '[' {
			return "a list"
		}
		return fmt.Sprintf("%q", string(v))
	}
	return fmt.Sprintf("%T", tok)
}

// dimsOf resolves a group's dimension values when its rows do not carry them: the side channel first,
// then the key split on the separator.
func dimsOf(key string, opts Options) ([]string, error) {
	n := len(opts.Dimensions)
	if v, ok := opts.GroupDimensions[key]; ok {
		if len(v) != n {
			return nil, fmt.Errorf("group %q: group dimensions give %d values, want %d", key, len(v), n)
		}
		return v, nil
	}
	parts := strings.Count(key, opts.KeySeparator) + 1
	if n == 1 {
		return []string{key}, nil
	}
	if parts < n {
		return nil, fmt.Errorf("group key %q has %d parts separated by %q, want %d (%q)", key, parts, opts.KeySeparator, n, opts.Dimensions)
	}
	if parts > n && opts.RejectAmbiguousKeys {
		return nil, fmt.Errorf("group key %q is ambiguous: %d parts separated by %q for %d dimensions %q", key, parts, opts.KeySeparator, n, opts.Dimensions)
	}
	// With more parts than dimensions a value holds the separator; which one cannot be told from the key
	// alone, so the surplus stays in the last dimension (SplitN).
	return strings.SplitN(key, opts.KeySeparator, n), nil
}

package rollup

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Rule names accepted in Metric.Rule.
const (
	RuleSum          = "sum"           // Σx over non-null values; 0 when all are null
	RuleMean         = "mean"          // Σx/n over non-null values; null when all are null
	RuleMin          = "min"           // smallest non-null value; null when all are null
	RuleMax          = "max"           // largest non-null value; null when all are null
	RuleCount        = "count"         // number of non-null values (an integer)
	RuleWeightedMean = "weighted_mean" // Σ(x·w)/Σw over rows where x and w are both non-null; null when Σw == 0
)

// Rules lists the rule names in documentation order.
var Rules = []string{RuleSum, RuleMean, RuleMin, RuleMax, RuleCount, RuleWeightedMean}

// Metric is one output column of a weekly entry: Name is the row field read and the output key, Rule
// how a week's values are reduced, By the weight column of weighted_mean.
type Metric struct {
	Name string
	Rule string
	By   string
}

// Config configures an Aggregator. DefaultConfig reproduces CONTRACT.md.
type Config struct {
	Dimensions       []string // group by these string fields, in this order
	TimeField        string   // the row timestamp field
	RowsField        string   // the request field holding the rows
	DefaultWeekStart string   // used when the request's week_start is missing or null
	Metrics          []Metric // output columns, in output order
	KeySeparator     string   // joins the dimension values into the group key
	MaxRows          int      // requests with more rows are refused (stage validate)
}

// DefaultConfig returns the contract's configuration: its three dimensions, `Week`, `weekly`, friday,
// its eight metrics with their sum and mean rules in contract order, "_" and 2,000,000 rows.
func DefaultConfig() Config {
	return Config{
		Dimensions:       []string{"Contact Type", "Staff Type", "Call Center"},
		TimeField:        "Week",
		RowsField:        "weekly",
		DefaultWeekStart: "friday",
		Metrics: []Metric{
			{Name: "Volume", Rule: RuleSum},
			{Name: "Abandons", Rule: RuleSum},
			{Name: "Top Line Agents (FTE)", Rule: RuleSum},
			{Name: "Base AHT", Rule: RuleMean},
			{Name: "Handled Threshold", Rule: RuleSum},
			{Name: "Service Level (X Seconds)", Rule: RuleMean},
			{Name: "Acceptable Wait Time", Rule: RuleMean},
			{Name: "Total Queue Time", Rule: RuleSum},
		},
		KeySeparator: "_",
		MaxRows:      2000000,
	}
}

type ruleKind uint8

const (
	kSum ruleKind = iota
	kMean
	kMin
	kMax
	kCount
	kWMean
)

// accWidth is how many float64 a rule's accumulator takes in a cell:
// sum [s c], mean [s c n], min/max [v] (NaN = none yet), count [n], weighted_mean [sxw cxw sw cw].
var accWidth = [...]int{kSum: 2, kMean: 3, kMin: 1, kMax: 1, kCount: 1, kWMean: 4}

// metricPlan is a compiled Metric.
type metricPlan struct {
	name string
	rule ruleKind
	x, w int    // value slots of the column and of the weight
	off  int    // offset of the accumulator in a cell
	key  []byte // `,"Name":` pre-encoded for the response
}

// Field kinds of a row, by field id: dimensions first, then the time field, then the value slots.
const (
	fieldIgnored = -1
)

// plan is a Config compiled for the hot loops.
type plan struct {
	dims         []string
	timeField    string
	rowsField    string
	defaultStart int
	sep          string
	maxRows      int
	metrics      []metricPlan
	slots        []string       // distinct value columns (metric names and weights)
	fields       map[string]int // field name -> id: 0..D-1 dims, D time, D+1+s value slot s
	nFields      int
	stride       int       // float64s per (group, day) cell
	cellInit     []float64 // an empty cell
}

func (p *plan) timeID() int { return len(p.dims) }

func (p *plan) slotOf(id int) int { return id - len(p.dims) - 1 }

func compile(c Config) (*plan, error) {
	var errs []error
	if len(c.Dimensions) == 0 {
		errs = append(errs, errors.New("dimensions must not be empty"))
	}
	if c.TimeField == "" {
		errs = append(errs, errors.New("time_field must not be empty"))
	}
	switch c.RowsField {
	case "":
		errs = append(errs, errors.New("rows_field must not be empty"))
	case "event", "organizationId", "week_start":
		errs = append(errs, fmt.Errorf("rows_field %q clashes with a request field", c.RowsField))
	}
	if c.MaxRows < 1 {
		errs = append(errs, fmt.Errorf("max_rows must be at least 1, got %d", c.MaxRows))
	}
	if len(c.Metrics) == 0 {
		errs = append(errs, errors.New("metrics must not be empty"))
	}
	start, err := parseWeekStart(c.DefaultWeekStart)
	if err != nil {
		errs = append(errs, fmt.Errorf("default_week_start: %w", err))
	}
	p := &plan{
		dims: c.Dimensions, timeField: c.TimeField, rowsField: c.RowsField, defaultStart: start,
		sep: c.KeySeparator, maxRows: c.MaxRows, fields: map[string]int{},
	}
	for i, d := range c.Dimensions {
		if _, dup := p.fields[d]; dup {
			errs = append(errs, fmt.Errorf("dimension %q is listed twice", d))
		}
		p.fields[d] = i
	}
	if _, dup := p.fields[c.TimeField]; dup {
		errs = append(errs, fmt.Errorf("time_field %q is also a dimension", c.TimeField))
	}
	p.fields[c.TimeField] = len(c.Dimensions)
	slot := func(name, role string) int {
		if id, ok := p.fields[name]; ok {
			if id <= len(c.Dimensions) {
				errs = append(errs, fmt.Errorf("%s %q is also a dimension or the time field", role, name))
				return 0
			}
			return p.slotOf(id)
		}
		p.fields[name] = len(c.Dimensions) + 1 + len(p.slots)
		p.slots = append(p.slots, name)
		return len(p.slots) - 1
	}
	names := map[string]bool{}
	for i, m := range c.Metrics {
		mp := metricPlan{name: m.Name, off: p.stride, w: -1}
		switch m.Rule {
		case RuleSum:
			mp.rule = kSum
		case RuleMean:
			mp.rule = kMean
		case RuleMin:
			mp.rule = kMin
		case RuleMax:
			mp.rule = kMax
		case RuleCount:
			mp.rule = kCount
		case RuleWeightedMean:
			mp.rule = kWMean
		default:
			errs = append(errs, fmt.Errorf("metrics[%d] %q: unknown rule %q (valid: %s)", i, m.Name,
				m.Rule, strings.Join(Rules, ", ")))
		}
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("metrics[%d]: name must not be empty", i))
		case names[m.Name]:
			errs = append(errs, fmt.Errorf("metrics[%d]: metric %q is listed twice", i, m.Name))
		case m.Name == "Week" && c.TimeField != "Week":
			errs = append(errs, fmt.Errorf("metrics[%d]: the output key \"Week\" is taken by the week", i))
		}
		names[m.Name] = true
		mp.x = slot(m.Name, "metric")
		if mp.rule == kWMean {
			if m.By == "" {
				errs = append(errs, fmt.Errorf("metrics[%d] %q: weighted_mean requires `by` (the weight column)", i, m.Name))
			} else {
				mp.w = slot(m.By, "weight")
			}
		} else if m.By != "" {
			errs = append(errs, fmt.Errorf("metrics[%d] %q: `by` applies only to weighted_mean", i, m.Name))
		}
		mp.key = appendJSONString(append([]byte(nil), ','), m.Name)
		mp.key = append(mp.key, ':')
		p.stride += accWidth[mp.rule]
		p.metrics = append(p.metrics, mp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.nFields = len(c.Dimensions) + 1 + len(p.slots)
	p.cellInit = make([]float64, p.stride)
	for _, m := range p.metrics {
		if m.rule == kMin || m.rule == kMax {
			p.cellInit[m.off] = math.NaN()
		}
	}
	return p, nil
}

// nadd is one step of Neumaier's compensated summation: (s, c) += x.
func nadd(s, c, x float64) (float64, float64) {
	t := s + x
	if math.Abs(s) >= math.Abs(x) {
		c += (s - t) + x
	} else {
		c += (x - t) + s
	}
	return t, c
}

// accumulate folds one row's values into a (group, day) cell. has[s] tells whether slot s is non-null.
func (p *plan) accumulate(cell, vals []float64, has []bool) {
	for i := range p.metrics {
		m := &p.metrics[i]
		if !has[m.x] {
			continue
		}
		x := vals[m.x]
		a := cell[m.off : m.off+accWidth[m.rule]]
		switch m.rule {
		case kSum:
			a[0], a[1] = nadd(a[0], a[1], x)
		case kMean:
			a[0], a[1] = nadd(a[0], a[1], x)
			a[2]++
		case kMin:
			if x < a[0] || a[0] != a[0] {
				a[0] = x
			}
		case kMax:
			if x > a[0] || a[0] != a[0] {
				a[0] = x
			}
		case kCount:
			a[0]++
		case kWMean:
			if has[m.w] {
				w := vals[m.w]
				a[0], a[1] = nadd(a[0], a[1], x*w)
				a[2], a[3] = nadd(a[2], a[3], w)
			}
		}
	}
}

// merge folds the cell src into dst (same layout): days into their week. Every rule is mergeable.
func (p *plan) merge(dst, src []float64) {
	for i := range p.metrics {
		m := &p.metrics[i]
		d, s := dst[m.off:m.off+accWidth[m.rule]], src[m.off:m.off+accWidth[m.rule]]
		switch m.rule {
		case kSum:
			d[0], d[1] = nadd(d[0], d[1], s[0])
			d[1] += s[1]
		case kMean:
			d[0], d[1] = nadd(d[0], d[1], s[0])
			d[1] += s[1]
			d[2] += s[2]
		case kMin:
			if s[0] < d[0] || d[0] != d[0] {
				d[0] = s[0]
			}
		case kMax:
			if s[0] > d[0] || d[0] != d[0] {
				d[0] = s[0]
			}
		case kCount:
			d[0] += s[0]
		case kWMean:
			d[0], d[1] = nadd(d[0], d[1], s[0])
			d[1] += s[1]
			d[2], d[3] = nadd(d[2], d[3], s[2])
			d[3] += s[3]
		}
	}
}

// result is a metric's final value in a week cell; null reports JSON null, integer a count.
func (m *metricPlan) result(a []float64) (v float64, null, integer bool) {
	a = a[m.off : m.off+accWidth[m.rule]]
	switch m.rule {
	case kSum:
		return a[0] + a[1], false, false
	case kMean:
		if a[2] == 0 {
			return 0, true, false
		}
		return (a[0] + a[1]) / a[2], false, false
	case kMin, kMax:
		return a[0], a[0] != a[0], false
	case kCount:
		return a[0], false, true
	default: // kWMean
		w := a[2] + a[3]
		if w == 0 {
			return 0, true, false
		}
		return (a[0] + a[1]) / w, false, false
	}
}

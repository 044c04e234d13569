// Package rollup implements the weekly_rollup processor: a scenario request (JSON bytes) in, its weekly
// rollup response (compact JSON bytes) out, as CONTRACT.md specifies.
//
// The work is done by Aggregator, usable without Benthos (benchmarks, the demo). A request takes one of
// two paths that must give byte-identical answers:
//
//   - scan.go, the fast path: one pass over the bytes straight into (group, day) accumulators, with no
//     map lookup and no allocation per row in the common case.
//   - fallback.go, the exact path: encoding/json, row by row. The fast path hands the request over as
//     soon as it meets anything it does not handle (duplicate keys, any error, ...), so every
//     validation error comes from the exact path and answers never depend on the path.
//
// Both feed the same accumulators (rules.go) and the same writer (response.go). Rows are kept per
// (group, day) and folded into weeks only at the end: every rule is mergeable, so the week start may
// come after the rows in the request.
package rollup

import (
	"errors"
	"sync"
)

// Error stages, as the pipeline conventions name them (metadata `error_stage`).
const (
	StageValidate  = "validate"  // the request is malformed or breaks the contract
	StageAggregate = "aggregate" // the request is valid but its result is not (float64 overflow)
)

// Error is a failed rollup with the stage at which it failed.
type Error struct {
	Stage string
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// StageOf returns the stage of an error from Rollup, or "" for nil or a foreign error.
func StageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Stage
	}
	return ""
}

func validateErr(err error) error  { return &Error{Stage: StageValidate, Err: err} }
func aggregateErr(err error) error { return &Error{Stage: StageAggregate, Err: err} }

// Info describes a rollup. On an error, the fields known by then are set.
type Info struct {
	Event          string // the request's event: its string value, or its raw JSON if not a string
	Skipped        bool   // event is not "rollup": there is no response and nothing is wrong
	OrganizationID string
	WeekStart      string // lower-case full day name used
	Rows           int    // rows read
	Groups         int    // groups in the response
	Weeks          int    // weekly entries in the response (one per group and week)
	Fallback       bool   // the exact encoding/json path produced the answer
}

// Aggregator rolls requests up. It is safe for concurrent use: per-request scratch state comes from a
// sync.Pool, the rest is read-only after NewAggregator.
type Aggregator struct {
	p    *plan
	pool sync.Pool
}

// NewAggregator checks a Config and returns an Aggregator for it.
func NewAggregator(c Config) (*Aggregator, error) {
	p, err := compile(c)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{p: p}
	a.pool.New = func() any { return newState(p) }
	return a, nil
}

// Rollup turns a request into its response. With Info.Skipped (event is not "rollup") resp and err are
// nil. Errors are *Error with their stage.
func (a *Aggregator) Rollup(req []byte) (resp []byte, info Info, err error) {
	st := a.get()
	defer a.put(st)
	if resp, info, err := a.rollupFast(st, req); err != errHandOver {
		return resp, info, err
	}
	st.reset()
	return a.rollupExact(st, req)
}

// RollupExact is Rollup on the exact encoding/json path only: the reference the fast path is tested
// against, and a measure of what the fast path saves.
func (a *Aggregator) RollupExact(req []byte) (resp []byte, info Info, err error) {
	st := a.get()
	defer a.put(st)
	return a.rollupExact(st, req)
}

// rollupFastOnly runs the fast path alone; err is errHandOver where Rollup would use the exact path.
func (a *Aggregator) rollupFastOnly(req []byte) (resp []byte, info Info, err error) {
	st := a.get()
	defer a.put(st)
	return a.rollupFast(st, req)
}

func (a *Aggregator) get() *state {
	st := a.pool.Get().(*state)
	st.reset()
	return st
}

// maxPooledCells bounds the scratch kept between requests: a huge request's buffers go to the GC
// instead of pinning memory in the pool.
const maxPooledCells = 1 << 16

func (a *Aggregator) put(st *state) {
	if len(st.cellDay) > maxPooledCells || len(st.groupKeys) > maxPooledCells {
		return
	}
	a.pool.Put(st)
}

// state is one request's scratch: the group dictionary, the (group, day) cells and the fast path's
// per-row caches. It never refers to the request's bytes after a call returns.
type state struct {
	p *plan

	groupIdx  map[string]int32 // group key -> group id
	groupKeys []string

	cellIdx  map[uint64]int32 // group<<32 | day -> cell id
	cellGrp  []int32
	cellDay  []int32
	acc      []float64 // cell i is acc[i*stride : (i+1)*stride]
	lastKey  uint64    // the last (group, day) looked up, and its cell
	lastCell int32

	vals []float64 // one row's values by slot
	has  []bool    // whether vals[s] is non-null

	// Fast path caches (scan.go).
	keyBuf    []byte
	prevDim   [][]byte // previous row's dimension values as written (escapes undecoded)
	dimVal    [][]byte // and decoded
	keyDec    []byte   // decoded keys, with escapes
	eventDec  []byte
	orgDec    []byte
	scratch   []byte
	curGroup  int32 // group of prevDim, or -1
	seen      []int // field id -> row number (1-based) that last set it: duplicate keys
	pred      []predKey
	rowPrefix []byte // the previous row up to its date, when only dimensions precede the time field
	prefixIDs []int  // field ids of the keys in rowPrefix, in order
	prefixDay int32
	prefixOK  bool
	dateKey   [10]byte // last date prefix parsed, and its day number
	dateDay   int32
	dateValid bool

	week  []float64 // response.go scratch: one week's cell
	order []int32   // response.go scratch: cells by group and day
	out   []byte
}

// predKey predicts the key at one position of a row from the previous row (rows share key order).
type predKey struct {
	raw []byte
	id  int
}

func newState(p *plan) *state {
	st := &state{
		p:        p,
		groupIdx: map[string]int32{},
		cellIdx:  map[uint64]int32{},
		vals:     make([]float64, len(p.slots)),
		has:      make([]bool, len(p.slots)),
		prevDim:  make([][]byte, len(p.dims)),
		dimVal:   make([][]byte, len(p.dims)),
		seen:     make([]int, p.nFields),
		week:     make([]float64, p.stride),
	}
	st.reset()
	return st
}

func (st *state) reset() {
	clear(st.groupIdx)
	st.groupKeys = st.groupKeys[:0]
	clear(st.cellIdx)
	st.cellGrp, st.cellDay, st.acc = st.cellGrp[:0], st.cellDay[:0], st.acc[:0]
	st.lastCell = -1
	st.curGroup = -1
	for i := range st.prevDim {
		st.prevDim[i], st.dimVal[i] = st.prevDim[i][:0], st.dimVal[i][:0]
	}
	clear(st.seen)
	st.dateValid, st.prefixOK = false, false
	st.out = st.out[:0]
}

// group returns the id of a group key, adding it when new. The lookup with string(key) does not
// allocate; only a new group's key is copied.
func (st *state) group(key []byte) int32 {
	if g, ok := st.groupIdx[string(key)]; ok {
		return g
	}
	g := int32(len(st.groupKeys))
	k := string(key)
	st.groupIdx[k] = g
	st.groupKeys = append(st.groupKeys, k)
	return g
}

// cell returns the accumulator of (group, day), adding an empty one when new.
func (st *state) cell(g, day int32) []float64 {
	key := uint64(uint32(g))<<32 | uint64(uint32(day))
	c := st.lastCell
	if key != st.lastKey || c < 0 {
		var ok bool
		if c, ok = st.cellIdx[key]; !ok {
			c = int32(len(st.cellDay))
			st.cellIdx[key] = c
			st.cellGrp = append(st.cellGrp, g)
			st.cellDay = append(st.cellDay, day)
			st.acc = append(st.acc, st.p.cellInit...)
		}
		st.lastKey, st.lastCell = key, c
	}
	s := st.p.stride
	return st.acc[int(c)*s : int(c)*s+s]
}

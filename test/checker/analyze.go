// Package checker verifies what a rollup pipeline did with its input, the way Kafka's system tests
// and Jepsen do: after (or during) a run it reads the input, response and dead-letter topics, pairs
// every response and dead letter with the input record named by its source_topic,
// source_partition and source_offset headers, and counts what was lost, duplicated and misrouted.
// It also checks that the consumer group's committed offset never passed an input that had no
// outcome yet, from commit samples taken during the run, and measures recovery (fault cleared to
// lag 0).
//
// Analyze is the pure part (records in, Report out) and has unit tests with synthetic records;
// Checker (kafka.go) reads the topics and samples the group with franz-go and kadm.
package checker

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header names the pipelines set on outcomes (see CONTRACT.md, "Dead letters"), and the header a
// test sets on an input to say what it expects.
const (
	HeaderSourceTopic     = "source_topic"
	HeaderSourcePartition = "source_partition"
	HeaderSourceOffset    = "source_offset"
	HeaderError           = "error"
	HeaderErrorStage      = "error_stage"

	// HeaderExpect, set by the producer of an input, tells the checker which outcome is right:
	// ExpectGood (also the meaning of no header), ExpectBad or ExpectDrop.
	HeaderExpect = "x-expect"
)

// Expect is what an input should lead to.
type Expect string

const (
	// ExpectGood: a valid request; its outcome must be a response (or, for the worker pipeline,
	// a Processed outcome). A dead letter for it is misrouted.
	ExpectGood Expect = "good"
	// ExpectBad: a request that must be dead-lettered (bad bytes, bad fields, or a response the
	// broker refuses). A response for it is misrouted.
	ExpectBad Expect = "bad"
	// ExpectDrop: a record the pipeline acknowledges without any outcome (an event other than
	// "rollup"). It is never counted lost, and any outcome for it is misrouted.
	ExpectDrop Expect = "drop"
)

// ParseExpect reads an x-expect header value; empty means ExpectGood.
func ParseExpect(v string) (Expect, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "good", "response", "valid":
		return ExpectGood, nil
	case "bad", "dlq", "dead-letter", "invalid":
		return ExpectBad, nil
	case "drop", "none":
		return ExpectDrop, nil
	}
	return "", fmt.Errorf("%s header %q: want good, bad or drop", HeaderExpect, v)
}

// RecordID names one record: topic, partition and offset.
type RecordID struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (r RecordID) String() string { return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset) }

// Input is one record of the input topic.
type Input struct {
	ID     RecordID
	Expect Expect
	// Timestamp is when it was produced (zero: unknown; then it has no wait).
	Timestamp time.Time
}

// Kind is the kind of an outcome.
type Kind int

const (
	// Response: a record on the response topic.
	Response Kind = iota
	// DeadLetter: a record on the DLQ topic.
	DeadLetter
	// Processed: an outcome the caller observed some other way, e.g. the worker pipeline's
	// "Finished processing" log line (that pipeline writes no response).
	Processed
)

func (k Kind) String() string {
	switch k {
	case Response:
		return "response"
	case DeadLetter:
		return "dead letter"
	case Processed:
		return "processed"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Outcome is one response, dead letter or processed record.
type Outcome struct {
	Kind Kind
	// Source is the input it answers, from its source_* headers. SourceErr is set instead
	// when the headers are missing or malformed.
	Source    RecordID
	SourceErr error
	// At is where the outcome itself is (zero for Processed outcomes).
	At RecordID
	// Timestamp is when it was written (the record's timestamp, set by the producing client
	// before the broker acknowledged it) or observed. Zero: unknown, and then the commit check
	// can only ask whether it exists, not whether it existed in time.
	Timestamp time.Time
	// Error and ErrorStage are the dead letter's error and error_stage headers.
	Error      string
	ErrorStage string
}

// SourceFromHeaders reads source_topic, source_partition and source_offset from a header lookup.
func SourceFromHeaders(get func(key string) (string, bool)) (RecordID, error) {
	var id RecordID
	var missing []string
	topic, ok := get(HeaderSourceTopic)
	if !ok || topic == "" {
		missing = append(missing, HeaderSourceTopic)
	}
	ps, okP := get(HeaderSourcePartition)
	if !okP {
		missing = append(missing, HeaderSourcePartition)
	}
	os, okO := get(HeaderSourceOffset)
	if !okO {
		missing = append(missing, HeaderSourceOffset)
	}
	if len(missing) > 0 {
		return id, fmt.Errorf("missing header(s) %s", strings.Join(missing, ", "))
	}
	p, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || p < 0 {
		return id, fmt.Errorf("header %s %q is not a partition number", HeaderSourcePartition, ps)
	}
	o, err := strconv.ParseInt(os, 10, 64)
	if err != nil || o < 0 {
		return id, fmt.Errorf("header %s %q is not an offset", HeaderSourceOffset, os)
	}
	return RecordID{Topic: topic, Partition: int32(p), Offset: o}, nil
}

// CommitSample is the consumer group's committed offset of one input partition, as read at At
// (the time the answer arrived: the commit happened before it). Offset is the next offset the
// group will read, so every input below it must already have an outcome.
type CommitSample struct {
	At        time.Time
	Topic     string
	Partition int32
	Offset    int64
}

// sampleLimit caps the example IDs a Report lists per problem.
const sampleLimit = 10

// Report is what Analyze found.
type Report struct {
	Inputs      int
	ExpectBad   int // inputs marked x-expect: bad
	ExpectDrop  int // inputs marked x-expect: drop
	Responses   int // outcomes that name a known input
	DeadLetters int
	Processed   int

	// Lost: inputs (not ExpectDrop) with no outcome at all.
	Lost int
	// Duplicated: outcomes minus inputs with at least one outcome. MaxCopies: the most outcomes
	// of one input (1 in a clean run, 0 when there are none).
	Duplicated int
	MaxCopies  int
	// Misrouted: inputs whose outcomes include a wrong kind (good ones dead-lettered, bad ones
	// answered, dropped ones given any outcome).
	Misrouted int
	// Orphans: outcomes whose source headers are missing or name no input that was read.
	Orphans int
	// NoReason: dead letters without an error or error_stage header.
	NoReason int
	// CommitViolations: commit samples that had passed an input whose first outcome was not yet
	// written (or never was).
	CommitViolations int
	// CommitRegressions: samples where a partition's committed offset went backwards (the
	// group will re-read records: a source of duplicates, not of loss). Informational.
	CommitRegressions int
	// CommitSamples: how many samples were checked.
	CommitSamples int

	// MaxWait is the longest an input waited for its first outcome (outcome timestamp minus input
	// timestamp), MaxWaitID that input: under a steady flow, the longest pause of a partition.
	MaxWait   time.Duration
	MaxWaitID RecordID
	// FirstAnswer and LastAnswer bound the inputs' first outcomes in time (zero without any):
	// the span over which a backlog was worked off.
	FirstAnswer, LastAnswer time.Time

	// DeadLettersByStage counts dead letters by error_stage.
	DeadLettersByStage map[string]int

	// Examples, at most sampleLimit each, sorted.
	LostIDs            []RecordID
	MisroutedIDs       []string
	OrphanIDs          []string
	NoReasonIDs        []RecordID
	CommitViolationIDs []string
	MaxCopiesID        RecordID
}

// OK reports whether the run kept the guarantees: nothing lost, misrouted, orphaned, without a
// reason, or committed past an input before its outcome.
func (r Report) OK() bool { return r.Err() == nil }

// Err explains every broken guarantee, or returns nil.
func (r Report) Err() error {
	var errs []error
	if r.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d input(s) lost (no response, no dead letter), e.g. %v", r.Lost, r.LostIDs))
	}
	if r.Misrouted > 0 {
		errs = append(errs, fmt.Errorf("%d input(s) misrouted, e.g. %v", r.Misrouted, r.MisroutedIDs))
	}
	if r.Orphans > 0 {
		errs = append(errs, fmt.Errorf("%d outcome(s) name no known input, e.g. %v", r.Orphans, r.OrphanIDs))
	}
	if r.NoReason > 0 {
		errs = append(errs, fmt.Errorf("%d dead letter(s) without an error or error_stage header, e.g. %v", r.NoReason, r.NoReasonIDs))
	}
	if r.CommitViolations > 0 {
		errs = append(errs, fmt.Errorf("%d commit sample(s) passed an input without an outcome, e.g. %v", r.CommitViolations, r.CommitViolationIDs))
	}
	return errors.Join(errs...)
}

// String is a one-paragraph summary for test logs.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "inputs=%d (bad %d, drop %d) responses=%d dead_letters=%d processed=%d lost=%d duplicated=%d max_copies=%d misrouted=%d orphans=%d no_reason=%d commit_samples=%d commit_violations=%d commit_regressions=%d",
		r.Inputs, r.ExpectBad, r.ExpectDrop, r.Responses, r.DeadLetters, r.Processed, r.Lost, r.Duplicated,
		r.MaxCopies, r.Misrouted, r.Orphans, r.NoReason, r.CommitSamples, r.CommitViolations, r.CommitRegressions)
	if len(r.DeadLettersByStage) > 0 {
		stages := make([]string, 0, len(r.DeadLettersByStage))
		for s, n := range r.DeadLettersByStage {
			stages = append(stages, fmt.Sprintf("%s:%d", s, n))
		}
		slices.Sort(stages)
		fmt.Fprintf(&b, " dlq_stages=%s", strings.Join(stages, ","))
	}
	if r.MaxCopies > 1 {
		fmt.Fprintf(&b, " (most copies: %v)", r.MaxCopiesID)
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(&b, "\nPROBLEMS:\n%v", err)
	}
	return b.String()
}

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// Analyze pairs outcomes with inputs and checks the commit samples against them.
//
// The commit check: a sample (partition P, committed offset C, read at time T) says the group had
// committed every offset of P below C by T. The pipeline commits an offset only once the record's
// outcome is acknowledged by the broker, so every input of P below C must have an outcome written
// no later than T. An input with no outcome at all, or whose first outcome is timestamped after T,
// is a violation. ExpectDrop inputs have no outcome by design and are skipped. Outcomes with a zero
// Timestamp count as written in time.
func Analyze(inputs []Input, outcomes []Outcome, samples []CommitSample) Report {
	r := Report{Inputs: len(inputs), DeadLettersByStage: map[string]int{}}

	type state struct {
		in      Input
		copies  int
		kinds   [3]int
		first   time.Time // earliest outcome timestamp
		hasTime bool      // some outcome had a timestamp (else first is meaningless)
		untimed bool      // some outcome had no timestamp
	}
	byID := make(map[RecordID]*state, len(inputs))
	for _, in := range inputs {
		if _, dup := byID[in.ID]; dup {
			continue
		}
		byID[in.ID] = &state{in: in}
		switch in.Expect {
		case ExpectBad:
			r.ExpectBad++
		case ExpectDrop:
			r.ExpectDrop++
		}
	}

	for _, o := range outcomes {
		if o.Kind == DeadLetter && (o.Error == "" || o.ErrorStage == "") {
			r.NoReason++
			r.NoReasonIDs = append(r.NoReasonIDs, o.At)
		}
		if o.SourceErr != nil {
			r.Orphans++
			r.OrphanIDs = append(r.OrphanIDs, fmt.Sprintf("%s %v: %v", o.Kind, o.At, o.SourceErr))
			continue
		}
		st, ok := byID[o.Source]
		if !ok {
			r.Orphans++
			r.OrphanIDs = append(r.OrphanIDs, fmt.Sprintf("%s %v names unknown input %v", o.Kind, o.At, o.Source))
			continue
		}
		switch o.Kind {
		case Response:
			r.Responses++
		case DeadLetter:
			r.DeadLetters++
			stage := o.ErrorStage
			if stage == "" {
				stage = "(none)"
			}
			r.DeadLettersByStage[stage]++
		case Processed:
			r.Processed++
		}
		st.copies++
		if int(o.Kind) >= 0 && int(o.Kind) < len(st.kinds) {
			st.kinds[o.Kind]++
		}
		if o.Timestamp.IsZero() {
			st.untimed = true
		} else if !st.hasTime || o.Timestamp.Before(st.first) {
			st.first, st.hasTime = o.Timestamp, true
		}
	}

	answered := 0
	total := 0
	for _, st := range byID {
		total += st.copies
		if st.copies > 0 {
			answered++
		}
		if st.copies > r.MaxCopies || (st.copies == r.MaxCopies && st.copies > 0 && lessID(st.in.ID, r.MaxCopiesID)) {
			r.MaxCopies, r.MaxCopiesID = st.copies, st.in.ID
		}
		switch st.in.Expect {
		case ExpectDrop:
			if st.copies > 0 {
				r.Misrouted++
				r.MisroutedIDs = append(r.MisroutedIDs, fmt.Sprintf("%v (expected no outcome, got %d)", st.in.ID, st.copies))
			}
			continue
		case ExpectBad:
			if st.kinds[Response]+st.kinds[Processed] > 0 {
				r.Misrouted++
				r.MisroutedIDs = append(r.MisroutedIDs, fmt.Sprintf("%v (bad input answered)", st.in.ID))
			}
		default:
			if st.kinds[DeadLetter] > 0 {
				r.Misrouted++
				r.MisroutedIDs = append(r.MisroutedIDs, fmt.Sprintf("%v (good input dead-lettered)", st.in.ID))
			}
		}
		if st.copies == 0 {
			r.Lost++
			r.LostIDs = append(r.LostIDs, st.in.ID)
		}
		if st.hasTime && (r.FirstAnswer.IsZero() || st.first.Before(r.FirstAnswer)) {
			r.FirstAnswer = st.first
		}
		if st.hasTime && st.first.After(r.LastAnswer) {
			r.LastAnswer = st.first
		}
		if st.hasTime && !st.in.Timestamp.IsZero() {
			if w := st.first.Sub(st.in.Timestamp); w > r.MaxWait || (w == r.MaxWait && lessID(st.in.ID, r.MaxWaitID)) {
				r.MaxWait, r.MaxWaitID = w, st.in.ID
			}
		}
	}
	r.Duplicated = total - answered

	// Commit check, per partition: inputs sorted by offset, and for each prefix the latest
	// "first outcome" time in it (never: +inf). A sample with committed offset C at T violates
	// when that prefix maximum over the inputs below C is after T.
	parts := map[tp][]entry{}
	for _, st := range byID {
		e := entry{off: st.in.ID.Offset}
		switch {
		case st.in.Expect == ExpectDrop:
			e.ignored = true
		case st.copies == 0:
			e.never = true
		case st.untimed || !st.hasTime:
			// At least one outcome without a time: cannot prove it was late.
		default:
			e.due = st.first
		}
		k := tp{st.in.ID.Topic, st.in.ID.Partition}
		parts[k] = append(parts[k], e)
	}
	type prefix struct {
		offs  []int64
		worst []entry // worst[i]: the latest-due entry among 0..i
	}
	pre := map[tp]prefix{}
	for k, es := range parts {
		slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.off, b.off) })
		p := prefix{offs: make([]int64, len(es)), worst: make([]entry, len(es))}
		var worst entry
		have := false
		for i, e := range es {
			p.offs[i] = e.off
			if !e.ignored && (!have || later(e, worst)) {
				worst, have = e, true
			}
			if !have {
				p.worst[i] = entry{off: -1}
			} else {
				p.worst[i] = worst
			}
		}
		pre[k] = p
	}

	sorted := slices.Clone(samples)
	slices.SortStableFunc(sorted, func(a, b CommitSample) int { return a.At.Compare(b.At) })
	last := map[tp]int64{}
	for _, s := range sorted {
		k := tp{s.Topic, s.Partition}
		if s.Offset < 0 {
			continue // nothing committed yet
		}
		r.CommitSamples++
		if prev, ok := last[k]; ok && s.Offset < prev {
			r.CommitRegressions++
		}
		last[k] = s.Offset
		p, ok := pre[k]
		if !ok {
			continue
		}
		// Inputs below the committed offset: p.offs[:n].
		n, _ := slices.BinarySearch(p.offs, s.Offset)
		if n == 0 {
			continue
		}
		w := p.worst[n-1]
		if w.off < 0 {
			continue
		}
		if w.never || (!w.due.IsZero() && w.due.After(s.At)) {
			r.CommitViolations++
			why := "it has no outcome"
			if !w.never {
				why = fmt.Sprintf("its first outcome was written %v later", w.due.Sub(s.At).Round(time.Millisecond))
			}
			r.CommitViolationIDs = append(r.CommitViolationIDs,
				fmt.Sprintf("%s/%d committed %d at %s passed offset %d: %s",
					s.Topic, s.Partition, s.Offset, s.At.Format("15:04:05.000"), w.off, why))
		}
	}

	slices.SortFunc(r.LostIDs, func(a, b RecordID) int { return cmpID(a, b) })
	slices.SortFunc(r.NoReasonIDs, func(a, b RecordID) int { return cmpID(a, b) })
	slices.Sort(r.MisroutedIDs)
	slices.Sort(r.OrphanIDs)
	r.LostIDs = capList(r.LostIDs)
	r.NoReasonIDs = capList(r.NoReasonIDs)
	r.MisroutedIDs = capList(r.MisroutedIDs)
	r.OrphanIDs = capList(r.OrphanIDs)
	r.CommitViolationIDs = capList(r.CommitViolationIDs)
	return r
}

// entry is one input in the commit check.
type entry struct {
	off     int64
	due     time.Time // when its first outcome was written; zero: in time whatever the sample
	never   bool      // no outcome at all
	ignored bool      // ExpectDrop: no outcome by design
}

// later reports whether a's outcome came later than b's (never is latest; zero due is earliest).
func later(a, b entry) bool {
	switch {
	case b.never:
		return false
	case a.never:
		return true
	case a.due.IsZero():
		return false
	case b.due.IsZero():
		return true
	}
	return a.due.After(b.due)
}

func cmpID(a, b RecordID) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
}

func lessID(a, b RecordID) bool { return b == (RecordID{}) || cmpID(a, b) < 0 }

func capList[T any](s []T) []T {
	if len(s) > sampleLimit {
		return s[:sampleLimit]
	}
	return s
}

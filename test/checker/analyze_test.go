package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func in(p int32, off int64, exp Expect) Input {
	return Input{ID: RecordID{"in", p, off}, Expect: exp}
}

func resp(p int32, off int64, at time.Duration) Outcome {
	return Outcome{Kind: Response, Source: RecordID{"in", p, off}, At: RecordID{"out", 0, off}, Timestamp: t0.Add(at)}
}

func dead(p int32, off int64, at time.Duration, stage string) Outcome {
	return Outcome{Kind: DeadLetter, Source: RecordID{"in", p, off}, At: RecordID{"dlq", 0, off},
		Timestamp: t0.Add(at), Error: "bad thing", ErrorStage: stage}
}

func sample(p int32, off int64, at time.Duration) CommitSample {
	return CommitSample{At: t0.Add(at), Topic: "in", Partition: p, Offset: off}
}

func TestAnalyzeCleanRun(t *testing.T) {
	ins := []Input{in(0, 0, ExpectGood), in(0, 1, ExpectBad), in(1, 0, ExpectGood), in(1, 1, ExpectDrop)}
	outs := []Outcome{resp(0, 0, time.Second), dead(0, 1, 2*time.Second, "decode"), resp(1, 0, time.Second)}
	samples := []CommitSample{sample(0, 2, 3*time.Second), sample(1, 2, 3*time.Second), sample(1, -1, 0)}

	r := Analyze(ins, outs, samples)
	require.NoError(t, r.Err(), r.String())
	assert.True(t, r.OK())
	assert.Equal(t, 4, r.Inputs)
	assert.Equal(t, 1, r.ExpectBad)
	assert.Equal(t, 1, r.ExpectDrop)
	assert.Equal(t, 2, r.Responses)
	assert.Equal(t, 1, r.DeadLetters)
	assert.Equal(t, 0, r.Lost)
	assert.Equal(t, 0, r.Duplicated)
	assert.Equal(t, 1, r.MaxCopies)
	assert.Equal(t, map[string]int{"decode": 1}, r.DeadLettersByStage)
	assert.Equal(t, 2, r.CommitSamples, "the -1 sample (nothing committed) is not a sample")
}

func TestAnalyzeLostDuplicatedMisrouted(t *testing.T) {
	ins := []Input{
		in(0, 0, ExpectGood), // three responses: duplicated twice
		in(0, 1, ExpectGood), // nothing: lost
		in(0, 2, ExpectGood), // dead-lettered: misrouted
		in(0, 3, ExpectBad),  // answered: misrouted
		in(0, 4, ExpectDrop), // answered: misrouted, not lost
		in(0, 5, ExpectDrop), // nothing: fine
		in(1, 0, ExpectBad),  // response and dead letter: misrouted and duplicated once
	}
	outs := []Outcome{
		resp(0, 0, 1), resp(0, 0, 2), resp(0, 0, 3),
		dead(0, 2, 1, "validate"),
		resp(0, 3, 1),
		resp(0, 4, 1),
		resp(1, 0, 1), dead(1, 0, 2, "decode"),
	}
	r := Analyze(ins, outs, nil)
	assert.Equal(t, 1, r.Lost)
	assert.Equal(t, []RecordID{{"in", 0, 1}}, r.LostIDs)
	assert.Equal(t, 3, r.Duplicated, "(3-1) + (2-1)")
	assert.Equal(t, 3, r.MaxCopies)
	assert.Equal(t, RecordID{"in", 0, 0}, r.MaxCopiesID)
	assert.Equal(t, 4, r.Misrouted)
	assert.Len(t, r.MisroutedIDs, 4)
	assert.Contains(t, strings.Join(r.MisroutedIDs, "\n"), "in/0@2 (good input dead-lettered)")
	assert.Contains(t, strings.Join(r.MisroutedIDs, "\n"), "in/0@3 (bad input answered)")
	assert.Contains(t, strings.Join(r.MisroutedIDs, "\n"), "in/0@4 (expected no outcome, got 1)")
	assert.Equal(t, 6, r.Responses)
	assert.Equal(t, 2, r.DeadLetters)

	err := r.Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 input(s) lost")
	assert.Contains(t, err.Error(), "4 input(s) misrouted")
	assert.Contains(t, r.String(), "most copies: in/0@0")
}

func TestAnalyzeProcessedOutcomes(t *testing.T) {
	// The scenario worker writes no responses: log lines stand for them.
	ins := []Input{in(0, 0, ExpectGood), in(0, 1, ExpectBad)}
	outs := []Outcome{
		{Kind: Processed, Source: RecordID{"in", 0, 0}},
		{Kind: Processed, Source: RecordID{"in", 0, 1}},
	}
	r := Analyze(ins, outs, nil)
	assert.Equal(t, 2, r.Processed)
	assert.Equal(t, 0, r.Lost)
	assert.Equal(t, 1, r.Misrouted, "a bad input that was processed instead of dead-lettered")
}

func TestAnalyzeOrphansAndReasons(t *testing.T) {
	ins := []Input{in(0, 0, ExpectBad)}
	noReason := dead(0, 0, 1, "")
	noReason.Error = ""
	outs := []Outcome{
		noReason,
		{Kind: Response, At: RecordID{"out", 0, 7}, SourceErr: assert.AnError},
		resp(9, 9, 1), // names an input that was never read
	}
	r := Analyze(ins, outs, nil)
	assert.Equal(t, 0, r.Lost)
	assert.Equal(t, 1, r.NoReason)
	assert.Equal(t, []RecordID{{"dlq", 0, 0}}, r.NoReasonIDs)
	assert.Equal(t, 2, r.Orphans)
	assert.Equal(t, map[string]int{"(none)": 1}, r.DeadLettersByStage)
	require.Error(t, r.Err())
	assert.Contains(t, r.Err().Error(), "2 outcome(s) name no known input")
	assert.Contains(t, r.Err().Error(), "without an error or error_stage")
}

func TestAnalyzeCommitCheck(t *testing.T) {
	ins := []Input{in(0, 0, ExpectGood), in(0, 1, ExpectGood), in(0, 2, ExpectGood), in(0, 3, ExpectDrop), in(0, 4, ExpectGood)}
	outs := []Outcome{
		resp(0, 0, 1*time.Second),
		resp(0, 1, 5*time.Second), // answered late...
		resp(0, 1, 2*time.Second), // ...but a first copy came early: the earliest counts
		resp(0, 2, 4*time.Second),
		// 0/3 dropped (no outcome by design), 0/4 never answered
	}
	cases := []struct {
		name       string
		s          CommitSample
		violations int
		msg        string
	}{
		{"nothing passed", sample(0, 0, 0), 0, ""},
		{"committed after the outcome", sample(0, 1, 1*time.Second), 0, ""},
		{"committed before the outcome was written", sample(0, 1, 500*time.Millisecond), 1, "first outcome was written 500ms later"},
		{"earliest copy counts", sample(0, 2, 3*time.Second), 0, ""},
		{"prefix: an earlier input still unanswered", sample(0, 3, 3*time.Second), 1, "passed offset 2"},
		{"dropped input needs no outcome", sample(0, 4, 4*time.Second), 0, ""},
		{"past an input that never got one", sample(0, 5, time.Hour), 1, "passed offset 4: it has no outcome"},
		{"other partition unknown", sample(1, 5, 0), 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Analyze(ins, outs, []CommitSample{tc.s})
			assert.Equal(t, tc.violations, r.CommitViolations, r.CommitViolationIDs)
			if tc.msg != "" {
				require.NotEmpty(t, r.CommitViolationIDs)
				assert.Contains(t, r.CommitViolationIDs[0], tc.msg)
			}
		})
	}
}

func TestAnalyzeCommitUntimedOutcome(t *testing.T) {
	// An outcome without a timestamp (a log line) proves existence only.
	ins := []Input{in(0, 0, ExpectGood)}
	outs := []Outcome{{Kind: Processed, Source: RecordID{"in", 0, 0}}}
	r := Analyze(ins, outs, []CommitSample{sample(0, 1, -time.Hour)})
	assert.Equal(t, 0, r.CommitViolations)
}

func TestAnalyzeCommitRegressions(t *testing.T) {
	ins := []Input{in(0, 0, ExpectGood), in(0, 1, ExpectGood)}
	outs := []Outcome{resp(0, 0, 0), resp(0, 1, 0)}
	r := Analyze(ins, outs, []CommitSample{sample(0, 2, 3), sample(0, 1, 2), sample(0, 2, 1)})
	// Sorted by time: 2 (t+1ns), 1 (t+2ns), 2 (t+3ns): one step back.
	assert.Equal(t, 1, r.CommitRegressions)
	assert.Equal(t, 3, r.CommitSamples)
	assert.NoError(t, r.Err())
}

func TestAnalyzeDuplicateInputsIgnored(t *testing.T) {
	// Reading a partition twice (a retried fetch) must not invent inputs.
	ins := []Input{in(0, 0, ExpectGood), in(0, 0, ExpectGood)}
	r := Analyze(ins, []Outcome{resp(0, 0, 0)}, nil)
	assert.Equal(t, 0, r.Lost)
	assert.Equal(t, 0, r.Duplicated)
}

func TestParseExpect(t *testing.T) {
	for v, want := range map[string]Expect{"": ExpectGood, "good": ExpectGood, "Bad": ExpectBad, "dlq": ExpectBad, "drop": ExpectDrop} {
		got, err := ParseExpect(v)
		require.NoError(t, err, v)
		assert.Equal(t, want, got, v)
	}
	_, err := ParseExpect("maybe")
	assert.ErrorContains(t, err, `"maybe"`)
}

func TestSourceFromHeaders(t *testing.T) {
	h := map[string]string{HeaderSourceTopic: "in", HeaderSourcePartition: "2", HeaderSourceOffset: "41"}
	get := func(k string) (string, bool) { v, ok := h[k]; return v, ok }
	id, err := SourceFromHeaders(get)
	require.NoError(t, err)
	assert.Equal(t, RecordID{"in", 2, 41}, id)

	h[HeaderSourceOffset] = "x"
	_, err = SourceFromHeaders(get)
	assert.ErrorContains(t, err, "source_offset")

	delete(h, HeaderSourceOffset)
	delete(h, HeaderSourceTopic)
	_, err = SourceFromHeaders(get)
	assert.ErrorContains(t, err, "missing header(s) source_topic, source_offset")
}

// TestAnalyzeMaxWait: the longest wait is from an input's timestamp to its first outcome; inputs
// without a timestamp, and later copies, do not count.
func TestAnalyzeMaxWait(t *testing.T) {
	a, b, c := in(0, 0, ExpectGood), in(1, 0, ExpectGood), in(1, 1, ExpectGood)
	a.Timestamp, b.Timestamp = t0, t0.Add(time.Second)
	outs := []Outcome{resp(0, 0, 2*time.Second), resp(1, 0, 9*time.Second), resp(1, 0, 4*time.Second), resp(1, 1, time.Hour)}
	r := Analyze([]Input{a, b, c}, outs, nil)
	assert.Equal(t, 3*time.Second, r.MaxWait, "b: first outcome at 4 s, produced at 1 s")
	assert.Equal(t, b.ID, r.MaxWaitID)
	assert.Equal(t, t0.Add(2*time.Second), r.FirstAnswer)
	assert.Equal(t, t0.Add(time.Hour), r.LastAnswer)
}

package checker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

type fixture struct {
	b                *devbroker.TestBroker
	in, out, dlq, gr string
	c                *Checker
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := devbroker.NewTestBroker(t)
	f := &fixture{
		b:   b,
		in:  b.Topic(t, "checker-in", 2, nil),
		out: b.Topic(t, "checker-out", 1, nil),
		dlq: b.Topic(t, "checker-dlq", 1, nil),
		gr:  b.Group("checker"),
	}
	c, err := New(Config{
		Brokers: strings.Split(b.Addr, ","), InputTopic: f.in, OutputTopic: f.out, DLQTopic: f.dlq,
		Group: f.gr, SampleEvery: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	f.c = c
	return f
}

func input(p int32, expect string) *kgo.Record {
	r := &kgo.Record{Partition: p, Value: []byte("request")}
	if expect != "" {
		r.Headers = []kgo.RecordHeader{{Key: HeaderExpect, Value: []byte(expect)}}
	}
	return r
}

func outcome(topic string, src RecordID, dlqStage string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Value: []byte("x"), Headers: []kgo.RecordHeader{
		{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(src.Partition)))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
	}}
	if dlqStage != "" {
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: HeaderError, Value: []byte("bad request")},
			kgo.RecordHeader{Key: HeaderErrorStage, Value: []byte(dlqStage)})
	}
	return r
}

func (f *fixture) produceInputs(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	cl := f.b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range recs {
		r.Topic = f.in
	}
	require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
}

func (f *fixture) commit(t *testing.T, p int32, off int64) {
	t.Helper()
	resp, err := f.b.Admin.CommitOffsets(context.Background(), f.gr, kadm.Offsets{
		f.in: {p: {Topic: f.in, Partition: p, At: off, LeaderEpoch: -1}},
	})
	require.NoError(t, err)
	require.NoError(t, resp.Error())
}

func TestCheckerEndToEnd(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Partition 0: good, bad, good. Partition 1: good, drop.
	f.produceInputs(t, input(0, ""), input(0, "bad"), input(0, "good"), input(1, ""), input(1, "drop"))
	f.c.StartSampling()

	lag, end, err := f.c.Lag(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), lag)
	assert.Equal(t, int64(5), end)

	// The "pipeline": outcomes first, then commits, as the real one does.
	f.b.Produce(t, f.out, outcome(f.out, RecordID{f.in, 0, 0}, ""))
	f.b.Produce(t, f.dlq, outcome(f.dlq, RecordID{f.in, 0, 1}, "validate"))
	f.b.Produce(t, f.out, outcome(f.out, RecordID{f.in, 0, 2}, ""), outcome(f.out, RecordID{f.in, 0, 2}, ""))
	f.commit(t, 0, 3)
	f.c.MarkFaultCleared()
	f.b.Produce(t, f.out, outcome(f.out, RecordID{f.in, 1, 0}, ""))
	f.commit(t, 1, 2)

	rec, err := f.c.WaitLagZero(ctx, 5)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, rec, time.Duration(0))
	f.c.StopSampling()

	r, err := f.c.Check(ctx, ReadOptions{Target: 5})
	require.NoError(t, err)
	require.NoError(t, r.Err(), r.String())
	assert.Equal(t, 5, r.Inputs)
	assert.Equal(t, 4, r.Responses)
	assert.Equal(t, 1, r.DeadLetters)
	assert.Equal(t, 0, r.Lost)
	assert.Equal(t, 1, r.Duplicated)
	assert.Equal(t, 2, r.MaxCopies)
	assert.Equal(t, RecordID{f.in, 0, 2}, r.MaxCopiesID)
	assert.Equal(t, map[string]int{"validate": 1}, r.DeadLettersByStage)
	assert.Positive(t, r.CommitSamples, "the final sample at least")
}

func TestCheckerFindsCommitPastUnansweredInput(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	f.produceInputs(t, input(0, ""), input(0, ""))
	f.b.Produce(t, f.out, outcome(f.out, RecordID{f.in, 0, 0}, ""))
	// A broken consumer commits past offset 1, which has no outcome, and so loses it.
	f.commit(t, 0, 2)
	f.c.StartSampling()
	_, err := f.c.WaitLagZero(ctx, 2)
	require.NoError(t, err)
	f.c.StopSampling()

	r, err := f.c.Check(ctx, ReadOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, r.Lost)
	assert.Equal(t, []RecordID{{f.in, 0, 1}}, r.LostIDs)
	assert.Positive(t, r.CommitViolations)
	require.Error(t, r.Err())
	assert.Contains(t, r.Err().Error(), "passed offset 1: it has no outcome")
}

func TestCheckerReadTargetWaitsForLateOutcomes(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	f.b.Produce(t, f.out, outcome(f.out, RecordID{f.in, 0, 0}, ""))
	go func() {
		time.Sleep(300 * time.Millisecond)
		f.b.Produce(t, f.dlq, outcome(f.dlq, RecordID{f.in, 0, 1}, "decode"))
	}()
	outs, err := f.c.ReadOutcomes(ctx, ReadOptions{Target: 2})
	require.NoError(t, err)
	require.Len(t, outs, 2)
	kinds := map[Kind]int{}
	for _, o := range outs {
		kinds[o.Kind]++
		require.NoError(t, o.SourceErr)
		assert.False(t, o.Timestamp.IsZero())
	}
	assert.Equal(t, map[Kind]int{Response: 1, DeadLetter: 1}, kinds)
}

func TestCheckerWaitLagZeroTimesOut(t *testing.T) {
	f := newFixture(t)
	f.produceInputs(t, input(0, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := f.c.WaitLagZero(ctx, 1)
	require.Error(t, err)
	// The last poll's detail depends on where the deadline fell (a finished poll reports the lag,
	// an interrupted one its request error); the verdict does not.
	assert.Contains(t, err.Error(), "did not reach lag 0")
}

func TestOutcomeFromRecordMissingHeaders(t *testing.T) {
	o := OutcomeFromRecord(&kgo.Record{Topic: "dlq", Offset: 3}, true)
	assert.Equal(t, DeadLetter, o.Kind)
	assert.ErrorContains(t, o.SourceErr, "missing header(s)")
	assert.Equal(t, RecordID{"dlq", 0, 3}, o.At)
}

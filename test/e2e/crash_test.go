package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// mixedInputs returns n input records: every badEvery-th one a bad request (bad base64, which is
// dead-lettered), the others drawn from a few generated requests of the given size (making each
// one anew would cost more than the pipeline spends on it). bad reports which indexes are bad.
func mixedInputs(n, badEvery, weeks int) (recs []*kgo.Record, bad map[int]bool) {
	var pool [][]byte
	for s := range 4 {
		o := gen.Defaults(uint64(100 + s))
		o.Weeks = weeks
		pool = append(pool, gen.Encode(gen.Request(o)))
	}
	bad = map[int]bool{}
	for i := range n {
		r := &kgo.Record{Key: []byte("k-" + strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "seq", Value: []byte(strconv.Itoa(i))}}}
		if badEvery > 0 && i%badEvery == badEvery-1 {
			r.Value = []byte(fmt.Sprintf("not a request #%d", i))
			bad[i] = true
		} else {
			r.Value = pool[i%len(pool)]
		}
		recs = append(recs, r)
	}
	return recs, bad
}

// checkRouting fails the test for a good input that was dead-lettered or a bad one that got a
// response (misrouted), given the produced records and which of them are bad.
func checkRouting(t *testing.T, f *fixture, recs []*kgo.Record, bad map[int]bool, o *outcomes) {
	t.Helper()
	misrouted := 0
	for i, r := range recs {
		k := srcKey{f.in, r.Partition, r.Offset}
		if bad[i] && len(o.responses[k]) > 0 || !bad[i] && len(o.dead[k]) > 0 {
			misrouted++
			if misrouted <= 5 {
				var e string
				if len(o.dead[k]) > 0 {
					e, _ = header(o.dead[k][0], "error")
				}
				t.Errorf("input %s (bad=%v) misrouted: %d responses, %d dead letters %s", k, bad[i], len(o.responses[k]), len(o.dead[k]), e)
			}
		}
	}
	if misrouted > 0 {
		t.Errorf("misrouted=%d", misrouted)
	}
}

// TestCrashRestart runs the real binary on weekly-rollup.yaml while requests keep arriving, kills
// it with SIGKILL mid-stream, restarts it, three times, and then lets it finish: every input must
// have a response or a dead letter (lost = 0), no commit may pass an unanswered input, and
// duplicates stay within what was in flight at the kills (the checkpoint limit per partition,
// times the partitions, times the kills).
func TestCrashRestart(t *testing.T) {
	const (
		partitions = 3
		limit      = 4
		kills      = 3
		inputs     = 2400
	)
	f := newFixture(t, partitions, 3)
	recs, bad := mixedInputs(inputs, 10, 4)
	env := f.env("KAFKA_CHECKPOINT_LIMIT", strconv.Itoa(limit), "ROLLUP_THREADS", "2", "KAFKA_SESSION_TIMEOUT", "6s")
	// A killed member keeps its partitions until its session times out (45s by default); a short
	// session only makes each restart resume sooner. Nothing that decides commits is changed.
	fields := []string{"heartbeat_interval", "1s"}
	pipeline := pipelineFile(t, "weekly-rollup.yaml", fields...)
	committedCount := func() int64 {
		var n int64
		for _, v := range committed(t, f.b, f.group, f.in) {
			n += v
		}
		return n
	}

	// Up to 100 requests a second for about 30 seconds: slower than the pipeline, and longer
	// than the kills and restarts take, so the stream is flowing at every kill.
	fl := startFlow(t, f.b, f.in, recs, 10*time.Millisecond)
	// Each run lives on for a different time after its first commit, so the kills land at
	// different points of the commit period rather than just after a commit.
	linger := []time.Duration{1300 * time.Millisecond, 600 * time.Millisecond, 2100 * time.Millisecond}
	for k := 1; k <= kills; k++ {
		// Wait until this run has joined the group and committed progress of its own.
		threshold := committedCount() + 10
		p := startProcess(t, pipeline, env, k)
		deadline := time.Now().Add(outcomeTimeout)
		for committedCount() < threshold {
			if p.exited() {
				t.Fatalf("run %d: rollup exited on its own", k)
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: fewer than %d inputs committed after %v", k, threshold, outcomeTimeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(linger[(k-1)%len(linger)])
		p.kill(t)
		// The killed member's commits are final: none may pass an unanswered input.
		checkCommitInvariant(t, f, nil)
		produced, done := fl.produced.Load(), committedCount()
		t.Logf("kill %d: %d inputs produced, %d committed", k, produced, done)
		if done >= inputs {
			t.Errorf("kill %d came after every input was committed: nothing was in flight", k)
		}
	}

	p := startProcess(t, pipeline, env, kills+1)
	fl.wait(t)
	waitAllCommitted(t, f.b, f.group, f.in, func() {
		if p.exited() {
			t.Fatalf("final run: rollup exited on its own")
		}
	})
	p.terminate(t)

	o := collectOutcomes(t, f)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	checkRouting(t, f, recs, bad, o)
	bound := limit * partitions * kills
	t.Logf("crash: kills=%d checkpoint_limit=%d partitions=%d duplicate bound=%d; %v", kills, limit, partitions, bound, tl)
	t.Logf("crash: inputs=%d lost=%d duplicated=%d max_copies=%d", tl.inputs, tl.lost, tl.duplicated, tl.maxCopies)
	if tl.inputs != inputs {
		t.Errorf("the input topic holds %d records, want %d", tl.inputs, inputs)
	}
	if tl.lost != 0 {
		t.Errorf("lost=%d, want 0: %v", tl.lost, tl.lostKeys)
	}
	if tl.unexpected != 0 {
		t.Errorf("%d outcomes name inputs that do not exist", tl.unexpected)
	}
	if tl.duplicated > bound {
		// What a crash replays is everything acknowledged but not yet committed as well as what
		// was in flight; only a commit that follows the acknowledgements closely keeps the
		// former small (the kafka input commits every commit_period, 1s by default).
		t.Errorf("duplicated=%d, over the in-flight bound %d (checkpoint_limit %d x %d partitions x %d kills): records acknowledged after the last commit were processed again",
			tl.duplicated, bound, limit, partitions, kills)
	}
}

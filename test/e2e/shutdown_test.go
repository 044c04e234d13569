package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// TestSIGTERMUnderBacklog is a rolling deploy under a deep backlog: 600 seed-sized requests wait on
// a two-partition input, two members of the group run the real binary, and one gets SIGTERM while
// both are busy. The terminated member must finish what its pipeline threads hold, commit, leave
// the group and exit promptly (it must not wait for acknowledgements the engine will never send:
// the engine drops, unacknowledged, a record it has read but not yet handed to a thread), and the
// other member must take its partition at once rather than after a session timeout. Every request
// is answered exactly once across the two members: a clean shutdown replays nothing.
func TestSIGTERMUnderBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("600 seed-sized requests")
	}
	const (
		partitions     = 2
		inputs         = 600
		sessionTimeout = 45 * time.Second // the pipeline's default; a member that does not leave holds its partitions this long
	)
	f := newFixture(t, partitions, 2)
	var pool [][]byte
	for s := range 4 {
		pool = append(pool, gen.Encode(gen.Request(gen.Defaults(uint64(200+s)))))
	}
	recs := make([]*kgo.Record, inputs)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte("k-" + strconv.Itoa(i)), Value: pool[i%len(pool)]}
	}
	for i := 0; i < inputs; i += 50 {
		f.b.Produce(t, f.in, recs[i:min(i+50, inputs)]...)
	}

	env := f.env("ROLLUP_THREADS", "2", "KAFKA_SESSION_TIMEOUT", sessionTimeout.String())
	pipeline := pipelineFile(t, "weekly-rollup.yaml")
	stay := startProcess(t, pipeline, env, 1)
	leave := startProcess(t, pipeline, env, 2)
	alive := func() {
		if stay.exited() {
			t.Fatal("the member that stays exited on its own")
		}
	}

	// Both members own a partition, and both are working through the backlog.
	waitFor(t, "two members with a partition each", func() bool {
		alive()
		return membersWithPartitions(t, f) == 2
	})
	base := committed(t, f.b, f.group, f.in)
	waitFor(t, "both partitions committing", func() bool {
		alive()
		now := committed(t, f.b, f.group, f.in)
		for p := range int32(partitions) {
			if now[p] <= base[p]+2 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)

	sent := time.Now()
	leave.terminate(t)
	exitAfter := time.Since(sent)
	code := leave.cmd.ProcessState.ExitCode()

	// The remaining member consumes the leaver's partition: every partition with records left moves
	// past where it stood when the leaver exited.
	atExit := committed(t, f.b, f.group, f.in)
	_, end := offsetRange(t, f.b, f.in)
	waitFor(t, "the remaining member to take over every partition", func() bool {
		alive()
		now := committed(t, f.b, f.group, f.in)
		for p, e := range end {
			if atExit[p] < e && now[p] <= atExit[p] {
				return false
			}
		}
		return true
	})
	takeover := time.Since(sent)
	t.Logf("shutdown under a backlog of %d seed-sized requests: SIGTERM to exit %.1f s (exit code %d), SIGTERM to the other member committing the leaver's partition %.1f s; committed at exit %v of %v",
		inputs, exitAfter.Seconds(), code, takeover.Seconds(), atExit, end)

	waitAllCommitted(t, f.b, f.group, f.in, alive)
	stay.terminate(t)

	if code != 0 {
		t.Errorf("the terminated member exited with code %d: it did not shut down cleanly (forced exit?)", code)
	}
	// Bounds that separate the mechanisms, not performance targets: waiting for an acknowledgement
	// that never comes costs the input's revoke_timeout (10 s) at least, and a member that does not
	// leave the group holds its partitions for the session timeout (45 s).
	if exitAfter > 10*time.Second {
		t.Errorf("SIGTERM to exit took %v: the shutdown waited for acknowledgements that never come", exitAfter)
	}
	if takeover > sessionTimeout-5*time.Second {
		t.Errorf("the other member took the partition %v after SIGTERM: the terminated member did not leave the group", takeover)
	}

	o := collectOutcomes(t, f)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	t.Logf("shutdown: %v", tl)
	if tl.inputs != inputs || tl.lost != 0 || tl.unexpected != 0 || len(o.dead) != 0 {
		t.Errorf("inputs=%d (want %d) lost=%d unexpected=%d dead letters=%d, want every request answered", tl.inputs, inputs, tl.lost, tl.unexpected, len(o.dead))
	}
	if tl.duplicated != 0 {
		t.Errorf("duplicated=%d, want 0: a clean shutdown commits everything it answered", tl.duplicated)
	}
}

// waitFor polls cond every 100 ms until it holds, failing the test after outcomeTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(outcomeTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", outcomeTimeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// membersWithPartitions is how many members of the fixture's group have at least one partition.
func membersWithPartitions(t *testing.T, f *fixture) int {
	t.Helper()
	n := 0
	for _, m := range describeGroup(t, f).Members {
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				if len(tp.Partitions) > 0 {
					n++
					break
				}
			}
		}
	}
	return n
}

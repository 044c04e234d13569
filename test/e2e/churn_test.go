package e2e

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestRebalanceChurn runs three in-process consumers of weekly-rollup.yaml in one group, starting
// and stopping them in turn while requests keep arriving: no input may be lost, no commit may
// pass an unanswered input, and the duplicates (reprocessing after partitions move) are counted.
func TestRebalanceChurn(t *testing.T) {
	const inputs = 700
	f := newFixture(t, 6, 3)
	recs, bad := mixedInputs(inputs, 20, 1)
	env := f.env("KAFKA_CHECKPOINT_LIMIT", "8", "ROLLUP_THREADS", "1", "KAFKA_SESSION_TIMEOUT", "6s")
	// Members notice a rebalance at their next heartbeat (3s by default); a shorter interval
	// packs more rebalances into the run. Commit behaviour is untouched.
	fields := []string{"heartbeat_interval", "500ms"}

	var members [3]*runningStream
	schedule := []struct {
		member int
		start  bool
	}{
		{0, true}, {1, true}, {2, true}, {0, false}, {1, false}, {0, true},
		{2, false}, {1, true}, {0, false}, {2, true}, {1, false}, {0, true},
	}
	fl := startFlow(t, f.b, f.in, recs, 20*time.Millisecond)
	starts, stops := 0, 0
	var groupSizes []int
	for _, step := range schedule {
		if step.start {
			members[step.member] = startStream(t, "weekly-rollup.yaml", env, nil, fields...)
			starts++
		} else {
			members[step.member].stop(t)
			members[step.member] = nil
			stops++
		}
		time.Sleep(1200 * time.Millisecond)
		checkCommitInvariant(t, f, nil)
		groupSizes = append(groupSizes, groupMembers(t, f))
	}
	t.Logf("churn: members in the group after each step: %v", groupSizes)
	fl.wait(t)
	waitAllCommitted(t, f.b, f.group, f.in, nil)
	for _, m := range members {
		if m != nil {
			m.stop(t)
		}
	}

	o := collectOutcomes(t, f)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	checkRouting(t, f, recs, bad, o)
	t.Logf("churn: %d member starts, %d graceful stops; %v", starts, stops, tl)
	t.Logf("churn: inputs=%d lost=%d duplicated=%d max_copies=%d", tl.inputs, tl.lost, tl.duplicated, tl.maxCopies)
	if tl.inputs != inputs {
		t.Errorf("the input topic holds %d records, want %d", tl.inputs, inputs)
	}
	if tl.lost != 0 {
		t.Errorf("lost=%d, want 0: %v", tl.lost, tl.lostKeys)
	}
	if tl.unexpected != 0 {
		t.Errorf("%d outcomes name inputs that do not exist", tl.unexpected)
	}
}

// groupMembers is how many members the broker lists in the fixture's group.
func groupMembers(t *testing.T, f *fixture) int {
	t.Helper()
	return len(describeGroup(t, f).Members)
}

// describeGroup is the fixture's group as the broker describes it.
func describeGroup(t *testing.T, f *fixture) kadm.DescribedGroup {
	t.Helper()
	ctx, cancel := adminCtx()
	defer cancel()
	groups, err := f.b.Admin.DescribeGroups(ctx, f.group)
	if err != nil {
		t.Fatalf("describe group %s: %v", f.group, err)
	}
	return groups[f.group]
}

//go:build fault

package fault

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startOldService runs test/fault/old_service.py (the old Python service's Kafka behaviour: a
// librdkafka consumer with the range assignor) in the scenario's group, as a process the suite
// tracks like a rollup one (its log, SIGTERM, kill at the end of the test). It needs python3 with
// confluent-kafka (.ci/run installs it).
func startOldService(t *testing.T, s *scenario, name string) *rollupProc {
	t.Helper()
	cmd := exec.Command("python3", filepath.Join(repoRoot, "test", "fault", "old_service.py"))
	cmd.Env = os.Environ()
	for k, v := range s.env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return s.procs.add(launch(t, name, cmd))
}

// groupProtocol is the assignor the group's members agreed on, and how many members it has.
func groupProtocol(t *testing.T, s *scenario) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gs, err := s.adm.DescribeGroups(ctx, s.group)
	if err != nil {
		t.Fatalf("describe group %s: %v", s.group, err)
	}
	g := gs[s.group]
	return g.Protocol, len(g.Members)
}

// waitProtocol waits until the group is stable with n members on the given assignor.
func waitProtocol(t *testing.T, s *scenario, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, members := groupProtocol(t, s)
		if got == want && members == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: assignor %q with %d members, want %q with %d", s.group, got, members, want, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// oldServiceInterval paces scenario 14's flow: 25 requests/s, which two old members keep up with.
const oldServiceInterval = 40 * time.Millisecond

// Scenario 14: a rolling cutover from the old Python service under load. Two old members
// (librdkafka, range) consume the input; one by one a rollup member joins the same group and an
// old one is stopped. The mixed group must agree on range (before the balancers option a rollup
// member was refused with INCONSISTENT_GROUP_PROTOCOL), every request is answered, and once the
// old members are gone the group is cooperative-sticky by itself.
func TestScenario14CutoverFromOldService(t *testing.T) {
	if err := exec.Command("python3", "-c", "import confluent_kafka").Run(); err != nil {
		t.Fatalf("python3 with confluent-kafka is needed (pip install confluent-kafka): %v", err)
	}
	s := newScenario(t, "14 cutover from the old service (librdkafka, range) under load", scenarioOpts{})
	// The flow runs at the old service's pace, not at 70 % of rollup's capacity: the old members
	// (pandas, 25 to 35 times slower per request) would only pile up a backlog.
	f := s.startFlow(oldServiceInterval, mixed)
	olds := []*rollupProc{startOldService(t, s, "old-1"), startOldService(t, s, "old-2")}
	waitProtocol(t, s, "range", 2)
	s.waitProgress(0, 2*time.Minute)

	var news []*rollupProc
	for k, old := range olds {
		p := s.start(fmt.Sprintf("rollup-%d", k+1))
		p.waitReady(t, time.Minute)
		// Old and new members share the group on range, and the group keeps committing.
		waitProtocol(t, s, "range", len(olds)-k+len(news)+1)
		s.waitProgress(s.committed(), 2*time.Minute)
		old.stop(t, time.Minute)
		news = append(news, p)
		s.waitProgress(s.committed(), 2*time.Minute)
		time.Sleep(2 * time.Second)
	}
	waitProtocol(t, s, "cooperative-sticky", len(news))
	time.Sleep(3 * time.Second) // answers keep flowing on the cooperative group
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("2 old members replaced one by one while %.0f req/s flowed (the old service's pace); range while mixed, cooperative-sticky after", float64(time.Second)/float64(oldServiceInterval))

	// An eager (range) rebalance revokes every partition of every member: each rollup member's
	// revoke lets its in-flight records finish first, so duplicates stay far below this bound.
	bound := checkpointLimit() * s.partitions * 4
	s.finish(finishOpts{maxDuplicated: bound})
	for _, p := range news {
		p.stop(t, time.Minute)
	}
	for _, old := range olds {
		if !strings.Contains(old.log(), "old-service: stopped after") {
			t.Errorf("%s did not stop cleanly; log:\n%s", old.name, old.tail(20))
		}
	}
}

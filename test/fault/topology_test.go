//go:build fault

package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/test/checker"
)

// The scenarios of this file need a replicated cluster (test/kafka/kafka.sh's 3 nodes): each
// breaks part of it. Against the dev broker or a single node they are skipped, saying why.

func needCluster(t *testing.T) {
	t.Helper()
	if brk.Nodes() < 3 {
		t.Skipf("needs a cluster of 3 brokers; %s has %d", brk.Name(), brk.Nodes())
	}
}

// leads returns the partitions of topic that broker id leads.
func (s *scenario) leads(topic string, id int32) []int32 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := s.adm.ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		s.t.Fatalf("metadata of %s: %v %v", topic, err, td[topic].Err)
	}
	var ps []int32
	for _, p := range td[topic].Partitions {
		if p.Leader == id {
			ps = append(ps, p.Partition)
		}
	}
	slices.Sort(ps)
	return ps
}

// Scenario 11: under load (a backlog of 300 requests being worked through, plus the flow), the
// broker that leads partitions of both the input and the response topic is killed with SIGKILL,
// stays down 15s and restarts on its data. Leadership of its partitions moves to the other two,
// which still make min ISR 2: the service keeps answering during the outage.
func TestScenario11KillInputAndResponseLeader(t *testing.T) {
	needCluster(t)
	s := newScenario(t, "11 kill -9 of the input+response leader under load", scenarioOpts{})
	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	f := s.startFlow(flowInterval(t), mixed)
	s.waitProgress(0, 2*time.Minute)
	// The victim: the leader of input p0 if it also leads a response partition, else the first
	// broker that leads partitions of both.
	victim := s.leader(s.in, 0)
	if len(s.leads(s.out, victim)) == 0 {
		for id := int32(1); id <= int32(brk.Nodes()); id++ {
			if len(s.leads(s.in, id)) > 0 && len(s.leads(s.out, id)) > 0 {
				victim = id
				break
			}
		}
	}
	inParts, outParts := s.leads(s.in, victim), s.leads(s.out, victim)
	small, _ := pool()
	var backlog []request
	for i := range 300 {
		backlog = append(backlog, small[i%len(small)])
	}
	s.mustProduce(backlog...)
	s.addLoad(fmt.Sprintf("backlog %d", len(backlog)))
	time.Sleep(time.Second) // the backlog is in flight
	before := s.committed()
	t0 := time.Now()
	if err := brk.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	after := s.committed() // sampled with the broker still down
	committedWhileDown := fmt.Sprintf("%d offsets committed while it was down", after-before)
	if before < 0 || after < 0 {
		committedWhileDown = "committed offsets unreadable while it was down"
	}
	if err := brk.Restart(victim); err != nil {
		t.Fatal(err)
	}
	down := time.Since(t0)
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("broker %d (leader of input %v and response %v) down %.0fs; 300-request backlog; %s",
		victim, inParts, outParts, down.Seconds(), committedWhileDown)
	s.finishBrokerFault(p)
}

// Scenario 12: the active KRaft controller (a combined node: also a broker) is killed with
// SIGKILL while records flow, and restarted on its data 5s later. The other two controllers
// elect a new one.
func TestScenario12KillController(t *testing.T) {
	needCluster(t)
	s := newScenario(t, "12 kill -9 of the active controller", scenarioOpts{})
	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	f := s.startFlow(flowInterval(t), mixed)
	s.waitProgress(0, 2*time.Minute)
	time.Sleep(3 * time.Second)
	ctrl, err := brk.Controller()
	if err != nil {
		t.Fatal(err)
	}
	inParts := s.leads(s.in, ctrl)
	t0 := time.Now()
	if err := brk.Kill9(ctrl); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	next, err := brk.Controller()
	if err != nil {
		t.Errorf("no active controller 5s after killing controller %d: %v", ctrl, err)
	}
	if err := brk.Restart(ctrl); err != nil {
		t.Fatal(err)
	}
	down := time.Since(t0)
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("controller %d (also leader of input %v) down %.0fs; controller %d took over", ctrl, inParts, down.Seconds(), next)
	s.finishBrokerFault(p)
}

// belowISRFor is how long scenario 13 keeps two brokers down: FAULT_BELOW_ISR_SECONDS, default 30s
// (three times the suite's session timeout), well under the pipeline's response delivery timeout
// (KAFKA_DELIVERY_TIMEOUT, 2m), after which a response still unwritten is dead-lettered.
func belowISRFor() time.Duration {
	if n, err := strconv.Atoi(os.Getenv("FAULT_BELOW_ISR_SECONDS")); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 30 * time.Second
}

// Scenario 13: two of three brokers are stopped (SIGTERM, controlled shutdown), leaving fewer
// in-sync replicas than min.insync.replicas 2: no write with acks=all can succeed (a probe says
// with which error), neither a response, nor a dead letter, nor an offset commit. A backlog of 400
// requests is produced between the two stops, so the service is still working through it when
// the second broker goes: it must hold back (nothing dead-lettered, nothing committed past an
// unanswered input) and resume answering once one broker is back.
//
// With combined nodes, two of three down is also the loss of the KRaft quorum: no metadata change
// (leader election, ISR change, producer id allocation) happens until a second node is back.
func TestScenario13BelowMinISR(t *testing.T) {
	needCluster(t)
	outage := belowISRFor()
	s := newScenario(t, "13 two of three brokers stopped (below min ISR)", scenarioOpts{})
	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	f := s.startFlow(flowInterval(t), mixed)
	s.waitProgress(0, 2*time.Minute)
	time.Sleep(3 * time.Second)

	// Keep the active controller up, stop the other two.
	keep, err := brk.Controller()
	if err != nil {
		t.Fatal(err)
	}
	var stopped []int32
	for id := int32(1); id <= int32(brk.Nodes()) && len(stopped) < 2; id++ {
		if id != keep {
			stopped = append(stopped, id)
		}
	}
	if err := brk.Stop(stopped[0]); err != nil {
		t.Fatal(err)
	}
	small, _ := pool()
	var backlog []request
	for i := range 400 {
		backlog = append(backlog, small[i%len(small)])
	}
	s.mustProduce(backlog...)
	s.addLoad(fmt.Sprintf("backlog %d", len(backlog)))
	t0 := time.Now()
	if err := brk.Stop(stopped[1]); err != nil {
		t.Fatal(err)
	}
	before := s.committed()
	beforeDL := s.deadLetters()
	lagAtStop, _, _ := s.chk.Lag(context.Background())

	// A probe: one acks=all record to the input, given 10s. Not idempotent: a new idempotent
	// producer first needs a producer id, which the lost quorum cannot allocate.
	// kgo retries NOT_ENOUGH_REPLICAS (retriable) until the delivery timeout and may report only
	// the timeout: its log says what the broker answered.
	var plog lockedBuffer
	probe, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...), kgo.DefaultProduceTopic(s.in),
		kgo.DisableIdempotentWrite(), kgo.RecordDeliveryTimeout(10 * time.Second),
		kgo.WithLogger(kgo.BasicLogger(&plog, kgo.LogLevelDebug, nil))}, s.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	perr := probe.ProduceSync(context.Background(), &kgo.Record{Value: []byte("probe"),
		Headers: []kgo.RecordHeader{{Key: checker.HeaderExpect, Value: []byte(checker.ExpectDrop)}}}).FirstErr()
	probe.Close()
	switch {
	case perr == nil:
		t.Errorf("a write with acks=all succeeded with brokers %v stopped (min.insync.replicas 2)", stopped)
		s.produced.Add(1)
	case errors.Is(perr, kerr.NotEnoughReplicas) || errors.Is(perr, kerr.NotEnoughReplicasAfterAppend) ||
		strings.Contains(plog.String(), "NOT_ENOUGH_REPLICAS"):
		s.note("probe write with acks=all refused: NOT_ENOUGH_REPLICAS (%d in its client log), then %v", strings.Count(plog.String(), "NOT_ENOUGH_REPLICAS"), perr)
	default:
		t.Errorf("probe write failed without NOT_ENOUGH_REPLICAS: %v", perr)
		s.note("probe write failed: %v", perr)
	}

	if rest := outage - time.Since(t0); rest > 0 {
		time.Sleep(rest)
	}
	during := s.committed() - before
	afterDL := s.deadLetters()
	dlDuring := afterDL - beforeDL
	if beforeDL < 0 || afterDL < 0 {
		dlDuring = -1 // the DLQ's end offsets could not be read; finish counts them all anyway
	}
	if dlDuring > 0 {
		t.Errorf("%d dead letters written while below min ISR", dlDuring)
	}
	refusals := strings.Count(p.log(), "NOT_ENOUGH_REPLICAS")
	// One broker back: 2 in-sync replicas again (and a KRaft majority).
	if err := brk.Restart(stopped[0]); err != nil {
		t.Fatal(err)
	}
	back := time.Since(t0)
	s.waitProgress(s.committed(), 2*time.Minute)
	resumedIn := time.Since(t0) - back
	if err := brk.Restart(stopped[1]); err != nil {
		t.Fatal(err)
	}
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("brokers %v stopped, controller %d kept; 400-request backlog, lag %d when the second stopped; while below min ISR (%.0fs): %d offsets committed, %d dead letters, %d NOT_ENOUGH_REPLICAS in the service log; commits resumed %.1fs after broker %d was back",
		stopped, keep, lagAtStop, back.Seconds(), during, dlDuring, refusals, resumedIn.Seconds(), stopped[0])
	r := s.finish(finishOpts{maxDuplicated: s.brokerFaultSlack(), plusReported: true})
	if r.DeadLetters != 0 {
		t.Errorf("%d dead letters for good requests (by stage %v)", r.DeadLetters, r.DeadLettersByStage)
	}
	if !p.alive() {
		t.Errorf("the rollup process exited while below min ISR (%v); log %s", p.exitErr, p.logPath)
	} else {
		s.note("same process recovered")
	}
	p.stop(t, time.Minute)
}

// lockedBuffer is a bytes.Buffer for a logger that kgo calls from its own goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// deadLetters counts the records in the scenario's DLQ topic (end offsets).
func (s *scenario) deadLetters() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := s.adm.ListEndOffsets(ctx, s.dlq)
	if err != nil {
		return -1
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

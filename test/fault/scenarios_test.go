//go:build fault

package fault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/test/checker"
)

// checkpointLimit is the weekly-rollup pipeline's KAFKA_CHECKPOINT_LIMIT default (read from the
// YAML; the input's own default is 1024): the most records per partition in flight, hence the most
// one crash or revoke can make us process twice.
func checkpointLimit() int {
	return pipelineDefault("weekly-rollup.yaml", "KAFKA_CHECKPOINT_LIMIT", 1024)
}

// Scenario 1a: no fault, the weekly-rollup pipeline. Seed-sized and small requests, a few bad ones
// and one other event: every request answered once, every bad one dead-lettered once.
func TestScenario01aBaselineWeeklyRollup(t *testing.T) {
	s := newScenario(t, "1a baseline, weekly-rollup", scenarioOpts{})
	s.noFault = true
	small, seeds := pool()
	var reqs []request
	for i := range 40 {
		reqs = append(reqs, small[i%len(small)])
		if i%10 == 5 {
			reqs = append(reqs, seeds[(i/10)%len(seeds)])
		}
	}
	reqs = append(reqs, badRequests()[:4]...)
	reqs = append(reqs, dropRequest())

	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	// The marked requests go in among a steady flow of good ones, which run on for 15 s.
	f := s.startFlow(flowInterval(t), mixed)
	s.mustProduce(reqs...)
	time.Sleep(15 * time.Second)
	f.stop()
	r := s.finish(finishOpts{maxDuplicated: 0})
	if r.DeadLetters != 4 {
		t.Errorf("%d dead letters, want 4", r.DeadLetters)
	}
	p.stop(t, time.Minute)
}

// Scenario 1b: no fault, the scenario-worker pipeline with a short task. It writes no responses:
// its "Finished processing" log lines are the outcomes. Invalid JSON must be dead-lettered.
func TestScenario01bBaselineScenarioWorker(t *testing.T) {
	s := newScenario(t, "1b baseline, scenario-worker", scenarioOpts{noOutput: true})
	s.noFault = true
	var reqs []request
	for i := range 40 {
		reqs = append(reqs, request{key: fmt.Sprintf("task-%d", i), value: []byte(fmt.Sprintf(`{"event":"task","n":%d}`, i)),
			expect: checker.ExpectGood, kind: "task"})
		if i%10 == 9 {
			reqs = append(reqs, request{key: fmt.Sprintf("junk-%d", i), value: []byte(fmt.Sprintf("not json %d", i)),
				expect: checker.ExpectBad, kind: "invalid-json"})
		}
	}
	p := s.procs.add(startRollup(t, "worker-1", "scenario-worker.yaml", map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": brk.Addr(),
		"WORKER_GROUP_ID":         s.group,
		"KAFKA_TOPIC":             s.in,
		"WORKER_DLQ_KAFKA_TOPIC":  s.dlq,
		"TASK_DURATION":           "200ms",
		"WORKER_THREADS":          "8",
	}))
	p.waitReady(t, time.Minute)
	s.mustProduce(reqs...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := s.chk.WaitLagZero(ctx, s.produced.Load()); err != nil {
		t.Errorf("worker: %v", err)
	}
	// Stop it so its log is complete before it is read.
	p.stop(t, time.Minute)
	s.finish(finishOpts{maxDuplicated: 0, skipLagWait: true, extra: processedOutcomes(p)})
}

// Scenario 2: kill -9 of the rollup process five times while records flow, restarting it each
// time. Each new instance waits out the killed member's session (10s) before it gets partitions.
func TestScenario02Kill9(t *testing.T) {
	s := newScenario(t, "2 kill -9 of rollup x5", scenarioOpts{})
	f := s.startFlow(flowInterval(t), mixed)
	var committed int64
	const kills = 5
	for i := 1; i <= kills; i++ {
		p := s.start(fmt.Sprintf("rollup-%d", i))
		p.waitReady(t, time.Minute)
		// Kill it only once it really consumes (ready means connected), at a random moment.
		committed = s.waitProgress(committed, 2*time.Minute)
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		p.kill9(t)
		committed = s.committed()
	}
	final := s.start("rollup-final")
	f.stop()
	s.chk.MarkFaultCleared()
	final.waitReady(t, time.Minute)
	s.note("%d kills while the flow ran; recovery includes the last killed member's 10s session", kills)
	s.finish(finishOpts{maxDuplicated: kills * crashDupBound(s.partitions)})
	final.stop(t, time.Minute)
}

// Scenario 3: rolling restarts with SIGTERM of two instances, twice each. A graceful stop drains,
// commits and leaves the group, so nothing may be processed twice.
func TestScenario03SigtermRolling(t *testing.T) {
	s := newScenario(t, "3 SIGTERM rolling restarts, 2 instances", scenarioOpts{})
	f := s.startFlow(flowInterval(t), mixed)
	slots := []*rollupProc{s.start("a-0"), s.start("b-0")}
	for _, p := range slots {
		p.waitReady(t, time.Minute)
	}
	s.waitProgress(0, 2*time.Minute)
	restarts := 0
	for round := 1; round <= 2; round++ {
		for k := range slots {
			slots[k].stop(t, time.Minute)
			restarts++
			time.Sleep(time.Second) // the other instance takes everything over for a moment
			slots[k] = s.start(fmt.Sprintf("%c-%d", 'a'+k, round))
			slots[k].waitReady(t, time.Minute)
			s.waitProgress(s.committed(), 2*time.Minute)
			time.Sleep(time.Second)
		}
	}
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("%d SIGTERM restarts while the flow ran", restarts)
	s.finish(finishOpts{maxDuplicated: 0})
	for _, p := range slots {
		p.stop(t, time.Minute)
	}
}

// Scenario 4: rebalance churn. Three instance slots; every 400ms the next slot toggles: a
// running instance gets SIGTERM (not awaited: it drains and leaves while the churn goes on), a
// stopped one is started. A process takes about half a second to start and longer to join, so
// this keeps the group in an almost permanent rebalance. After the churn one instance stays.
// 4 runs the classic group protocol (the default); 4b the same churn with KIP-848's, where the
// broker supports it (Kafka 4, the dev broker), so that the two rows compare duplicates and the
// longest an input waited (the longest pause of a partition under the steady flow).
func TestScenario04RebalanceChurn(t *testing.T) {
	churn(t, "4 rebalance churn, 3 instances, classic protocol", "classic")
}

func TestScenario04bRebalanceChurnKIP848(t *testing.T) {
	if exactlyOnce {
		t.Skip("group_protocol consumer is not combined with exactly_once")
	}
	if why := noKIP848(); why != "" {
		t.Skipf("the broker does not serve KIP-848: %s", why)
	}
	churn(t, "4b rebalance churn, 3 instances, KIP-848 consumer protocol", "consumer")
}

// noKIP848 says why the broker cannot run a KIP-848 group ("" when it can): every broker must
// serve ConsumerGroupHeartbeat v1 (Kafka 4.0).
func noKIP848() string {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(brk.Addr(), ",")...)}, devbroker.ClientOpts(maxMessageBytes)...)...)
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		return err.Error()
	}
	for _, v := range vs.Sorted() {
		if max, ok := v.KeyMaxVersion(kmsg.ConsumerGroupHeartbeat.Int16()); !ok || max < 1 {
			return fmt.Sprintf("broker %d looks like Kafka %s", v.NodeID, v.VersionGuess())
		}
	}
	return ""
}

func churn(t *testing.T, name, protocol string) {
	const (
		churnFor = 40 * time.Second
		cadence  = 400 * time.Millisecond
	)
	s := newScenario(t, name, scenarioOpts{})
	start := func(name string) *rollupProc { return s.start(name, "KAFKA_GROUP_PROTOCOL", protocol) }
	f := s.startFlow(flowInterval(t), mixed)
	type slot struct {
		p        *rollupProc
		stopping bool
	}
	var slots [3]slot
	starts, stops := 0, 0
	deadline := time.Now().Add(churnFor)
	for i := 0; time.Now().Before(deadline); i++ {
		sl := &slots[i%3]
		switch {
		case sl.p == nil || !sl.p.alive():
			sl.p, sl.stopping = start(fmt.Sprintf("slot%d-%d", i%3, i)), false
			starts++
		case !sl.stopping:
			sl.p.terminate()
			sl.stopping = true
			stops++
		}
		time.Sleep(cadence)
	}
	// Keep one running instance, stop the rest and wait for them.
	var keep *rollupProc
	for i := range slots {
		if slots[i].p != nil && slots[i].p.alive() && !slots[i].stopping && keep == nil {
			keep = slots[i].p
			continue
		}
		if slots[i].p != nil && slots[i].p.alive() && !slots[i].stopping {
			slots[i].p.terminate()
			stops++
		}
	}
	f.stop()
	s.chk.MarkFaultCleared()
	if keep == nil {
		keep = start("final")
		starts++
	}
	unclean := 0
	for _, p := range s.procs.all() {
		if p == keep {
			continue
		}
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			t.Errorf("%s still running a minute after SIGTERM", p.name)
			p.kill()
		}
		if p.exitErr != nil {
			unclean++
			t.Logf("%s exited with %v after SIGTERM; log %s", p.name, p.exitErr, p.logPath)
		}
	}
	if unclean > 0 {
		t.Errorf("%d of %d stopped instances did not exit cleanly after SIGTERM", unclean, stops)
		s.note("%d unclean exits", unclean)
	}
	s.note("%d starts and %d SIGTERMs in %v (one toggle per %v)", starts, stops, churnFor, cadence)
	r := s.finish(finishOpts{maxDuplicated: (starts + stops) * s.partitions * checkpointLimit()})
	s.note("longest wait %.1f s (%v)", r.MaxWait.Seconds(), r.MaxWaitID)
	keep.stop(t, time.Minute)
}

// Scenario 5: the broker leading the input's partition 0 is killed with SIGKILL and restarted on
// the same data while the service runs; the service must recover on its own (same process). On
// a 3-node cluster this is a partial failure: the partitions it led get new leaders among the
// other two, which still make min.insync.replicas 2.
func TestScenario05BrokerKill9(t *testing.T) {
	if _, dev := brk.(*devBroker); dev && exactlyOnce {
		// Measured: on the dev broker, 1 and 3 inputs of about 137 came back committed without a
		// read_committed outcome after kill -9 of the broker process, while the same scenario on
		// Kafka 3.9 lost none (twice). kfake rebuilds transactions from its files after a crash
		// without Kafka's transaction log, so a broker crash in the middle of a commit is out of
		// what the dev broker models; the row is asserted on real Kafka in CI.
		t.Skip("exactly-once across a crash of the broker itself is asserted on real Kafka only")
	}
	s := newScenario(t, "5 broker kill -9 + restart", scenarioOpts{})
	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	f := s.startFlow(flowInterval(t), mixed)
	s.waitProgress(0, 2*time.Minute)
	time.Sleep(5 * time.Second) // records in every stage of the pipeline when the fault hits
	victim := s.leader(s.in, 0)
	t0 := time.Now()
	if err := brk.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := brk.Restart(victim); err != nil {
		t.Fatal(err)
	}
	down := time.Since(t0)
	f.stop() // the records the producer held during the outage are written now
	s.chk.MarkFaultCleared()
	s.note("%s down %.0fs", s.brokerName(victim, "leader of input p0"), down.Seconds())
	s.finishBrokerFault(p)
}

// Scenario 6: the broker leading the input's partition 0 is frozen (SIGSTOP) for 20s, then
// continued.
func TestScenario06BrokerPause(t *testing.T) {
	s := newScenario(t, "6 broker paused 20s", scenarioOpts{})
	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	f := s.startFlow(flowInterval(t), mixed)
	s.waitProgress(0, 2*time.Minute)
	time.Sleep(5 * time.Second) // records in every stage of the pipeline when the fault hits
	victim := s.leader(s.in, 0)
	t0 := time.Now()
	if err := brk.Pause(victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	if err := brk.Resume(victim); err != nil {
		t.Fatal(err)
	}
	f.stop()
	s.chk.MarkFaultCleared()
	s.note("%s paused %.0fs", s.brokerName(victim, "leader of input p0"), time.Since(t0).Seconds())
	s.finishBrokerFault(p)
}

// Scenario 7: a response larger than the output topic's max.message.bytes (2000 bytes here). The
// request must become exactly one dead letter with error_stage deliver, without being replayed,
// and the records after it on the same (only) partition must still be answered.
func TestScenario07ResponseTooLarge(t *testing.T) {
	s := newScenario(t, "7 response > output max.message.bytes", scenarioOpts{
		partitions: 1, outConfigs: map[string]*string{"max.message.bytes": strp("2000")},
	})
	s.noFault = true
	small, _ := pool()
	reqs := append([]request(nil), small[:5]...)
	reqs = append(reqs, bigResponseRequest())
	reqs = append(reqs, small[5:10]...)

	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	s.mustProduce(reqs...)
	r := s.finish(finishOpts{maxDuplicated: 0})
	if r.DeadLetters != 1 || r.DeadLettersByStage["deliver"] != 1 {
		t.Errorf("dead letters %d by stage %v, want exactly one with stage deliver", r.DeadLetters, r.DeadLettersByStage)
	}
	// No endless replay: a while later, still one dead letter and nothing more in flight.
	time.Sleep(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	outs, err := s.chk.ReadOutcomes(ctx, checker.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dl := 0
	for _, o := range outs {
		if o.Kind == checker.DeadLetter {
			dl++
		}
	}
	if dl != 1 {
		t.Errorf("%d dead letters 5s after lag 0, want still 1 (replayed?)", dl)
	}
	if lag, _, err := s.chk.Lag(ctx); err != nil || lag != 0 {
		t.Errorf("lag %d (%v) 5s after lag 0", lag, err)
	}
	s.note("big response dead-lettered once, stage deliver; 5 later records on the partition answered")
	p.stop(t, time.Minute)
}

// Scenario 8: the DLQ cannot take a dead letter (its max.message.bytes is below the record). The
// pipeline must not commit past the record nor drop it; the records after it are processed (the
// checkpoint window) but stay uncommitted. When the topic's limit is raised (kadm
// AlterTopicConfigs), everything is delivered and committed, without restarting the service.
func TestScenario08DLQUnwritable(t *testing.T) {
	s := newScenario(t, "8 DLQ unwritable, then fixed", scenarioOpts{
		partitions: 1, dlqConfigs: map[string]*string{"max.message.bytes": strp("1024")},
	})
	small, _ := pool()
	bad := request{key: "bad-big", value: js(`{"event":"rollup","organizationId":"x","weekly":"` + randHex(2048) + `"}`),
		expect: checker.ExpectBad, kind: "weekly-not-list-4KB"}
	reqs := append([]request(nil), small[:3]...)
	reqs = append(reqs, bad)
	reqs = append(reqs, small[3:13]...)
	const badOffset = 3

	p := s.start("rollup-1")
	p.waitReady(t, time.Minute)
	s.mustProduce(reqs...)

	// The records before the bad one are answered, and so are those after it that fit in the
	// partition's checkpoint window (the window starts at the bad record, which stays in it)...
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outs, err := s.chk.ReadOutcomes(ctx, checker.ReadOptions{Target: badOffset, Quiet: 5 * time.Second})
	if err != nil {
		t.Fatalf("the records before the undeliverable dead letter were not answered: %v", err)
	}
	after := 0
	for _, o := range outs {
		if o.Kind == checker.DeadLetter {
			t.Errorf("a dead letter was written while the DLQ refused it: %+v", o)
		}
		if o.Source.Offset > badOffset {
			after++
		}
	}
	// ...but nothing is committed past it.
	if c := s.committed(); c > badOffset {
		t.Errorf("committed offset %d passed the record at %d that has no outcome", c, badOffset)
	} else {
		s.note("while the DLQ refused: committed held at offset %d, %d of the 10 later records answered (checkpoint window %d)",
			c, after, checkpointLimit())
	}
	if strings.Contains(p.log(), "too large") {
		s.note("the refusal is logged")
	}

	resp, err := s.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: strp(fmt.Sprint(maxMessageBytes))}}, s.dlq)
	if err == nil {
		_, err = resp.On(s.dlq, nil)
	}
	if err != nil {
		t.Fatalf("raise max.message.bytes of %s: %v", s.dlq, err)
	}
	s.chk.MarkFaultCleared()

	// Nacked records come back after at most 30s: give it three of those.
	lctx, lcancel := context.WithTimeout(context.Background(), 100*time.Second)
	rec, err := s.chk.WaitLagZero(lctx, s.produced.Load())
	lcancel()
	dupBound := 0
	if err != nil {
		t.Errorf("not delivered within 100s of the DLQ accepting the record again, without a restart: %v", err)
		s.note("NOT recovered without restart; recovered after restarting the process")
		// Show that nothing was dropped: a new process delivers it.
		p.stop(t, time.Minute)
		p = s.start("rollup-2")
		p.waitReady(t, time.Minute)
		lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rec, err = s.chk.WaitLagZero(lctx, s.produced.Load())
		lcancel()
		if err != nil {
			t.Errorf("not delivered after a restart either: %v", err)
		}
		dupBound = len(reqs) // the records after the bad one are processed again
	}
	s.recovery = rec
	r := s.finish(finishOpts{maxDuplicated: dupBound, skipLagWait: true})
	if r.DeadLetters != 1 {
		t.Errorf("%d dead letters, want 1", r.DeadLetters)
	}
	p.stop(t, time.Minute)
}

// Scenario 10: bad inputs mixed 1:10 with good ones under load, decompression bombs among them.
// Every bad one gives one dead letter with a reason, every good one a response, and the
// process's memory stays bounded. The two bombs are produced back to back, twice, so that both
// pipeline threads (pinned to 2) can be inflating one at the same moment: the worst case.
func TestScenario10BadInputsUnderLoad(t *testing.T) {
	const rssBound = 1536 << 20 // 1.5 GiB
	s := newScenario(t, "10 bad inputs 1:10 under load", scenarioOpts{})
	s.noFault = true
	cheap, bomb := badRequests(), bombs()
	var reqs []request
	nbad, good := 0, 0
	for unit := range 20 {
		for range 10 {
			reqs = append(reqs, mixed(good))
			good++
		}
		if unit == 6 || unit == 14 {
			reqs = append(reqs, bomb...)
			nbad += len(bomb)
			continue
		}
		reqs = append(reqs, cheap[unit%len(cheap)])
		nbad++
	}
	p := s.start("rollup-1", "ROLLUP_THREADS", "2")
	p.waitReady(t, time.Minute)
	// Under load: everything at once, in a few large produce calls.
	s.addLoad(fmt.Sprintf("backlog %d", len(reqs)))
	for i := 0; i < len(reqs); i += 20 {
		s.mustProduce(reqs[i:min(i+20, len(reqs))]...)
	}
	r := s.finish(finishOpts{maxDuplicated: 0})
	if r.DeadLetters != nbad {
		t.Errorf("%d dead letters for %d bad inputs", r.DeadLetters, nbad)
	}
	peak := p.peakRSS.Load()
	s.note("%d bad (%d kinds, 2 gzip and 2 zstd bombs) among %d; 2 threads; peak RSS %d MiB (bound %d MiB)",
		nbad, len(cheap)+len(bomb), len(reqs), peak>>20, rssBound>>20)
	if peak > rssBound {
		t.Errorf("peak RSS %d MiB over the bound %d MiB", peak>>20, rssBound>>20)
	}
	p.stop(t, time.Minute)
}

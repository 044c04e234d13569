package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// session is one connected lifetime of the kafka input: one kgo client in the consumer group,
// a poll loop feeding the checkpointer, a commit loop, and the rebalance callbacks.
//
// Goroutines and what they touch:
//   - poll loop: PollFetches, checkpointer.add, AllowRebalance, syncPause.
//   - commit loop: checkpointer.commitAll when a position moves and every commit_period, gauges.
//   - kgo's group goroutine: onAssigned / onRevoked / onLost. With BlockRebalanceOnPoll these
//     never run between a poll returning and its AllowRebalance.
//   - Benthos: Read (checkpointer.next) and ack functions from any goroutine.
//
// All shared state lives in the checkpointer (one mutex) except the paused set kgo knows about,
// which syncPause guards with pauseMu.
type session struct {
	in  *kafkaInput
	cl  *kgo.Client
	cp  *checkpointer
	log *service.Logger

	pollCancel context.CancelFunc
	pollDone   chan struct{}
	stopCommit chan struct{}
	commitDone chan struct{}

	dead     chan struct{} // closed when the session failed fatally; Read then reports ErrNotConnected
	failOnce sync.Once

	joined atomic.Bool  // group joined and partitions (maybe none) assigned since the last loss
	since  atomic.Int64 // unix nanoseconds the session started

	pauseMu sync.Mutex
	paused  map[topicPartition]bool // what kgo has paused, per syncPause

	gaugeMu  sync.Mutex
	reported map[topicPartition]bool // partitions whose gauges hold a value

	errLogMu   sync.Mutex
	errLogLast time.Time
	errLogSupp int
}

// startSession creates the client and checks that a broker answers, so wrong credentials or a
// bad certificate surface here (as errors isFatalClientErr recognises) rather than as silent
// retries inside the client.
func startSession(ctx context.Context, in *kafkaInput) (*session, error) {
	s := &session{
		in:         in,
		log:        in.log,
		pollDone:   make(chan struct{}),
		stopCommit: make(chan struct{}),
		commitDone: make(chan struct{}),
		dead:       make(chan struct{}),
		paused:     make(map[topicPartition]bool),
		reported:   make(map[topicPartition]bool),
	}
	s.cp = newCheckpointer(in.limit, s.commitOffsets)
	// On a revoke, records of the partition still in the pipeline get up to shutdown_timeout to
	// finish, so that a rebalance (a rolling restart) re-reads nothing this member finished.
	s.cp.revokeWait = in.shutdownTimeout
	cl, err := kgo.NewClient(in.clientOpts(s)...)
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	s.cl = cl
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err = annotateClientErr(cl, cl.Ping(pctx))
	cancel()
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("reach brokers: %w", err)
	}
	s.since.Store(time.Now().UnixNano())
	var pollCtx context.Context
	pollCtx, s.pollCancel = context.WithCancel(context.Background())
	go s.pollLoop(pollCtx)
	go s.commitLoop()
	return s, nil
}

// pollLoop moves fetched records into the checkpointer until shutdown or a fatal error.
func (s *session) pollLoop(ctx context.Context) {
	defer close(s.pollDone)
	for {
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			s.cl.AllowRebalance()
			return
		}
		var fatal error
		fetches.EachError(func(topic string, partition int32, err error) {
			if err = annotateClientErr(s.cl, err); isFatalClientErr(err) {
				fatal = err
				return
			}
			var gs *kgo.ErrGroupSession
			if errors.As(err, &gs) {
				s.joined.Store(false)
			}
			s.logFetchErr(topic, partition, err)
		})
		pauseChanged := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 && s.cp.add(topicPartition{p.Topic, p.Partition}, p.HighWatermark, p.Records) {
				pauseChanged = true
			}
		})
		// The records are in the checkpointer: a revoke that runs from here on drops them.
		s.cl.AllowRebalance()
		if pauseChanged {
			s.syncPause()
		}
		if fatal != nil {
			s.fail(fatal)
			return
		}
	}
}

// fail ends the session after a non-retryable error: Read reports ErrNotConnected and Benthos's
// reconnect goes through Connect, which waits out the long back-off first.
func (s *session) fail(err error) {
	s.failOnce.Do(func() {
		d := s.in.backoff.failed()
		s.joined.Store(false)
		s.log.Errorf("kafka input: non-retryable client error, reconnecting in %v: %v", d, err)
		close(s.dead)
	})
}

// logFetchErr logs retryable fetch errors at most once per 10 seconds (the client retries them
// itself; a broker outage would otherwise log on every poll).
func (s *session) logFetchErr(topic string, partition int32, err error) {
	s.errLogMu.Lock()
	defer s.errLogMu.Unlock()
	if time.Since(s.errLogLast) < 10*time.Second {
		s.errLogSupp++
		return
	}
	s.log.Warnf("kafka input: fetch error on %s/%d (retrying; %d similar suppressed): %v", topic, partition, s.errLogSupp, err)
	s.errLogLast, s.errLogSupp = time.Now(), 0
}

// syncPause makes kgo's paused partitions match the checkpointer's wishes. It reapplies the
// whole desired set under pauseMu rather than a delta, so a pause and a resume racing from two
// goroutines cannot be applied out of order and leave a partition paused with room to spare.
// Partitions no longer assigned drop out of the set and are resumed, so a partition that comes
// back is not stuck paused in kgo.
func (s *session) syncPause() {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	want := s.cp.pausedSet()
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for tp := range want {
		if !s.paused[tp] {
			pause[tp.topic] = append(pause[tp.topic], tp.partition)
		}
	}
	for tp := range s.paused {
		if !want[tp] {
			resume[tp.topic] = append(resume[tp.topic], tp.partition)
		}
	}
	if len(pause) > 0 {
		s.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		s.cl.ResumeFetchPartitions(resume)
	}
	s.paused = want
}

// ackFunc returns the AckFunc of one delivery. A nack schedules a re-delivery after a back-off;
// the record stays in its partition's window meanwhile, so no commit can pass it.
func (s *session) ackFunc(d *delivery) service.AckFunc {
	return func(_ context.Context, err error) error {
		attempt, pauseChanged := s.cp.ack(d, err)
		if pauseChanged {
			s.syncPause()
		}
		if attempt > 0 {
			wait := nackBackoff(attempt)
			s.log.Warnf("kafka input: record %s/%d@%d was rejected (attempt %d), delivering it again in %v: %v",
				d.rec.Topic, d.rec.Partition, d.rec.Offset, attempt, wait, err)
			time.AfterFunc(wait, func() { s.cp.redeliver(d) })
		}
		return nil
	}
}

// commitOffsets is the checkpointer's commitFunc: a synchronous commit of explicit offsets. A
// commit that kgo answers with a per-partition error counts as failed; the checkpointer then
// keeps the offsets as uncommitted and the next period tries again.
func (s *session) commitOffsets(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	var rerr error
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && rerr == nil {
					rerr = fmt.Errorf("partition %s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	if rerr != nil {
		s.in.metrics.commitErrors.Incr(1)
		return fmt.Errorf("commit offsets: %w", rerr)
	}
	s.in.metrics.commits.Incr(1)
	s.in.lastCommit.Store(time.Now().UnixNano())
	return nil
}

// commitLoop commits as soon as an acknowledgement moves a partition's position, so that a crash
// replays little more than the records in flight (at most checkpoint_limit per partition, plus
// what was acknowledged during the one commit round trip under way). Only this goroutine commits
// on the way (revoke and shutdown commit from their own paths under the same commitMu), so one
// commit is in flight at a time and acknowledgements that arrive meanwhile coalesce into the next.
// The ticker retries a failed commit; the gauges are published after every commit attempt.
func (s *session) commitLoop() {
	defer close(s.commitDone)
	t := time.NewTicker(s.in.commitPeriod)
	defer t.Stop()
	for {
		select {
		case <-s.cp.moved:
			s.commitNow()
			s.updateGauges()
		case <-t.C:
			s.commitNow()
			s.updateGauges()
		case <-s.stopCommit:
			return
		}
	}
}

func (s *session) commitNow() {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := s.cp.commitAll(ctx); err != nil {
		// Expected briefly during a rebalance (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION).
		s.log.Warnf("kafka input: %v (will retry)", err)
	}
}

// updateGauges publishes lag and window size per live partition, and zeroes partitions that
// are gone so a revoked partition does not keep reporting its last lag.
func (s *session) updateGauges() {
	s.gaugeMu.Lock()
	defer s.gaugeMu.Unlock()
	now := make(map[topicPartition]bool)
	for _, st := range s.cp.stats() {
		p := strconv.Itoa(int(st.tp.partition))
		s.in.metrics.inFlight.Set(int64(st.inFlight), st.tp.topic, p)
		s.in.metrics.lag.Set(max(st.lag, 0), st.tp.topic, p)
		now[st.tp] = true
	}
	for tp := range s.reported {
		if !now[tp] {
			p := strconv.Itoa(int(tp.partition))
			s.in.metrics.inFlight.Set(0, tp.topic, p)
			s.in.metrics.lag.Set(0, tp.topic, p)
		}
	}
	s.reported = now
}

func flatten(m map[string][]int32) []topicPartition {
	var out []topicPartition
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, topicPartition{t, p})
		}
	}
	return out
}

// onAssigned runs once per completed rebalance (kgo calls it even when nothing new arrives).
func (s *session) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	s.cp.assign(flatten(assigned))
	s.joined.Store(true)
	s.in.metrics.rebalances.Incr(1)
}

// onRevoked commits what is contiguous for the revoked partitions and forgets them; see
// checkpointer.revoke for the walkthrough. kgo also calls it when the client leaves the group.
func (s *session) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := s.cp.revoke(ctx, flatten(revoked)); err != nil {
		s.log.Warnf("kafka input: commit on revoke: %v (the next owner re-reads from the last commit)", err)
	}
	s.syncPause()
	s.updateGauges()
}

// onLost forgets partitions without committing (the session expired or failed).
func (s *session) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.cp.lost(flatten(lost))
	s.joined.Store(false)
	s.syncPause()
	s.updateGauges()
}

// shutdown ends the session. With drain (a normal Close): stop fetching, stop handing out, wait
// for the messages in the pipeline up to shutdown_timeout, commit, then close the client, which
// runs onRevoked (committing anything acked since) and leaves the group. Without drain (after a
// fatal error, where commits cannot succeed anyway) it skips the wait.
func (s *session) shutdown(ctx context.Context, drain bool) {
	s.pollCancel()
	<-s.pollDone
	s.cp.stopHandingOut()
	if drain {
		wctx, cancel := context.WithTimeout(ctx, s.in.shutdownTimeout)
		if err := s.cp.waitDrained(wctx); err != nil {
			s.log.Warnf("kafka input: shutdown: messages still in flight after %v; they will be read again", s.in.shutdownTimeout)
		}
		cancel()
	}
	close(s.stopCommit)
	<-s.commitDone
	if drain {
		s.commitNow()
	}
	s.cl.Close()
	s.joined.Store(false)
	s.cp.lost(flatten(s.allTracked()))
	s.updateGauges()
}

// allTracked lists the partitions the checkpointer still tracks (none after a clean leave).
func (s *session) allTracked() map[string][]int32 {
	out := map[string][]int32{}
	for _, st := range s.cp.stats() {
		out[st.tp.topic] = append(out[st.tp.topic], st.tp.partition)
	}
	return out
}

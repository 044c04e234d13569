package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
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

	joined atomic.Bool // group joined and partitions (maybe none) assigned since the last loss

	topics *topicWatch // input topics that do not exist

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
	// On a revoke, records of the partition still in the pipeline get up to revoke_timeout to
	// finish, so that a rebalance (a rolling restart) re-reads nothing this member finished.
	s.cp.revokeWait = in.revokeTimeout
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
	var pollCtx context.Context
	pollCtx, s.pollCancel = context.WithCancel(context.Background())
	go s.pollLoop(pollCtx)
	go s.commitLoop()
	s.topics = &topicWatch{in: in, cl: cl}
	go s.topics.run(pollCtx)
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
	s.in.metrics.paused.Set(int64(len(want)))
}

// read hands out the next record (kafkaInput.Read).
func (s *session) read(ctx context.Context) (*service.Message, service.AckFunc, error) {
	for {
		select {
		case <-s.dead: // a failed session hands out nothing more: its commits cannot succeed
			return nil, nil, service.ErrNotConnected
		default:
		}
		if d := s.cp.next(); d != nil {
			return newRecordMessage(d.rec, d.lag), s.ackFunc(d), nil
		}
		select {
		case <-s.cp.ready:
		case <-s.dead:
			return nil, nil, service.ErrNotConnected
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// snapshot is what the readiness gate sees of the session.
func (s *session) snapshot() (connected bool, missing []string, parts []partitionProgress) {
	select {
	case <-s.dead:
		return false, nil, nil
	default:
	}
	if !s.joined.Load() {
		return false, s.topics.missingTopics(), nil
	}
	return true, s.topics.missingTopics(), s.cp.progress()
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
			s.in.metrics.redelivered.Incr(1, d.rec.Topic, strconv.Itoa(int(d.rec.Partition)))
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
// checkpointer.revoke for the walkthrough. kgo also calls it when the client leaves the group. The
// records still in the pipeline get revoke_timeout to finish; the commit then has its own deadline.
func (s *session) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	reread, err := s.cp.revoke(context.Background(), flatten(revoked))
	if err != nil {
		s.log.Warnf("kafka input: commit on revoke of %s: %v; the next owner re-reads from the last commit (%v)",
			describeParts(revoked), err, reread)
	} else if reread.total() > 0 {
		s.log.Infof("kafka input: revoked %s; the next owner re-reads what had not finished in order (%v)",
			describeParts(revoked), reread)
	}
	s.countReread(reread)
	s.syncPause()
	s.updateGauges()
}

// onLost forgets partitions without committing (the session expired or failed).
func (s *session) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	reread := s.cp.lost(flatten(lost))
	if len(lost) > 0 {
		s.log.Warnf("kafka input: lost partitions %s (the group session expired or the coordinator no longer knows this member); they are re-read from the last commit (%v)",
			describeParts(lost), reread)
	}
	s.countReread(reread)
	s.joined.Store(false)
	s.syncPause()
	s.updateGauges()
}

// shutdown ends the session. final (a normal Close): stop fetching and handing out, commit what is
// finished, leave the group, all within shutdown_timeout. Not final (after a fatal error, where
// commits cannot succeed anyway): the same without the commit.
//
// Why nothing here waits for acknowledgements: Benthos calls the input's Close only after every
// message it handed to a pipeline thread was acknowledged, or after its own shutdown deadline made
// it give up on them. The only records still out are then those it will never acknowledge (one it
// read but dropped when the shutdown began, or those it gave up on); waiting for them only delays
// the leave, and a member that has not left holds its partitions until its session times out.
// They sit above the commit position and their next owner reads them again.
func (s *session) shutdown(final bool) {
	deadline := time.Now().Add(s.in.shutdownTimeout)
	s.pollCancel()
	<-s.pollDone
	s.cp.stopHandingOut(deadline)
	close(s.stopCommit)
	<-s.commitDone
	if final {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := s.cp.commitAll(ctx); err != nil {
			s.log.Warnf("kafka input: shutdown: %v (the next owner re-reads from the last commit)", err)
		}
		cancel()
	}
	// Leaving runs onRevoked (whose commit is bounded by the same deadline) and tells the
	// coordinator to rebalance now. Bounded: a leave that cannot reach the coordinator is
	// abandoned, and the group reassigns our partitions after session_timeout instead. kgo waits
	// for a join already in flight before it leaves, and Close waits for the leave, so both run
	// in a goroutine that we stop waiting for shortly after the deadline: the process is exiting
	// and must not reach the engine's forced exit before it has committed.
	left := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		err := s.cl.LeaveGroupContext(ctx)
		s.cl.Close()
		left <- err
	}()
	const why = "the group reassigns this member's partitions after session_timeout"
	select {
	case err := <-left:
		if err != nil && final {
			s.log.Warnf("kafka input: shutdown: leaving the group: %v (%s)", err, why)
		}
	case <-time.After(time.Until(deadline) + closeGrace):
		s.log.Warnf("kafka input: shutdown: the client did not close within shutdown_timeout (%s)", why)
	}
	s.joined.Store(false)
	if reread := s.cp.lost(flatten(s.allTracked())); reread.total() > 0 {
		s.log.Warnf("kafka input: shutdown: partitions left without a final commit; the next owner re-reads from the last commit (%v)", reread)
		s.countReread(reread)
	}
	s.updateGauges()
}

// countReread adds to kafka_reprocessed_records_total the records this member processed (or still
// is processing) that their partition's next owner processes again: at-least-once duplicates.
func (s *session) countReread(r rereadCount) {
	if n := r.total(); n > 0 {
		s.in.metrics.reread.Incr(n)
	}
}

// describeParts formats an assignment for a log line, sorted: "topic[0 2]".
func describeParts(m map[string][]int32) string {
	topics := make([]string, 0, len(m))
	for t := range m {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	var b strings.Builder
	for i, t := range topics {
		ps := slices.Clone(m[t])
		slices.Sort(ps)
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s%v", t, ps)
	}
	return b.String()
}

// allTracked lists the partitions the checkpointer still tracks (none after a clean leave).
func (s *session) allTracked() map[string][]int32 {
	out := map[string][]int32{}
	for _, st := range s.cp.stats() {
		out[st.tp.topic] = append(out[st.tp.topic], st.tp.partition)
	}
	return out
}

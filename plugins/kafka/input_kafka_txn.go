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
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnSession is the exactly-once consumer session (see transaction.go for the mode). One loop runs
// the transactions, one after the other:
//
//  1. Begin. Poll records for up to transaction_interval (at most checkpoint_limit per assigned
//     partition) and queue them; Benthos' threads take them through Read meanwhile, so requests
//     still run concurrently, and the outputs produce their outcomes into the open transaction.
//  2. Wait until every record of the transaction is settled: taken by a thread and acknowledged
//     (outcome acknowledged by the broker) or rejected. A request slower than the interval
//     extends the transaction.
//  3. End: commit if every record was acknowledged, which writes the offsets of every record
//     polled in step 1 with the outcomes (kgo's GroupTransactSession commits all it polled:
//     that is why step 2 waits for all of them); abort otherwise, or if the group rebalanced
//     meanwhile (the session aborts by itself then). An abort rewinds the consumer to the last
//     committed offsets, so the records are read and processed again; a reader with
//     read_committed never sees the aborted outcomes.
//
// Why nothing overlaps: kgo allows Produce from any goroutine but not during Begin or End, and a
// record's outcome is produced before its acknowledgement, so once step 2 is over no output is
// producing and none will until the loop hands out the next transaction's records.
type txnSession struct {
	in     *kafkaInput
	ts     *kgo.GroupTransactSession
	cl     *kgo.Client
	log    *service.Logger
	hub    *txnHub
	topics *topicWatch

	loopCancel context.CancelFunc
	loopDone   chan struct{}
	closeBy    atomic.Int64 // unix nanoseconds: the deadline of the final End, once shutting down

	dead     chan struct{}
	failOnce sync.Once
	joined   atomic.Bool

	mu       sync.Mutex
	gen      uint64         // the open transaction; acknowledgements of older ones are ignored
	queue    []*txnDelivery // polled in this transaction, not yet handed out
	out      int            // handed out in this transaction, not yet settled
	rejected error          // the first rejection in this transaction
	parts    map[topicPartition]*partitionState
	reported map[topicPartition]bool // partitions whose gauges hold a value (loop goroutine only)
	ready    chan struct{}           // cap 1: the queue has records
	settled  chan struct{}           // cap 1: out dropped to 0
}

type txnDelivery struct {
	rec *kgo.Record
	gen uint64
	out bool
	lag int64
}

// txnEndTimeout bounds one End (flush, offset commit, heartbeat, EndTxn) outside shutdown.
const txnEndTimeout = 30 * time.Second

func startTxnSession(ctx context.Context, in *kafkaInput) (*txnSession, error) {
	s := &txnSession{
		in:       in,
		log:      in.log,
		hub:      in.hub,
		loopDone: make(chan struct{}),
		dead:     make(chan struct{}),
		parts:    map[topicPartition]*partitionState{},
		reported: map[topicPartition]bool{},
		ready:    make(chan struct{}, 1),
		settled:  make(chan struct{}, 1),
	}
	opts := append(in.groupOpts(),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.TransactionalID(in.transactionalID),
		kgo.TransactionTimeout(in.transactionTimeout),
		// Offsets pending in another member's transaction are not handed to us until it ends
		// (KIP-447), and records of aborted transactions are never read.
		kgo.RequireStableFetchOffsets(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	opts = append(opts, in.hub.txnProducerOpts()...)
	ts, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("create transactional client: %w", err)
	}
	s.ts, s.cl = ts, ts.Client()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err = annotateClientErr(s.cl, s.cl.Ping(pctx))
	cancel()
	if err != nil {
		ts.Close()
		return nil, fmt.Errorf("reach brokers: %w", err)
	}
	s.hub.publish(ts)
	var loopCtx context.Context
	loopCtx, s.loopCancel = context.WithCancel(context.Background())
	s.topics = &topicWatch{in: in, cl: s.cl}
	go s.topics.run(loopCtx)
	go s.loop(loopCtx)
	in.log.Infof("kafka input: exactly-once, transactional id %q, transactions of up to %v", in.transactionalID, in.txnInterval)
	return s, nil
}

// loop runs transactions until shutdown or a fatal error; see txnSession.
func (s *txnSession) loop(ctx context.Context) {
	defer close(s.loopDone)
	aborts := 0
	for ctx.Err() == nil {
		if err := s.ts.Begin(); err != nil {
			s.fail(s.explainFatal("begin transaction", err))
			return
		}
		polled := s.poll(ctx)
		commit := s.waitSettled(ctx)

		endBy := time.Now().Add(txnEndTimeout)
		if by := s.closeBy.Load(); by != 0 { // shutting down: within shutdown_timeout
			endBy = time.Unix(0, by)
		}
		ectx, cancel := context.WithDeadline(context.Background(), endBy)
		committed, err := s.ts.End(ectx, kgo.TransactionEndTry(commit))
		cancel()
		rejected := s.endGeneration()
		s.publishGauges()
		switch {
		case isFencedErr(err) || isFatalClientErr(err):
			// A rejection for a stale epoch (produce answered INVALID_PRODUCER_EPOCH) is not
			// enough to tell a fence from a broker-side timeout: the next Begin says which.
			s.fail(s.explainFatal("end transaction", err))
			return
		case err != nil:
			s.in.metrics.txnAborts.Incr(1)
			if err := s.abortOpen(ctx); err != nil {
				s.fail(err)
				return
			}
		case committed:
			if polled > 0 { // an idle transaction commits nothing: not worth counting
				s.in.metrics.txnCommits.Incr(1)
				s.in.metrics.commits.Incr(1)
			}
			aborts = 0
			continue
		case polled > 0:
			s.in.metrics.txnAborts.Incr(1)
		}
		// Aborted: the consumer is back at the committed offsets. When a record was rejected (a
		// failing output) or the commit failed (brokers unreachable), pause before the next
		// attempt, doubling up to 30 s, so that a lasting failure is retried with a back-off
		// (never skipped), as in at-least-once mode, not in a loop.
		aborts++
		if why := errors.Join(rejected, err); why != nil && ctx.Err() == nil {
			wait := nackBackoff(aborts)
			s.log.Warnf("kafka input: transaction aborted (attempt %d), its records are read again in %v: %v", aborts, wait, why)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
	}
}

// explainFatal says what a fatal transaction error means for the operator.
func (s *txnSession) explainFatal(what string, err error) error {
	if isFencedErr(err) {
		return fmt.Errorf("%s: %w (fenced: the broker aborted the transaction after transaction_timeout, or another instance with transactional id %q started; each live instance needs its own id)", what, err, s.in.transactionalID)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// abortOpen ends, with an abort, a transaction that End left open because a request failed (the
// broker went away mid-commit): a new one cannot begin before. It retries every second until the
// brokers answer, so a broker restart costs a transaction, not the session.
func (s *txnSession) abortOpen(ctx context.Context) error {
	for {
		ectx, cancel := context.WithTimeout(ctx, txnEndTimeout)
		_, err := s.ts.End(ectx, kgo.TryAbort)
		cancel()
		switch {
		case err == nil:
			return nil
		case isFencedErr(err) || isFatalClientErr(err) || ctx.Err() != nil:
			return s.explainFatal("abort transaction", err)
		}
		s.log.Warnf("kafka input: aborting the open transaction: %v (retrying in 1s)", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// poll fills the transaction for up to transaction_interval, or until it holds checkpoint_limit
// records per assigned partition, and returns how many records it queued.
func (s *txnSession) poll(ctx context.Context) (n int) {
	deadline := time.Now().Add(s.in.txnInterval)
	s.mu.Lock()
	limit := s.in.limit * max(1, len(s.parts))
	s.mu.Unlock()
	for n < limit {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			return n
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := s.ts.PollRecords(pctx, limit-n)
		cancel()
		if fetches.IsClientClosed() {
			return n
		}
		var fatal error
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			if err = annotateClientErr(s.cl, err); isFatalClientErr(err) {
				fatal = err
				return
			}
			s.log.Warnf("kafka input: fetch error on %s/%d (retrying): %v", topic, partition, err)
		})
		if fatal != nil {
			s.fail(fatal)
			return n
		}
		s.mu.Lock()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if ps, ok := s.parts[topicPartition{p.Topic, p.Partition}]; ok && p.HighWatermark >= 0 {
				ps.highWater = p.HighWatermark
			}
			for _, r := range p.Records {
				s.queue = append(s.queue, &txnDelivery{rec: r, gen: s.gen, lag: p.HighWatermark - r.Offset - 1})
				n++
			}
		})
		if len(s.queue) > 0 {
			signal(s.ready)
		}
		s.mu.Unlock()
	}
	return n
}

// waitSettled waits until every record of the transaction is handed out and settled, and reports
// whether the transaction may commit: every record acknowledged, none rejected. On shutdown it
// returns at once: Benthos settles nothing more once it closes the input, and a record polled but
// never settled must not be committed, so the transaction then commits only if nothing is left.
func (s *txnSession) waitSettled(ctx context.Context) bool {
	for {
		s.mu.Lock()
		done := len(s.queue) == 0 && s.out == 0
		ok := done && s.rejected == nil
		s.mu.Unlock()
		if done || ctx.Err() != nil {
			return ok
		}
		select {
		case <-s.settled:
		case <-ctx.Done():
		case <-s.dead:
			return false
		}
	}
}

// endGeneration forgets what is left of the ended transaction and returns its first rejection: a
// late acknowledgement of it is ignored, and queued records (only after a shutdown or a revoke) are
// dropped, since the consumer is back at the committed offsets or leaving.
func (s *txnSession) endGeneration() (rejected error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rejected = s.rejected
	s.gen++
	s.queue, s.out, s.rejected = nil, 0, nil
	return rejected
}

// read hands out the next queued record of the open transaction.
func (s *txnSession) read(ctx context.Context) (*service.Message, service.AckFunc, error) {
	for {
		select {
		case <-s.dead:
			return nil, nil, service.ErrNotConnected
		default:
		}
		s.mu.Lock()
		if len(s.queue) > 0 {
			d := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			d.out = true
			s.out++
			s.mu.Unlock()
			return newRecordMessage(d.rec, d.lag), s.ackFunc(d), nil
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-s.dead:
			return nil, nil, service.ErrNotConnected
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// ackFunc settles one delivery. A rejection (nack) dooms the transaction: it aborts, and the
// record is read again in the next one.
func (s *txnSession) ackFunc(d *txnDelivery) service.AckFunc {
	return func(_ context.Context, err error) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if d.gen != s.gen || !d.out {
			return nil
		}
		d.out = false
		s.out--
		if err != nil {
			s.in.metrics.redelivered.Incr(1, d.rec.Topic, strconv.Itoa(int(d.rec.Partition)))
			if s.rejected == nil {
				s.rejected = err
			}
		}
		if s.out == 0 && len(s.queue) == 0 {
			signal(s.settled)
		}
		return nil
	}
}

func (s *txnSession) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	for _, tp := range flatten(assigned) {
		if _, ok := s.parts[tp]; !ok {
			s.parts[tp] = &partitionState{tp: tp, highWater: -1}
		}
	}
	s.mu.Unlock()
	s.joined.Store(true)
	s.in.metrics.rebalances.Incr(1)
}

// onRevoked runs inside the session's own revoke handling, which dooms the open transaction: stop
// handing out its queued records (they are read again after the abort).
func (s *txnSession) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tp := range flatten(revoked) {
		delete(s.parts, tp)
	}
	if len(revoked) > 0 {
		s.queue = nil
		if s.out == 0 {
			signal(s.settled)
		}
	}
}

func (s *txnSession) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	s.onRevoked(ctx, cl, lost)
	s.joined.Store(false)
}

// fail ends the session; Benthos then reconnects through Connect. A fence (PRODUCER_FENCED, or a
// stale epoch) has two causes that the broker does not tell apart: the broker aborted our
// transaction after transaction_timeout (during an outage or a long pause: common, and harmless),
// or another live instance uses the same transactional id (a misconfiguration: the two would fence
// each other in turn). So the first fence reconnects at once, and a second one within refenceWindow
// waits out the long back-off (auth_error_backoff, doubling), as every other fatal error does.
func (s *txnSession) fail(err error) {
	s.failOnce.Do(func() {
		s.joined.Store(false)
		fenced := isFencedErr(err)
		switch {
		case fenced && s.in.noteFence():
			s.log.Errorf("kafka input: %v; starting a new session now (a second fence within %v waits out the back-off)", err, refenceWindow)
		case fenced:
			d := s.in.backoff.failed()
			s.log.Errorf("kafka input: fenced again within %v: another instance uses transactional id %q; reconnecting in %v: %v", refenceWindow, s.in.transactionalID, d, err)
		default:
			d := s.in.backoff.failed()
			s.log.Errorf("kafka input: non-retryable client error, reconnecting in %v: %v", d, err)
		}
		close(s.dead)
	})
}

// refenceWindow: a fence this soon after the previous one means another instance holds the id.
const refenceWindow = time.Minute

// shutdown ends the session: the open transaction ends (committing only if every record of it
// was settled; see waitSettled), then the member leaves the group, all within shutdown_timeout.
func (s *txnSession) shutdown(final bool) {
	deadline := time.Now().Add(s.in.shutdownTimeout)
	s.closeBy.Store(deadline.UnixNano())
	s.loopCancel()
	select {
	case <-s.loopDone:
	case <-time.After(time.Until(deadline) + closeGrace):
		s.log.Warnf("kafka input: shutdown: the last transaction did not end within shutdown_timeout; it is aborted by the broker after its timeout")
	}
	s.hub.publish(nil)
	left := make(chan struct{})
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := s.cl.LeaveGroupContext(ctx); err != nil && final {
			s.log.Warnf("kafka input: shutdown: leaving the group: %v", err)
		}
		s.ts.Close()
		close(left)
	}()
	select {
	case <-left:
	case <-time.After(time.Until(deadline) + closeGrace):
		s.log.Warnf("kafka input: shutdown: the client did not close within shutdown_timeout")
	}
	s.joined.Store(false)
}

// publishGauges sets kafka_consumer_lag per assigned partition after a transaction ended (and
// kafka_in_flight to 0: nothing is in flight between transactions), and zeroes partitions no
// longer assigned, as the at-least-once session does.
func (s *txnSession) publishGauges() {
	_, _, parts := s.snapshot()
	now := map[topicPartition]bool{}
	for _, p := range parts {
		part := strconv.Itoa(int(p.tp.partition))
		s.in.metrics.lag.Set(max(p.lag, 0), p.tp.topic, part)
		s.in.metrics.inFlight.Set(0, p.tp.topic, part)
		now[p.tp] = true
	}
	for tp := range s.reported {
		if !now[tp] {
			s.in.metrics.lag.Set(0, tp.topic, strconv.Itoa(int(tp.partition)))
		}
	}
	s.reported = now
}

// snapshot reports, per assigned partition, its committed offset and whether work is pending, for
// the readiness gate.
func (s *txnSession) snapshot() (connected bool, missing []string, parts []partitionProgress) {
	select {
	case <-s.dead:
		return false, nil, nil
	default:
	}
	missing = s.topics.missingTopics()
	if !s.joined.Load() {
		return false, missing, nil
	}
	committed := s.cl.CommittedOffsets()
	s.mu.Lock()
	defer s.mu.Unlock()
	held := map[topicPartition]int{}
	for _, d := range s.queue {
		held[topicPartition{d.rec.Topic, d.rec.Partition}]++
	}
	for tp, ps := range s.parts {
		c := int64(-1)
		if eo, ok := committed[tp.topic][tp.partition]; ok {
			c = eo.Offset
		}
		lag := int64(-1)
		if ps.highWater >= 0 && c >= 0 {
			lag = max(0, ps.highWater-c)
		}
		parts = append(parts, partitionProgress{id: ps, tp: tp, committed: c, held: held[tp], lag: lag,
			pending: held[tp] > 0 || lag > 1})
	}
	return true, missing, parts
}

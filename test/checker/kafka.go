package checker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config says which topics and group a Checker watches.
type Config struct {
	// Brokers are the seed brokers.
	Brokers []string
	// ClientOpts are added to every client the checker makes (SASL, TLS, size limits such as
	// devbroker.ClientOpts for records over 1 MB).
	ClientOpts []kgo.Opt

	// InputTopic holds the requests. OutputTopic the responses (empty: the pipeline writes none,
	// as the scenario worker) and DLQTopic the dead letters.
	InputTopic  string
	OutputTopic string
	DLQTopic    string
	// Group is the pipeline's consumer group: its committed offsets are sampled and its lag
	// measured.
	Group string

	// SampleEvery is the commit sampling period, default 200ms.
	SampleEvery time.Duration
	// RequestTimeout bounds each admin request (sampling, lag), default 3s, so a paused or dead
	// broker costs a missed sample, never a hang.
	RequestTimeout time.Duration

	// ReadCommitted reads the outcome topics as a consumer with isolation.level=read_committed
	// (exactly-once mode): outcomes of aborted transactions are not seen.
	ReadCommitted bool
}

// Checker reads a run's topics and samples its consumer group. Make one per scenario with New,
// call StartSampling before the fault, MarkFaultCleared when it ends, WaitLagZero, then Check.
type Checker struct {
	cfg   Config
	cl    *kgo.Client
	adm   *kadm.Client
	since time.Time // New's time: WaitLagZero's start when no fault was marked

	mu      sync.Mutex
	samples []CommitSample
	cleared time.Time
	stop    chan struct{}
	done    chan struct{}
}

// New connects an admin client. It does not contact the broker yet.
func New(cfg Config) (*Checker, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("checker: no brokers")
	}
	if cfg.InputTopic == "" || cfg.DLQTopic == "" || cfg.Group == "" {
		return nil, errors.New("checker: InputTopic, DLQTopic and Group are required")
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 200 * time.Millisecond
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("checker: admin client: %w", err)
	}
	return &Checker{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), since: time.Now()}, nil
}

// Close stops sampling and closes the client.
func (c *Checker) Close() {
	c.StopSampling()
	c.cl.Close()
}

// Admin returns the checker's admin client (for topic configs and the like).
func (c *Checker) Admin() *kadm.Client { return c.adm }

// StartSampling reads the group's committed offsets of the input topic every SampleEvery until
// StopSampling or Close. Failed reads (broker down or paused) are skipped.
func (c *Checker) StartSampling() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop != nil {
		return
	}
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	go c.sampleLoop(c.stop, c.done)
}

// StopSampling ends sampling and takes one last sample.
func (c *Checker) StopSampling() {
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.stop = nil
	c.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
	c.sampleOnce()
}

func (c *Checker) sampleLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	for {
		c.sampleOnce()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (c *Checker) sampleOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
	defer cancel()
	committed, err := c.adm.FetchOffsetsForTopics(ctx, c.cfg.Group, c.cfg.InputTopic)
	if err != nil {
		return
	}
	// The answer came now, so every offset in it was committed by now.
	at := time.Now()
	var got []CommitSample
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.Topic == c.cfg.InputTopic && o.At >= 0 {
			got = append(got, CommitSample{At: at, Topic: o.Topic, Partition: o.Partition, Offset: o.At})
		}
	})
	c.mu.Lock()
	c.samples = append(c.samples, got...)
	c.mu.Unlock()
}

// Samples returns the commit samples taken so far.
func (c *Checker) Samples() []CommitSample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.samples)
}

// MarkFaultCleared records now as the moment the fault ended; WaitLagZero measures from it.
func (c *Checker) MarkFaultCleared() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleared = time.Now()
	return c.cleared
}

// Committed returns the sum of the group's committed offsets on the input topic (partitions
// without a commit count 0). Unlike end minus lag it does not depend on the partitions' high
// watermarks, which a newly elected leader can report behind the old one's for a moment, so it
// never appears to move backwards during a broker fault.
func (c *Checker) Committed(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	committed, err := c.committedOffsets(ctx)
	if err != nil {
		return 0, err
	}
	var sum int64
	committed.Each(func(o kadm.OffsetResponse) {
		if o.At > 0 {
			sum += o.At
		}
	})
	return sum, nil
}

// committedOffsets fetches the group's committed offsets on the input topic; none (not an error)
// for a group that never committed.
func (c *Checker) committedOffsets(ctx context.Context) (kadm.OffsetResponses, error) {
	committed, err := c.adm.FetchOffsetsForTopics(ctx, c.cfg.Group, c.cfg.InputTopic)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		// kfake's answer for a group that never committed (Kafka answers with no offsets).
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", c.cfg.Group, err)
	}
	return committed, nil
}

// Lag returns the group's total lag on the input topic (end offsets minus committed offsets, a
// partition without a commit counting from its start) and the total end offset.
func (c *Checker) Lag(ctx context.Context) (lag, end int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	ends, err := c.adm.ListEndOffsets(ctx, c.cfg.InputTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("end offsets of %q: %w", c.cfg.InputTopic, err)
	}
	starts, err := c.adm.ListStartOffsets(ctx, c.cfg.InputTopic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("start offsets of %q: %w", c.cfg.InputTopic, err)
	}
	committed, err := c.committedOffsets(ctx)
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(lo kadm.ListedOffset) {
		end += lo.Offset
		from := int64(0)
		if so, ok := starts.Lookup(lo.Topic, lo.Partition); ok && so.Offset > 0 {
			from = so.Offset
		}
		if o, ok := committed.Lookup(lo.Topic, lo.Partition); ok && o.At > from {
			from = o.At
		}
		lag += max(lo.Offset-from, 0)
	})
	return lag, end, nil
}

// WaitLagZero waits until the group's lag is 0 with at least minInputs records in the input
// topic (so a producer still running does not end the wait early), polling every 100ms. It
// returns the recovery time: from MarkFaultCleared (or from New, if no fault was marked) to the
// first poll that saw lag 0. Errors of single polls (broker restarting) are retried until ctx
// ends; the last one is returned with ctx's error.
func (c *Checker) WaitLagZero(ctx context.Context, minInputs int64) (time.Duration, error) {
	var last error
	for {
		lag, end, err := c.Lag(ctx)
		if err == nil && lag == 0 && end >= minInputs {
			now := time.Now()
			c.mu.Lock()
			from := c.cleared
			c.mu.Unlock()
			if from.IsZero() {
				from = c.since
			}
			return max(now.Sub(from), 0), nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("lag %d with %d input records (want lag 0 and at least %d records)", lag, end, minInputs)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("group %q did not reach lag 0: %w (last: %v)", c.cfg.Group, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReadOptions bound a read of a topic from its start.
type ReadOptions struct {
	// Target: keep reading until at least this many records arrived (0: none), even past the
	// end offsets seen at the start.
	Target int
	// Quiet: after the end offsets (and Target) are reached, keep reading until no record has
	// arrived for this long, to catch late duplicates. 0: stop at once.
	Quiet time.Duration
}

// ReadInputs reads the input topic from its start to its end offsets.
func (c *Checker) ReadInputs(ctx context.Context, opts ReadOptions) ([]Input, error) {
	var ins []Input
	var perr error
	err := c.readTopic(ctx, c.cfg.InputTopic, opts, func(r *kgo.Record) {
		exp := ExpectGood
		for _, h := range r.Headers {
			if h.Key == HeaderExpect {
				e, err := ParseExpect(string(h.Value))
				if err != nil && perr == nil {
					perr = fmt.Errorf("input %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				}
				if err == nil {
					exp = e
				}
			}
		}
		ins = append(ins, Input{ID: RecordID{r.Topic, r.Partition, r.Offset}, Expect: exp, Timestamp: r.Timestamp})
	})
	return ins, errors.Join(err, perr)
}

// ReadOutcomes reads the response topic (if any) and the DLQ topic from their starts. opts.Target
// counts the records of both together.
func (c *Checker) ReadOutcomes(ctx context.Context, opts ReadOptions) ([]Outcome, error) {
	var outs []Outcome
	topics := []string{c.cfg.DLQTopic}
	if c.cfg.OutputTopic != "" {
		topics = append(topics, c.cfg.OutputTopic)
	}
	err := c.readTopic(ctx, "", opts, func(r *kgo.Record) {
		outs = append(outs, OutcomeFromRecord(r, r.Topic == c.cfg.DLQTopic))
	}, topics...)
	return outs, err
}

// OutcomeFromRecord turns a response or dead-letter record into an Outcome.
func OutcomeFromRecord(r *kgo.Record, deadLetter bool) Outcome {
	get := func(k string) (string, bool) {
		// The last header of a name wins, as in the Kafka input's metadata.
		v, ok := "", false
		for _, h := range r.Headers {
			if h.Key == k {
				v, ok = string(h.Value), true
			}
		}
		return v, ok
	}
	o := Outcome{Kind: Response, At: RecordID{r.Topic, r.Partition, r.Offset}, Timestamp: r.Timestamp}
	o.Source, o.SourceErr = SourceFromHeaders(get)
	if deadLetter {
		o.Kind = DeadLetter
		o.Error, _ = get(HeaderError)
		o.ErrorStage, _ = get(HeaderErrorStage)
	}
	return o
}

// Check reads the inputs and outcomes and analyses them with the commit samples so far. extra
// adds outcomes observed elsewhere (Processed, from logs). Call it once the group's lag is 0.
func (c *Checker) Check(ctx context.Context, outcomes ReadOptions, extra ...Outcome) (Report, error) {
	ins, err := c.ReadInputs(ctx, ReadOptions{})
	if err != nil {
		return Report{}, err
	}
	outs, err := c.ReadOutcomes(ctx, outcomes)
	if err != nil {
		return Report{}, err
	}
	return Analyze(ins, append(outs, extra...), c.Samples()), nil
}

// readTopic reads topic (or topics) from the start, without a group, until every partition has
// reached the end offset listed when the read began and opts are satisfied.
func (c *Checker) readTopic(ctx context.Context, topic string, opts ReadOptions, fn func(*kgo.Record), more ...string) error {
	topics := more
	if topic != "" {
		topics = append([]string{topic}, more...)
	}
	ends, err := c.listOffsets(ctx, topics, true)
	if err != nil {
		return err
	}
	// A partition whose log starts later (retention) is caught up at its start offset.
	starts, err := c.listOffsets(ctx, topics, false)
	if err != nil {
		return err
	}
	copts := append(slices.Clone(c.cfg.ClientOpts), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if c.cfg.ReadCommitted {
		// Transaction markers take offsets too: keep them, so that reaching the end offset
		// tells when a partition is read, and skip them below.
		copts = append(copts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...)}, copts...)...)
	if err != nil {
		return fmt.Errorf("checker: consumer: %w", err)
	}
	defer cl.Close()

	next := starts // per partition: offset after the last record read
	n := 0
	lastRecord := time.Now()
	lastEnds := time.Now()
	caughtUp := func() bool {
		for k, end := range ends {
			if next[k] < end {
				return false
			}
		}
		return true
	}
	var lastErr error
	for {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = fmt.Errorf("%s/%d: %w", t, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			next[k] = max(next[k], r.Offset+1)
			if r.Attrs.IsControl() {
				return
			}
			n++
			lastRecord = time.Now()
			fn(r)
		})
		if ctx.Err() != nil {
			return fmt.Errorf("checker: reading %v: %d records read, %w (last fetch error: %v)", topics, n, ctx.Err(), lastErr)
		}
		if !caughtUp() {
			continue
		}
		if n < opts.Target {
			// More is expected: look for new end offsets now and then.
			if time.Since(lastEnds) > 500*time.Millisecond {
				if e, err := c.listOffsets(ctx, topics, true); err == nil {
					ends = e
				}
				lastEnds = time.Now()
			}
			continue
		}
		if opts.Quiet > 0 && time.Since(lastRecord) < opts.Quiet {
			continue
		}
		return nil
	}
}

// listOffsets lists the end (or start) offset of every partition of topics.
func (c *Checker) listOffsets(ctx context.Context, topics []string, end bool) (map[tp]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*c.cfg.RequestTimeout)
	defer cancel()
	list, what := c.adm.ListStartOffsets, "start"
	if end {
		list, what = c.adm.ListEndOffsets, "end"
	}
	offs, err := list(ctx, topics...)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("checker: %s offsets of %v: %w", what, topics, err)
	}
	out := map[tp]int64{}
	offs.Each(func(lo kadm.ListedOffset) { out[tp{lo.Topic, lo.Partition}] = max(lo.Offset, 0) })
	return out, nil
}

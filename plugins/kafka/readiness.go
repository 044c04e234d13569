package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Why an input: Benthos computes `/ready` (internal/stream, registered after the components are
// built, so a component cannot replace it) as "every input and output of the stream reports
// connected". An input's status turns red only when its Read returns ErrNotConnected and stays red
// while its Connect fails or blocks. Doing that in the `kafka` input itself would make Benthos
// reconnect it (a new session, a rebalance) and stop consumption while it is red. A separate input
// that never emits a message, placed beside the `kafka` input in a `broker`, can go red and green
// freely: the consumer keeps running, and the standard `/ready` now means "consuming and making
// progress". public/service offers no other hook (no RegisterEndpoint on Resources; an output's
// status only changes when it is written to).

// Field names of the `kafka_readiness` input.
const (
	rdFieldStallTime     = "stall_time"
	rdFieldCheckInterval = "check_interval"
	rdFieldConsumerGroup = "consumer_group"
)

func kafkaReadinessSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Summary("A readiness gate for the `kafka` input: emits no messages, and reports itself disconnected, which turns the HTTP server's `/ready` red, while a `kafka` input of this process is disconnected or has a partition that stopped committing although records wait.").
		Description(`
Benthos answers `+"`/ready`"+` with 200 when every input and output of the stream is connected. A
Kafka consumer can be connected and still stuck (an output that blocks or keeps failing, a record
nacked forever, commits refused): this input makes `+"`/ready`"+` reflect progress. Put it next to the
`+"`kafka`"+` input in a `+"`broker`"+`; it never produces a message, so the pipeline is unchanged, and
the `+"`kafka`"+` input is never interrupted by it:

`+"```yaml"+`
input:
  broker:
    inputs:
      - kafka: { ... }
      - label: readiness
        kafka_readiness:
          stall_time: ${READINESS_STALL_TIME:3m}
          consumer_group: ${KAFKA_GROUP_ID:weekly-aggregator}
`+"```"+`

Every `+"`check_interval`"+` it looks at the `+"`kafka`"+` inputs of the process (those of
`+"`consumer_group`"+` if set) and is **not ready** when:

- no `+"`kafka`"+` input is running, or one is not connected: no client session, or the session has
  not joined its consumer group (broker unreachable, group session lost, wrong credentials);
- a topic of a `+"`kafka`"+` input does not exist (a typo, or not created yet): nothing would ever be
  consumed from it (the input checks its topics when it starts and every 10 s while one is
  missing, and consumes a topic as soon as it appears);
- an assigned partition has work pending and its committed offset has not advanced for
  `+"`stall_time`"+`. Work pending means records fetched and not yet finished, finished records not
  yet committed, or more than one record between the commit position and the high watermark (a
  single trailing offset can be a transaction marker, which no consumer ever receives).

An idle consumer (no lag) stays ready however long nothing arrives, and so does a member with no
partitions (more replicas than partitions). `+"`/ping`"+` is unaffected: use it for liveness, and
`+"`/ready`"+` for readiness. While not ready, `+"`/ready`"+` answers 503 and its JSON names the reason
(for example `+"`not ready: partition Scenario-Execute/2: 17 records pending, no commit for 2m1s`"+`);
each new reason is logged once, and the return to ready at INFO.

Choose `+"`stall_time`"+` above the longest time one record may legitimately take from fetch to
acknowledgement (processing of the largest request plus delivery retries, that is the output's
`+"`timeout`"+`, plus the dead-letter write), since the oldest record of a partition holds its commit
back while it is processed. The rollup pipelines use 3m over a 2m delivery timeout.

### Metrics

Gauges `+"`kafka_ready`"+` (1 ready, 0 not) and `+"`kafka_partition_stall_seconds`"+` (labelled
`+"`topic`"+` and `+"`partition`"+`, one series per assigned partition: seconds the partition has had work
pending without its committed offset advancing; 0 when it progresses or is idle). Alert on the
latter well before `+"`stall_time`"+`.`).
		Fields(
			service.NewDurationField(rdFieldStallTime).
				Description("How long a partition with work pending may go without a commit before the service is not ready. Above the slowest legitimate record: processing, plus the output's delivery `timeout`, plus the dead-letter write.").
				Default("2m").
				Example("30s").
				Example("${READINESS_STALL_TIME:3m}"),
			service.NewDurationField(rdFieldCheckInterval).
				Description("How often the rule is evaluated: readiness changes at most this much after the condition does.").
				Default("1s").
				Advanced(),
			service.NewStringField(rdFieldConsumerGroup).
				Description("Only watch `kafka` inputs of this consumer group (set it to the `kafka` input's group, so that other streams of the same process cannot affect this one's readiness); empty watches every `kafka` input of the process.").
				Default("").
				Example("${KAFKA_GROUP_ID:weekly-aggregator}"),
		).
		Example("Weekly rollup", "The consumer and its readiness gate side by side; probes use the standard `/ready`.", `
input:
  broker:
    inputs:
      - kafka:
          seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:localhost:9092}" ]
          topics: [ "${INPUT_KAFKA_TOPIC:Scenario-Execute}" ]
          consumer_group: ${KAFKA_GROUP_ID:weekly-aggregator}
      - label: readiness
        kafka_readiness:
          stall_time: ${READINESS_STALL_TIME:3m}
          consumer_group: ${KAFKA_GROUP_ID:weekly-aggregator}
`)
}

func init() {
	service.MustRegisterInput("kafka_readiness", kafkaReadinessSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Input, error) {
			return newReadinessFromParsedConf(conf, mgr)
		})
}

// readinessGate is the `kafka_readiness` input. Benthos drives it from one goroutine (Connect,
// then Read until it reports ErrNotConnected, then Connect again...); Close comes from another.
//
// Status it leaves Benthos with, and so what `/ready` shows for it:
//   - before the first time the rule holds: Connect blocks, the status stays "pending" (red);
//     the `kafka` input's own status explains a connection failure, so nothing is logged;
//   - ready: Connect returned nil, Read blocks and re-checks every check_interval;
//   - not ready: Read returned ErrNotConnected, then Connect returns the reason once (Benthos
//     logs it and shows it in `/ready`), then blocks until ready or until the reason changes.
type readinessGate struct {
	log      *service.Logger
	stall    time.Duration
	interval time.Duration
	group    string

	// Injected by tests; snapshotInputs and time.Now otherwise.
	now      func() time.Time
	snapshot func(group string) []inputProgress

	mReady, mStall *service.MetricGauge

	mu        sync.Mutex // guards everything below
	tracker   progressTracker
	everReady bool
	reported  string    // key of the not-ready reason last returned from Connect ("" none)
	downSince time.Time // when the current not-ready spell began (zero while ready)
	gaugeTPs  map[topicPartition]bool

	closeOnce sync.Once
	closed    chan struct{}
}

func newReadinessFromParsedConf(conf *service.ParsedConfig, mgr *service.Resources) (*readinessGate, error) {
	g := &readinessGate{
		log:      mgr.Logger(),
		now:      time.Now,
		snapshot: snapshotInputs,
		tracker:  progressTracker{parts: map[*partitionState]*partitionWatch{}},
		gaugeTPs: map[topicPartition]bool{},
		closed:   make(chan struct{}),
	}
	var err error
	if g.stall, err = conf.FieldDuration(rdFieldStallTime); err != nil {
		return nil, err
	}
	if g.interval, err = conf.FieldDuration(rdFieldCheckInterval); err != nil {
		return nil, err
	}
	if g.group, err = conf.FieldString(rdFieldConsumerGroup); err != nil {
		return nil, err
	}
	if g.interval <= 0 {
		return nil, fmt.Errorf("field %q: must be positive", rdFieldCheckInterval)
	}
	if g.stall < g.interval {
		return nil, fmt.Errorf("field %q: %v is shorter than %s %v", rdFieldStallTime, g.stall, rdFieldCheckInterval, g.interval)
	}
	m := mgr.Metrics()
	// Gauges are only ever Set (Benthos' Incr/Decr on plugin gauges does not reach the exporter).
	g.mReady = m.NewGauge("kafka_ready")
	g.mStall = m.NewGauge("kafka_partition_stall_seconds", "topic", "partition")
	return g, nil
}

// Connect returns nil once the rule holds; see readinessGate for the states.
func (g *readinessGate) Connect(ctx context.Context) error {
	for {
		v := g.check()
		g.mu.Lock()
		switch {
		case v.ready:
			g.becameReadyLocked()
			g.mu.Unlock()
			return nil
		case g.everReady && v.key != g.reported:
			g.reported = v.key
			g.mu.Unlock()
			// The wait only paces Benthos' next Connect, which then blocks below.
			return service.NewErrBackOff(errors.New("not ready: "+v.reason), g.interval)
		}
		g.mu.Unlock()
		if err := g.sleep(ctx); err != nil {
			return err
		}
	}
}

// Read never returns a message: it re-checks every check_interval and reports ErrNotConnected
// as soon as the rule fails.
func (g *readinessGate) Read(ctx context.Context) (*service.Message, service.AckFunc, error) {
	for {
		if err := g.sleep(ctx); err != nil {
			return nil, nil, err
		}
		if !g.check().ready {
			return nil, nil, service.ErrNotConnected
		}
	}
}

func (g *readinessGate) Close(context.Context) error {
	g.closeOnce.Do(func() { close(g.closed) })
	return nil
}

func (g *readinessGate) sleep(ctx context.Context) error {
	t := time.NewTimer(g.interval)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.closed:
		return service.ErrEndOfInput
	}
}

// becameReadyLocked logs the first readiness and every recovery. Caller holds mu.
func (g *readinessGate) becameReadyLocked() {
	switch {
	case !g.everReady:
		g.everReady = true
		g.log.Infof("kafka readiness: ready (consumer joined; stall_time %v)", g.stall)
	case g.reported != "":
		g.log.Infof("kafka readiness: ready again after %v", g.now().Sub(g.downSince).Round(time.Millisecond))
	}
	g.reported = ""
	g.downSince = time.Time{}
}

// check evaluates the rule now and publishes the gauges.
func (g *readinessGate) check() verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	v := g.tracker.evaluate(now, g.snapshot(g.group), g.stall)
	if v.ready {
		g.mReady.Set(1)
	} else {
		g.mReady.Set(0)
		if g.downSince.IsZero() {
			g.downSince = now
		}
	}
	// Zero the partitions that are gone so a revoked partition does not keep its last value.
	for tp := range g.gaugeTPs {
		if _, ok := v.stalls[tp]; !ok {
			g.mStall.Set(0, tp.topic, strconv.Itoa(int(tp.partition)))
			delete(g.gaugeTPs, tp)
		}
	}
	for tp, d := range v.stalls {
		g.mStall.Set(int64(d/time.Second), tp.topic, strconv.Itoa(int(tp.partition)))
		g.gaugeTPs[tp] = true
	}
	return v
}

//------------------------------------------------------------------------------

// inputProgress is what the rule needs of one `kafka` input.
type inputProgress struct {
	group     string
	topics    []string
	connected bool     // a client session is up and has joined the group since it was last lost
	missing   []string // topics the session found missing (or not described to us) at its last check
	parts     []partitionProgress
}

// partitionProgress is one assigned partition at one instant.
type partitionProgress struct {
	id        *partitionState // one assignment: a new assignment starts a new clock
	tp        topicPartition
	committed int64 // last offset committed in this assignment (-1: none yet)
	pending   bool  // work to do: records held or finished-but-uncommitted, or lag beyond 1
	held      int   // records fetched and not finished (buffered and in the window)
	inFlight  int   // records handed to the pipeline and not finished (the window)
	lag       int64 // high watermark minus the commit position (-1: unknown)
}

// inputRegistry holds the `kafka` inputs between their first Connect and their Close, so that
// the readiness gate, a separate component, can watch them.
var inputRegistry = struct {
	sync.Mutex
	inputs map[*kafkaInput]struct{}
}{inputs: make(map[*kafkaInput]struct{})}

func registerInput(i *kafkaInput) {
	inputRegistry.Lock()
	inputRegistry.inputs[i] = struct{}{}
	inputRegistry.Unlock()
}

func unregisterInput(i *kafkaInput) {
	inputRegistry.Lock()
	delete(inputRegistry.inputs, i)
	inputRegistry.Unlock()
}

// snapshotInputs reads every registered `kafka` input (of group, if set).
func snapshotInputs(group string) []inputProgress {
	inputRegistry.Lock()
	inputs := make([]*kafkaInput, 0, len(inputRegistry.inputs))
	for i := range inputRegistry.inputs {
		if group == "" || i.group == group {
			inputs = append(inputs, i)
		}
	}
	inputRegistry.Unlock()

	out := make([]inputProgress, 0, len(inputs))
	for _, i := range inputs {
		out = append(out, i.progress())
	}
	slices.SortFunc(out, func(a, b inputProgress) int {
		if c := strings.Compare(a.group, b.group); c != 0 {
			return c
		}
		return slices.Compare(a.topics, b.topics)
	})
	return out
}

func (i *kafkaInput) progress() inputProgress {
	ip := inputProgress{group: i.group, topics: slices.Clone(i.topics)}
	i.mu.Lock()
	s := i.sess
	i.mu.Unlock()
	if s == nil {
		return ip
	}
	ip.connected, ip.missing, ip.parts = s.snapshot()
	return ip
}

// progress snapshots every live partition under mu, for the readiness rule.
func (c *checkpointer) progress() []partitionProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]partitionProgress, 0, len(c.order))
	for _, p := range c.order {
		lag := p.lag()
		held := len(p.window) + len(p.buffered)
		out = append(out, partitionProgress{
			id:        p,
			tp:        p.tp,
			committed: p.committed,
			pending:   held > 0 || p.mark.Offset > p.committed || lag > 1,
			held:      held,
			inFlight:  len(p.window),
			lag:       lag,
		})
	}
	return out
}

//------------------------------------------------------------------------------

// verdict is one evaluation of the rule.
type verdict struct {
	ready  bool
	key    string // identifies the reason (not its numbers), so each reason is reported once
	reason string
	// stalls holds, per assigned partition of a connected input, how long its committed offset
	// has not moved while work was pending (0 when idle or progressing).
	stalls map[topicPartition]time.Duration
}

// progressTracker remembers, per assignment, the committed offset and since when it has not
// moved while work was pending.
type progressTracker struct {
	parts map[*partitionState]*partitionWatch
}

type partitionWatch struct {
	committed int64
	since     time.Time
}

// evaluate applies the rule to one snapshot taken at now.
func (t *progressTracker) evaluate(now time.Time, inputs []inputProgress, stall time.Duration) verdict {
	v := verdict{ready: true, stalls: map[topicPartition]time.Duration{}}
	seen := make(map[*partitionState]bool)
	var disconnected, missing, stalled []string
	var stalledKeys []string
	for _, in := range inputs {
		for _, topic := range in.missing {
			missing = append(missing, fmt.Sprintf("input topic %q of group %q does not exist or may not be described", topic, in.group))
		}
		if !in.connected {
			disconnected = append(disconnected,
				fmt.Sprintf("kafka input (group %q, topics %s) is not connected to its consumer group", in.group, strings.Join(in.topics, ",")))
			continue
		}
		for _, p := range in.parts {
			seen[p.id] = true
			w, ok := t.parts[p.id]
			if !ok {
				w = &partitionWatch{committed: p.committed, since: now}
				t.parts[p.id] = w
			}
			// The clock runs only while work is pending and nothing new is committed.
			if !p.pending || p.committed != w.committed {
				w.committed, w.since = p.committed, now
			}
			if !p.pending {
				v.stalls[p.tp] = 0
				continue
			}
			d := now.Sub(w.since)
			v.stalls[p.tp] = d
			if d >= stall {
				name := fmt.Sprintf("%s/%d", p.tp.topic, p.tp.partition)
				stalledKeys = append(stalledKeys, name)
				stalled = append(stalled, fmt.Sprintf("partition %s: %d records pending (lag %d), no commit for %v (stall_time %v)",
					name, p.held, max(p.lag, 0), d.Round(time.Second), stall))
			}
		}
	}
	for id := range t.parts {
		if !seen[id] {
			delete(t.parts, id)
		}
	}
	switch {
	case len(inputs) == 0:
		v.ready, v.key, v.reason = false, "none", "no kafka input is running"
	case len(disconnected) > 0:
		v.ready, v.key, v.reason = false, "disconnected:"+strings.Join(disconnected, ";"), strings.Join(disconnected, "; ")
	case len(missing) > 0:
		v.ready, v.key, v.reason = false, "missing:"+strings.Join(missing, ";"), strings.Join(missing, "; ")
	case len(stalled) > 0:
		slices.Sort(stalledKeys)
		slices.Sort(stalled)
		reason := stalled[0]
		if len(stalled) > 1 {
			reason += fmt.Sprintf(" (and %d more partitions)", len(stalled)-1)
		}
		v.ready, v.key, v.reason = false, "stalled:"+strings.Join(stalledKeys, ","), reason
	}
	return v
}

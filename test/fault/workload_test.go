//go:build fault

package fault

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/test/checker"
)

// request is one record value with its key and expectation.
type request struct {
	key    string
	value  []byte
	expect checker.Expect
	kind   string // for notes: small, seed, bomb-gzip, ...
}

func (r request) record(topic string) *kgo.Record {
	rec := &kgo.Record{Topic: topic, Value: r.value, Headers: []kgo.RecordHeader{
		{Key: checker.HeaderExpect, Value: []byte(r.expect)},
		{Key: "x-kind", Value: []byte(r.kind)},
	}}
	if r.key != "" {
		rec.Key = []byte(r.key)
	}
	return rec
}

// The request pool, generated once: small requests (2 weeks, 672 rows, about 40 KB encoded),
// a few seed-sized ones (19,488 rows, about 1 MB encoded) and the bad ones.
var (
	poolOnce sync.Once
	smalls   []request
	seeds    []request
)

func pool() ([]request, []request) {
	poolOnce.Do(func() {
		for i := range 32 {
			o := gen.Defaults(uint64(1000 + i))
			o.Weeks = 2
			smalls = append(smalls, request{key: o.OrganizationID(), value: gen.Encode(gen.Request(o)), expect: checker.ExpectGood, kind: "small"})
		}
		for i := range 3 {
			o := gen.Defaults(uint64(2000 + i))
			seeds = append(seeds, request{key: o.OrganizationID(), value: gen.Encode(gen.Request(o)), expect: checker.ExpectGood, kind: "seed"})
		}
	})
	return smalls, seeds
}

// mixed returns the i-th request of a steady flow: small ones, with a seed-sized one every 25th.
func mixed(i int) request {
	s, big := pool()
	if i%25 == 24 {
		return big[(i/25)%len(big)]
	}
	return s[i%len(s)]
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func b64(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }

// bigResponseRequest is a valid request whose response (60 groups) is far over 2000 bytes even
// after gzip and base64.
func bigResponseRequest() request {
	o := gen.Defaults(3000)
	o.Weeks = 1
	o.Centers = nil
	for i := range 30 {
		o.Centers = append(o.Centers, fmt.Sprintf("Center %02d", i))
	}
	return request{key: o.OrganizationID(), value: gen.Encode(gen.Request(o)), expect: checker.ExpectBad, kind: "big-response"}
}

// badRequests are hostile inputs, each of which must become exactly one dead letter (bombs
// excluded: see bombs).
var (
	badOnce  sync.Once
	bads     []request
	bombOnce sync.Once
	bombReqs []request
)

// js is the seed's encoding, base64(gzip(s)).
func js(s string) []byte { return b64(gzipBytes([]byte(s))) }

func badRequests() []request {
	badOnce.Do(func() {
		small, _ := pool()
		valid := gen.Request(gen.Options{Seed: 1, ContactTypes: []string{"A"}, Langs: []string{"x"}, Centers: []string{"c"},
			Start: time.Date(2023, 7, 28, 0, 0, 0, 0, time.UTC), Weeks: 1, TSFormat: "space"})
		trunc := gzipBytes(valid)
		trunc = trunc[:len(trunc)/2]
		bads = []request{
			{value: []byte("not base64, not json !!"), kind: "garbage"},
			{value: b64(trunc), kind: "truncated-gzip"},
			{value: js(`{"event":"rollup","organizationId":"x","weekly":[{"Contact Type":`), kind: "invalid-json"},
			{value: js(`{"event":"rollup","organizationId":"x","weekly":[{"Staff Type":"s","Call Center":"c","Week":"2023-07-28","Volume":1}]}`), kind: "missing-dimension"},
			{value: js(`{"event":"rollup","organizationId":"x","week_start":"someday","weekly":[]}`), kind: "bad-week-start"},
			{value: js(`{"event":"rollup","organizationId":"x","weekly":[{"Contact Type":"a","Staff Type":"s","Call Center":"c","Week":"2023-07-28","Volume":"many"}]}`), kind: "bad-metric"},
			{value: js(`{"event":"rollup","organizationId":"x","weekly":[{"Contact Type":"a","Staff Type":"s","Call Center":"c","Week":"last friday","Volume":1}]}`), kind: "bad-week"},
			{value: js(`{"event":"rollup","organizationId":"x","weekly":{"a":1}}`), kind: "weekly-not-list"},
			{value: []byte{}, kind: "empty"},
			{value: append([]byte{0xff, 0xfe}, small[0].value[:100]...), kind: "binary"},
		}
		for i := range bads {
			bads[i].expect = checker.ExpectBad
			bads[i].key = "bad-" + bads[i].kind
		}
	})
	return bads
}

// bombs are decompression bombs: 1 GiB of zeros as base64(gzip) (about 1.4 MB) and 2 GiB of
// zeros as zstd (a few hundred KB). The decoder's cap (256 MiB by default) must refuse them
// without inflating them whole.
func bombs() []request {
	bombOnce.Do(func() {
		zero := make([]byte, 1<<20)
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		for range 1024 {
			zw.Write(zero)
		}
		zw.Close()
		var zs bytes.Buffer
		ze, _ := zstd.NewWriter(&zs)
		for range 2048 {
			ze.Write(zero)
		}
		ze.Close()
		bombReqs = []request{
			{key: "bomb-gzip", value: b64(gz.Bytes()), expect: checker.ExpectBad, kind: "gzip-bomb"},
			{key: "bomb-zstd", value: zs.Bytes(), expect: checker.ExpectBad, kind: "zstd-bomb"},
		}
	})
	return bombReqs
}

// dropRequest is an event other than "rollup": acknowledged with no outcome.
func dropRequest() request {
	return request{key: "ping", value: js(`{"event":"ping","organizationId":"x"}`), expect: checker.ExpectDrop, kind: "other-event"}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// scenario is one scenario's topics, group, checker and producer.
type scenario struct {
	t                   *testing.T
	name                string
	in, out, dlq, group string
	adm                 *kadm.Client
	prod                *kgo.Client
	chk                 *checker.Checker
	procs               procSet
	brokers             []string
	clientOpts          []kgo.Opt
	produced            atomic.Int64
	notes               []string
	noFault             bool   // recovery is "-"
	load                string // the table's load column: the flow's rate and share of capacity, any backlog
	recovery            time.Duration
	partitions          int
	row                 *resultRow
}

type scenarioOpts struct {
	partitions             int // default 3
	outConfigs, dlqConfigs map[string]*string
	noOutput               bool // the scenario worker writes no responses
	brokers                []string
	clientOpts             []kgo.Opt
}

func strp(s string) *string { return &s }

const maxMessageBytes = devbroker.DefaultMaxMessageBytes

func newScenario(t *testing.T, name string, o scenarioOpts) *scenario {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 3
	}
	if o.brokers == nil {
		o.brokers = strings.Split(brk.Addr(), ",")
	}
	if exactlyOnce {
		name += " [exactly-once]"
	}
	s := &scenario{t: t, name: name, brokers: o.brokers, partitions: o.partitions}
	t.Cleanup(s.record)
	s.clientOpts = append(devbroker.ClientOpts(maxMessageBytes), o.clientOpts...)
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, s.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admCl.Close)
	s.adm = kadm.NewClient(admCl)

	base := "fault-" + strings.ToLower(sanitize(strings.TrimPrefix(t.Name(), "Test"))) + "-" + randHex(4)
	s.in, s.out, s.dlq, s.group = base+"-in", base+"-out", base+"-dlq", base+"-group"
	s.createTopic(s.in, o.partitions, nil)
	if o.noOutput {
		s.out = ""
	} else {
		s.createTopic(s.out, 3, o.outConfigs)
	}
	s.createTopic(s.dlq, 3, o.dlqConfigs)

	s.prod, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...),
		kgo.DefaultProduceTopic(s.in),
		// Spread by key (organizationId) over the partitions, as the seed's producers do.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}, s.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.prod.Close)

	s.chk, err = checker.New(checker.Config{
		Brokers: s.brokers, ClientOpts: s.clientOpts, InputTopic: s.in, OutputTopic: s.out, DLQTopic: s.dlq, Group: s.group,
		ReadCommitted: exactlyOnce,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.chk.Close)
	s.chk.StartSampling()
	return s
}

func (s *scenario) createTopic(name string, partitions int, configs map[string]*string) {
	s.t.Helper()
	cfgs := map[string]*string{"max.message.bytes": strp(fmt.Sprint(maxMessageBytes))}
	for k, v := range configs {
		cfgs[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// RF min(3, brokers) and min ISR RF-1: 3 and 2 on the kafka.sh cluster.
	rf, cfgs, err := devbroker.WithTestReplication(ctx, s.adm, cfgs)
	if err != nil {
		s.t.Fatalf("create topic %s: %v", name, err)
	}
	resp, err := s.adm.CreateTopic(ctx, int32(partitions), rf, cfgs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		s.t.Fatalf("create topic %s: %v", name, err)
	}
	// A real broker answers before the partitions have leaders that serve them.
	if err := devbroker.WaitTopicServed(ctx, s.adm, name, partitions); err != nil {
		s.t.Fatalf("topic %s created but not served: %v", name, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.adm.DeleteTopic(ctx, name)
	})
}

// env is the weekly-rollup pipeline's environment for this scenario.
func (s *scenario) env(extra ...string) map[string]string {
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": strings.Join(s.brokers, ","),
		"KAFKA_GROUP_ID":          s.group,
		"INPUT_KAFKA_TOPIC":       s.in,
		"OUTPUT_KAFKA_TOPIC":      s.out,
		"DLQ_KAFKA_TOPIC":         s.dlq,
	}
	if exactlyOnce {
		env["KAFKA_EXACTLY_ONCE"] = "true"
		// A killed instance's open transaction blocks its partitions' next owner until it times
		// out (a restart with the same id would abort it at once, but every process of a scenario
		// gets an id of its own): 10 s, like the session timeout, keeps the kill scenarios short.
		env["KAFKA_TRANSACTION_TIMEOUT"] = "10s"
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// start starts one weekly-rollup instance (in exactly-once mode with a transactional id of its own:
// two live instances with one id would fence each other).
func (s *scenario) start(name string, extra ...string) *rollupProc {
	env := s.env(extra...)
	if exactlyOnce {
		env["KAFKA_TRANSACTIONAL_ID"] = s.group + "-" + name
	}
	return s.procs.add(startRollup(s.t, name, "weekly-rollup.yaml", env))
}

// produce writes reqs synchronously, retrying through broker outages until ctx ends.
func (s *scenario) produce(ctx context.Context, reqs ...request) error {
	recs := make([]*kgo.Record, len(reqs))
	for i, r := range reqs {
		recs[i] = r.record(s.in)
	}
	if err := s.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records to %s: %w", len(recs), s.in, err)
	}
	s.produced.Add(int64(len(recs)))
	return nil
}

func (s *scenario) mustProduce(reqs ...request) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.produce(ctx, reqs...); err != nil {
		s.t.Fatal(err)
	}
}

// flow produces requests from next, one every interval, until stopped. Produces are asynchronous
// (at most flowInFlight unacknowledged, which is the back-pressure a broker outage exerts), so the
// rate does not depend on the produce round trip.
type flow struct {
	s       *scenario
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
	target  float64 // requests/s asked for
	n       atomic.Int64
	errs    atomic.Int64
	stopped sync.Once
}

const flowInFlight = 256

func (s *scenario) startFlow(interval time.Duration, next func(i int) request) *flow {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flow{s: s, cancel: cancel, done: make(chan struct{}), started: time.Now(),
		target: float64(time.Second) / float64(interval)}
	go func() {
		defer close(f.done)
		// Records in flight when the flow stops get two minutes (every stop comes after the broker
		// is back), then are abandoned; the checker counts what reached the input topic anyway.
		pctx, pcancel := context.WithCancel(context.Background())
		defer pcancel()
		var wg sync.WaitGroup
		defer func() {
			waited := make(chan struct{})
			go func() { wg.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(2 * time.Minute):
				pcancel()
				<-waited
			}
		}()
		sem := make(chan struct{}, flowInFlight)
		for i := 0; ; i++ {
			// Record i is due at started + i*interval: a late loop (a busy machine) catches up
			// instead of dropping ticks, so the flow keeps the rate asked for on average.
			if d := time.Until(f.started.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			s.prod.Produce(pctx, next(i).record(s.in), func(_ *kgo.Record, err error) {
				defer wg.Done()
				<-sem
				if err != nil {
					f.errs.Add(1)
					return
				}
				s.produced.Add(1)
				f.n.Add(1)
			})
		}
	}()
	s.t.Cleanup(f.stop)
	return f
}

// stop ends the flow, waits for its records to be acknowledged, and puts the rate asked for into
// the row's load column (and a note if the flow fell short of it).
func (f *flow) stop() {
	f.stopped.Do(func() {
		f.cancel()
		<-f.done
		load := fmt.Sprintf("%.0f req/s", f.target)
		if capacityRate > 0 {
			load += fmt.Sprintf(" (%.0f %%)", 100*f.target/capacityRate)
		}
		f.s.addLoad(load)
		if e := f.errs.Load(); e > 0 {
			f.s.note("%d flow records not acknowledged (the checker counts those that were written)", e)
		}
		// Below the rate asked for only while the cluster refused or delayed writes (the flow
		// catches up otherwise, up to flowInFlight records unacknowledged).
		if rate := float64(f.n.Load()) / time.Since(f.started).Seconds(); rate < 0.9*f.target {
			f.s.note("the flow averaged %.0f req/s: writes were refused or slow for a while", rate)
		}
	})
}

// leader returns the id of the broker leading topic's partition, from a fresh metadata request.
func (s *scenario) leader(topic string, partition int32) int32 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		td, err := s.adm.ListTopics(ctx, topic)
		if err == nil && td[topic].Err == nil {
			if p, ok := td[topic].Partitions[partition]; ok && p.Err == nil && p.Leader >= 0 {
				return p.Leader
			}
		}
		if ctx.Err() != nil {
			s.t.Fatalf("no leader for %s[%d]: %v", topic, partition, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// brokerName says which broker a fault hit, for the notes: "the broker" when there is one.
func (s *scenario) brokerName(id int32, role string) string {
	if brk.Nodes() == 1 {
		return "the broker"
	}
	return fmt.Sprintf("broker %d of %d (%s)", id, brk.Nodes(), role)
}

// committed returns the sum of the group's committed offsets on the input topic (-1: unreadable).
func (s *scenario) committed() int64 {
	c, err := s.chk.Committed(context.Background())
	if err != nil {
		return -1
	}
	return c
}

// waitProgress waits until the group has committed more than from, i.e. some instance is
// really consuming (ready only means connected).
func (s *scenario) waitProgress(from int64, timeout time.Duration) int64 {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c := s.committed(); c > from {
			return c
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no commit progress past %d within %v", from, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addLoad adds to the row's load column ("25 req/s (70 %)", "backlog 300").
func (s *scenario) addLoad(what string) {
	if s.load != "" {
		s.load += " + "
	}
	s.load += what
}

func (s *scenario) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// finishOpts say what a scenario's report must show beyond lost = 0 and misrouted = 0.
type finishOpts struct {
	maxDuplicated int // -1: no bound
	// plusReported adds to maxDuplicated what the service itself logged it processes again
	// (procSet.reprocessReported): a lost session re-answers every finished, uncommitted record.
	plusReported bool
	extra        []checker.Outcome // e.g. the worker's processed log lines
	lagTimeout   time.Duration     // default 3 minutes
	skipLagWait  bool              // the caller already waited
	quiet        time.Duration     // extra read time for late duplicates, default 2s
}

// finish waits for lag 0 (recovery), reads every topic, records the row and asserts.
func (s *scenario) finish(o finishOpts) checker.Report {
	s.t.Helper()
	if o.lagTimeout == 0 {
		o.lagTimeout = 3 * time.Minute
	}
	if o.quiet == 0 {
		o.quiet = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.lagTimeout+2*time.Minute)
	defer cancel()
	if !o.skipLagWait {
		lctx, lcancel := context.WithTimeout(ctx, o.lagTimeout)
		rec, err := s.chk.WaitLagZero(lctx, s.produced.Load())
		lcancel()
		if err != nil {
			s.t.Errorf("%s: %v", s.name, err)
			s.note("lag did not reach 0")
		}
		s.recovery = rec
	}
	s.chk.StopSampling()
	r, err := s.chk.Check(ctx, checker.ReadOptions{Quiet: o.quiet}, o.extra...)
	if err != nil {
		s.t.Fatalf("%s: check: %v", s.name, err)
	}
	s.t.Logf("%s: %s", s.name, r.String())

	ok := true
	if err := r.Err(); err != nil {
		s.t.Errorf("%s: %v", s.name, err)
		ok = false
	}
	if r.Inputs < int(s.produced.Load()) {
		s.t.Errorf("%s: %d inputs read back, %d produced", s.name, r.Inputs, s.produced.Load())
		ok = false
	}
	reported, lines := s.procs.reprocessReported()
	if lines > 0 && !exactlyOnce {
		s.note("the service logged %d records to process again (%d log lines: lost sessions, failed commits, revokes)", reported, lines)
	}
	if exactlyOnce {
		o.maxDuplicated = 0 // what a read_committed reader sees: every outcome exactly once
	} else if o.plusReported && o.maxDuplicated >= 0 {
		o.maxDuplicated += reported
	}
	if o.maxDuplicated >= 0 && r.Duplicated > o.maxDuplicated {
		s.t.Errorf("%s: %d duplicates, bound %d", s.name, r.Duplicated, o.maxDuplicated)
		ok = false
	}
	if o.maxDuplicated > 0 {
		s.note("dup bound %d", o.maxDuplicated)
	}
	if r.CommitSamples > 0 {
		s.note("%d commit samples, %d violations", r.CommitSamples, r.CommitViolations)
	}
	if len(r.DeadLettersByStage) > 0 {
		var st []string
		for k, v := range r.DeadLettersByStage {
			st = append(st, fmt.Sprintf("%s %d", k, v))
		}
		s.note("DLQ: %s", strings.Join(sortedStrings(st), ", "))
	}
	if r.Misrouted > 0 {
		s.note("misrouted %d", r.Misrouted)
	}
	rec := "-"
	if !s.noFault {
		rec = fmt.Sprintf("%.1f", s.recovery.Seconds())
	}
	s.row = &resultRow{
		scenario: s.name, records: r.Inputs, lost: r.Lost, duplicated: r.Duplicated, maxCopies: r.MaxCopies,
		recovery: rec, passed: ok,
	}
	return r
}

// record adds the scenario's row to the table when the test ends, so that every later check
// counts in its result; a scenario that stopped before finish gets a row saying so.
func (s *scenario) record() {
	row := s.row
	if row == nil {
		row = &resultRow{scenario: s.name, recovery: "-", records: int(s.produced.Load())}
		s.note("stopped before the check (see the test log)")
	}
	row.passed = row.passed && !s.t.Failed()
	row.load = cmp.Or(s.load, "-")
	row.notes = strings.Join(s.notes, "; ")
	results.add(*row)
}

func sortedStrings(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// brokerFaultSlack is what a broker-fault scenario allows beyond the duplicates the service itself
// accounted for (finishOpts.plusReported): a commit already in flight when a session was lost may
// land after the rejoin and move the position back (checkpointer.lost), up to the records in flight.
func (s *scenario) brokerFaultSlack() int { return s.partitions * checkpointLimit() }

// finishBrokerFault ends a scenario that broke a broker while one rollup process p ran: the check,
// where every duplicate must be one the service logged it would process again (a lost session or a
// failed commit: with the broker that coordinates the group down or frozen, commits cannot land
// while answers go on through the other brokers, and a lost session re-answers everything since
// the last commit), then p must have survived the outage (recovery without a restart) and stop
// cleanly.
func (s *scenario) finishBrokerFault(p *rollupProc) {
	s.t.Helper()
	s.finish(finishOpts{maxDuplicated: s.brokerFaultSlack(), plusReported: true})
	if !p.alive() {
		s.t.Errorf("the rollup process exited during the broker outage (%v); log %s", p.exitErr, p.logPath)
	} else {
		s.note("same process recovered")
	}
	p.stop(s.t, time.Minute)
}

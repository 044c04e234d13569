package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/test/checker"
)

// tpResult is one throughput run, or the steady-rate latency run.
type tpResult struct {
	threads, replicas, n, rows int
	warm                       bool // consumers joined before the backlog was produced

	wall      time.Duration // backlog: first process start to last outcome; warm: first produce to last outcome
	steady    time.Duration // first to last outcome by their record timestamps (n-1 requests)
	produce   time.Duration // how long producing the backlog took
	lat       []time.Duration
	visLat    []time.Duration // produce → received by a read_committed reader
	eos       bool            // exactly-once mode (KAFKA_EXACTLY_ONCE=true)
	cpu       float64         // rollup CPU s per request (backlog: first to last outcome; warm: produce to last outcome)
	brokerCPU float64         // dev-broker CPU s per request over the same window
	idle      float64         // idle share of all the machine's CPUs over the same window
	hwmKB     []int64         // peak RSS per process
	idleKB    int64           // warm: RSS of the first process joined and idle, before the backlog
	dups      int
	load      string
	rate      float64 // latency run: requests produced per second

	profile *profileReport
}

func (r *tpResult) steadyRate() float64 { return float64(r.n-1) / max(r.steady.Seconds(), 1e-9) }
func (r *tpResult) wallRate() float64   { return float64(r.n) / max(r.wall.Seconds(), 1e-9) }
func (r *tpResult) peakMB() int64       { return slices.Max(append([]int64{0}, r.hwmKB...)) >> 10 }

// startPipeline runs `rollup run pipeline` on this run's topics, logging to <work>/<name>.log;
// watch, when set, sees every log line.
func (b *bench) startPipeline(name, pipeline string, env map[string]string, debug bool, watch func(string)) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	env["HTTP_ADDRESS"], env["LOG_LEVEL"], env["LOG_FORMAT"] = addr, "INFO", "logfmt"
	for k, v := range b.extraEnv {
		env[k] = v
	}
	f, err := os.Create(filepath.Join(b.work, name+".log"))
	if err != nil {
		return nil, "", err
	}
	var out io.Writer = f
	if watch != nil {
		out = &lineWatch{w: f, fn: watch}
	}
	args := []string{"run", pipeline}
	if debug {
		args = []string{"run", "--set", "http.debug_endpoints=true", pipeline}
	}
	p, err := startProc(name, b.repo, b.bin, args, env, nil, nil, out)
	return p, addr, err
}

func (b *bench) rollupEnv(t topics, group string, threads int) map[string]string {
	return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": strings.Join(b.cl.seeds, ","), "KAFKA_GROUP_ID": group,
		"INPUT_KAFKA_TOPIC": t.in, "OUTPUT_KAFKA_TOPIC": t.out, "DLQ_KAFKA_TOPIC": t.dlq, "ROLLUP_THREADS": strconv.Itoa(threads)}
}

// throughput measures one configuration. Backlog order: all requests produced, then the
// processes started (start-up, join and rebalance fall in the run). Warm order: the processes
// started and their group stable, then the backlog produced at once. rate > 0 is the latency run
// instead: one warm-up request, then the requests produced at that steady rate.
func (b *bench) throughput(ctx context.Context, threads, replicas int, reqs []request, warm, profile bool, rate float64) (*tpResult, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	base := fmt.Sprintf("bench-t%d-r%d-%s", threads, replicas, orderName(warm))
	t, err := b.cl.newTopics(ctx, base, partitions)
	if err != nil {
		return nil, err
	}
	defer b.cl.drop(t)
	res := &tpResult{threads: threads, replicas: replicas, n: len(reqs), rows: reqs[0].rows, warm: warm, load: loadAvg(), rate: rate,
		eos: b.extraEnv["KAFKA_EXACTLY_ONCE"] == "true"}
	var (
		procs    []*proc
		addrs    []string
		cpu0, b0 int64
		idle0    cpuStat
		want     = len(reqs)
		first    = make(chan struct{})
		produced = make(chan struct{}) // latency run: every produce callback has run
		sent     map[checker.RecordID]time.Time
	)
	if rate > 0 {
		want++ // the warm-up request
	}
	mark := func() { cpu0, b0, idle0 = sumTicks(procs), b.cl.brokerTicks(), readCPUStat() }
	col, err := newCollector(b.cl, t, func(n int) {
		if n == 1 && !warm {
			mark()
		}
		if n == 1 {
			close(first)
		}
		if n == want {
			perReq := float64(len(reqs)) // warm: every request's work falls in the window; backlog: n-1
			if !warm {
				perReq--
			}
			res.cpu = float64(sumTicks(procs)-cpu0) / clockTicks / perReq
			res.brokerCPU = float64(b.cl.brokerTicks()-b0) / clockTicks / perReq
			res.idle = readCPUStat().idleSince(idle0)
		}
	})
	if err != nil {
		return nil, err
	}
	defer col.close()
	t0 := time.Now()
	if !warm {
		if sent, err = b.cl.produce(ctx, t.in, partitions, reqs); err != nil {
			return nil, err
		}
		res.produce, t0 = time.Since(t0), time.Now()
	}
	group := uniq(base + "-group")
	for i := range replicas {
		p, addr, err := b.startPipeline(fmt.Sprintf("%s-%d", base, i), pipeline, b.rollupEnv(t, group, threads), profile, nil)
		if err != nil {
			stopAll(procs)
			return nil, err
		}
		procs, addrs = append(procs, p), append(addrs, addr)
	}
	defer stopAll(procs)
	wctx, done := failOnExit(ctx, procs, b.work)
	defer done()
	fail := func(err error) error {
		return fmt.Errorf("%w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	if warm {
		if err := b.cl.waitGroupStable(wctx, group, t.in, replicas, partitions); err != nil {
			return nil, fail(err)
		}
		res.idleKB = statusKB(procs[0].cmd.Process.Pid, "VmRSS")
	}
	var warmup checker.RecordID
	switch {
	case rate > 0: // the first answer proves the group is joined; then the CPU window starts
		s, err := b.cl.produce(ctx, t.in, 1, reqs[:1])
		if err != nil {
			return nil, err
		}
		for warmup = range s {
		}
		if _, err := col.waitFor(wctx, 1); err != nil {
			return nil, fail(fmt.Errorf("warm-up: %w", err))
		}
		mark()
		t0 = time.Now()
		sent = map[checker.RecordID]time.Time{}
		go func() { b.produceAtRate(ctx, t.in, reqs, rate, sent); close(produced) }()
	case warm:
		mark()
		t0 = time.Now()
		if sent, err = b.cl.produce(ctx, t.in, partitions, reqs); err != nil {
			return nil, err
		}
		res.produce = time.Since(t0)
	}

	var profWG sync.WaitGroup
	var profErr error
	if profile { // from the first response (start-up excluded) for most of the expected run
		secs := 5
		if ref := b.find(b.cores, 1); ref != nil {
			secs = max(2, int(0.85*float64(len(reqs))/ref.steadyRate()))
		}
		profWG.Go(func() {
			select {
			case <-first:
				res.profile, profErr = b.takeProfile(ctx, addrs[0], secs)
			case <-ctx.Done():
			}
		})
	}
	outs, err := col.waitFor(wctx, want)
	if err != nil {
		return nil, fail(err)
	}
	res.wall = time.Since(t0)
	if rate > 0 {
		<-produced
	}
	done()
	profWG.Wait()
	if profErr != nil {
		return nil, fmt.Errorf("cpu profile: %w", profErr)
	}
	for _, p := range procs {
		res.hwmKB = append(res.hwmKB, p.stop(20*time.Second))
	}
	// The steady window runs between the outcomes' record timestamps (set by the rollup output),
	// not when the bench's consumer polled them: one poll can bring several.
	var ts []time.Time
	for _, o := range outs {
		if o.src == warmup && rate > 0 {
			continue
		}
		if o.dead {
			return nil, fmt.Errorf("request dead-lettered: %s", o.err)
		}
		ts = append(ts, o.appended)
		if s, ok := sent[o.src]; ok {
			res.lat = append(res.lat, o.appended.Sub(s))
			res.visLat = append(res.visLat, o.seen.Sub(s))
		}
	}
	res.steady, res.dups = slices.MaxFunc(ts, time.Time.Compare).Sub(slices.MinFunc(ts, time.Time.Compare)), col.dups
	return res, nil
}

// produceAtRate produces reqs one by one at rate per second, recording each one's timestamp, and
// returns when every produce callback has run.
func (b *bench) produceAtRate(ctx context.Context, topic string, reqs []request, rate float64, sent map[checker.RecordID]time.Time) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i, r := range reqs {
		if i > 0 && sleepTick(ctx, tick) != nil {
			return
		}
		rec := &kgo.Record{Topic: topic, Partition: int32(i % partitions), Key: []byte(r.org), Value: r.wire}
		wg.Add(1)
		b.cl.cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				logf("latency: produce: %v", err)
				return
			}
			mu.Lock() // callbacks may run concurrently; the map is read only after wg.Wait
			sent[checker.RecordID{Topic: topic, Partition: rec.Partition, Offset: rec.Offset}] = rec.Timestamp
			mu.Unlock()
		})
	}
}

func sleepTick(ctx context.Context, t *time.Ticker) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quantile of ds (sorted in place) by the nearest-rank method.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

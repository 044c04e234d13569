package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tpResult is one throughput run: the backlog produced first, then the consumer(s) started.
type tpResult struct {
	threads, replicas, n, rows int

	wall   time.Duration // first process start to last outcome
	steady time.Duration // first outcome to last outcome (n-1 requests)
	lat    []time.Duration

	cpuTotal  float64 // CPU seconds per request over the processes' whole life up to the last outcome
	cpuSteady float64 // CPU seconds per request over the run (backlog: first to last outcome; warm: produce to last outcome)
	brokerCPU float64 // dev-broker CPU seconds per request in the steady window (0 on an external broker)
	hwmKB     []int64 // peak RSS per process
	dead      int
	dups      int
	load      string

	warm        bool          // consumers joined before the backlog was produced
	startup     time.Duration // warm: process start to group stable with every partition assigned
	produce     time.Duration // warm: how long producing the backlog took
	machineIdle float64       // idle share of all the machine's CPUs over the steady window

	profile *profileReport
}

func (r *tpResult) steadyRate() float64 {
	if r.steady <= 0 {
		return 0
	}
	return float64(r.n-1) / r.steady.Seconds()
}

func (r *tpResult) wallRate() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.n) / r.wall.Seconds()
}

func (r *tpResult) peakMB() int64 {
	var m int64
	for _, v := range r.hwmKB {
		m = max(m, v)
	}
	return m / 1024
}

// rollupEnv is the environment of one pipeline process on this run's topics.
func (b *bench) rollupEnv(t topics, group string, threads int) map[string]string {
	return map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": strings.Join(b.cl.seeds, ","),
		"KAFKA_GROUP_ID":          group,
		"INPUT_KAFKA_TOPIC":       t.in,
		"OUTPUT_KAFKA_TOPIC":      t.out,
		"DLQ_KAFKA_TOPIC":         t.dlq,
		"ROLLUP_THREADS":          strconv.Itoa(threads),
		"LOG_LEVEL":               "INFO",
		"LOG_FORMAT":              "logfmt",
	}
}

// startPipeline runs `rollup run` on a pipeline file (relative to the repo root) with env, on a free HTTP address, logging
// to <work>/<name>.log. watch, when set, sees every log line.
func (b *bench) startPipeline(name, pipeline string, env map[string]string, debug bool, watch func(string)) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	env["HTTP_ADDRESS"] = addr
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
	args := []string{"run"}
	if debug {
		args = append(args, "--set", "http.debug_endpoints=true")
	}
	args = append(args, pipeline)
	p, err := startProc(name, b.repo, b.bin, args, env, nil, nil, out)
	return p, addr, err
}

func (b *bench) throughput(ctx context.Context, threads, replicas int, reqs []request, profile, warm bool) (*tpResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	base := fmt.Sprintf("bench-t%d-r%d", threads, replicas)
	if warm {
		base += "-warm"
	}
	if profile {
		base += "-prof"
	}
	t, err := b.cl.newTopics(ctx, base, b.partitions)
	if err != nil {
		return nil, err
	}
	defer b.cl.drop(t)
	res := &tpResult{threads: threads, replicas: replicas, n: len(reqs), rows: reqs[0].rows, load: loadAvg(), warm: warm}
	var sent map[srcKey]time.Time
	if !warm {
		t0 := time.Now()
		if sent, err = b.cl.produce(ctx, t.in, b.partitions, reqs); err != nil {
			return nil, err
		}
		res.produce = time.Since(t0)
	}
	var (
		procs                  []*proc
		addrs                  []string
		tLast                  time.Time
		cpuFirst, cpuLast      int64
		brokerFirst, brokerLst int64
		first                  = make(chan struct{})
		idleFirst              cpuStat
	)
	brokerTicks := func() int64 {
		if b.cl.broker == nil {
			return 0
		}
		v, _ := b.cl.broker.cpuTicks()
		return v
	}
	col, err := newCollector(b.cl, t, func(n int, o outcome) {
		now := time.Now()
		if n == 1 {
			if !warm {
				cpuFirst, brokerFirst, idleFirst = sumTicks(procs), brokerTicks(), readCPUStat()
			}
			close(first)
		}
		if n == len(reqs) {
			tLast, cpuLast, brokerLst = now, sumTicks(procs), brokerTicks()
			res.machineIdle = readCPUStat().idleSince(idleFirst)
			for _, p := range procs {
				res.hwmKB = append(res.hwmKB, p.statusKB("VmHWM"))
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer col.close()

	group := uniq(base + "-group")
	tStart := time.Now()
	for i := 0; i < replicas; i++ {
		p, addr, err := b.startPipeline(fmt.Sprintf("%s-%d", base, i), b.pipeline, b.rollupEnv(t, group, threads), profile, nil)
		if err != nil {
			stopAll(procs)
			return nil, err
		}
		procs, addrs = append(procs, p), append(addrs, addr)
	}
	defer stopAll(procs)
	if warm {
		// Warm order: every replica has joined and owns its partitions before the backlog lands,
		// so the measured window holds no rebalance.
		wctx, done := failOnExit(ctx, procs, b.work)
		err := b.waitGroupStable(wctx, group, t.in, replicas)
		if err != nil {
			err = fmt.Errorf("%w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
		}
		done()
		if err != nil {
			return nil, err
		}
		res.startup = time.Since(tStart)
		// Warm: the processes are idle until the backlog lands, so the CPU window can start here
		// and hold every request's work.
		cpuFirst, brokerFirst, idleFirst = sumTicks(procs), brokerTicks(), readCPUStat()
		t0 := time.Now()
		if sent, err = b.cl.produce(ctx, t.in, b.partitions, reqs); err != nil {
			return nil, err
		}
		res.produce = time.Since(t0)
	}

	var profWG sync.WaitGroup
	var profErr error
	if profile {
		// Profile from the first response (start-up excluded) for most of the expected run.
		secs := 5
		if ref := b.find(b.cores, 1); ref != nil && ref.steadyRate() > 0 {
			secs = max(2, int(0.85*float64(len(reqs))/ref.steadyRate()))
		}
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			select {
			case <-first:
			case <-ctx.Done():
				return
			}
			res.profile, profErr = b.takeProfile(ctx, addrs[0], secs)
		}()
	}

	wctx, done := failOnExit(ctx, procs, b.work)
	outs, err := col.waitFor(wctx, len(reqs))
	if err != nil {
		err = fmt.Errorf("%w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	done()
	if err != nil {
		return nil, err
	}
	profWG.Wait()
	if profErr != nil {
		return nil, fmt.Errorf("cpu profile: %w", profErr)
	}
	for i, p := range procs {
		if rss, _ := p.stop(20 * time.Second); rss > res.hwmKB[i] {
			res.hwmKB[i] = rss
		}
	}

	res.wall = tLast.Sub(tStart)
	if warm {
		res.wall = tLast.Sub(tStart.Add(res.startup))
	}
	// The steady window runs from the first response to the last by their record timestamps (set
	// by the rollup output as it produced each), not by when the bench's consumer polled them:
	// one poll can bring several.
	firstTS, lastTS := outs[0].appended, outs[0].appended
	for _, o := range outs {
		if o.appended.Before(firstTS) {
			firstTS = o.appended
		}
		if o.appended.After(lastTS) {
			lastTS = o.appended
		}
	}
	res.steady = lastTS.Sub(firstTS)
	res.cpuTotal = float64(cpuLast) / clockTicks / float64(len(reqs))
	// Backlog order: CPU between the first and the last response, for n-1 requests. Warm order:
	// from just before the backlog is produced to the last response, for all n.
	perReq := float64(len(reqs) - 1)
	if warm {
		perReq = float64(len(reqs))
	}
	res.cpuSteady = float64(cpuLast-cpuFirst) / clockTicks / perReq
	res.brokerCPU = float64(brokerLst-brokerFirst) / clockTicks / perReq
	res.dups = col.dups
	for _, o := range outs {
		if o.dead {
			res.dead++
			continue
		}
		if ts, ok := sent[o.src]; ok {
			res.lat = append(res.lat, o.appended.Sub(ts))
		}
	}
	if res.dead > 0 {
		return res, fmt.Errorf("%d of %d requests dead-lettered (first: %s)", res.dead, len(reqs), firstDead(outs))
	}
	return res, nil
}

func firstDead(outs []outcome) string {
	for _, o := range outs {
		if o.dead {
			return o.err
		}
	}
	return ""
}

func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(20 * time.Second) }()
	}
	wg.Wait()
}

func (b *bench) takeProfile(ctx context.Context, addr string, secs int) (*profileReport, error) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %.200s", url, resp.Status, raw)
	}
	path := filepath.Join(b.work, "cpu.pprof")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return nil, err
	}
	p, err := parseProfile(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	r := analyse(p)
	r.seconds, r.path = float64(secs), path
	return r, nil
}

// latResult is the steady-rate run.
type latResult struct {
	threads int
	rate    float64
	n       int
	lat     []time.Duration
	cpu     float64 // CPU seconds per request over the measured window
	hwmKB   int64
	load    string
}

// latency runs one process with cores threads, waits until it answers a warm-up request, then
// sends requests at half the capacity the throughput runs measured.
func (b *bench) latency(ctx context.Context) (*latResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	rate := 2.0
	if ref := b.find(b.cores, 1); ref != nil && ref.steadyRate() > 0 {
		rate = ref.steadyRate() / 2
	} else if best := b.best(); best != nil {
		rate = best.steadyRate() / 2
	}
	m := min(len(b.reqs), max(10, int(rate*15)))
	res := &latResult{threads: b.cores, rate: rate, n: m, load: loadAvg()}
	logf("latency: %d requests at %.1f/s, %d threads x 1 replica", m, rate, b.cores)

	t, err := b.cl.newTopics(ctx, "bench-lat", b.partitions)
	if err != nil {
		return nil, err
	}
	defer b.cl.drop(t)
	var pr *proc
	var cpu0, cpu1 int64
	col, err := newCollector(b.cl, t, func(n int, _ outcome) {
		if n == m+1 {
			cpu1, _ = pr.cpuTicks()
			res.hwmKB = pr.statusKB("VmHWM")
		}
	})
	if err != nil {
		return nil, err
	}
	defer col.close()
	pr, _, err = b.startPipeline("bench-lat", b.pipeline, b.rollupEnv(t, uniq("bench-lat-group"), b.cores), false, nil)
	if err != nil {
		return nil, err
	}
	defer pr.stop(20 * time.Second)

	// Warm-up: the first answer also proves the group is joined.
	warm, _, err := b.cl.produceOne(ctx, t.in, 0, b.reqs[0])
	if err != nil {
		return nil, err
	}
	wctx, done := failOnExit(ctx, []*proc{pr}, b.work)
	defer done()
	if _, err := col.waitFor(wctx, 1); err != nil {
		return nil, fmt.Errorf("warm-up: %w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	cpu0, _ = pr.cpuTicks()

	var mu sync.Mutex
	sent := map[srcKey]time.Time{}
	var perr error
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	go func() {
		for i := 0; i < m; i++ {
			if i > 0 {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
			r := b.reqs[i]
			rec := &kgo.Record{Topic: t.in, Partition: int32(i % b.partitions), Key: []byte(r.org), Value: r.wire}
			wg.Add(1)
			b.cl.cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					perr = err
					return
				}
				sent[srcKey{rec.Partition, rec.Offset}] = rec.Timestamp
			})
		}
	}()
	outs, err := col.waitFor(wctx, m+1)
	if err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	wg.Wait()
	if perr != nil {
		return nil, perr
	}
	res.cpu = float64(cpu1-cpu0) / clockTicks / float64(m)
	for _, o := range outs {
		if o.src == warm {
			continue
		}
		if o.dead {
			return nil, fmt.Errorf("dead letter: %s", o.err)
		}
		if ts, ok := sent[o.src]; ok {
			res.lat = append(res.lat, o.appended.Sub(ts))
		}
	}
	return res, nil
}

// quantile of ds (sorted in place) by the nearest-rank method.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// waitGroupStable polls until the group is Stable with members members and every partition of
// topic assigned.
func (b *bench) waitGroupStable(ctx context.Context, group, topic string, members int) error {
	for {
		gs, err := b.cl.adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := gs[group]; ok && g.Err == nil && g.State == "Stable" && len(g.Members) == members &&
				len(g.AssignedPartitions()[topic]) == b.partitions {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %s not stable with %d members: %w", group, members, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuStat is the machine-wide "cpu" line of /proc/stat: idle (idle+iowait) and total ticks.
type cpuStat struct{ idle, total int64 }

func readCPUStat() cpuStat {
	bs, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	line, _, _ := strings.Cut(string(bs), "\n")
	f := strings.Fields(line)
	var s cpuStat
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // user nice system idle iowait irq softirq steal (guest is inside user)
			s.total += n
		}
		if i == 3 || i == 4 {
			s.idle += n
		}
	}
	return s
}

func (s cpuStat) idleSince(prev cpuStat) float64 {
	if s.total <= prev.total {
		return 0
	}
	return float64(s.idle-prev.idle) / float64(s.total-prev.total)
}

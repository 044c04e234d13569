package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rollup-dev/rollup/test/checker"
)

// soakSample is one observation of the soaked process.
type soakSample struct {
	at                      time.Duration // since the flow began
	rssMB, heapMB, brokerMB float64
	goroutines, answered    int
}

// soak runs the Kafka pipeline (cores threads x 1 replica) for dur at share of the capacity measured
// first, against the bench's broker, sampling the process's RSS (/proc) and Go heap and goroutines
// (/metrics) every 10 s. It reports each one's slope over the last two thirds of the run (a leak
// shows as a steady rise there; warm-up is excluded) and checks that every request was answered.
func (b *bench) soak(ctx context.Context, dur time.Duration, share float64) (string, error) {
	if err := b.generate(b.n); err != nil {
		return "", err
	}
	var err error
	if b.cl, err = startCluster(ctx, b); err != nil {
		return "", err
	}
	defer b.cl.close()
	logf("soak: measuring capacity (%d requests, %d threads x 1 replica, warm)", b.n, b.cores)
	ref, err := b.throughput(ctx, b.cores, 1, b.reqs, true, false, 0)
	if err != nil {
		return "", fmt.Errorf("capacity: %w", err)
	}
	rate := share * ref.steadyRate()
	// Half an hour of 1 MB requests is tens of GB, more than an in-memory broker holds: the soak's
	// topics keep 40 s of records, far more than the pipeline lags at this rate. The embedded broker
	// holds about 3 MB per request retained (18.6 GB at 50 req/s and two minutes), so at 90 req/s
	// this is about 11 GB of this 24 GB machine.
	b.cl.retention = "40000"
	total := int(rate * dur.Seconds())
	reqs := make([]request, total)
	for i := range reqs {
		reqs[i] = b.reqs[i%len(b.reqs)]
	}
	t, err := b.cl.newTopics(ctx, "bench-soak", partitions)
	if err != nil {
		return "", err
	}
	defer b.cl.drop(t)
	group := uniq("bench-soak-group")
	p, addr, err := b.startPipeline("soak", pipeline, b.rollupEnv(t, group, b.cores), false, nil)
	if err != nil {
		return "", err
	}
	defer stopAll([]*proc{p})
	wctx, done := failOnExit(ctx, []*proc{p}, b.work)
	defer done()
	if err := b.cl.waitGroupStable(wctx, group, t.in, 1, partitions); err != nil {
		return "", err
	}
	col, err := newCollector(b.cl, t, nil)
	if err != nil {
		return "", err
	}
	defer col.close()
	logf("soak: %d requests at %.1f/s (%.0f %% of %.1f req/s) for %v, a sample every 10 s", total, rate, 100*share, ref.steadyRate(), dur)

	start := time.Now()
	sent := map[checker.RecordID]time.Time{}
	produced := make(chan struct{})
	go func() { b.produceAtRate(wctx, t.in, reqs, rate, sent); close(produced) }()
	var samples []soakSample
	answered := 0
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-produced:
			running = false
		case <-tick.C:
		case <-wctx.Done():
			return "", fmt.Errorf("soak: %w (logs in %s)", context.Cause(wctx), b.work)
		}
		// Drain what has arrived so far without waiting for more.
		pctx, cancel := context.WithTimeout(wctx, 100*time.Millisecond)
		outs, _ := col.waitFor(pctx, total)
		cancel()
		answered = len(outs)
		heap, gor := scrapeGo(addr)
		s := soakSample{at: time.Since(start), rssMB: float64(statusKB(p.cmd.Process.Pid, "VmRSS")) / 1024,
			heapMB: heap / (1 << 20), goroutines: int(gor), answered: answered}
		if b.cl.broker != nil {
			s.brokerMB = float64(statusKB(b.cl.broker.cmd.Process.Pid, "VmRSS")) / 1024
		}
		samples = append(samples, s)
	}
	outs, err := col.waitFor(wctx, total)
	if err != nil {
		return "", fmt.Errorf("soak: waiting for the last answers: %w", err)
	}
	lost := total - len(outs)
	dead := 0
	for _, o := range outs {
		if o.dead {
			dead++
		}
	}

	var w md
	w.machine(b, "- broker: "+b.brokerDesc()+"; input topic with "+strconv.Itoa(partitions)+" partitions\n")
	w.p("### Soak: %v at %.1f req/s (%.0f %% of the %.1f req/s measured first), %d threads x 1 replica\n\n", dur, rate, 100*share, ref.steadyRate(), b.cores)
	from := dur / 3
	slope := func(get func(soakSample) float64) float64 {
		var xs, ys []float64
		for _, s := range samples {
			if s.at >= from {
				xs, ys = append(xs, s.at.Minutes()), append(ys, get(s))
			}
		}
		return leastSquares(xs, ys)
	}
	w.p("| measure | first sample | last sample | slope over the last %v (per minute) |\n|---|---:|---:|---:|\n", (dur - from).Round(time.Minute))
	first, last := samples[0], samples[len(samples)-1]
	w.p("| RSS MiB | %.0f | %.0f | %+.2f |\n", first.rssMB, last.rssMB, slope(func(s soakSample) float64 { return s.rssMB }))
	w.p("| Go heap (alloc) MiB | %.0f | %.0f | %+.2f |\n", first.heapMB, last.heapMB, slope(func(s soakSample) float64 { return s.heapMB }))
	w.p("| goroutines | %d | %d | %+.2f |\n\n", first.goroutines, last.goroutines, slope(func(s soakSample) float64 { return float64(s.goroutines) }))
	w.p("Requests: %d produced, %d answered (%d dead-lettered), **lost %d**, %d duplicates seen by the reader. Load: %s.\n\n", total, len(outs), dead, lost, col.dups, loadAvg())
	w.p("Samples (one a minute; the embedded broker's RSS shows that its topics are trimmed):\n\n")
	w.p("| minute | RSS MiB | heap MiB | goroutines | answered | broker RSS MiB |\n|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range samples {
		if i%6 == 5 || i == len(samples)-1 {
			w.p("| %.1f | %.0f | %.0f | %d | %d | %.0f |\n", s.at.Minutes(), s.rssMB, s.heapMB, s.goroutines, s.answered, s.brokerMB)
		}
	}
	if lost != 0 {
		return w.String(), fmt.Errorf("soak: %d requests lost", lost)
	}
	return w.String(), nil
}

// scrapeGo reads go_memstats_heap_alloc_bytes and go_goroutines from a process's /metrics.
func scrapeGo(addr string) (heap, goroutines float64) {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "go_memstats_heap_alloc_bytes"):
			heap = v
		case strings.HasPrefix(line, "go_goroutines"):
			goroutines = v
		}
	}
	return heap, goroutines
}

// leastSquares is the slope of the line that best fits the points (0 with fewer than two).
func leastSquares(xs, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

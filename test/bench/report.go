package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

func (b *bench) report() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	broker := "embedded (`rollup dev-broker` process, kfake; it shares the cores with rollup)"
	if b.cl != nil && b.cl.external() {
		broker = fmt.Sprintf("external, KAFKA_BOOTSTRAP_SERVERS=%s", strings.Join(b.cl.seeds, ","))
	}
	p("### Machine and run\n\n")
	p("- %d cores (`nproc`), %s, %s; %s\n", b.cores, cpuModel(), runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	p("- broker: %s\n", broker)
	p("- pipeline: %s (stdio: %s); rollup binary %s\n", b.pipeline, b.stdioPipeline, b.binDesc)
	if len(b.extraEnv) > 0 {
		p("- extra environment of the rollup processes (-env): %v\n", b.extraEnv)
	}
	p("- %s, whole bench %.0f s; 1-minute load average at each phase: %s (other work shares this machine)\n",
		b.started.UTC().Format("2006-01-02 15:04 UTC"), time.Since(b.started).Seconds(), strings.Join(b.loads, ", "))
	if len(b.reqs) > 0 {
		r := b.reqs[0]
		p("- requests: %d generated seed-sized requests (internal/gen), %d rows each, %.1f MiB JSON, %.2f MiB as %s on the topic; input topics have %d partitions\n",
			len(b.reqs), r.rows, mib(int64(r.jsonSize)), mib(int64(len(r.wire))), b.wire, b.partitions)
	}
	p("\n")

	for _, warm := range b.orders {
		var runs []*tpResult
		for _, r := range b.tp {
			if r.warm == warm {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		if warm {
			p("### Throughput, warm group: consumers started and their group stable, then a backlog of %d requests produced at once\n\n", b.n)
			p("Overall = first produce to last response (producing the backlog took %s in the first of these runs). ", ms(runs[0].produce))
		} else {
			p("### Throughput, backlog first: %d requests produced, then the pipeline started\n\n", b.n)
			p("Overall = process start to last response (start-up, group join and, with two replicas, the rebalance as the second joins). ")
		}
		p("Steady = first to last response, (n-1)/time. ")
		p("Latency here is produce → response with the whole backlog queued (queueing, not service time). ")
		if warm {
			p("CPU = utime+stime of the rollup process(es) from /proc/<pid>/stat from just before the backlog is produced to the last response, per request; ")
		} else {
			p("CPU = utime+stime of the rollup process(es) from /proc/<pid>/stat between the first and the last response, per request; ")
		}
		p("cores busy = req/s × CPU s/req; ")
		p("machine idle = idle share of all CPUs (/proc/stat) over the same window: near 0 means the run was CPU-bound on a shared machine. ")
		p("Peak RSS = VmHWM per process.\n\n")
		p("| threads | replicas | req/s steady | req/s overall | rows/s steady | p50 | p99 | CPU s/req rollup | CPU s/req broker | cores busy | machine idle | peak RSS MiB | dups | vs peer | load |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range runs {
			rss := make([]string, len(r.hwmKB))
			for i, v := range r.hwmKB {
				rss[i] = fmt.Sprintf("%d", v>>10)
			}
			vs := "-"
			if b.peer != nil {
				vs = fmt.Sprintf("%.1fx", r.steadyRate()/b.peer.rate())
			}
			p("| %d | %d | %.1f | %.1f | %.2fM | %s | %s | %.4f | %.4f | %.2f | %.0f%% | %s | %d | %s | %s |\n",
				r.threads, r.replicas, r.steadyRate(), r.wallRate(), r.steadyRate()*float64(r.rows)/1e6,
				ms(quantile(r.lat, .5)), ms(quantile(r.lat, .99)), r.cpuSteady, r.brokerCPU, r.steadyRate()*r.cpuSteady,
				100*r.machineIdle, strings.Join(rss, " + "), r.dups, vs, r.load)
		}
		p("\n")
	}

	if b.peer != nil {
		pe := b.peer
		p("### Seed peer (../shared/tools/seed_peer.py, pandas %s) on the same %d requests\n\n", pe.version, pe.n)
		p("| path | req/s | rows/s | CPU s/req | peak RSS MiB |\n|---|---:|---:|---:|---:|\n")
		p("| seed peer, one process (its own per-request timings; start-up excluded) | %.2f | %.0f | %.3f | %d |\n",
			pe.rate(), pe.rate()*float64(b.rows), pe.inProc/float64(pe.n), pe.maxRSS>>10)
		if best := b.best(); best != nil {
			p("| rollup, best (%d threads x %d replicas, %s, steady) | %.1f | %.0f | %.3f | %d |\n",
				best.threads, best.replicas, orderName(best.warm), best.steadyRate(), best.steadyRate()*float64(best.rows), best.cpuSteady, best.peakMB())
			ratio := best.steadyRate() / pe.rate()
			verdict := "met"
			if ratio < 20 {
				verdict = "NOT met"
			}
			p("\n**Ratio: %.1fx the peer's requests/s** (target ≥ 20x: %s). ", ratio, verdict)
			p("Per CPU second: rollup %.1f req, peer %.2f req → %.1fx. ", 1/best.cpuSteady, pe.rate(), (pe.inProc/float64(pe.n))/best.cpuSteady)
			p("Peer process whole run: %.1f s wall, %.1f CPU s (Python start and pandas import included).\n\n", pe.wall.Seconds(), pe.cpu)
		}
	}

	if l := b.lat; l != nil {
		p("### Latency at a steady rate (%d threads x 1 replica, warm)\n\n", l.threads)
		p("Requests produced at %.1f/s (half the measured capacity); latency = response record timestamp − request record timestamp.\n\n", l.rate)
		p("| rate req/s | requests | p50 | p90 | p99 | max | CPU s/req | peak RSS MiB | load |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		p("| %.1f | %d | %s | %s | %s | %s | %.3f | %d | %s |\n\n", l.rate, l.n, ms(quantile(l.lat, .5)), ms(quantile(l.lat, .9)),
			ms(quantile(l.lat, .99)), ms(quantile(l.lat, 1)), l.cpu, l.hwmKB>>10, l.load)
	}

	if wk := b.worker; wk != nil {
		p("### Worker pipeline (pipelines/scenario-worker.yaml)\n\n")
		p("| records | partitions | WORKER_THREADS | TASK_DURATION | all finished (s from first task) | (s from process start) | most running at once | committed | seed: n x task / cores | speed-up | load |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		p("| %d | %d | %d | %v | %.2f | %.2f | %d | %d (%.1f s after) | %.0f s | %.0fx | %s |\n\n", wk.n, wk.partitions, wk.threads, wk.task,
			wk.sinceFirst.Seconds(), wk.sinceStart.Seconds(), wk.maxRunning, wk.committed, wk.commitWait.Seconds(),
			wk.seedEstimate.Seconds(), wk.seedEstimate.Seconds()/wk.sinceFirst.Seconds(), wk.load)
	}

	if pr := b.prof; pr != nil {
		r := b.profRun
		p("### CPU profile: %d requests, %d threads x 1 replica, %.0f s from the first response\n\n", r.n, r.threads, pr.seconds)
		p("Run: %.1f req/s steady, %.4f CPU s/req, peak RSS %d MiB, machine idle %.0f%%. Profile: %.1f CPU s sampled (%s). ",
			r.steadyRate(), r.cpuSteady, r.peakMB(), 100*r.machineIdle, float64(pr.total)/1e9, pr.path)
		p("Stage = innermost frame that belongs to a stage (see test/bench/profile.go); ")
		p("alloc/copy = samples whose leaf is runtime allocation, zeroing or memmove.\n\n")
		p("| stage | CPU | of which alloc/copy | top leaf functions (← caller) |\n|---|---:|---:|---|\n")
		for _, s := range pr.stages {
			if s.ns == 0 {
				continue
			}
			tops := make([]string, len(s.top))
			for i, t := range s.top {
				tops[i] = fmt.Sprintf("`%s` %s", t.name, pr.pct(t.ns))
			}
			p("| %s | %s | %s | %s |\n", s.stage, pr.pct(s.ns), pr.pct(s.allocCopy), strings.Join(tops, "; "))
		}
		p("\nTop flat (leaf) functions:\n\n| function (← caller) | flat |\n|---|---:|\n")
		for _, f := range pr.flat {
			p("| `%s` | %s |\n", f.name, pr.pct(f.ns))
		}
		p("\nOur functions, cumulative:\n\n| function | cum |\n|---|---:|\n")
		for _, f := range pr.cum {
			p("| `%s` | %s |\n", f.name, pr.pct(f.ns))
		}
		p("\n")
	}

	if m := b.mem; m != nil {
		big := m.rows[0]
		p("### Memory: peak RSS against the formula\n\n")
		p("Big request: %d rows (%d groups x %d weeks), D = %.1f MiB decoded JSON, E = %.1f MiB base64(gzip) on the wire; ",
			b.bigRows(), m.groups, b.bigWeeks, mib(big.js), mib(big.wire))
		p("the target for one such request is 2.5 x D + 100 MiB = %.0f MiB. ", mib(big.limit()))
		p("B = %.0f MiB: RSS of the Kafka pipeline joined and idle. Measured = VmHWM. ", mib(m.baseKB<<10))
		p("Records held R = min(n, partitions x checkpoint limit (%d) + 2 x records per 64 MiB fetch). ", b.checkpointLimit())
		p("Live estimate = B + R x E + min(T, n) x (D + 0.75 E) (stdio: B + scanner buffer + E + D + 0.75 E); ")
		p("k = (measured - B) / (estimate - B): about 1 when GOMEMLIMIT holds the heap to the live set, up to about 2 from GOGC=100's headroom without it.\n\n")
		p("| path | requests | threads | E MiB | D MiB | records held R | live estimate MiB | measured MiB | k | measured / D | 2.5 x D + 100 MiB | wall s | load |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
		rows := append([]memRow(nil), m.rows...)
		for _, r := range b.tp {
			if r.warm && r.replicas == 1 {
				rows = append(rows, b.seedMemRow(r, "Kafka, seed-sized backlog"))
			}
		}
		if b.profRun != nil {
			rows = append(rows, b.seedMemRow(b.profRun, "Kafka, seed-sized backlog (profile run)"))
		}
		base := m.baseKB << 10
		for _, r := range rows {
			target := "-"
			if r.bigTarget {
				target = fmt.Sprintf("%.0f: yes", mib(r.limit()))
				if r.peakKB<<10 > r.limit() {
					target = fmt.Sprintf("%.0f: NO", mib(r.limit()))
				}
			}
			inflight := "-"
			if r.path != pathStdio {
				inflight = fmt.Sprint(r.inflight)
			}
			p("| %s | %d | %d | %.1f | %.1f | %s | %.0f | %.0f | %.2f | %.2f | %s | %.1f | %s |\n", r.path, r.requests, r.threads,
				mib(r.wire), mib(r.js), inflight, mib(r.estimate(base)), mib(r.peakKB<<10), r.k(base),
				float64(r.peakKB<<10)/float64(r.js), target, r.wall.Seconds(), r.load)
		}
		p("\n")
	}
	return w.String()
}

func (b *bench) bigRows() int { return 50 * b.bigWeeks * 168 }

// seedMemRow is a throughput run seen as a memory measurement: every record of the backlog up
// to the checkpoint limit of each partition is fetched and held until acknowledged.
func (b *bench) seedMemRow(r *tpResult, path string) memRow {
	q := b.reqs[0]
	return memRow{path: path, requests: r.n, threads: r.threads, wire: int64(len(q.wire)), js: int64(q.jsonSize),
		inflight: b.heldRecords(r.n, b.partitions, int64(len(q.wire))), peakKB: r.hwmKB[0], wall: r.steady, load: r.load}
}

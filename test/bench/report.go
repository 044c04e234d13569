package main

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.*)$`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "?"
}

// ratio is a/b as "12.3x", or "-" when either is not measured (a CPU window under one 10 ms tick reads 0).
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", a/b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

// md collects the markdown report.
type md struct{ strings.Builder }

func (w *md) p(format string, args ...any) { fmt.Fprintf(w, format, args...) }

func (w *md) machine(b *bench, extra string) {
	w.p("### Machine and run\n\n- %d cores (`nproc`), %s, %s/%s; %s\n", b.cores, cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	w.p("%s- rollup binary %s; pipelines %s, %s\n", extra, b.binDesc, pipeline, stdioPipeline)
	if len(b.extraEnv) > 0 {
		w.p("- extra environment of the rollup processes (-env): %v\n", b.extraEnv)
	}
	w.p("- %s, whole bench %.0f s; 1-minute load average at each phase: %s (other work shares this machine)\n",
		b.started.UTC().Format("2006-01-02 15:04 UTC"), time.Since(b.started).Seconds(), strings.Join(append(b.loads, loadAvg()), ", "))
	if len(b.reqs) > 0 {
		r := b.reqs[0]
		w.p("- requests: %d generated (internal/gen), %d rows each, %.1f MiB JSON, %.2f MiB as %s\n\n",
			len(b.reqs), r.rows, mib(int64(r.jsonSize)), mib(int64(len(r.wire))), b.wire)
	}
}

// peerTable lists the peers beside rollup's paths, with both ratios to each peer.
func (w *md) peerTable(ours []*pathResult, peers []*pathResult, rows int) {
	w.p("| path | req/s | rows/s | CPU s/req | peak RSS MiB |")
	for _, pe := range peers {
		w.p(" vs %s req/s | vs %s per CPU s |", pe.name, pe.name)
	}
	w.p(" load |\n|---|---:|---:|---:|---:|%s---:|\n", strings.Repeat("---:|---:|", len(peers)))
	for _, r := range append(append([]*pathResult(nil), peers...), ours...) {
		name := r.name
		if r.version != "" {
			name = fmt.Sprintf("%s peer (test/bench/peers, %s; its own per-request timings, start-up excluded)", r.name, r.version)
		}
		w.p("| %s | %.2f | %.0f | %.4f | %d |", name, r.rate(), r.rate()*float64(rows), r.cpuReq(), r.rssKB>>10)
		for _, pe := range peers {
			w.p(" %s | %s |", ratio(r.rate(), pe.rate()), ratio(pe.cpuReq(), r.cpuReq()))
		}
		w.p(" %s |\n", r.load)
	}
	w.p("\n")
}

func (b *bench) seedReport(ours, peers []*pathResult) string {
	var w md
	w.machine(b, "")
	w.p("### Stdio pipeline beside the peers, same %d requests (answers agree to 1e-9 relative)\n\n", b.n)
	w.p("rollup: whole process wall time and CPU (start-up included), fastest of three runs; peers: the sums of their own ")
	w.p("per-request wall and CPU timings (Python start and imports excluded). CPU s/req for rollup is the whole process's.\n\n")
	w.peerTable(ours, peers, b.reqs[0].rows)
	return w.String()
}

func (b *bench) report() string {
	var w md
	w.machine(b, "- broker: "+b.brokerDesc()+fmt.Sprintf("; input topics have %d partitions\n", partitions))
	for _, warm := range b.orders {
		if warm {
			w.p("### Throughput, warm group: consumers started and their group stable, then a backlog of %d requests produced at once\n\n", b.n)
			w.p("Overall = first produce to last response. CPU window: from just before the backlog is produced to the last response. ")
		} else {
			w.p("### Throughput, backlog first: %d requests produced, then the pipeline started\n\n", b.n)
			w.p("Overall = process start to last response (start-up, group join, rebalance). CPU window: first to last response. ")
		}
		w.p("Steady = first to last response, (n-1)/time. Latency = produce → response with the whole backlog queued (queueing, ")
		w.p("not service time). CPU = utime+stime per request (/proc/<pid>/stat); cores busy = req/s × CPU s/req; machine idle = ")
		w.p("idle share of all CPUs over the window (near 0: CPU-bound on a shared machine). Peak RSS = VmHWM per process. ")
		w.p("vs peer = req/s over the peer's req/s.\n\n")
		w.p("| threads | replicas | req/s steady | req/s overall | rows/s steady | p50 | p99 | CPU s/req rollup | CPU s/req broker | cores busy | machine idle | peak RSS MiB | dups |")
		for _, pe := range b.peers {
			w.p(" vs %s |", pe.name)
		}
		w.p(" load |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%s---:|\n", strings.Repeat("---:|", len(b.peers)))
		for _, r := range b.tp {
			if r.warm != warm {
				continue
			}
			rss := make([]string, len(r.hwmKB))
			for i, v := range r.hwmKB {
				rss[i] = fmt.Sprint(v >> 10)
			}
			w.p("| %d | %d | %.1f | %.1f | %.2fM | %s | %s | %.4f | %.4f | %.2f | %.0f%% | %s | %d |", r.threads, r.replicas,
				r.steadyRate(), r.wallRate(), r.steadyRate()*float64(r.rows)/1e6, ms(quantile(r.lat, .5)), ms(quantile(r.lat, .99)),
				r.cpu, r.brokerCPU, r.steadyRate()*r.cpu, 100*r.idle, strings.Join(rss, " + "), r.dups)
			for _, pe := range b.peers {
				w.p(" %.1fx |", r.steadyRate()/pe.rate())
			}
			w.p(" %s |\n", r.load)
		}
		w.p("\n")
	}
	if best := b.best(); len(b.peers) > 0 && best != nil {
		w.p("### Peers on the same %d requests (every answer agrees with rollup's stdio pipeline to 1e-9 relative)\n\n", b.n)
		bestR := &pathResult{name: fmt.Sprintf("rollup through Kafka, best (%d threads x %d replicas, %s, steady)", best.threads, best.replicas,
			orderName(best.warm)), n: best.n - 1, wall: best.steady.Seconds(), cpu: best.cpu * float64(best.n-1), rssKB: int64(best.peakMB()) << 10, load: best.load}
		st := b.stdioR
		st.name = fmt.Sprintf("rollup stdio pipeline, %d threads, whole process (start-up included)", b.cores)
		w.peerTable([]*pathResult{bestR, st}, b.peers, b.reqs[0].rows)
		for _, pe := range b.peers {
			w.p("**%s: %s its requests/s, %s per CPU second.** ", pe.name, ratio(bestR.rate(), pe.rate()), ratio(pe.cpuReq(), bestR.cpuReq()))
		}
		w.p("Peer processes whole run (Python start and imports included): ")
		for _, pe := range b.peers {
			w.p("%s %.1f s wall, %.1f CPU s; ", pe.name, pe.procWall.Seconds(), pe.procCPU)
		}
		w.p("\n\n")
	}
	b.eosReport(&w)
	if l := b.lat; l != nil {
		w.p("### Latency at a steady rate (%d threads x 1 replica, warm)\n\n", l.threads)
		w.p("Requests produced at %.1f/s (half the measured capacity); latency = response record timestamp − request record timestamp.\n\n", l.rate)
		w.p("| rate req/s | requests | p50 | p90 | p99 | max | CPU s/req | peak RSS MiB | load |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		w.p("| %.1f | %d | %s | %s | %s | %s | %.3f | %d | %s |\n\n", l.rate, l.n, ms(quantile(l.lat, .5)), ms(quantile(l.lat, .9)),
			ms(quantile(l.lat, .99)), ms(quantile(l.lat, 1)), l.cpu, l.peakMB(), l.load)
	}
	if wk := b.worker; wk != nil {
		w.p("### Worker pipeline (pipelines/scenario-worker.yaml)\n\n")
		w.p("| records | partitions | WORKER_THREADS | TASK_DURATION | all finished (s from first task) | (s from process start) | most running at once | committed | seed: n x task / cores | speed-up | load |\n")
		w.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		w.p("| %d | 1 | %d | %v | %.2f | %.2f | %d | %d (%.1f s after) | %.0f s | %.0fx | %s |\n\n", wk.n, wk.threads, wk.task,
			wk.sinceFirst.Seconds(), wk.sinceStart.Seconds(), wk.maxRunning, wk.committed, wk.commitWait.Seconds(),
			wk.seed.Seconds(), wk.seed.Seconds()/wk.sinceFirst.Seconds(), wk.load)
	}
	if r := b.profRun; r != nil && r.profile != nil {
		pr := r.profile
		w.p("### CPU profile: %d requests, %d threads x 1 replica, %.0f s from the first response\n\n", r.n, r.threads, pr.seconds)
		w.p("Run: %.1f req/s steady, %.4f CPU s/req, peak RSS %d MiB, machine idle %.0f%%. Profile: %.1f CPU s sampled (%s). ",
			r.steadyRate(), r.cpu, r.peakMB(), 100*r.idle, float64(pr.total)/1e9, pr.path)
		w.p("Stage = innermost frame that belongs to a stage (test/bench/profile.go); alloc/copy = samples whose leaf is runtime allocation, zeroing or memmove.\n\n")
		w.p("| stage | CPU | of which alloc/copy | top leaf functions (← caller) |\n|---|---:|---:|---|\n")
		for _, s := range pr.stages {
			tops := make([]string, len(s.top))
			for i, t := range s.top {
				tops[i] = fmt.Sprintf("`%s` %s", t.name, pr.pct(t.ns))
			}
			w.p("| %s | %s | %s | %s |\n", s.stage, pr.pct(s.ns), pr.pct(s.allocCopy), strings.Join(tops, "; "))
		}
		for _, l := range []struct {
			title string
			kvs   []kv
		}{{"Top flat (leaf) functions:\n\n| function (← caller) | flat |", pr.flat}, {"Our functions, cumulative:\n\n| function | cum |", pr.cum}} {
			w.p("\n%s\n|---|---:|\n", l.title)
			for _, f := range l.kvs {
				w.p("| `%s` | %s |\n", f.name, pr.pct(f.ns))
			}
		}
		w.p("\n")
	}
	if len(b.mem) > 0 {
		big := b.mem[0]
		w.p("### Memory: peak RSS against the formula\n\n")
		w.p("Big request: %d rows, D = %.1f MiB decoded JSON, E = %.1f MiB base64(gzip) on the wire; the target for one such request is 2.5 x D + 100 MiB = %.0f MiB. ",
			50*bigWeeks*168, mib(big.js), mib(big.wire), mib(big.limit()))
		w.p("B = %.0f MiB: RSS of the Kafka pipeline joined and idle. Measured = VmHWM. Records held R = min(n, partitions x checkpoint limit (%d) + 2 x records per 64 MiB fetch). ",
			mib(b.memBase), b.checkpointLimit())
		w.p("Live estimate = B + R x E + min(T, n) x (D + 0.75 E) (stdio: B + scanner buffer + E + D + 0.75 E); ")
		w.p("k = (measured - B) / (estimate - B): about 1 when GOMEMLIMIT holds the heap to the live set, up to about 2 from GOGC=100's headroom without it.\n\n")
		w.p("| path | requests | threads | E MiB | D MiB | records held R | live estimate MiB | measured MiB | k | measured / D | 2.5 x D + 100 MiB | wall s | load |\n")
		w.p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
		rows := append([]memRow(nil), b.mem...)
		for _, r := range b.tp {
			if r.warm && r.replicas == 1 {
				rows = append(rows, b.memRowOf(r, b.reqs[0], "Kafka, seed-sized backlog"))
			}
		}
		if b.profRun != nil {
			rows = append(rows, b.memRowOf(b.profRun, b.reqs[0], "Kafka, seed-sized backlog (profile run)"))
		}
		for _, r := range rows {
			target, held := "-", "-"
			if r.bigTarget {
				target = fmt.Sprintf("%.0f: yes", mib(r.limit()))
				if r.peakKB<<10 > r.limit() {
					target = fmt.Sprintf("%.0f: NO", mib(r.limit()))
				}
			}
			if !r.isStdio {
				held = fmt.Sprint(r.held)
			}
			w.p("| %s | %d | %d | %.1f | %.1f | %s | %.0f | %.0f | %.2f | %.2f | %s | %.1f | %s |\n", r.path, r.requests, r.threads,
				mib(r.wire), mib(r.js), held, mib(r.estimate(b.memBase)), mib(r.peakKB<<10), r.k(b.memBase),
				float64(r.peakKB<<10)/float64(r.js), target, r.wall.Seconds(), r.load)
		}
		w.p("\n")
	}
	return w.String()
}

// brokerDesc says which broker the bench ran against.
func (b *bench) brokerDesc() string {
	if b.cl != nil && b.cl.broker == nil {
		return "external, KAFKA_BOOTSTRAP_SERVERS=" + strings.Join(b.cl.seeds, ",")
	}
	return "embedded (`rollup dev-broker` process, kfake; it shares the cores with rollup)"
}

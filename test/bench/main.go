// Command bench measures rollup end to end through a Kafka broker, beside the seed service's
// processing path (../shared/tools/seed_peer.py), and writes the figures as markdown.
//
//	go run ./test/bench                 # or: make bench-e2e, scripts/bench-e2e.sh
//	go run ./test/bench -h              # flags
//
// What it runs (each part can be switched off by a flag):
//
//   - throughput: N seed-sized requests (internal/gen, 19,488 rows each) are produced to a fresh
//     input topic first, then pipelines/weekly-rollup.yaml starts as `rollup run` subprocess(es)
//     in one consumer group, for every combination of -threads and -replicas. Figures: requests/s
//     and rows/s (steady: first to last response; and from process start), produce-to-response
//     latency (with the whole backlog queued, so this is queueing, not service time), CPU seconds
//     per request (utime+stime of the rollup processes from /proc/<pid>/stat), peak RSS (VmHWM).
//   - latency: one process already running; requests arrive at a steady rate (half the measured
//     capacity) and the produce-to-response latency is the request record's timestamp against
//     the response record's (both set by their producers on this machine's clock).
//   - peer: the same request lines through seed_peer.py (pandas), its requests/s from its own
//     per-request timings, and our ratio to it.
//   - worker: 100 records through pipelines/scenario-worker.yaml with TASK_DURATION=5s and
//     WORKER_THREADS=100: seconds until all are finished, against the seed's 100 x 5 s / cores.
//   - profile: a throughput run with Benthos's debug endpoints on, a CPU profile from
//     /debug/pprof/profile, the CPU split by stage and the top functions.
//   - memory: one 500k-row request through the stdio pipeline and through Kafka, peak RSS
//     against 2.5 x its decoded JSON size + 100 MB.
//
// The broker is `rollup dev-broker` as a separate process on a free port, or the one named by
// KAFKA_BOOTSTRAP_SERVERS (plaintext). Every run uses its own topics and group and deletes its
// topics afterwards.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/plugins/payload"
)

// bench holds the settings of one invocation and the figures as they come in.
type bench struct {
	repo, bin, shared, work string
	n, partitions           int
	threads, replicas       []int
	cores                   int
	keep                    bool
	orders                  []bool // false: backlog first, true: warm group first
	pipeline, stdioPipeline string
	binDesc                 string
	wire                    string            // encoding of the requests on the topic
	extraEnv                map[string]string // -env: added to every rollup process
	timeout                 time.Duration

	doPeer, doLatency, doWorker, doProfile, doMemory bool
	profileN                                         int
	workerN, workerThreads                           int
	taskDuration                                     time.Duration
	bigWeeks                                         int

	cl   *cluster
	reqs []request
	rows int // rows per request

	tp      []*tpResult
	lat     *latResult
	peer    *peerResult
	worker  *workerResult
	prof    *profileReport
	profRun *tpResult
	mem     *memResult
	started time.Time
	loads   []string
}

// request is one generated request as sent on the topic.
type request struct {
	org      string
	wire     []byte // base64(gzip(json)), the seed's encoding
	jsonSize int
	rows     int
}

func main() {
	b := &bench{cores: runtime.NumCPU(), started: time.Now()}
	var threads, replicas, out string
	flag.StringVar(&b.bin, "bin", os.Getenv("ROLLUP_BIN"), "rollup binary to run (env ROLLUP_BIN; default: built from this checkout into a temporary directory)")
	flag.StringVar(&b.shared, "shared", os.Getenv("SHARED"), "the shared directory holding tools/seed_peer.py (env SHARED; default ../shared from the repo root)")
	flag.IntVar(&b.n, "n", 40, "seed-sized requests per throughput run")
	flag.IntVar(&b.partitions, "partitions", 4, "partitions of each input topic (at least 2, so two replicas share the work)")
	flag.StringVar(&threads, "threads", "1,2,0", "pipeline threads per process to measure (0 = cores)")
	flag.StringVar(&replicas, "replicas", "1,2", "processes in one consumer group to measure")
	flag.BoolVar(&b.doPeer, "peer", true, "measure the seed peer (python3 + pandas) on the same requests")
	flag.BoolVar(&b.doLatency, "latency", true, "measure latency at a steady arrival rate")
	flag.BoolVar(&b.doWorker, "worker", true, "run the scenario-worker scenario")
	flag.BoolVar(&b.doProfile, "profile", true, "take and analyse a CPU profile of a throughput run")
	flag.BoolVar(&b.doMemory, "memory", true, "check peak RSS with one 500k-row request (stdio and Kafka)")
	flag.IntVar(&b.profileN, "profile-n", 0, "requests in the profiled run (0: about 10 s of work at the measured rate, at least 3 x -n)")
	flag.IntVar(&b.workerN, "worker-n", 100, "records through the worker pipeline")
	flag.IntVar(&b.workerThreads, "worker-threads", 100, "WORKER_THREADS of the worker pipeline")
	flag.DurationVar(&b.taskDuration, "task", 5*time.Second, "TASK_DURATION of the worker pipeline")
	flag.IntVar(&b.bigWeeks, "big-weeks", 60, "weeks of the big request (50 groups x weeks x 168 rows; 60 gives 504,000)")
	flag.StringVar(&out, "o", "", "also write the markdown report to this file")
	var orders string
	b.extraEnv = map[string]string{}
	flag.Func("env", "KEY=VALUE added to the environment of every rollup process (repeatable), e.g. -env GOMEMLIMIT=400MiB", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		b.extraEnv[k] = v
		return nil
	})
	flag.StringVar(&b.wire, "wire", "gzip_base64", "encoding of the requests on the topic: gzip_base64 (the seed's), gzip, zstd, zstd_base64 or json")
	flag.StringVar(&b.pipeline, "pipeline", "pipelines/weekly-rollup.yaml", "Kafka pipeline to measure (path from the repo root)")
	flag.StringVar(&b.stdioPipeline, "stdio-pipeline", "pipelines/weekly-rollup-stdio.yaml", "stdio pipeline of the memory check (path from the repo root)")
	flag.StringVar(&orders, "order", "backlog,warm", "throughput run orders: backlog (produce the backlog, then start the consumers: start-up and the join rebalance fall in the run) and/or warm (start the consumers, wait until the group is stable, then produce the backlog at once)")
	flag.BoolVar(&b.keep, "keep", false, "keep the work directory (logs, CPU profile) instead of removing it")
	flag.DurationVar(&b.timeout, "timeout", 3*time.Minute, "give up on one run after this long (a hang guard, not a target)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.setup(threads, replicas, orders); err != nil {
		fatal(err)
	}
	if !b.keep {
		defer os.RemoveAll(b.work)
	}
	err := b.run(ctx)
	if b.cl != nil {
		b.cl.close()
	}
	report := b.report()
	fmt.Print(report)
	if out != "" {
		if werr := os.WriteFile(out, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "bench:", werr)
		}
	}
	if err != nil {
		if !b.keep {
			fmt.Fprintln(os.Stderr, "bench: rerun with -keep to look at the logs")
		}
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (b *bench) setup(threads, replicas, orders string) error {
	var err error
	if b.repo, err = repoRoot(); err != nil {
		return err
	}
	if b.shared == "" {
		b.shared = filepath.Join(filepath.Dir(b.repo), "shared")
	}
	if b.work, err = os.MkdirTemp("", "rollup-bench-"); err != nil {
		return err
	}
	if b.partitions < 2 {
		return fmt.Errorf("-partitions must be at least 2, got %d", b.partitions)
	}
	if b.n < 2 {
		return fmt.Errorf("-n must be at least 2, got %d", b.n)
	}
	if b.threads, err = intList(threads, b.cores); err != nil {
		return fmt.Errorf("-threads: %w", err)
	}
	if b.replicas, err = intList(replicas, 1); err != nil {
		return fmt.Errorf("-replicas: %w", err)
	}
	for _, o := range strings.Split(orders, ",") {
		switch strings.TrimSpace(o) {
		case "backlog":
			b.orders = append(b.orders, false)
		case "warm":
			b.orders = append(b.orders, true)
		default:
			return fmt.Errorf("-order: %q is neither backlog nor warm", o)
		}
	}
	if len(b.orders) == 0 {
		return fmt.Errorf("-order: empty")
	}
	if b.doPeer {
		if _, err := os.Stat(filepath.Join(b.shared, "tools", "seed_peer.py")); err != nil {
			return fmt.Errorf("seed peer: %w (set -shared or SHARED to the directory holding tools/seed_peer.py, or -peer=false)", err)
		}
	}
	b.binDesc = b.bin
	if b.bin == "" {
		b.binDesc = "built from this checkout (go build ./cmd/rollup)"
		b.bin = filepath.Join(b.work, "rollup")
		logf("building %s", b.bin)
		cmd := exec.Command("go", "build", "-o", b.bin, "./cmd/rollup")
		cmd.Dir, cmd.Stdout, cmd.Stderr = b.repo, os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/rollup: %w", err)
		}
	} else if b.bin, err = filepath.Abs(b.bin); err != nil {
		return err
	}
	return nil
}

// repoRoot walks up from the working directory to this module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/rollup-dev/rollup\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the rollup repository (no go.mod of github.com/rollup-dev/rollup above %s)", dir)
		}
		dir = parent
	}
}

// intList parses "1,2,0" with 0 standing for zero, deduplicated in order.
func intList(s string, zero int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		if v == 0 {
			v = zero
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

func (b *bench) note() { b.loads = append(b.loads, loadAvg()) }

func (b *bench) run(ctx context.Context) error {
	logf("generating %d seed-sized requests", b.n)
	for i := 0; i < b.n; i++ {
		o := gen.Defaults(uint64(i + 1))
		js := gen.Request(o)
		wire := gen.Encode(js)
		if b.wire != "gzip_base64" {
			var err error
			if wire, err = payload.Encode(b.wire, js); err != nil {
				return fmt.Errorf("-wire: %w", err)
			}
		}
		b.reqs = append(b.reqs, request{org: o.OrganizationID(), wire: wire, jsonSize: len(js), rows: o.Rows()})
	}
	b.rows = b.reqs[0].rows

	var err error
	if b.cl, err = startCluster(ctx, b); err != nil {
		return err
	}
	if b.cl.external() {
		logf("broker: %v (KAFKA_BOOTSTRAP_SERVERS)", b.cl.seeds)
	} else {
		logf("broker: rollup dev-broker on %s", b.cl.seeds[0])
	}

	for _, warm := range b.orders {
		for _, r := range b.replicas {
			for _, t := range b.threads {
				b.note()
				logf("throughput (%s): %d requests, %d thread(s) x %d replica(s)", orderName(warm), b.n, t, r)
				res, err := b.throughput(ctx, t, r, b.reqs, false, warm)
				if err != nil {
					return fmt.Errorf("throughput (%s) %d threads x %d replicas: %w", orderName(warm), t, r, err)
				}
				b.tp = append(b.tp, res)
				logf("  %.1f req/s steady, %.4f CPU s/req, peak RSS %d MiB, machine idle %.0f%%", res.steadyRate(), res.cpuSteady, res.peakMB(), 100*res.machineIdle)
			}
		}
	}
	if b.doPeer {
		b.note()
		logf("seed peer: %d requests through %s", b.n, filepath.Join(b.shared, "tools", "seed_peer.py"))
		if b.peer, err = b.runPeer(ctx); err != nil {
			return fmt.Errorf("seed peer: %w", err)
		}
		logf("  %.2f req/s", b.peer.rate())
	}
	if b.doLatency {
		b.note()
		if b.lat, err = b.latency(ctx); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if b.doProfile {
		b.note()
		if b.profileN == 0 {
			// About 6 s of work, so the profile has enough samples, and above the in-flight bound
			// (checkpoint limit x partitions) so the memory formula is checked at its worst case.
			b.profileN = max(3*b.n, b.heldRecords(1<<30, b.partitions, int64(len(b.reqs[0].wire)))+b.n)
			if ref := b.find(b.cores, 1); ref != nil {
				b.profileN = min(max(b.profileN, int(6*ref.steadyRate())), 600)
			}
		}
		reqs := make([]request, b.profileN)
		for i := range reqs {
			reqs[i] = b.reqs[i%len(b.reqs)]
		}
		logf("profile: %d requests, %d threads x 1 replica, debug endpoints on", len(reqs), b.cores)
		if b.profRun, err = b.throughput(ctx, b.cores, 1, reqs, true, true); err != nil {
			return fmt.Errorf("profile run: %w", err)
		}
		b.prof = b.profRun.profile
	}
	if b.doWorker {
		b.note()
		if b.worker, err = b.runWorker(ctx); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	if b.doMemory {
		b.note()
		if b.mem, err = b.runMemory(ctx); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	b.note()
	return nil
}

// best is the throughput run with the highest steady rate.
func (b *bench) best() *tpResult {
	var best *tpResult
	for _, r := range b.tp {
		if best == nil || r.steadyRate() > best.steadyRate() {
			best = r
		}
	}
	return best
}

// find is the throughput run of a configuration (the warm one when there are both), or nil.
func (b *bench) find(threads, replicas int) *tpResult {
	var found *tpResult
	for _, r := range b.tp {
		if r.threads == threads && r.replicas == replicas && (found == nil || r.warm) {
			found = r
		}
	}
	return found
}

func orderName(warm bool) string {
	if warm {
		return "warm"
	}
	return "backlog"
}

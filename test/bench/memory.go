package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/rollup-dev/rollup/internal/gen"
)

// fetchMaxBytes is the kafka input's fetch_max_bytes default (the pipeline does not set it).
const fetchMaxBytes = 64 << 20

// checkpointLimit is the limit the rollup processes run with: -env's KAFKA_CHECKPOINT_LIMIT, else
// the default written in the measured pipeline, read from it so the two cannot drift apart.
func (b *bench) checkpointLimit() int {
	if v, err := strconv.Atoi(b.extraEnv["KAFKA_CHECKPOINT_LIMIT"]); err == nil && v > 0 {
		return v
	}
	yaml, err := os.ReadFile(filepath.Join(b.repo, b.pipeline))
	if err != nil {
		panic(fmt.Sprintf("bench: reading the pipeline for its checkpoint limit: %v", err))
	}
	m := regexp.MustCompile(`\$\{KAFKA_CHECKPOINT_LIMIT:(\d+)\}`).FindSubmatch(yaml)
	if m == nil {
		panic(fmt.Sprintf("bench: %s sets no ${KAFKA_CHECKPOINT_LIMIT:n} default", b.pipeline))
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// heldRecords is how many fetched records a consumer can hold at once: per partition, up to the
// checkpoint limit handed out and not acknowledged; beyond that, what fetches already under way
// bring before the pause takes effect: the response just polled and the next one, each up to
// fetch_max_bytes (always at least one record), per broker (the bench has one).
func (b *bench) heldRecords(n, partitions int, wire int64) int {
	perFetch := max(1, int((fetchMaxBytes+wire-1)/wire))
	return min(n, partitions*b.checkpointLimit()+2*perFetch)
}

// memRow is one measured peak RSS beside what the formula (see RESULTS.md) predicts.
type memRow struct {
	path      string
	requests  int
	threads   int
	wire, js  int64 // bytes of one request on the wire (E) and decoded (D)
	inflight  int   // R: fetched records held at the worst moment (Kafka)
	peakKB    int64
	idleKB    int64 // RSS of the same pipeline before its first record (B)
	wall      time.Duration
	load      string
	bigTarget bool // the 500k-row check: peak under 2.5 x D + 100 MiB
}

// estimate is the live set the formula predicts: B + records held + T x per-request working set.
//
//	Kafka: B + R x E + min(T, n) x (D + 0.75 E)    R = heldRecords
//	stdio: B + (nextpow2(E) + E) + D + 0.75 E      (scanner buffer and the line's copy)
//
// A record's value E stays referenced until the record is acknowledged; 0.75 E is the base64
// scratch (pooled); D is the decoded JSON; the aggregator state and the response are small beside
// D. With GOMEMLIMIT at or below this, the peak RSS is about this; without it, Go's GC (GOGC=100)
// lets the heap grow up to about twice the live set before collecting, so the peak is
// B + k x (estimate - B) with k between 1 and about 2.3 (the report prints k).
func (m memRow) estimate(base int64) int64 {
	e, d := m.wire, m.js
	if m.path == pathStdio {
		return base + int64(1)<<bits.Len64(uint64(e)) + e + d + 3*e/4
	}
	t := int64(min(m.threads, m.requests))
	return base + int64(m.inflight)*e + t*(d+3*e/4)
}

// k is the measured peak over the live estimate, both above B.
func (m memRow) k(base int64) float64 {
	return float64(m.peakKB<<10-base) / float64(m.estimate(base)-base)
}

func (m memRow) limit() int64 { return int64(2.5*float64(m.js)) + 100<<20 }

const (
	pathStdio = "stdio (weekly-rollup-stdio.yaml)"
	pathKafka = "Kafka (weekly-rollup.yaml)"
)

type memResult struct {
	rows   []memRow
	baseKB int64 // idle RSS of the Kafka pipeline, joined, before any record
	groups int
}

// bigRequest is 5 contact types x 2 languages x 5 centres = 50 groups of weeks x 168 hourly rows.
func (b *bench) bigRequest() (request, int) {
	o := gen.Defaults(500)
	o.ContactTypes = []string{"Medical", "Dental", "Vision", "Pharmacy", "Billing"}
	o.Langs = []string{"English", "Spanish"}
	o.Centers = []string{"Default Center", "North", "South", "East", "West"}
	o.Weeks = b.bigWeeks
	js := gen.Request(o)
	return request{org: o.OrganizationID(), wire: gen.Encode(js), jsonSize: len(js), rows: o.Rows()},
		len(o.ContactTypes) * len(o.Langs) * len(o.Centers)
}

func (b *bench) runMemory(ctx context.Context) (*memResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	logf("memory: generating the big request")
	big, groups := b.bigRequest()
	res := &memResult{groups: groups}
	logf("memory: %d rows, %.1f MiB JSON, %.1f MiB on the wire", big.rows, mib(int64(big.jsonSize)), mib(int64(len(big.wire))))

	row, err := b.bigStdio(ctx, big)
	if err != nil {
		return nil, err
	}
	res.rows = append(res.rows, row)
	logf("  stdio: peak RSS %.0f MiB", mib(row.peakKB<<10))
	for _, c := range []struct{ n, threads int }{{1, b.cores}, {4, b.cores}, {4, 1}} {
		row, err := b.bigKafka(ctx, big, c.n, c.threads)
		if err != nil {
			return nil, err
		}
		if res.baseKB == 0 {
			res.baseKB = row.idleKB
		}
		res.rows = append(res.rows, row)
		logf("  kafka, %d request(s), %d thread(s): peak RSS %.0f MiB (idle %.0f MiB)", c.n, c.threads, mib(row.peakKB<<10), mib(row.idleKB<<10))
	}
	return res, nil
}

// bigStdio pipes the request as one line through the stdio pipeline; the peak is VmHWM polled
// until the process exits at the end of its input.
func (b *bench) bigStdio(ctx context.Context, big request) (memRow, error) {
	row := memRow{path: pathStdio, requests: 1, threads: b.cores, wire: int64(len(big.wire)), js: int64(big.jsonSize), bigTarget: true}
	in := filepath.Join(b.work, "big.txt")
	if err := os.WriteFile(in, append(big.wire, '\n'), 0o644); err != nil {
		return row, err
	}
	f, err := os.Open(in)
	if err != nil {
		return row, err
	}
	defer f.Close()
	logFile, err := os.Create(filepath.Join(b.work, "big-stdio.log"))
	if err != nil {
		return row, err
	}
	defer logFile.Close()
	var out bytes.Buffer
	row.load = loadAvg()
	t0 := time.Now()
	p, err := startProc("big-stdio", b.repo, b.bin, []string{"run", b.stdioPipeline},
		b.withExtraEnv(map[string]string{"ROLLUP_THREADS": strconv.Itoa(b.cores), "DLQ_FILE": filepath.Join(b.work, "big-dlq.txt"), "LOG_LEVEL": "INFO"}),
		f, &out, logFile)
	if err != nil {
		return row, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(time.Second)
		return row, fmt.Errorf("stdio pipeline: %w", ctx.Err())
	}
	row.wall = time.Since(t0)
	row.peakKB = p.peak.Load()
	if n := bytes.Count(out.Bytes(), []byte("\n")); p.err != nil || n != 1 {
		return row, fmt.Errorf("stdio pipeline: exit %v, %d response lines (logs in %s)", p.err, n, b.work)
	}
	return row, nil
}

// bigKafka starts the Kafka pipeline, waits for its group, reads its idle RSS, then produces n
// copies of the big request and waits for every answer.
func (b *bench) bigKafka(ctx context.Context, big request, n, threads int) (memRow, error) {
	row := memRow{path: pathKafka, requests: n, threads: threads, wire: int64(len(big.wire)), js: int64(big.jsonSize),
		inflight: b.heldRecords(n, b.partitions, int64(len(big.wire))), bigTarget: n == 1, load: loadAvg()}
	t, err := b.cl.newTopics(ctx, "bench-big", b.partitions)
	if err != nil {
		return row, err
	}
	defer b.cl.drop(t)
	col, err := newCollector(b.cl, t, nil)
	if err != nil {
		return row, err
	}
	defer col.close()
	group := uniq("bench-big-group")
	pr, _, err := b.startPipeline(fmt.Sprintf("big-kafka-n%d-t%d", n, threads), b.pipeline, b.rollupEnv(t, group, threads), false, nil)
	if err != nil {
		return row, err
	}
	defer pr.stop(20 * time.Second)
	wctx, done := failOnExit(ctx, []*proc{pr}, b.work)
	defer done()
	if err := b.waitGroupStable(wctx, group, t.in, 1); err != nil {
		return row, fmt.Errorf("%w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	row.idleKB = pr.statusKB("VmRSS")
	reqs := make([]request, n)
	for i := range reqs {
		reqs[i] = big
	}
	t0 := time.Now()
	if _, err := b.cl.produce(ctx, t.in, b.partitions, reqs); err != nil {
		return row, fmt.Errorf("produce the big request: %w", err)
	}
	outs, err := col.waitFor(wctx, n)
	row.wall = time.Since(t0)
	if err != nil {
		err = fmt.Errorf("kafka pipeline: %w (logs in %s)", errors.Join(err, context.Cause(wctx)), b.work)
	}
	done()
	row.peakKB, _ = pr.stop(20 * time.Second)
	if err != nil {
		return row, err
	}
	for _, o := range outs {
		if o.dead {
			return row, fmt.Errorf("kafka pipeline dead-lettered the big request: %s", o.err)
		}
	}
	return row, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (b *bench) withExtraEnv(env map[string]string) map[string]string {
	for k, v := range b.extraEnv {
		env[k] = v
	}
	return env
}

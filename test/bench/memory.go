package main

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	yaml, _ := os.ReadFile(filepath.Join(b.repo, pipeline))
	m := regexp.MustCompile(`\$\{KAFKA_CHECKPOINT_LIMIT:(\d+)\}`).FindSubmatch(yaml)
	if m == nil {
		fatal(fmt.Errorf("%s sets no ${KAFKA_CHECKPOINT_LIMIT:n} default", pipeline))
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

// heldRecords is how many fetched records a consumer can hold at once: per partition, up to the
// checkpoint limit handed out and not acknowledged; beyond that, what fetches already under way
// bring before the pause takes effect: the response just polled and the next one, each up to
// fetch_max_bytes (always at least one record), per broker (the bench has one).
func (b *bench) heldRecords(n int, wire int64) int {
	return min(n, partitions*b.checkpointLimit()+2*max(1, int((fetchMaxBytes+wire-1)/wire)))
}

// memRow is one measured peak RSS beside what the formula (see RESULTS.md) predicts.
type memRow struct {
	path               string
	requests, threads  int
	wire, js           int64 // bytes of one request on the wire (E) and decoded (D)
	held               int   // R: fetched records held at the worst moment (Kafka)
	peakKB, idleKB     int64 // idleKB: the Kafka pipeline joined, before its first record (B)
	wall               time.Duration
	load               string
	bigTarget, isStdio bool // bigTarget: the 500k-row check, peak under 2.5 x D + 100 MiB
}

// estimate is the live set the formula predicts: B + records held + T x per-request working set.
//
//	Kafka: B + R x E + min(T, n) x (D + 0.75 E)    R = heldRecords
//	stdio: B + (nextpow2(E) + E) + D + 0.75 E      (scanner buffer and the line's copy)
//
// A record's value E stays referenced until the record is acknowledged; 0.75 E is the base64
// scratch (pooled); D is the decoded JSON. Without GOMEMLIMIT, Go's GC (GOGC=100) lets the heap
// grow to about twice the live set, so the peak is B + k x (estimate - B), k from 1 to about 2.5.
func (m memRow) estimate(base int64) int64 {
	e, d := m.wire, m.js
	if m.isStdio {
		return base + int64(1)<<bits.Len64(uint64(e)) + e + d + 3*e/4
	}
	return base + int64(m.held)*e + int64(min(m.threads, m.requests))*(d+3*e/4)
}

func (m memRow) k(base int64) float64 {
	return float64(m.peakKB<<10-base) / float64(m.estimate(base)-base)
}

func (m memRow) limit() int64 { return int64(2.5*float64(m.js)) + 100<<20 }

// bigRequest is 5 contact types x 2 languages x 5 centres = 50 groups of weeks x 168 hourly rows.
func (b *bench) bigRequest() request {
	o := gen.Defaults(500)
	o.ContactTypes = []string{"Medical", "Dental", "Vision", "Pharmacy", "Billing"}
	o.Langs = []string{"English", "Spanish"}
	o.Centers = []string{"Default Center", "North", "South", "East", "West"}
	o.Weeks = bigWeeks
	js := gen.Request(o)
	return request{org: o.OrganizationID(), wire: gen.Encode(js), jsonSize: len(js), rows: o.Rows()}
}

// runMemory measures peak RSS with the big request: once through the stdio pipeline, then
// through Kafka as one request, four with all threads and four with one.
func (b *bench) runMemory(ctx context.Context) ([]memRow, int64, error) {
	big := b.bigRequest()
	logf("memory: %d rows, %.1f MiB JSON, %.1f MiB on the wire", big.rows, mib(int64(big.jsonSize)), mib(int64(len(big.wire))))
	row := memRow{path: "stdio (weekly-rollup-stdio.yaml)", requests: 1, threads: b.cores, wire: int64(len(big.wire)),
		js: int64(big.jsonSize), bigTarget: true, isStdio: true, load: loadAvg()}
	r, err := b.stdio(ctx, []request{big}, b.cores)
	if err != nil {
		return nil, 0, err
	}
	row.peakKB, row.wall = r.rssKB, r.procWall
	rows := []memRow{row}
	for _, c := range []struct{ n, threads int }{{1, b.cores}, {4, b.cores}, {4, 1}} {
		r, err := b.throughput(ctx, c.threads, 1, slices.Repeat([]request{big}, c.n), true, false, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("big request through Kafka: %w", err)
		}
		rows = append(rows, b.memRowOf(r, big, "Kafka (weekly-rollup.yaml)"))
		logf("  kafka, %d request(s), %d thread(s): peak RSS %d MiB (idle %d MiB)", c.n, c.threads, r.peakMB(), r.idleKB>>10)
	}
	return rows, rows[1].idleKB << 10, nil
}

// memRowOf is a warm Kafka run seen as a memory measurement: every record of the backlog up to
// the checkpoint limit of each partition is fetched and held until acknowledged.
func (b *bench) memRowOf(r *tpResult, q request, path string) memRow {
	return memRow{path: path, requests: r.n, threads: r.threads, wire: int64(len(q.wire)), js: int64(q.jsonSize), held: b.heldRecords(r.n, int64(len(q.wire))),
		peakKB: r.hwmKB[0], idleKB: r.idleKB, wall: r.wall, load: r.load, bigTarget: r.n == 1 && q.rows > b.reqs[0].rows}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

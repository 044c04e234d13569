package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Stages of the pipeline as the profile report groups them.
const (
	stFetch   = "kafka fetch (franz-go consumer and its socket reads, kafka input)"
	stDecode  = "payload_decode (base64 + gunzip)"
	stRollup  = "weekly_rollup (scan + aggregate + response)"
	stEncode  = "payload_encode (gzip + base64)"
	stProduce = "kafka produce (franz-go producer + kafka output)"
	stKafka   = "kafka client, other (metadata, group, conn)"
	stBenthos = "benthos overhead (pipeline, bloblang, meta copies, logs)"
	stMetrics = "metrics (prometheus)"
	stGC      = "GC (background mark/sweep + assists)"
	stOther   = "runtime, other (scheduler, syscalls, netpoll)"
)

var stageOrder = []string{stFetch, stDecode, stRollup, stEncode, stProduce, stKafka, stBenthos, stMetrics, stGC, stOther}

func has(f string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(f, s) })
}

func hasPrefix(f string, prefixes ...string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(f, p) })
}

// stageOf names the stage a frame belongs to, or "" for frames that do not decide it (runtime,
// standard library, compression libraries, benthos internals).
func stageOf(f string) string {
	switch {
	case has(f, "rollup-dev/rollup/internal/inflate."):
		return stDecode
	case has(f, "rollup-dev/rollup/plugins/payload."):
		if has(f, "ecode", "unbase64", "gunzip", "unzstd", "readCapped", "Scratch", "gzipSizeHint") {
			return stDecode
		}
		return stEncode
	case has(f, "rollup-dev/rollup/plugins/rollup."):
		return stRollup
	case has(f, "rollup-dev/rollup/plugins/kafka."):
		if has(f, "kafkaOutput", "outHeader", "outPartition", "outRecord", "outCodec", "topicLimits", "crc32Hasher") {
			return stProduce
		}
		return stFetch
	case has(f, "rollup-dev/rollup/plugins/prometheus.", "prometheus/client_golang"):
		return stMetrics
	case !has(f, "twmb/franz-go"):
		return ""
	case has(f, "(*sink)", "roduce", "recBuf", "recBatch", "(*producer)", "romise"):
		return stProduce
	case has(f, "(*source)", "etch", "cursor", "onsum", "Poll", "readRawRecords", "ecompress", "(*brokerCxn).readSizeAndBody", "(*brokerCxn).readConn"):
		return stFetch // socket reads: on a consumer that is almost all fetch-response bytes
	}
	return stKafka
}

// classify is the stage of a sample's frames (leaf first): GC anywhere, else the innermost frame
// that names a stage, else benthos if it is on the stack.
func classify(frames []string) string {
	if slices.ContainsFunc(frames, func(f string) bool {
		return hasPrefix(f, "runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge",
			"runtime.gcDrain", "runtime.GC", "runtime.gcMarkTermination", "runtime.markroot")
	}) {
		return stGC
	}
	for _, f := range frames {
		if s := stageOf(f); s != "" {
			return s
		}
	}
	if slices.ContainsFunc(frames, func(f string) bool { return has(f, "redpanda-data/benthos") }) {
		return stBenthos
	}
	return stOther
}

// isAllocOrCopy is a leaf that allocates, zeroes or copies memory.
func isAllocOrCopy(f string) bool {
	return hasPrefix(f, "runtime.memmove", "runtime.memclr", "runtime.mallocgc", "runtime.growslice", "runtime.(*mcache)",
		"runtime.(*mheap)", "runtime.(*mcentral)", "runtime.nextFreeFast", "runtime.newobject", "runtime.makeslice",
		"runtime.heapSetType", "runtime.(*mspan)", "runtime.sysUsed", "runtime.concatstring", "runtime.slicebytetostring",
		"runtime.rawbyteslice", "runtime.rawstring")
}

// short trims the module path of a function name: github.com/a/b/pkg.F -> pkg.F.
func short(f string) string { return f[strings.LastIndexByte(f, '/')+1:] }

type kv struct {
	name string
	ns   int64
}

type stageShare struct {
	stage         string
	ns, allocCopy int64
	top           []kv
}

type profileReport struct {
	seconds   float64 // profile duration requested
	total     int64   // CPU nanoseconds sampled
	stages    []stageShare
	flat, cum []kv // leaves (with the caller that explains a runtime or library leaf); our functions, cumulative
	path      string
}

// analyse splits a CPU profile by stage and lists the top functions.
func analyse(p *profile.Profile) *profileReport {
	vi := len(p.SampleType) - 1 // [samples/count, cpu/nanoseconds]
	r := &profileReport{}
	byStage := map[string]*stageShare{}
	stageTop := map[string]map[string]int64{}
	flat, cum := map[string]int64{}, map[string]int64{}
	for _, s := range p.Sample {
		var frames []string // leaf first, inlined frames expanded
		for _, l := range s.Location {
			for _, ln := range l.Line {
				frames = append(frames, ln.Function.Name)
			}
		}
		if len(frames) == 0 {
			continue
		}
		ns, st := s.Value[vi], classify(frames)
		r.total += ns
		sh := byStage[st]
		if sh == nil {
			sh, stageTop[st] = &stageShare{stage: st}, map[string]int64{}
			byStage[st] = sh
		}
		sh.ns += ns
		if isAllocOrCopy(frames[0]) {
			sh.allocCopy += ns
		}
		leaf := short(frames[0])
		if !has(frames[0], "rollup-dev/rollup") {
			if i := slices.IndexFunc(frames[1:], func(f string) bool {
				return has(f, "rollup-dev/rollup", "franz-go", "redpanda-data/benthos")
			}); i >= 0 {
				leaf += " ← " + short(frames[i+1])
			}
		}
		stageTop[st][leaf] += ns
		flat[leaf] += ns
		seen := map[string]bool{}
		for _, f := range frames {
			if has(f, "rollup-dev/rollup") && !seen[f] {
				seen[f] = true
				cum[short(f)] += ns
			}
		}
	}
	for _, name := range stageOrder {
		if sh := byStage[name]; sh != nil {
			sh.top = topN(stageTop[name], 3)
			r.stages = append(r.stages, *sh)
		}
	}
	r.flat, r.cum = topN(flat, 15), topN(cum, 12)
	return r
}

func topN(m map[string]int64, n int) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return cmp.Or(cmp.Compare(b.ns, a.ns), strings.Compare(a.name, b.name)) })
	return out[:min(n, len(out))]
}

func (r *profileReport) pct(ns int64) string {
	return fmt.Sprintf("%.1f%%", 100*float64(ns)/float64(max(r.total, 1)))
}

// takeProfile fetches a CPU profile of secs seconds from a rollup process's debug endpoint, keeps
// it as <work>/cpu.pprof (for `go tool pprof`) and analyses it.
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
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	path := filepath.Join(b.work, "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := p.Write(f); err != nil {
		return nil, err
	}
	r := analyse(p)
	r.seconds, r.path = float64(secs), path
	return r, nil
}

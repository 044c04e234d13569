package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// A CPU profile from /debug/pprof/profile, read without github.com/google/pprof (not a
// dependency of this module): the profile.proto messages we need are decoded with protowire.
// Field numbers are those of github.com/google/pprof/proto/profile.proto.

type cpuProfile struct {
	samples []sample
	total   int64 // nanoseconds over all samples
}

type sample struct {
	frames []string // function names, leaf first, inlined frames expanded
	ns     int64
}

func parseProfile(raw []byte) (*cpuProfile, error) {
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	var (
		strs      []string
		funcs     = map[uint64]int64{}    // function id -> name string index
		locs      = map[uint64][]uint64{} // location id -> function ids, leaf first
		rawSample [][]byte
		types     int
	)
	err := eachField(raw, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1: // sample_type
			types++
		case 2:
			rawSample = append(rawSample, v)
		case 4: // Location{id=1, line=4}
			var id uint64
			var fns []uint64
			err := eachField(v, func(n protowire.Number, t protowire.Type, b []byte, u uint64) error {
				switch n {
				case 1:
					id = u
				case 4: // Line{function_id=1}
					return eachField(b, func(n protowire.Number, _ protowire.Type, _ []byte, u uint64) error {
						if n == 1 {
							fns = append(fns, u)
						}
						return nil
					})
				}
				return nil
			})
			locs[id] = fns
			return err
		case 5: // Function{id=1, name=2}
			var id uint64
			var name int64
			err := eachField(v, func(n protowire.Number, _ protowire.Type, _ []byte, u uint64) error {
				switch n {
				case 1:
					id = u
				case 2:
					name = int64(u)
				}
				return nil
			})
			funcs[id] = name
			return err
		case 6:
			strs = append(strs, string(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p := &cpuProfile{}
	for _, rs := range rawSample {
		var locIDs []uint64
		var vals []int64
		err := eachField(rs, func(n protowire.Number, t protowire.Type, b []byte, u uint64) error {
			switch n {
			case 1, 2:
				var us []uint64
				if t == protowire.BytesType { // packed
					for len(b) > 0 {
						x, m := protowire.ConsumeVarint(b)
						if m < 0 {
							return protowire.ParseError(m)
						}
						us, b = append(us, x), b[m:]
					}
				} else {
					us = []uint64{u}
				}
				if n == 1 {
					locIDs = append(locIDs, us...)
				} else {
					for _, x := range us {
						vals = append(vals, int64(x))
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		s := sample{}
		if len(vals) > 1 {
			s.ns = vals[1] // [samples/count, cpu/nanoseconds]
		} else if len(vals) == 1 {
			s.ns = vals[0]
		}
		for _, l := range locIDs {
			for _, f := range locs[l] {
				if i := funcs[f]; i >= 0 && int(i) < len(strs) {
					s.frames = append(s.frames, strs[i])
				}
			}
		}
		p.samples = append(p.samples, s)
		p.total += s.ns
	}
	return p, nil
}

// eachField calls fn with every top-level field of a protobuf message: v holds the bytes of a
// length-delimited field, u the value of a varint or fixed one.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			u, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			u = uint64(x)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

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

func isGCFrame(f string) bool {
	for _, g := range []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep",
		"runtime.bgscavenge", "runtime.gcDrain", "runtime.GC", "runtime.gcMarkTermination", "runtime.markroot"} {
		if strings.HasPrefix(f, g) {
			return true
		}
	}
	return false
}

// stageOf names the stage a frame belongs to, or "" for frames that do not decide it (runtime,
// standard library, compression libraries, benthos internals).
func stageOf(f string) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(f, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("rollup-dev/rollup/internal/inflate."):
		return stDecode
	case has("rollup-dev/rollup/plugins/payload."):
		if has("ecode", "unbase64", "gunzip", "unzstd", "readCapped", "Scratch", "gzipSizeHint") {
			return stDecode
		}
		return stEncode
	case has("rollup-dev/rollup/plugins/rollup."):
		return stRollup
	case has("rollup-dev/rollup/plugins/kafka."):
		if has("kafkaOutput", "outHeader", "outPartition", "outRecord", "outCodec", "topicLimits", "crc32Hasher") {
			return stProduce
		}
		return stFetch
	case has("rollup-dev/rollup/plugins/prometheus.", "prometheus/client_golang"):
		return stMetrics
	case has("twmb/franz-go"):
		switch {
		case has("(*sink)", "roduce", "recBuf", "recBatch", "(*producer)", "Promise", "promise"):
			return stProduce
		// Socket reads: on a consumer that is almost all fetch-response bytes.
		case has("(*source)", "etch", "cursor", "onsum", "Poll", "readRawRecords", "ecompress", "(*brokerCxn).readSizeAndBody", "(*brokerCxn).readConn"):
			return stFetch
		}
		return stKafka
	}
	return ""
}

func classify(frames []string) string {
	for _, f := range frames {
		if isGCFrame(f) {
			return stGC
		}
	}
	for _, f := range frames {
		if s := stageOf(f); s != "" {
			return s
		}
	}
	for _, f := range frames {
		if strings.Contains(f, "redpanda-data/benthos") {
			return stBenthos
		}
	}
	return stOther
}

// isAllocOrCopy is a leaf that allocates, zeroes or copies memory.
func isAllocOrCopy(f string) bool {
	for _, p := range []string{"runtime.memmove", "runtime.memclr", "runtime.mallocgc", "runtime.growslice",
		"runtime.(*mcache)", "runtime.(*mheap)", "runtime.(*mcentral)", "runtime.nextFreeFast", "runtime.newobject",
		"runtime.makeslice", "runtime.heapSetType", "runtime.(*mspan)", "runtime.sysUsed", "runtime.concatstring",
		"runtime.slicebytetostring", "runtime.rawbyteslice", "runtime.rawstring"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// short trims the module path of a function name: github.com/a/b/pkg.F -> pkg.F.
func short(f string) string {
	if i := strings.LastIndexByte(f, '/'); i >= 0 {
		f = f[i+1:]
	}
	return f
}

// caller is the function that explains a runtime/library leaf: the first frame from the leaf
// that is ours, franz-go's or benthos's.
func caller(frames []string) string {
	for _, f := range frames[1:] {
		if strings.Contains(f, "rollup-dev/rollup") || strings.Contains(f, "franz-go") ||
			strings.Contains(f, "redpanda-data/benthos") {
			return short(f)
		}
	}
	return ""
}

type stageShare struct {
	stage     string
	ns        int64
	allocCopy int64
	top       []kv
}

type kv struct {
	name string
	ns   int64
}

type profileReport struct {
	seconds float64 // profile duration requested
	total   int64
	stages  []stageShare
	flat    []kv // leaf (with caller for runtime/library leaves)
	cum     []kv // our functions, cumulative
	path    string
}

func analyse(p *cpuProfile) *profileReport {
	by := map[string]*stageShare{}
	for _, s := range stageOrder {
		by[s] = &stageShare{stage: s}
	}
	stageTop := map[string]map[string]int64{}
	flat := map[string]int64{}
	cum := map[string]int64{}
	for _, s := range p.samples {
		if len(s.frames) == 0 {
			continue
		}
		st := classify(s.frames)
		sh := by[st]
		sh.ns += s.ns
		leaf := short(s.frames[0])
		if !strings.Contains(s.frames[0], "rollup-dev/rollup") {
			if c := caller(s.frames); c != "" {
				leaf += " ← " + c
			}
		}
		if isAllocOrCopy(s.frames[0]) {
			sh.allocCopy += s.ns
		}
		if stageTop[st] == nil {
			stageTop[st] = map[string]int64{}
		}
		stageTop[st][leaf] += s.ns
		flat[leaf] += s.ns
		seen := map[string]bool{}
		for _, f := range s.frames {
			if strings.Contains(f, "rollup-dev/rollup") && !seen[f] {
				seen[f] = true
				cum[short(f)] += s.ns
			}
		}
	}
	r := &profileReport{total: p.total}
	for _, name := range stageOrder {
		sh := by[name]
		sh.top = topN(stageTop[name], 3)
		r.stages = append(r.stages, *sh)
	}
	r.flat = topN(flat, 15)
	r.cum = topN(cum, 12)
	return r
}

func topN(m map[string]int64, n int) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ns != out[j].ns {
			return out[i].ns > out[j].ns
		}
		return out[i].name < out[j].name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func (r *profileReport) pct(ns int64) string {
	if r.total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(ns)/float64(r.total))
}

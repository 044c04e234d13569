package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// peers are the project's Python implementations of the same job, in test/bench/peers: the old
// service's pandas path and the strongest rewrite a Python team would try (polars).
var peers = []struct{ name, script, module string }{
	{"pandas", "pandas_peer.py", "pandas"},
	{"polars", "polars_peer.py", "polars"},
}

// pathResult is one process answering the bench's request lines: a peer or the stdio pipeline.
type pathResult struct {
	name, version string
	n             int
	wall, cpu     float64 // peers: sums of their own per-request timings (start-up and imports excluded)
	procWall      time.Duration
	procCPU       float64 // the whole process (utime+stime), start-up included
	rssKB         int64
	out           [][]byte // one response line per request
	load          string
}

// rate is requests/s: a peer's by its own in-process timings, the favourable reading.
func (p *pathResult) rate() float64   { return float64(p.n) / p.wall }
func (p *pathResult) cpuReq() float64 { return p.cpu / float64(p.n) }

// ensurePython checks that python3 imports each module and pip-installs the ones it does not.
// It returns the modules' versions.
func ensurePython(ctx context.Context, modules ...string) (map[string]string, error) {
	versions := map[string]string{}
	for _, m := range modules {
		probe := func() ([]byte, error) {
			return exec.CommandContext(ctx, "python3", "-c", "import "+m+"; print("+m+".__version__)").Output()
		}
		v, err := probe()
		if err != nil {
			logf("python3 has no %s: pip install %s", m, m)
			pip := exec.CommandContext(ctx, "python3", "-m", "pip", "install", "-q", m)
			pip.Stdout, pip.Stderr = os.Stderr, os.Stderr
			if err := pip.Run(); err != nil {
				return nil, fmt.Errorf("pip install %s: %w", m, err)
			}
			if v, err = probe(); err != nil {
				return nil, fmt.Errorf("import %s after pip install: %w", m, err)
			}
		}
		versions[m] = strings.TrimSpace(string(v))
	}
	return versions, nil
}

func requestLines(reqs []request) *bytes.Reader {
	var in bytes.Buffer
	for _, r := range reqs {
		in.Write(r.wire)
		in.WriteByte('\n')
	}
	return bytes.NewReader(in.Bytes())
}

// runPath pipes the requests through bin args (one line each) and collects the response lines.
// Timings come from the process's stderr lines "wall cpu" (peers) when timed is set.
func (b *bench) runPath(ctx context.Context, name, bin string, args []string, env map[string]string, reqs []request, timed bool) (*pathResult, error) {
	var out, errs bytes.Buffer
	res := &pathResult{name: name, n: len(reqs), load: loadAvg()}
	t0 := time.Now()
	p, err := startProc(name, b.repo, bin, args, env, requestLines(reqs), &out, &errs)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		return nil, fmt.Errorf("%s: %v: %.800s", name, err, errs.String())
	}
	res.procWall, res.procCPU, res.rssKB = time.Since(t0), p.cpu(), p.peak.Load()
	res.out = bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))
	if len(res.out) != len(reqs) {
		return nil, fmt.Errorf("%s: %d responses for %d requests: %.800s", name, len(res.out), len(reqs), errs.String())
	}
	if !timed {
		res.wall, res.cpu = res.procWall.Seconds(), res.procCPU
		return res, nil
	}
	timings := 0 // lines of two numbers; anything else on stderr (a library's warning) is not a timing
	for _, l := range strings.Split(errs.String(), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		w, err1 := strconv.ParseFloat(f[0], 64)
		c, err2 := strconv.ParseFloat(f[1], 64)
		if err1 == nil && err2 == nil {
			res.wall, res.cpu, timings = res.wall+w, res.cpu+c, timings+1
		}
	}
	if timings != len(reqs) {
		return nil, fmt.Errorf("%s: %d timing lines for %d requests: %.800s", name, timings, len(reqs), errs.String())
	}
	return res, nil
}

// runPeers runs every peer on reqs and checks its answers against rollup's (want, in any order:
// responses are matched by organizationId, which the generator makes distinct).
func (b *bench) runPeers(ctx context.Context, reqs []request, want [][]byte) ([]*pathResult, error) {
	ours := map[any]map[string]any{}
	for _, l := range want {
		r, err := decodeResponse(l)
		if err != nil {
			return nil, fmt.Errorf("rollup's response: %w", err)
		}
		ours[r["organizationId"]] = r
	}
	mods := make([]string, len(peers))
	for i, p := range peers {
		mods[i] = p.module
	}
	versions, err := ensurePython(ctx, mods...)
	if err != nil {
		return nil, err
	}
	var out []*pathResult
	for _, p := range peers {
		logf("%s peer: %d requests", p.name, len(reqs))
		r, err := b.runPath(ctx, p.name, "python3", []string{filepath.Join(b.repo, "test/bench/peers", p.script)}, nil, reqs, true)
		if err != nil {
			return nil, err
		}
		r.version = p.module + " " + versions[p.module]
		for i, l := range r.out {
			g, err := decodeResponse(l)
			if err == nil {
				err = same("", ours[g["organizationId"]], g)
			}
			if err != nil {
				return nil, fmt.Errorf("%s peer's answer %d disagrees with rollup's: %w", p.name, i, err)
			}
		}
		logf("  %.2f req/s, %.3f CPU s/req; answers agree with rollup's", r.rate(), r.cpuReq())
		out = append(out, r)
	}
	return out, nil
}

// stdio runs the stdio pipeline on reqs; its time is the whole process's (start-up included).
func (b *bench) stdio(ctx context.Context, reqs []request, threads int) (*pathResult, error) {
	dlq := filepath.Join(b.work, "stdio-dlq.txt")
	env := map[string]string{"ROLLUP_THREADS": strconv.Itoa(threads), "LOG_LEVEL": "WARN", "DLQ_FILE": dlq}
	for k, v := range b.extraEnv {
		env[k] = v
	}
	r, err := b.runPath(ctx, "rollup-stdio", b.bin, []string{"run", stdioPipeline}, env, reqs, false)
	if d, _ := os.ReadFile(dlq); err == nil && len(d) > 0 {
		err = fmt.Errorf("stdio pipeline dead-lettered: %.500s", d)
	}
	return r, err
}

// decodeResponse reads a base64(gzip(JSON)) response line.
func decodeResponse(line []byte) (map[string]any, error) {
	z, err := base64.StdEncoding.DecodeString(string(line))
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	return v, json.Unmarshal(js, &v)
}

// same compares two decoded responses: the same keys, strings and nulls, and numbers equal to
// 1e-9 relative (the contract's tolerance for an independent implementation).
func same(path string, w, g any) error {
	switch w := w.(type) {
	case map[string]any:
		gm, ok := g.(map[string]any)
		if !ok || len(gm) != len(w) {
			return fmt.Errorf("%s: want an object of %d keys, got %.200v", path, len(w), g)
		}
		for k, v := range w {
			if err := same(path+"/"+k, v, gm[k]); err != nil {
				return err
			}
		}
	case []any:
		gl, ok := g.([]any)
		if !ok || len(gl) != len(w) {
			return fmt.Errorf("%s: want a list of %d, got %.200v", path, len(w), g)
		}
		for i := range w {
			if err := same(fmt.Sprintf("%s[%d]", path, i), w[i], gl[i]); err != nil {
				return err
			}
		}
	case float64:
		gf, ok := g.(float64)
		if !ok || math.Abs(w-gf) > 1e-9*max(math.Abs(w), math.Abs(gf)) {
			return fmt.Errorf("%s: want %v, got %v", path, w, g)
		}
	default:
		if !reflect.DeepEqual(w, g) {
			return fmt.Errorf("%s: want %v, got %v", path, w, g)
		}
	}
	return nil
}

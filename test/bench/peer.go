package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// peerResult is seed_peer.py on the bench's requests.
type peerResult struct {
	n       int
	inProc  float64 // sum of the peer's own per-request timings (Python start and pandas import excluded)
	wall    time.Duration
	cpu     float64 // CPU seconds of the whole process (utime+stime)
	maxRSS  int64   // kB
	version string  // pandas version
	load    string
}

// rate is requests/s by the peer's own timings: the most favourable reading of the peer.
func (p *peerResult) rate() float64 { return float64(p.n) / p.inProc }

func (b *bench) runPeer(ctx context.Context) (*peerResult, error) {
	script := filepath.Join(b.shared, "tools", "seed_peer.py")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%w (set -shared or SHARED to the directory holding tools/seed_peer.py)", err)
	}
	ver, err := exec.CommandContext(ctx, "python3", "-c", "import pandas; print(pandas.__version__)").Output()
	if err != nil {
		logf("pandas missing: pip install pandas")
		pip := exec.CommandContext(ctx, "python3", "-m", "pip", "install", "-q", "pandas")
		pip.Stdout, pip.Stderr = os.Stderr, os.Stderr
		if err := pip.Run(); err != nil {
			return nil, fmt.Errorf("pip install pandas: %w", err)
		}
		if ver, err = exec.CommandContext(ctx, "python3", "-c", "import pandas; print(pandas.__version__)").Output(); err != nil {
			return nil, fmt.Errorf("import pandas after install: %w", err)
		}
	}
	var in bytes.Buffer
	for _, r := range b.reqs {
		in.Write(r.wire)
		in.WriteByte('\n')
	}
	var out, times bytes.Buffer
	res := &peerResult{n: len(b.reqs), version: strings.TrimSpace(string(ver)), load: loadAvg()}
	t0 := time.Now()
	p, err := startProc("seed-peer", b.repo, "python3", []string{script}, nil, &in, &out, &times)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(time.Second)
		return nil, ctx.Err()
	}
	res.wall = time.Since(t0)
	res.maxRSS, res.cpu = p.peak.Load(), p.cpu()
	if p.err != nil {
		return nil, fmt.Errorf("%v: %.500s", p.err, times.String())
	}
	if got := bytes.Count(out.Bytes(), []byte("\n")); got != len(b.reqs) {
		return nil, fmt.Errorf("%d responses for %d requests", got, len(b.reqs))
	}
	for _, l := range strings.Fields(times.String()) {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil {
			return nil, fmt.Errorf("peer timing line %q: %w", l, err)
		}
		res.inProc += v
	}
	return res, nil
}

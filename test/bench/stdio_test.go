package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/pipelines"
	_ "github.com/rollup-dev/rollup/plugins/parquet"
	_ "github.com/rollup-dev/rollup/plugins/payload"
	_ "github.com/rollup-dev/rollup/plugins/rollup"
)

// stdioRequests is n seed-sized request lines, made once per test binary (not per benchmark run,
// so that the generator stays out of the profile but for the first run).
var stdioRequests = sync.OnceValue(func() []byte {
	var lines []byte
	for i := range 20 {
		lines = append(append(lines, gen.Encode(gen.Request(gen.Defaults(uint64(i+1))))...), '\n')
	}
	return lines
})

// BenchmarkStdioPipeline runs pipelines/weekly-rollup-stdio.yaml in this process on 20 seed-sized
// requests per iteration (stdin and stdout swapped for files), so that its CPU can be profiled:
//
//	go test -run '^$' -bench StdioPipeline -benchtime 5x -cpuprofile /tmp/stdio.pprof ./test/bench
//
// It reports CPU seconds per request (utime+stime of this process over the iterations: the
// pipeline's threads, its GC and the harness, which is idle while the stream runs).
func BenchmarkStdioPipeline(b *testing.B) {
	const n = 20
	if err := pipelines.RegisterTemplates(); err != nil {
		b.Fatal(err)
	}
	yaml, err := pipelines.File("weekly-rollup-stdio.yaml")
	if err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(b.TempDir(), "requests.txt")
	if err := os.WriteFile(in, stdioRequests(), 0o644); err != nil {
		b.Fatal(err)
	}
	stdin, stdout := os.Stdin, os.Stdout
	defer func() { os.Stdin, os.Stdout = stdin, stdout }()
	b.Setenv("LOG_LEVEL", "WARN")
	b.Setenv("DLQ_FILE", filepath.Join(b.TempDir(), "dlq.txt"))
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(b.TempDir(), "out.txt"))
		if err != nil {
			b.Fatal(err)
		}
		os.Stdin, os.Stdout = f, out
		sb := service.NewStreamBuilder()
		if err := sb.SetYAML(string(yaml)); err != nil {
			b.Fatal(err)
		}
		stream, err := sb.Build()
		if err != nil {
			b.Fatal(err)
		}
		if err := stream.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		f.Close()
		out.Close()
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := float64(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / 1e9
	b.ReportMetric(cpu/float64(b.N*n), "cpu-s/req")
	b.ReportMetric(0, "ns/op") // wall time per 20 requests says little on a shared machine
}

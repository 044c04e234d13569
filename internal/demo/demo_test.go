package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	_ "github.com/rollup-dev/rollup/plugins/kafka"
	_ "github.com/rollup-dev/rollup/plugins/parquet"
	_ "github.com/rollup-dev/rollup/plugins/payload"
	_ "github.com/rollup-dev/rollup/plugins/prometheus"
	_ "github.com/rollup-dev/rollup/plugins/rollup"
)

// TestDemoAnswersTwoRequestsAndWritesParquet runs `rollup demo` as a newcomer would: embedded
// broker, the embedded weekly-rollup pipeline, generated seed-sized requests.
func TestDemoAnswersTwoRequestsAndWritesParquet(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := Run(context.Background(), Options{Requests: 2, ParquetDir: dir, Timeout: 2 * time.Minute, Out: &out})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"all 2 response(s) received", "== Medical_Medical - English_Default Center (58 weeks)",
		"Week", "Volume", "2023-07-28", "done: offsets committed"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if len(files) != 2 {
		t.Fatalf("parquet files: %v", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := pf.NumRows(); n != 2*58 {
		t.Fatalf("parquet rows = %d, want 116 (2 groups x 58 weeks)", n)
	}
}

func TestDemoRejectsZeroRequests(t *testing.T) {
	if err := Run(context.Background(), Options{Requests: 0, Out: &bytes.Buffer{}}); err == nil {
		t.Fatal("0 requests accepted")
	}
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	// The components the pipelines use, registered as cmd/rollup/main.go does.
	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure/extended"

	_ "github.com/rollup-dev/rollup/plugins/kafka"
	_ "github.com/rollup-dev/rollup/plugins/parquet"
	_ "github.com/rollup-dev/rollup/plugins/payload"
	_ "github.com/rollup-dev/rollup/plugins/prometheus"
	_ "github.com/rollup-dev/rollup/plugins/rollup"

	"github.com/rollup-dev/rollup/pipelines"
)

// binDir is a temporary directory made by TestMain for the rollup binary; the binary is built
// there once, by the first test that needs it (rollupBinary), so that `go test -run` of an
// in-process test does not pay for a link of the whole engine.
var binDir string

func TestMain(m *testing.M) {
	if err := pipelines.RegisterTemplates(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: register templates: %v\n", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "rollup-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module root: tests run in test/e2e.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("repo root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repo root %s has no go.mod: %v", root, err)
	}
	return root
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// rollupBinary returns the path of the rollup binary, building it on first use with
// `go build ./cmd/rollup` into TestMain's temporary directory.
func rollupBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool := "go"
		if p, err := exec.LookPath("go"); err == nil {
			goTool = p
		} else if gr := os.Getenv("GOROOT"); gr != "" {
			goTool = filepath.Join(gr, "bin", "go")
		}
		out := filepath.Join(binDir, "rollup")
		cmd := exec.Command(goTool, "build", "-o", out, "./cmd/rollup")
		cmd.Dir = repoRoot(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build ./cmd/rollup: %v\n%s", err, b)
			return
		}
		buildOnce.path = out
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/pipelines"
)

// Bounds that only stop hangs; nothing asserts on durations.
const (
	stopTimeout    = 60 * time.Second // graceful stop of a stream or process
	outcomeTimeout = 3 * time.Minute  // waiting for every input to be answered
)

// fixture is one test's broker, topics and group for pipelines/weekly-rollup.yaml.
type fixture struct {
	b            *devbroker.TestBroker
	in, out, dlq string
	group        string
}

// newFixture makes unique input, response and DLQ topics (the DLQ has one partition) and a group.
func newFixture(t *testing.T, inPartitions, outPartitions int) *fixture {
	t.Helper()
	b := devbroker.NewTestBroker(t)
	return &fixture{
		b:     b,
		in:    b.Topic(t, "e2e-in", inPartitions, nil),
		out:   b.Topic(t, "e2e-out", outPartitions, nil),
		dlq:   b.Topic(t, "e2e-dlq", 1, nil),
		group: b.Group("e2e-rollup"),
	}
}

// env is the pipeline environment of weekly-rollup.yaml for this fixture, with extra pairs
// ("KEY", "value", ...) added or overriding.
func (f *fixture) env(extra ...string) map[string]string {
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": f.b.Addr,
		"KAFKA_GROUP_ID":          f.group,
		"INPUT_KAFKA_TOPIC":       f.in,
		"OUTPUT_KAFKA_TOPIC":      f.out,
		"DLQ_KAFKA_TOPIC":         f.dlq,
		"ROLLUP_THREADS":          "2",
		"HTTP_ADDRESS":            "127.0.0.1:0",
		"LOG_LEVEL":               "WARN",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// runningStream is a pipeline running in-process.
type runningStream struct {
	name    string
	stream  *service.Stream
	done    chan error
	stopped bool
}

// startStream builds the embedded pipeline file with env as its only environment (nothing is read
// from the process environment, so a developer's KAFKA_* variables cannot leak in) and runs it.
// Logs go to logs (nil: a capture that is printed if the test fails). inputFields are added to
// the kafka input's config (see withInputFields). The stream is stopped at the end of the test if
// the test has not stopped it.
func startStream(t *testing.T, file string, env map[string]string, logs *logCapture, inputFields ...string) *runningStream {
	t.Helper()
	conf, err := pipelines.File(file)
	if err != nil {
		t.Fatalf("pipeline %s: %v", file, err)
	}
	if logs == nil {
		logs = newLogCapture(t, slog.LevelWarn, nil)
	}
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	// Components register their endpoints (/metrics) on a mux nobody serves: no port is bound, so
	// several streams can run side by side.
	sb.SetHTTPMux(http.NewServeMux())
	sb.SetLogger(slog.New(logs))
	if err := sb.SetYAML(withInputFields(t, string(conf), inputFields...)); err != nil {
		t.Fatalf("pipeline %s: %v", file, err)
	}
	s, err := sb.Build()
	if err != nil {
		t.Fatalf("build pipeline %s: %v", file, err)
	}
	r := &runningStream{name: file, stream: s, done: make(chan error, 1)}
	// Run's context is never cancelled: cancelling it returns without stopping the stream. stop
	// ends it with Stream.Stop, a graceful shutdown (drain, commit, leave the group).
	go func() { r.done <- s.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// withInputFields adds "name: value" lines (given as name, value, ...) to the kafka input of a
// pipeline, after its checkpoint_limit line and with its indentation. It finds the input wherever
// the pipeline puts it (a broker input wraps it now), which a dot path for StreamBuilder.SetFields
// or `rollup run --set` would not.
func withInputFields(t *testing.T, conf string, nameValues ...string) string {
	t.Helper()
	if len(nameValues) == 0 {
		return conf
	}
	m := checkpointLine.FindAllStringSubmatchIndex(conf, -1)
	if len(m) != 1 {
		t.Fatalf("pipeline has %d kafka input checkpoint_limit lines, want 1", len(m))
	}
	indent, end := conf[m[0][2]:m[0][3]], m[0][1]+1
	var add strings.Builder
	for j := 0; j+1 < len(nameValues); j += 2 {
		fmt.Fprintf(&add, "%s%s: %s\n", indent, nameValues[j], nameValues[j+1])
	}
	return conf[:end] + add.String() + conf[end:]
}

var checkpointLine = regexp.MustCompile(`(?m)^( +)checkpoint_limit: .*$`)

// stop shuts the stream down gracefully and waits for Run to return.
func (r *runningStream) stop(t *testing.T) {
	t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	if err := r.stream.StopWithin(stopTimeout); err != nil {
		t.Errorf("stop %s: %v", r.name, err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s: run: %v", r.name, err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("%s: Run did not return within %v of Stop", r.name, stopTimeout)
	}
}

// logCapture is a slog.Handler that keeps the log lines of a stream (printed with t.Log when the
// test fails) and passes each record's message to an optional hook.
type logCapture struct {
	core  *logCore
	attrs []slog.Attr // from WithAttrs, keys already qualified by their group
	group string      // prefix of later attribute keys ("g." after WithGroup("g"))
}

type logCore struct {
	level slog.Level
	hook  func(msg string)
	mu    sync.Mutex
	buf   bytes.Buffer
}

// maxLogBytes bounds the kept log text: a failing test prints at most this much.
const maxLogBytes = 64 << 10

func newLogCapture(t *testing.T, level slog.Level, hook func(msg string)) *logCapture {
	c := &logCapture{core: &logCore{level: level, hook: hook}}
	t.Cleanup(func() {
		if t.Failed() {
			c.core.mu.Lock()
			defer c.core.mu.Unlock()
			if c.core.buf.Len() > 0 {
				t.Logf("pipeline logs (last %d bytes at most):\n%s", maxLogBytes, c.core.buf.String())
			}
		}
	})
	return c
}

func (c *logCapture) Enabled(_ context.Context, l slog.Level) bool { return l >= c.core.level }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	if c.core.hook != nil {
		c.core.hook(r.Message)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s %q", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	for _, a := range c.attrs {
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&sb, " %s%s=%v", c.group, a.Key, a.Value)
		return true
	})
	sb.WriteByte('\n')
	c.core.mu.Lock()
	defer c.core.mu.Unlock()
	c.core.buf.WriteString(sb.String())
	if over := c.core.buf.Len() - maxLogBytes; over > 0 {
		c.core.buf.Next(over)
	}
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	n := *c
	n.attrs = append([]slog.Attr(nil), c.attrs...)
	for _, a := range as {
		n.attrs = append(n.attrs, slog.Attr{Key: c.group + a.Key, Value: a.Value})
	}
	return &n
}

func (c *logCapture) WithGroup(name string) slog.Handler {
	n := *c
	n.group = c.group + name + "."
	return &n
}

// pipelineFile returns the path of the repository's pipeline file name for the binary to run; with
// inputFields (see withInputFields) it is a copy in the test's temp dir with them added.
func pipelineFile(t *testing.T, name string, inputFields ...string) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "pipelines", name)
	if len(inputFields) == 0 {
		return path
	}
	conf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, []byte(withInputFields(t, string(conf), inputFields...)), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// process is the rollup binary running a pipeline.
type process struct {
	cmd     *exec.Cmd
	done    chan error // receives Wait's result once; readers put it back
	logPath string     // its stdout and stderr
}

// startProcess runs `rollup run <pipeline>` with exactly env (plus PATH and HOME) and its output
// in a file in the test's temp dir, printed if the test fails. It is killed at the end of the test
// if still running.
func startProcess(t *testing.T, pipeline string, env map[string]string, n int) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("rollup-%d.log", n))
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rollupBinary(t), "run", pipeline)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start rollup: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), logPath: logPath}
	go func() {
		p.done <- cmd.Wait()
		lf.Close()
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
				t.Logf("rollup process %d log (tail, without dead-letter lines):\n%s", n, logTail(b))
			}
		}
	})
	return p
}

// kill sends SIGKILL (no drain, no commit: a crash) and waits for the process to end.
func (p *process) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
}

// terminate sends SIGTERM (graceful: drain, commit, leave) and waits for the process to end.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.done:
		p.done <- nil // keep it readable for a later call
		return
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Logf("signal %v to rollup: %v", sig, err)
	}
	select {
	case <-p.done:
		p.done <- nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		t.Errorf("rollup did not exit within %v of %v", stopTimeout, sig)
		<-p.done
		p.done <- nil
	}
}

// exited reports whether the process has ended on its own.
func (p *process) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// logTail is the end of a process log without the per-record "request dead-lettered" lines,
// which the tests cause by the hundred.
func logTail(b []byte) string {
	var keep []string
	skipped := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "request dead-lettered") {
			skipped++
			continue
		}
		keep = append(keep, line)
	}
	out := strings.Join(keep, "\n")
	if len(out) > maxLogBytes {
		out = out[len(out)-maxLogBytes:]
	}
	return fmt.Sprintf("%s\n(%d dead-letter lines left out)", out, skipped)
}

// flow produces records to a topic one at a time, gap apart, from a goroutine, so that records
// keep arriving while the test stops and starts consumers. Each record's Partition and Offset are
// set once it is produced.
type flow struct {
	done     chan error
	quit     chan struct{}
	produced atomic.Int64
}

func startFlow(t *testing.T, b *devbroker.TestBroker, topic string, recs []*kgo.Record, gap time.Duration) *flow {
	t.Helper()
	cl := b.Client(t)
	fl := &flow{done: make(chan error, 1), quit: make(chan struct{})}
	go func() {
		for i, r := range recs {
			select {
			case <-fl.quit: // the test ended early
				fl.done <- nil
				return
			default:
			}
			r.Topic = topic
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			err := cl.ProduceSync(ctx, r).FirstErr()
			cancel()
			if err != nil {
				fl.done <- fmt.Errorf("produce record %d: %w", i, err)
				return
			}
			fl.produced.Add(1)
			time.Sleep(gap)
		}
		fl.done <- nil
	}()
	t.Cleanup(func() {
		close(fl.quit)
		select {
		case <-fl.done:
		case <-time.After(stopTimeout):
			t.Errorf("producer still running at the end of the test")
		}
	})
	return fl
}

// wait blocks until every record is produced, failing the test on a produce error.
func (fl *flow) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-fl.done:
		fl.done <- err // for the cleanup
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(outcomeTimeout):
		t.Fatalf("producer not done after %v (%d records produced)", outcomeTimeout, fl.produced.Load())
	}
}

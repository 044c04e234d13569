//go:build fault

package fault

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollup-dev/rollup/test/checker"
)

// sessionTimeout is the Kafka input's session timeout in every pipeline the suite runs (the
// default is 45s). A member killed with SIGKILL keeps its partitions until its session expires,
// so the kill scenarios would otherwise wait 45s per kill; 10s keeps the suite within its time
// budget without changing what is tested (Kafka's minimum is 6s). It is set through
// KAFKA_SESSION_TIMEOUT where the pipeline reads that variable, else with `-s`.
const sessionTimeout = "10s"

// sessionTimeoutSet returns the `-s` override of the session timeout for a pipeline that does not
// read KAFKA_SESSION_TIMEOUT ("" for one that does). Where the kafka input sits depends on the
// pipeline (alone, or inside a `broker` beside a readiness gate), so each candidate path is tried
// with `rollup echo -s`: a wrong one adds a second input type, which the config parser refuses.
// "" also when none fits (the input's default then applies).
func sessionTimeoutSet(pipeline string) string {
	if v, ok := sessionSets.Load(pipeline); ok {
		return v.(string)
	}
	found := ""
	path := filepath.Join(repoRoot, "pipelines", pipeline)
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "${KAFKA_SESSION_TIMEOUT") {
		for _, at := range []string{"input.kafka", "input.broker.inputs.0.kafka", "input.broker.inputs.1.kafka"} {
			set := at + ".session_timeout=" + sessionTimeout
			cmd := exec.Command(rollup, "echo", "-s", set, path)
			cmd.Dir = repoRoot
			if cmd.Run() == nil {
				found = set
				break
			}
		}
	}
	sessionSets.Store(pipeline, found)
	return found
}

// pipelineDefault returns the default of ${name:default} in a pipeline, or def.
func pipelineDefault(pipeline, name string, def int) int {
	b, err := os.ReadFile(filepath.Join(repoRoot, "pipelines", pipeline))
	if err != nil {
		return def
	}
	m := regexp.MustCompile(`\$\{` + regexp.QuoteMeta(name) + `:(\d+)\}`).FindSubmatch(b)
	if m == nil {
		return def
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return def
	}
	return n
}

var sessionSets sync.Map // pipeline -> `-s` value

// rollupProc is one `rollup run <pipeline>` process.
type rollupProc struct {
	name     string
	logPath  string
	httpAddr string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	peakRSS  atomic.Int64 // bytes, sampled from /proc every 100ms
}

// pipelineEnvKeys are dropped from the inherited environment so that only what a scenario sets
// reaches the pipeline (a developer's shell may export KAFKA_SASL_* after `kafka.sh env`).
var pipelineEnvKeys = []string{"KAFKA_", "INPUT_KAFKA_", "OUTPUT_KAFKA_", "DLQ_KAFKA_", "ROLLUP_", "HTTP_ADDRESS",
	"LOG_LEVEL", "LOG_FORMAT", "OUTPUT_ENCODING", "TASK_DURATION", "WORKER_", "REPLAY_"}

// startRollup starts `rollup run pipelines/<pipeline>` with env (plus an HTTP address of its own
// and JSON logs) and `-s` overrides. The process is SIGKILLed when the test ends if still alive.
func startRollup(t testing.TB, name, pipeline string, env map[string]string, sets ...string) *rollupProc {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var cmdEnv []string
	for _, kv := range os.Environ() {
		keep := true
		for _, pre := range pipelineEnvKeys {
			if strings.HasPrefix(kv, pre) {
				keep = false
			}
		}
		if keep {
			cmdEnv = append(cmdEnv, kv)
		}
	}
	cmdEnv = append(cmdEnv, "HTTP_ADDRESS="+addr, "LOG_FORMAT=json", "KAFKA_SESSION_TIMEOUT="+sessionTimeout)
	for k, v := range env {
		cmdEnv = append(cmdEnv, k+"="+v)
	}
	args := []string{"run"}
	if set := sessionTimeoutSet(pipeline); set != "" {
		args = append(args, "-s", set)
	}
	for _, s := range sets {
		args = append(args, "-s", s)
	}
	args = append(args, filepath.Join(repoRoot, "pipelines", pipeline))
	cmd := exec.Command(rollup, args...)
	cmd.Env = cmdEnv
	p := launch(t, name, cmd)
	p.httpAddr = addr
	go p.sampleRSS()
	return p
}

// launch starts cmd in the repository with its output in the scenario's log directory, as a
// process the suite tracks (exit, log, SIGTERM), killed when the test ends if still alive.
func launch(t testing.TB, name string, cmd *exec.Cmd) *rollupProc {
	t.Helper()
	p := &rollupProc{name: name, exited: make(chan struct{})}
	p.logPath = filepath.Join(runDir, "logs", sanitize(t.Name()), name+".log")
	if err := os.MkdirAll(filepath.Dir(p.logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = cmd
	go func() {
		p.exitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, s)
}

func (p *rollupProc) pid() int { return p.cmd.Process.Pid }

func (p *rollupProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// sampleRSS keeps the peak VmRSS of the process.
func (p *rollupProc) sampleRSS() {
	path := fmt.Sprintf("/proc/%d/status", p.pid())
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					f := strings.Fields(v)
					if len(f) == 2 && f[1] == "kB" {
						if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb*1024 > p.peakRSS.Load() {
							p.peakRSS.Store(kb * 1024)
						}
					}
				}
			}
		}
		select {
		case <-p.exited:
			return
		case <-t.C:
		}
	}
}

// waitReady waits until the pipeline's /ready answers 200 (input and outputs connected).
func (p *rollupProc) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	cl := http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := cl.Get("http://" + p.httpAddr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.alive() {
			t.Fatalf("%s exited before it was ready (%v); log %s:\n%s", p.name, p.exitErr, p.logPath, p.tail(30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v; log %s:\n%s", p.name, timeout, p.logPath, p.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *rollupProc) kill9(t testing.TB) {
	t.Helper()
	if !p.alive() {
		t.Fatalf("%s was already gone before kill -9 (%v); log %s:\n%s", p.name, p.exitErr, p.logPath, p.tail(30))
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// terminate sends SIGTERM without waiting.
func (p *rollupProc) terminate() { p.cmd.Process.Signal(syscall.SIGTERM) }

// stop sends SIGTERM and waits for a clean exit (the pipeline drains, commits and leaves the
// group); after timeout it fails the test and kills the process.
func (p *rollupProc) stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !p.alive() {
		t.Errorf("%s had exited before SIGTERM (%v); log %s:\n%s", p.name, p.exitErr, p.logPath, p.tail(30))
		return
	}
	p.terminate()
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM; log %s:\n%s", p.name, p.exitErr, p.logPath, p.tail(20))
		}
	case <-time.After(timeout):
		t.Errorf("%s still running %v after SIGTERM; killing it; log %s", p.name, timeout, p.logPath)
		p.kill()
	}
}

func (p *rollupProc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// log returns the whole log.
func (p *rollupProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail returns the last n lines of the log.
func (p *rollupProc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLine is the part of a Benthos JSON log line the suite reads.
type logLine struct {
	Level     string          `json:"level"`
	Msg       string          `json:"msg"`
	Time      string          `json:"time"`
	Topic     string          `json:"topic"`
	Partition json.RawMessage `json:"partition"`
	Offset    json.RawMessage `json:"offset"`
}

// logLines parses the process's JSON log lines (others are skipped).
func (p *rollupProc) logLines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader([]byte(p.log())))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// processedOutcomes turns the scenario worker's "Finished processing" log lines into outcomes.
func processedOutcomes(procs ...*rollupProc) []checker.Outcome {
	var out []checker.Outcome
	for _, p := range procs {
		for _, l := range p.logLines() {
			if l.Msg != "Finished processing" {
				continue
			}
			part, err1 := strconv.ParseInt(strings.Trim(string(l.Partition), `"`), 10, 32)
			off, err2 := strconv.ParseInt(strings.Trim(string(l.Offset), `"`), 10, 64)
			o := checker.Outcome{Kind: checker.Processed, Source: checker.RecordID{Topic: l.Topic, Partition: int32(part), Offset: off}}
			if err1 != nil || err2 != nil || l.Topic == "" {
				o.SourceErr = fmt.Errorf("log line without topic/partition/offset: %+v", l)
			}
			out = append(out, o)
		}
	}
	return out
}

// procSet tracks the processes of a scenario for peak RSS and log checks.
type procSet struct {
	mu    sync.Mutex
	procs []*rollupProc
}

func (s *procSet) add(p *rollupProc) *rollupProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
	return p
}

// reprocessRe matches what the kafka input logs when it gives up partitions without a commit
// covering everything it processed (a lost session, a failed commit on revoke or at shutdown,
// records finished out of order or in flight at a revoke; plugins/kafka/input_kafka_session.go):
// "to process again: N finished, M in flight". The next owner processes those again: they are the
// duplicates at-least-once produces without a crash.
var reprocessRe = regexp.MustCompile(`to process again: (\d+) finished, (\d+) in flight`)

// reprocessReported sums those counts over every process of the set, and counts the log lines.
func (s *procSet) reprocessReported() (records, lines int) {
	for _, p := range s.all() {
		for _, m := range reprocessRe.FindAllStringSubmatch(p.log(), -1) {
			finished, _ := strconv.Atoi(m[1])
			inFlight, _ := strconv.Atoi(m[2])
			records += finished + inFlight
			lines++
		}
	}
	return records, lines
}

func (s *procSet) all() []*rollupProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rollupProc(nil), s.procs...)
}

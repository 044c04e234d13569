package e2e

import (
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// taskCounter counts the worker's tasks from its log lines: how many have started, finished, and
// the most running at once.
type taskCounter struct {
	mu                          sync.Mutex
	running, max, started, done int
}

func (c *taskCounter) observe(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch msg {
	case "Processing message":
		c.started++
		c.running++
		c.max = max(c.max, c.running)
	case "Finished processing":
		c.done++
		c.running--
	}
}

func (c *taskCounter) snapshot() (running, maxRunning, started, finished int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running, c.max, c.started, c.done
}

// TestWorkerConcurrency runs scenario-worker.yaml with N threads on N records of one partition,
// each a long task: all N must be seen running at once (counted from the "Processing message" and
// "Finished processing" log lines, not timed). A record that is not JSON gives one dead letter.
func TestWorkerConcurrency(t *testing.T) {
	const threads = 8
	f := newFixture(t, 1, 1)
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": f.b.Addr,
		"KAFKA_TOPIC":             f.in,
		"WORKER_GROUP_ID":         f.group,
		"WORKER_DLQ_KAFKA_TOPIC":  f.dlq,
		"WORKER_THREADS":          strconv.Itoa(threads),
		// Long enough that every thread has taken its record before the first task ends.
		"TASK_DURATION": "3s",
		"HTTP_ADDRESS":  "127.0.0.1:0",
	}
	var recs []*kgo.Record
	for i := range threads {
		recs = append(recs, &kgo.Record{Key: []byte("task-" + strconv.Itoa(i)),
			Value: []byte(`{"event":"simulate","task":` + strconv.Itoa(i) + `}`)})
	}
	badRec := &kgo.Record{Key: []byte("bad"), Value: []byte(`{"event": "simulate", oops`),
		Headers: []kgo.RecordHeader{{Key: "trace-id", Value: []byte("worker-bad")}}}
	since := time.Now()
	f.b.Produce(t, f.in, append(recs, badRec)...)

	var tasks taskCounter
	logs := newLogCapture(t, slog.LevelInfo, tasks.observe)
	startStream(t, "scenario-worker.yaml", env, logs)
	waitAllCommitted(t, f.b, f.group, f.in, nil)

	running, maxRunning, started, finished := tasks.snapshot()
	t.Logf("worker: threads=%d tasks started=%d finished=%d max running at once=%d", threads, started, finished, maxRunning)
	if maxRunning != threads {
		t.Errorf("at most %d tasks ran at once, want %d (one per thread, all from one partition)", maxRunning, threads)
	}
	if started != threads || finished != threads || running != 0 {
		t.Errorf("tasks started=%d finished=%d running=%d, want %d, %d, 0", started, finished, running, threads, threads)
	}

	dead := readAll(t, f.b, f.dlq)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want exactly one (for the record that is not JSON)", len(dead))
	}
	dl := dead[0]
	h := headerMap(t, dl)
	t.Logf("worker dead letter: error_stage=%q error=%q", h["error_stage"], h["error"])
	switch h["error_stage"] {
	case "decode", "validate":
	default:
		t.Errorf("error_stage %q, want decode or validate for a value that is not JSON", h["error_stage"])
	}
	checkDeadLetter(t, dl, badRec, badInput{stage: h["error_stage"], want: []string{"JSON"}}, since)
}

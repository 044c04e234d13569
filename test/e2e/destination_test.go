package e2e

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// missingFor is how long a destination topic is missing in TestMissingDestinationTopic.
const missingFor = 30 * time.Second

// TestMissingDestinationTopic: a response or dead-letter topic that does not exist yet (a topic
// created late, a typo fixed by someone else) is a connection problem, not a property of the
// requests. While it is missing nothing may be dead-lettered for it and nothing committed past
// the requests that wait for it, `/ready` must answer 503 and the log must name the topic and the
// broker's error; once it is created the same process answers everything, without a restart.
func TestMissingDestinationTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 30 s per case")
	}
	for _, missing := range []string{"response", "dlq"} {
		t.Run(missing, func(t *testing.T) {
			t.Parallel()
			b := devbroker.NewTestBroker(t)
			f := &fixture{b: b, in: b.Topic(t, "e2e-in", 2, nil), group: b.Group("e2e-rollup")}
			late := b.TopicName("e2e-late-" + missing)
			if missing == "response" {
				f.out, f.dlq = late, b.Topic(t, "e2e-dlq", 1, nil)
			} else {
				f.out, f.dlq = b.Topic(t, "e2e-out", 2, nil), late
			}

			// 20 good requests and, where the DLQ is missing, every fourth one bad.
			recs, bad := mixedInputs(20, map[string]int{"response": 0, "dlq": 4}[missing], 2)
			b.Produce(t, f.in, recs...)

			addr := freeAddr(t)
			env := f.env("HTTP_ADDRESS", addr, "LOG_LEVEL", "INFO")
			p := startProcess(t, pipelineFile(t, "weekly-rollup.yaml"), env, 1)

			// While the topic is missing: /ready stays red, nothing reaches the topics, and no
			// commit passes a request still waiting for the missing topic.
			var sawReady atomic.Bool
			deadline := time.Now().Add(missingFor)
			for time.Now().Before(deadline) {
				if p.exited() {
					t.Fatal("rollup exited while the topic was missing")
				}
				if ready(addr) {
					sawReady.Store(true)
				}
				time.Sleep(250 * time.Millisecond)
			}
			if sawReady.Load() {
				t.Errorf("/ready answered 200 while topic %s was missing", late)
			}
			o := collectOutcomes(t, f)
			if len(o.dead) != 0 {
				t.Errorf("%d requests dead-lettered while %s was missing, want 0 (first error: %s)", len(o.dead), late, firstError(o))
			}
			checkCommitInvariant(t, f, nil)
			if missing == "response" && len(committed(t, b, f.group, f.in)) != 0 {
				t.Errorf("offsets committed with no response topic: %v", committed(t, b, f.group, f.in))
			}
			logText := processLog(t, p)
			if !strings.Contains(logText, late) || !strings.Contains(logText, "UNKNOWN_TOPIC_OR_PARTITION") {
				t.Errorf("the log does not name topic %q and UNKNOWN_TOPIC_OR_PARTITION:\n%s", late, logTail([]byte(logText)))
			}

			b.CreateTopic(t, late, map[string]int{"response": 2, "dlq": 1}[missing], nil)
			waitAllCommitted(t, b, f.group, f.in, func() {
				if p.exited() {
					t.Fatal("rollup exited after the topic was created")
				}
			})
			waitFor(t, "/ready to answer 200", func() bool { return ready(addr) })
			p.terminate(t)

			o = collectOutcomes(t, f)
			tl := count(inputKeys(t, b, f.in), o, nil)
			checkRouting(t, f, recs, bad, o)
			t.Logf("%s topic missing for %v, then created: %v", missing, missingFor, tl)
			if tl.lost != 0 || tl.duplicated != 0 || tl.unexpected != 0 {
				t.Errorf("lost=%d duplicated=%d unexpected=%d, want every request answered once", tl.lost, tl.duplicated, tl.unexpected)
			}
		})
	}
}

func firstError(o *outcomes) string {
	for _, rs := range o.dead {
		e, _ := header(rs[0], "error")
		return e
	}
	return ""
}

// ready reports whether the process's /ready answers 200.
func ready(addr string) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// processLog is what the process has logged so far.
func processLog(t *testing.T, p *process) string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatalf("read %s: %v", filepath.Base(p.logPath), err)
	}
	return string(b)
}

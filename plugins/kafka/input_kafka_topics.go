package kafka

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// topicWatch looks after the input's topics for one session: see run.
type topicWatch struct {
	in *kafkaInput
	cl *kgo.Client

	mu      sync.Mutex
	missing []string // input topics the last check did not find
}

// topicRecheck is how often a topicWatch looks again for an input topic that was missing.
const topicRecheck = 10 * time.Second

// run checks that the input topics exist, logging one line per topic, and while one is
// missing (a typo, or a topic not created yet: the group joins and consumes nothing, silently)
// keeps the list of missing topics, which turns `/ready` red through the readiness gate, and
// looks again every topicRecheck. When the topic appears it refreshes the client's metadata so
// that consumption starts at once.
func (w *topicWatch) run(ctx context.Context) {
	first := true
	for {
		missing, err := w.check(ctx, first)
		if err == nil {
			w.mu.Lock()
			appeared := len(w.missing) > len(missing)
			w.missing = missing
			w.mu.Unlock()
			if appeared {
				w.cl.ForceMetadataRefresh()
			}
			if len(missing) == 0 {
				return
			}
			first = false
		} else if ctx.Err() == nil {
			w.in.log.Debugf("kafka input: checking topics %v: %v (will retry)", w.in.topics, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(topicRecheck):
		}
	}
}

// checkTopics asks the brokers about the input topics (never creating one) and returns those that
// do not exist or may not be described. It logs a line per topic the first time, and each time a
// missing topic is still missing or appears.
func (w *topicWatch) check(ctx context.Context, first bool) ([]string, error) {
	mctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	states, err := describeTopics(mctx, w.cl, w.in.topics)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	was := slices.Clone(w.missing)
	w.mu.Unlock()
	var missing []string
	for _, name := range w.in.topics {
		st, ok := states[name]
		if !ok {
			continue
		}
		if st.err != nil {
			missing = append(missing, name)
			w.in.log.Errorf("kafka input: topic %q of group %q cannot be consumed: %s; not ready, checking again in %v",
				name, w.in.group, errorCode(st.err), topicRecheck)
			continue
		}
		switch {
		case slices.Contains(was, name):
			w.in.log.Infof("kafka input: topic %q exists now (%d partitions); consuming it", name, st.partitions)
		case first:
			w.in.log.Infof("kafka input: topic %q: %d partitions", name, st.partitions)
		}
	}
	return missing, nil
}

// missingTopics returns the input topics the last check did not find.
func (w *topicWatch) missingTopics() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.missing)
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A topic that does not exist or may not be written is a problem of the deployment (a typo in
// OUTPUT_KAFKA_TOPIC, a topic not created yet, a missing ACL), not of the message: dead-lettering
// the message for it would commit its offset and lose the answer until someone replays the DLQ,
// and a missing DLQ topic would make every failure loop through nacks with only warnings. So the
// output treats such an error like a lost connection: WriteBatch returns ErrNotConnected, which
// makes Benthos hold the batch (nothing is dead-lettered, the input commits nothing past it,
// back-pressure builds), mark the output disconnected (so `/ready` answers 503) and call Connect
// until it succeeds, then write the same batch again. Connect waits out a back-off and asks the
// brokers whether the topic exists now, naming the topic and the broker's error code on every
// failed attempt; when the topic appears or the ACL is granted, the pipeline carries on without a
// restart.

const (
	// destBackoffBase and destBackoffMax pace the re-checks of an unwritable topic: soon after a
	// fix (a topic created a few seconds late), yet at most one metadata request per 15 s.
	destBackoffBase = time.Second
	destBackoffMax  = 15 * time.Second
)

// isDestinationErr reports whether err says the record's topic cannot be written at all (rather
// than that this record was refused, or that the cluster is briefly unavailable).
func isDestinationErr(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) ||
		errors.Is(err, kerr.UnknownTopicID) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidTopicException)
}

// errorCode renders err with the broker's error code when it carries one
// ("UNKNOWN_TOPIC_OR_PARTITION: This server does not host this topic-partition.").
func errorCode(err error) string {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return fmt.Sprintf("%s (code %d): %s", ke.Message, ke.Code, ke.Description)
	}
	return err.Error()
}

// topicState is what the brokers say of one topic: err (nil: it exists and may be described) and
// its partition count.
type topicState struct {
	err        error
	partitions int
}

// describeTopics asks the brokers about topics, without creating any (a check must not create a
// mistyped topic where the brokers have auto.create.topics.enable). Used by the output's
// destination checks and the input's topic watch.
func describeTopics(ctx context.Context, cl *kgo.Client, topics []string) (map[string]topicState, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := make(map[string]topicState, len(resp.Topics))
	for _, t := range resp.Topics {
		if t.Topic != nil {
			out[*t.Topic] = topicState{err: kerr.ErrorForCode(t.ErrorCode), partitions: len(t.Partitions)}
		}
	}
	return out, nil
}

// destinations remembers the topics the output could not write, until a check finds them
// writable again. Safe for concurrent use by WriteBatch calls and Connect.
type destinations struct {
	log     *service.Logger
	backoff *fatalBackoff

	mu      sync.Mutex
	blocked map[string]error // topic -> the error that blocked it
	checked bool             // the static topic (if any) was checked at the first Connect
}

func newDestinations(log *service.Logger) *destinations {
	return &destinations{
		log:     log,
		backoff: &fatalBackoff{base: destBackoffBase, max: destBackoffMax},
		blocked: map[string]error{},
	}
}

// failed looks for records that failed for a reason of their topic. If there are any it records
// their topics, logs one line per topic, starts the back-off and returns an error naming them.
func (d *destinations) failed(recs []*kgo.Record, errs []error) error {
	found := map[string]error{}
	for i, err := range errs {
		if recs[i] != nil && err != nil && isDestinationErr(err) {
			found[recs[i].Topic] = err
		}
	}
	if len(found) == 0 {
		return nil
	}
	// Concurrent writes (max_in_flight) meet the same problem at once: the first one starts the
	// next back-off step and logs; the others join the wait without lengthening it.
	wait, first := d.backoff.remaining(), false
	if wait <= 0 {
		wait, first = d.backoff.failed(), true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for t, err := range found {
		d.blocked[t] = err
		names = append(names, t)
		if first {
			d.log.Errorf("kafka output: topic %q cannot be written: %s; holding the messages and reporting not ready (nothing is dead-lettered or committed), checking again in %v",
				t, errorCode(err), wait.Round(time.Millisecond))
		}
	}
	slices.Sort(names)
	return fmt.Errorf("topics %s cannot be written", strings.Join(names, ", "))
}

// clear forgets the back-off after a write that met no destination error.
func (d *destinations) clear() {
	d.mu.Lock()
	empty := len(d.blocked) == 0
	d.mu.Unlock()
	if empty {
		d.backoff.reset()
	}
}

// check runs in Connect. It waits out the back-off of the last failure, then asks the brokers
// about every blocked topic and, at the first Connect, about the static topic; it returns an error
// naming each topic that still does not exist or may not be described, and logs one line for
// each topic it finds, so that a wrong topic name is visible at start.
func (d *destinations) check(ctx context.Context, cl *kgo.Client, static string, timeout time.Duration) error {
	if err := d.backoff.wait(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	topics := make([]string, 0, len(d.blocked)+1)
	for t := range d.blocked {
		topics = append(topics, t)
	}
	first := !d.checked && static != ""
	if first && d.blocked[static] == nil {
		topics = append(topics, static)
	}
	d.mu.Unlock()
	if len(topics) == 0 {
		return nil
	}
	slices.Sort(topics)

	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	states, err := describeTopics(mctx, cl, topics)
	if err != nil {
		return fmt.Errorf("checking topics %s: %w", strings.Join(topics, ", "), err)
	}
	var bad []string
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, st := range states {
		if st.err != nil {
			d.blocked[name] = st.err
			bad = append(bad, fmt.Sprintf("topic %q: %s", name, errorCode(st.err)))
			continue
		}
		if _, was := d.blocked[name]; was {
			d.log.Infof("kafka output: topic %q is available again (%d partitions); writing the held messages", name, st.partitions)
		} else if first && name == static {
			d.log.Infof("kafka output: topic %q: %d partitions", name, st.partitions)
		}
		delete(d.blocked, name)
	}
	if first {
		d.checked = true
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("not ready, holding messages: %s", strings.Join(bad, "; "))
	}
	return nil
}

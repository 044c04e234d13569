package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The kafka output's per-topic size limits. With requests of about 1 MB (and up to 25 MB), a
// response or dead letter over a topic's max.message.bytes is an everyday event, and the broker
// refuses a whole batch when it is over the limit, failing the small records kgo grouped with the
// big one. So the output learns each topic's limit before kgo builds batches for it (topicLimits),
// fails a record over it on its own before it reaches a batch, re-reads a limit an operator raised
// (refreshLimits, without a restart), and when a limit could not be read writes again, each alone,
// the records a refused batch took down with it (retryAlone).

// isRecordTooLarge reports a size refusal, from the client (a record alone over the batch limit) or
// from the broker (a batch over the topic's max.message.bytes: MESSAGE_TOO_LARGE; a batch over the
// segment size: RECORD_LIST_TOO_LARGE, Kafka's RecordBatchTooLargeException).
func isRecordTooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// outRecordBytes is a record's payload: key, value and headers, before compression and framing.
func outRecordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// topicLimits holds each topic's batch size limit: min(max_message_bytes, the topic's
// max.message.bytes). kgo asks for a topic's limit (batchMaxBytes, through
// kgo.ProducerBatchMaxBytesFn) when it first discovers the topic's partitions and keeps the answer;
// learn is called by every WriteBatch before its records reach the client, so the answer is known
// by then. With the broker's own limit, kgo never builds a batch the broker would refuse for its
// size unless one record alone is over it, and that record then fails in the client, alone.
type topicLimits struct {
	configured int32 // max_message_bytes

	mu        sync.RWMutex
	byTopic   map[string]int32
	learnedAt map[string]time.Time
	maxAge    time.Duration // limitMaxAge; tests shorten it

	learnMu sync.Mutex // one DescribeConfigs at a time; others wait for its answer
}

func newTopicLimits(configured int32) *topicLimits {
	return &topicLimits{configured: configured, byTopic: map[string]int32{}, learnedAt: map[string]time.Time{},
		maxAge: limitMaxAge}
}

// limitMaxAge is how long a learned limit is trusted when a record is refused locally for it: an
// operator may have raised the topic's max.message.bytes (a DLQ that refused a dead letter).
const limitMaxAge = 30 * time.Second

// expire forgets the limits of the given topics that were learned more than maxAge ago, so that
// the next learn reads them again, and returns their old values.
func (l *topicLimits) expire(topics []string) map[string]int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := map[string]int32{}
	for _, t := range topics {
		if v, ok := l.byTopic[t]; ok && time.Since(l.learnedAt[t]) > l.maxAge {
			old[t] = v
			delete(l.byTopic, t)
		}
	}
	return old
}

// refreshLimits reads again the limits, learned over limitMaxAge ago, of topics whose records were
// refused locally as too large. If a limit grew, kgo (which fixes a topic's batch limit when it
// first meets the topic) gets a fresh client and those records are checked again; it reports
// whether the client was replaced. Without this, a dead letter refused once by a DLQ topic whose
// limit is then raised would be refused until the process restarts.
func (o *kafkaOutput) refreshLimits(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, errs []error) bool {
	var topics []string
	for i, r := range recs {
		if r != nil && errors.Is(errs[i], kerr.MessageTooLarge) && !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	old := o.limits.expire(topics)
	if len(old) == 0 {
		return false
	}
	o.limits.learn(ctx, cl, o.log, o.timeout, recs)
	grew := false
	for t, v := range old {
		if o.limits.batchMaxBytes(t) > v {
			grew = true
			o.log.Infof("Topic %q now accepts records of %d bytes (was %d)", t, o.limits.batchMaxBytes(t), v)
		}
	}
	if !grew || o.hub != nil { // the shared transactional client is the input's to replace
		return false
	}
	if err := o.replaceClient(); err != nil {
		o.log.Warnf("Could not renew the Kafka client for the new size limit: %v", err)
		return false
	}
	for i, r := range recs {
		if r != nil && errors.Is(errs[i], kerr.MessageTooLarge) && outRecordBytes(r) <= int(o.limits.batchMaxBytes(r.Topic)) {
			errs[i] = nil
		}
	}
	return true
}

// replaceClient swaps in a new client once no record is being produced (soloMu) and closes the
// old one. produceAll and retryAlone take the client under soloMu, so none uses a closed one.
func (o *kafkaOutput) replaceClient() error {
	o.soloMu.Lock()
	defer o.soloMu.Unlock()
	cl, err := kgo.NewClient(o.opts...)
	if err != nil {
		return err
	}
	o.connMu.Lock()
	old := o.client
	o.client = cl
	o.connMu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// batchMaxBytes is safe to call from kgo's goroutines: it only reads the map.
func (l *topicLimits) batchMaxBytes(topic string) int32 {
	l.mu.RLock()
	v, ok := l.byTopic[topic]
	l.mu.RUnlock()
	if ok {
		return v
	}
	return l.configured
}

func (l *topicLimits) unknown(recs []*kgo.Record) []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var topics []string
	for _, r := range recs {
		if r == nil {
			continue
		}
		if _, ok := l.byTopic[r.Topic]; !ok && !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	return topics
}

// learn reads max.message.bytes of the records' topics not seen yet. A topic whose limit cannot
// be read (no DescribeConfigs permission, an old broker) keeps max_message_bytes, with a warning;
// WriteBatch's retry of refused records one by one covers that case. A topic that does not exist
// yet, or a request that failed as a whole, is asked about again by the next batch.
func (l *topicLimits) learn(ctx context.Context, cl *kgo.Client, log *service.Logger, timeout time.Duration, recs []*kgo.Record) {
	if len(l.unknown(recs)) == 0 {
		return
	}
	l.learnMu.Lock()
	defer l.learnMu.Unlock()
	topics := l.unknown(recs) // again: a concurrent learn may have answered meanwhile
	if len(topics) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(dctx, topics...)
	if err != nil && len(rcs) == 0 {
		log.Debugf("Reading max.message.bytes of topics %v: %v", topics, err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range topics {
		rc, err := rcs.On(t, nil)
		if err == nil {
			err = rc.Err
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			continue
		}
		limit := l.configured
		if err == nil {
			if limit, err = topicMaxMessageBytes(rc, l.configured); err == nil {
				l.byTopic[t] = limit
				l.learnedAt[t] = time.Now()
				continue
			}
		}
		log.Warnf("Could not read max.message.bytes of topic %q (%v): batches to it are capped at max_message_bytes (%d bytes), and a batch the broker refuses as too large is written again record by record", t, err, l.configured)
		l.byTopic[t] = limit
		l.learnedAt[t] = time.Now()
	}
}

func topicMaxMessageBytes(rc kadm.ResourceConfig, configured int32) (int32, error) {
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" {
			continue
		}
		v, err := strconv.ParseInt(c.MaybeValue(), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("max.message.bytes %q: %w", c.MaybeValue(), err)
		}
		// kgo accepts no limit below 512 bytes; the broker refuses what is over its limit anyway.
		return max(min(int32(v), configured), outMinBatchBytes), nil
	}
	return 0, errors.New("the broker did not return max.message.bytes")
}

// retryAlone writes again, each alone in its batch, the records the broker refused as too large
// that are not over the limit on their own: they may have failed only because kgo grouped them
// with a large record (possible when a topic's limit could not be learned). Records over the
// limit on their own keep their error. A record retried alone lands after records written after
// it, so per-key order holds only while no batch is refused for its size.
func (o *kafkaOutput) retryAlone(ctx context.Context, recs []*kgo.Record, errs []error) {
	var idx []int
	for i, err := range errs {
		if recs[i] != nil && isRecordTooLarge(err) && outRecordBytes(recs[i]) <= int(o.limits.batchMaxBytes(recs[i].Topic)) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	o.soloMu.Lock() // see soloMu: no other record is in the client while we hold it
	defer o.soloMu.Unlock()
	cl := o.currentClient()
	for _, i := range idx {
		r := recs[i]
		recs[i] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp, Partition: r.Partition}
		errs[i] = cl.ProduceSync(ctx, recs[i]).FirstErr()
	}
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Exactly-once mode (`exactly_once: true` on the input and on the outputs): the responses and dead
// letters of the records consumed in one transaction, and those records' offsets, are committed
// together in one Kafka transaction (KIP-447), so a reader with isolation.level=read_committed
// sees each request's outcome once, whatever crashes. The input and the outputs are separate
// Benthos components; they share one transactional client through the stream's resources: the
// input owns it (a kgo.GroupTransactSession, created with each consumer session) and publishes it
// in the stream's txnHub, and the outputs produce through whichever session is current. How a
// transaction runs is in input_kafka_txn.go.

// txnHubKey is the key of a stream's txnHub in its resources (Resources.GetOrSetGeneric).
type txnHubKey struct{}

// txnHub is the meeting point of a stream's exactly-once input and outputs.
type txnHub struct {
	// limits are the per-topic batch limits of the shared client (see output_kafka_limits.go):
	// the outputs learn them, the client asks them.
	limits *topicLimits

	mu      sync.Mutex
	owner   *kafkaInput
	sess    *kgo.GroupTransactSession
	changed chan struct{} // closed and replaced whenever sess changes
}

// hubOf returns the stream's txnHub, creating it on first use.
func hubOf(mgr *service.Resources) *txnHub {
	v, _ := mgr.GetOrSetGeneric(txnHubKey{}, &txnHub{limits: newTopicLimits(outDefaultMaxBytes), changed: make(chan struct{})})
	return v.(*txnHub)
}

// claim makes in the hub's input; a stream has at most one exactly-once kafka input, since the
// outputs could not tell whose transaction a message belongs to.
func (h *txnHub) claim(in *kafkaInput) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.owner != nil && h.owner != in {
		return errors.New("a stream may have only one kafka input with exactly_once: the outputs write into its transactions")
	}
	h.owner = in
	return nil
}

// publish makes ts the current session (nil: none, between sessions).
func (h *txnHub) publish(ts *kgo.GroupTransactSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sess = ts
	close(h.changed)
	h.changed = make(chan struct{})
}

// current returns the current session's client, or nil.
func (h *txnHub) current() *kgo.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sess == nil {
		return nil
	}
	return h.sess.Client()
}

// wait returns the current session's client once there is one. With no exactly-once input in the
// stream (an output with exactly_once beside an input without it) it says so after a while instead
// of waiting in silence; Benthos logs the error and calls Connect again.
func (h *txnHub) wait(ctx context.Context) (*kgo.Client, error) {
	orphan := time.NewTimer(hubOrphanWait)
	defer orphan.Stop()
	for {
		h.mu.Lock()
		sess, changed, owner := h.sess, h.changed, h.owner
		h.mu.Unlock()
		if sess != nil {
			return sess.Client(), nil
		}
		select {
		case <-changed:
		case <-orphan.C:
			if owner == nil {
				return nil, errors.New("exactly_once is set, but no kafka input of this stream has exactly_once: true")
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the exactly-once kafka input's transactional session: %w", ctx.Err())
		}
	}
}

// hubOrphanWait is how long an exactly-once output waits for an exactly-once input to appear.
var hubOrphanWait = 10 * time.Second

// txnProducerOpts are the producer options of the shared transactional client. They are the
// kafka output's defaults (which is why an exactly_once output refuses other producer settings):
// crc32 partitioning, no compression, acks from every in-sync replica, the per-topic batch limits.
func (h *txnHub) txnProducerOpts() []kgo.Opt {
	part, _ := outPartitionerByName("crc32")
	return []kgo.Opt{
		kgo.RecordPartitioner(part),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(10000),
		kgo.ProducerBatchMaxBytesFn(h.limits.batchMaxBytes),
		kgo.BrokerMaxWriteBytes(max(100<<20, h.limits.configured+1<<20)),
	}
}

// isFencedErr reports an error that ends a transactional producer for good: another instance took
// its transactional id (or its epoch), or it may not use the id. Retrying at once would fence the
// other instance in turn, so the session fails with the long back-off.
func isFencedErr(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) ||
		errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidProducerIDMapping)
}

// exactlyOnceFromConfig reads the exactly-once fields and joins the stream's txnHub.
func (i *kafkaInput) exactlyOnceFromConfig(conf *service.ParsedConfig, mgr *service.Resources) error {
	on, err := conf.FieldBool(inFieldExactlyOnce)
	if err != nil || !on {
		return err
	}
	if i.transactionalID, err = conf.FieldString(inFieldTransactionalID); err != nil {
		return err
	}
	if i.transactionalID == "" {
		suffix := i.instanceID
		if suffix == "" {
			if suffix, err = os.Hostname(); err != nil {
				return fmt.Errorf("field %q is empty and the host name is unknown: %w", inFieldTransactionalID, err)
			}
		}
		i.transactionalID = i.group + "-" + suffix
	}
	if i.txnInterval, err = conf.FieldDuration(inFieldTransactionInterval); err != nil {
		return err
	}
	if i.transactionTimeout, err = conf.FieldDuration(inFieldTransactionTimeout); err != nil {
		return err
	}
	if i.txnInterval <= 0 || i.transactionTimeout < time.Second {
		return fmt.Errorf("fields %q and %q: must be positive, and at least 1s", inFieldTransactionInterval, inFieldTransactionTimeout)
	}
	i.hub = hubOf(mgr)
	return i.hub.claim(i)
}

// exactlyOnceFromConfig joins the stream's txnHub when `exactly_once` is set, refusing producer
// fields that the shared transactional client cannot honour.
func (o *kafkaOutput) exactlyOnceFromConfig(conf *service.ParsedConfig, mgr *service.Resources) error {
	on, err := conf.FieldBool(outFieldExactlyOnce)
	if err != nil || !on {
		return err
	}
	// The parsed config holds defaults too, so a field counts as set when its value differs.
	str := func(f string) string { v, _ := conf.FieldString(f); return v }
	idem, _ := conf.FieldBool(outFieldIdempotentWrite)
	buffered, _ := conf.FieldInt(outFieldMaxBufferedRecords)
	for _, c := range []struct {
		field string
		set   bool
	}{
		{outFieldPartitioner, str(outFieldPartitioner) != "crc32"},
		{outFieldPartition, conf.Contains(outFieldPartition)},
		{outFieldCompression, str(outFieldCompression) != "none"},
		{outFieldAcks, str(outFieldAcks) != "all"},
		{outFieldIdempotentWrite, !idem},
		{outFieldMaxMessageBytes, o.limits.configured != outDefaultMaxBytes},
		{outFieldMaxBufferedRecords, buffered != 10000},
	} {
		if c.set {
			return fmt.Errorf("field %q: cannot differ from its default with %s: the records are written by the input's transactional client, with this output's defaults", c.field, outFieldExactlyOnce)
		}
	}
	o.hub = hubOf(mgr)
	o.limits = o.hub.limits
	return nil
}

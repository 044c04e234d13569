package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// An exactly-once output writes through the input's transactional client, so producer settings it
// cannot honour are refused with the field's name rather than silently ignored.
func TestExactlyOnceOutputRefusesProducerSettings(t *testing.T) {
	mgr := service.MockResources()
	for _, field := range []string{"partitioner: round_robin", "compression: zstd", "acks: leader\nidempotent_write: false",
		"max_message_bytes: 1MB", "max_buffered_records: 5"} {
		conf, err := kafkaOutputSpec().ParseYAML("seed_brokers: [ x ]\ntopic: t\nexactly_once: true\n"+field, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = newKafkaOutputFromParsedConf(conf, mgr)
		name := strings.SplitN(field, ":", 2)[0]
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "exactly_once") {
			t.Errorf("%s with exactly_once: %v, want an error naming %q", field, err, name)
		}
	}
	conf, err := kafkaOutputSpec().ParseYAML("seed_brokers: [ x ]\ntopic: t\nexactly_once: true\ntimeout: 2m\nkey: k", nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := newKafkaOutputFromParsedConf(conf, mgr)
	if err != nil {
		t.Fatalf("defaults with exactly_once: %v", err)
	}
	if o.hub == nil || o.hub != hubOf(mgr) || o.limits != o.hub.limits {
		t.Error("the output does not share the stream's hub and its topic limits")
	}
	if err := o.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

// A stream may have one exactly-once input: the outputs could not tell whose transaction a
// message belongs to.
func TestExactlyOnceOneInputPerStream(t *testing.T) {
	mgr := service.MockResources()
	parse := func(group string) (*kafkaInput, error) {
		conf, err := kafkaInputSpec().ParseYAML("seed_brokers: [ x ]\ntopics: [ t ]\nconsumer_group: "+group+"\nexactly_once: true", nil)
		if err != nil {
			t.Fatal(err)
		}
		return newKafkaInputFromParsedConf(conf, mgr)
	}
	in, err := parse("g1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(in.transactionalID, "g1-") {
		t.Errorf("default transactional id %q, want the group and the host name", in.transactionalID)
	}
	if _, err := parse("g2"); err == nil || !strings.Contains(err.Error(), "only one kafka input with exactly_once") {
		t.Errorf("second exactly-once input in one stream: %v", err)
	}
}

func TestTxnHubWait(t *testing.T) {
	h := hubOf(service.MockResources())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.wait(ctx); err == nil {
		t.Fatal("wait returned a client with no session published")
	}
	// An output with exactly_once and no such input: an error that says so, not a silent wait.
	defer func(d time.Duration) { hubOrphanWait = d }(hubOrphanWait)
	hubOrphanWait = 10 * time.Millisecond
	if _, err := h.wait(context.Background()); err == nil || !strings.Contains(err.Error(), "no kafka input of this stream has exactly_once") {
		t.Fatalf("wait with no exactly-once input: %v", err)
	}
	if h.current() != nil {
		t.Fatal("current client with no session published")
	}
}

// TestExactlyOnceUnusableProducerIDIsAFence: when the transactional producer id cannot be
// initialized (INVALID_PRODUCER_EPOCH, as when two instances with one transactional id
// re-initialize at once), the session ends as fenced (Read: ErrNotConnected, so Benthos
// reconnects) rather than running transactions that cannot write. kgo's BeginTransaction reports
// the unusable id; this pins that the session acts on it, even on an idle topic.
func TestExactlyOnceUnusableProducerIDIsAFence(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idle"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.InitProducerID), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := kreq.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.InvalidProducerEpoch.Code
		return resp, nil, true
	})
	in := inputForConnTest(t, fmt.Sprintf(
		"{ seed_brokers: [ %q ], topics: [ idle ], consumer_group: g, exactly_once: true, transactional_id: t1 }", c.ListenAddrs()[0]), io.Discard)
	defer in.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := in.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if _, _, err := in.Read(ctx); !errors.Is(err, service.ErrNotConnected) {
		t.Fatalf("Read: %v, want ErrNotConnected once the producer id proved unusable", err)
	}
}

package devbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestBroker is a broker for tests in any package: the real cluster named by
// KAFKA_BOOTSTRAP_SERVERS when that is set, else an embedded kfake broker on
// a free 127.0.0.1 port. Tests written against it do not care which: they
// make their topics and groups with Topic and Group (uniquely named, since a
// real broker keeps them between runs) and reach the broker over TCP.
type TestBroker struct {
	// Addr is the bootstrap address, comma-separated for a real cluster of
	// several brokers.
	Addr string
	// Cluster is the embedded cluster for fault injection and inspection,
	// nil when the broker is real.
	Cluster *kfake.Cluster
	// Admin is an admin client on the broker, closed by the test's cleanup.
	Admin *kadm.Client

	// Auth holds client options every client of the helpers adds (SASL as the
	// superuser of NewSecuredTestBroker); empty otherwise.
	Auth []kgo.Opt

	mu       sync.Mutex
	producer *kgo.Client
}

// testBrokerTimeout bounds each admin request of the helpers, so that a dead
// broker fails a test with a message rather than hanging it.
const testBrokerTimeout = 30 * time.Second

// NewTestBroker returns the broker for this test: the real one if
// KAFKA_BOOTSTRAP_SERVERS is set (failing the test if it does not answer),
// else a new embedded one. It never skips. Everything it opens is closed by
// t.Cleanup.
func NewTestBroker(t testing.TB) *TestBroker {
	t.Helper()
	b := &TestBroker{}
	if addr := strings.TrimSpace(os.Getenv(EnvBootstrapServers)); addr != "" {
		b.Addr = addr
	} else {
		// No topics: tests make their own with Topic, as on a real broker.
		eb, err := start(Options{Addr: "127.0.0.1:0"}.withDefaults(), nil)
		if err != nil {
			t.Fatalf("devbroker: start embedded broker: %v", err)
		}
		t.Cleanup(eb.Close)
		b.Addr = eb.Addr()
		b.Cluster = eb.Cluster()
	}

	b.connectAdmin(t)
	return b
}

// Secured test brokers: SASL/SCRAM-SHA-256 and ACLs, with this superuser.
const (
	SecuredAdminUser     = "admin"
	SecuredAdminPassword = "admin-secret"
)

// NewSecuredTestBroker starts an embedded broker (whatever KAFKA_BOOTSTRAP_SERVERS
// says) that requires SASL/SCRAM-SHA-256 and checks ACLs. The helpers
// authenticate as the superuser SecuredAdminUser; users, each with its ACLs,
// come as kfake.User options.
func NewSecuredTestBroker(t testing.TB, users ...kfake.Opt) *TestBroker {
	t.Helper()
	opts := Options{Addr: "127.0.0.1:0"}.withDefaults()
	opts.ClusterOpts = append([]kfake.Opt{kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", SecuredAdminUser, SecuredAdminPassword)}, users...)
	eb, err := start(opts, nil)
	if err != nil {
		t.Fatalf("devbroker: start embedded broker: %v", err)
	}
	t.Cleanup(eb.Close)
	b := &TestBroker{Addr: eb.Addr(), Cluster: eb.Cluster(),
		Auth: []kgo.Opt{kgo.SASL(scram.Auth{User: SecuredAdminUser, Pass: SecuredAdminPassword}.AsSha256Mechanism())}}
	b.connectAdmin(t)
	return b
}

// connectAdmin makes b.Admin and checks that the broker answers.
func (b *TestBroker) connectAdmin(t testing.TB) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.seeds()...)}, b.Auth...)...)
	if err != nil {
		t.Fatalf("devbroker: admin client for %s: %v", b.Addr, err)
	}
	t.Cleanup(cl.Close)
	b.Admin = kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(context.Background(), testBrokerTimeout)
	defer cancel()
	if _, err := b.Admin.ListBrokers(ctx); err != nil {
		t.Fatalf("devbroker: broker %s does not answer (%s=%q): %v",
			b.Addr, EnvBootstrapServers, os.Getenv(EnvBootstrapServers), err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.producer != nil {
			b.producer.Close()
		}
	})
}

// ClientOptions are the options of the helpers' clients: the seeds, the raised
// size limits (ClientOpts) and Auth.
func (b *TestBroker) ClientOptions() []kgo.Opt {
	opts := append([]kgo.Opt{kgo.SeedBrokers(b.seeds()...)}, ClientOpts(DefaultMaxMessageBytes)...)
	return append(opts, b.Auth...)
}

// Real reports whether this is a real broker (KAFKA_BOOTSTRAP_SERVERS) rather
// than the embedded one.
func (b *TestBroker) Real() bool { return b.Cluster == nil }

func (b *TestBroker) seeds() []string {
	var seeds []string
	for _, s := range strings.Split(b.Addr, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// uniqueName returns base with a random suffix: topics and groups on a real
// broker outlive the test that made them.
func uniqueName(base string) string {
	var buf [6]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base + "-" + hex.EncodeToString(buf[:])
}

// Topic creates a topic named base plus a unique suffix and returns the name;
// see CreateTopic.
func (b *TestBroker) Topic(t testing.TB, base string, partitions int, configs map[string]*string) string {
	t.Helper()
	name := b.TopicName(base)
	b.CreateTopic(t, name, partitions, configs)
	return name
}

// TopicName returns base plus a unique suffix, for a topic a test creates
// later (or never) with CreateTopic.
func (b *TestBroker) TopicName(base string) string { return uniqueName(base) }

// CreateTopic creates the topic name. partitions < 1 means DefaultPartitions.
// configs are topic configs; unless they set max.message.bytes it is
// DefaultMaxMessageBytes, so large records work on a real broker too. It waits
// until every partition's leader serves it (WaitTopicServed). On a real broker
// the topic is deleted when the test ends.
func (b *TestBroker) CreateTopic(t testing.TB, name string, partitions int, configs map[string]*string) {
	t.Helper()
	if partitions < 1 {
		partitions = DefaultPartitions
	}
	cfgs := map[string]*string{}
	for k, v := range configs {
		cfgs[k] = v
	}
	if _, ok := cfgs["max.message.bytes"]; !ok {
		v := fmt.Sprint(DefaultMaxMessageBytes)
		cfgs["max.message.bytes"] = &v
	}
	ctx, cancel := context.WithTimeout(context.Background(), testBrokerTimeout)
	defer cancel()
	// Replicated as TestReplication says: RF 3 and min ISR 2 on the 3-node
	// cluster of test/kafka/kafka.sh, RF 1 on kfake.
	rf, cfgs, err := WithTestReplication(ctx, b.Admin, cfgs)
	if err != nil {
		t.Fatalf("devbroker: create topic %q on %s: %v", name, b.Addr, err)
	}
	resp, err := b.Admin.CreateTopic(ctx, int32(partitions), rf, cfgs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("devbroker: create topic %q (%d partitions) on %s: %v", name, partitions, b.Addr, err)
	}
	if b.Real() {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testBrokerTimeout)
			defer cancel()
			if _, err := b.Admin.DeleteTopic(ctx, name); err != nil {
				t.Logf("devbroker: delete topic %q: %v", name, err)
			}
		})
	}

	if err := WaitTopicServed(ctx, b.Admin, name, partitions); err != nil {
		t.Fatalf("devbroker: topic %q created on %s but not served after %v: %v", name, b.Addr, testBrokerTimeout, err)
	}
}

// WaitTopicServed waits until every one of topic's partitions has a leader
// in the metadata and that leader answers for it (ListOffsets succeeds), or
// ctx ends. A real broker answers CreateTopics before every partition has a
// leader in its metadata, and on a cluster the metadata one broker gives can
// name a leader that has not yet taken the partition on (it answers
// UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER for a moment): a
// producer or a test that looks too early fails. kfake is ready at once and
// passes on the first look.
func WaitTopicServed(ctx context.Context, adm *kadm.Client, topic string, partitions int) error {
	var last error
	for {
		details, err := adm.ListTopics(ctx, topic)
		switch {
		case err != nil:
			last = err
		case details[topic].Err != nil:
			last = details[topic].Err
		case len(details[topic].Partitions) != partitions || !allLed(details[topic]):
			last = fmt.Errorf("%d of %d partitions listed, not all with a leader", len(details[topic].Partitions), partitions)
		default:
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err == nil {
				err = ends.Error()
			}
			if err == nil {
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(td kadm.TopicDetail) bool {
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// Group returns base plus a unique suffix, for a consumer group id.
func (b *TestBroker) Group(base string) string { return uniqueName(base) }

// Client returns a client on the broker with the size limits raised to
// DefaultMaxMessageBytes (see ClientOpts), then opts applied (later options
// win). It is closed when the test ends.
func (b *TestBroker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append(b.ClientOptions(), opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("devbroker: client for %s: %v", b.Addr, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce writes recs to topic synchronously (setting Topic on each) with a
// client shared by the TestBroker, failing the test on any error. Call it from
// the test's goroutine.
func (b *TestBroker) Produce(t testing.TB, topic string, recs ...*kgo.Record) {
	t.Helper()
	b.mu.Lock()
	if b.producer == nil {
		var err error
		b.producer, err = kgo.NewClient(b.ClientOptions()...)
		if err != nil {
			b.mu.Unlock()
			t.Fatalf("devbroker: producer for %s: %v", b.Addr, err)
		}
	}
	cl := b.producer
	b.mu.Unlock()

	for _, r := range recs {
		r.Topic = topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), testBrokerTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("devbroker: produce %d records to %q: %v", len(recs), topic, err)
	}
}

// ConsumeN reads topic from its start, without a consumer group, until it has
// n records, and returns the first n in the order fetched (offset order within
// each partition). It fails the test, saying how many arrived, if fewer than n
// came within timeout. Call it from the test's goroutine.
func (b *TestBroker) ConsumeN(t testing.TB, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(b.ClientOptions(),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		t.Fatalf("devbroker: consumer for %s: %v", b.Addr, err)
	}
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	recs := make([]*kgo.Record, 0, n)
	var lastErr error
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = fmt.Errorf("%s[%d]: %w", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if ctx.Err() != nil && len(recs) < n {
			msg := fmt.Sprintf("devbroker: ConsumeN(%q): got %d of %d records within %v", topic, len(recs), n, timeout)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last fetch error: %v)", lastErr)
			}
			t.Fatal(msg)
		}
	}
	return recs[:n]
}

package devbroker

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests go through TestBroker, so with KAFKA_BOOTSTRAP_SERVERS set they
// run against that broker instead of the embedded one.

func TestTestBrokerKind(t *testing.T) {
	b := NewTestBroker(t)
	isReal := os.Getenv(EnvBootstrapServers) != ""
	assert.Equal(t, isReal, b.Real())
	assert.Equal(t, isReal, b.Cluster == nil, "Cluster is set exactly when the broker is embedded")
	assert.NotEmpty(t, b.Addr)
	if !isReal {
		assert.True(t, strings.HasPrefix(b.Addr, "127.0.0.1:"), b.Addr)
		// The embedded test broker starts empty, as a fresh real one may.
		details, err := b.Admin.ListTopics(ctxBound(t))
		require.NoError(t, err)
		assert.Empty(t, details.Names())
	}
}

func TestTestBrokerTopic(t *testing.T) {
	b := NewTestBroker(t)
	ctx := ctxBound(t)

	a := b.Topic(t, "rollup-topic", 2, nil)
	retention := "3600000"
	small := "2097152"
	c := b.Topic(t, "rollup-topic", 0, map[string]*string{"retention.ms": &retention, "max.message.bytes": &small})
	assert.NotEqual(t, a, c, "Topic must make a new name on each call")
	assert.True(t, strings.HasPrefix(a, "rollup-topic-"), a)
	assert.NotEqual(t, b.Group("g"), b.Group("g"), "Group must make a new name on each call")

	details, err := b.Admin.ListTopics(ctx, a, c)
	require.NoError(t, err)
	assert.Len(t, details[a].Partitions, 2)
	assert.Len(t, details[c].Partitions, DefaultPartitions, "partitions < 1 means the default")

	rcs, err := b.Admin.DescribeTopicConfigs(ctx, a, c)
	require.NoError(t, err)
	ra, err := rcs.On(a, nil)
	require.NoError(t, err)
	rc, err := rcs.On(c, nil)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(int(DefaultMaxMessageBytes)), configValue(t, ra, "max.message.bytes"),
		"large records must work on a real broker too")
	assert.Equal(t, small, configValue(t, rc, "max.message.bytes"), "an explicit limit wins")
	assert.Equal(t, retention, configValue(t, rc, "retention.ms"))

	// Replicated on a cluster: RF min(3, brokers), min ISR max(1, RF-1) (3 and 2 on kafka.sh's
	// cluster, 1 and 1 embedded).
	brokers, err := b.Admin.ListBrokers(ctx)
	require.NoError(t, err)
	wantRF := min(len(brokers), 3)
	for _, p := range details[a].Partitions {
		assert.Len(t, p.Replicas, wantRF, "partition %d of %s", p.Partition, a)
	}
	assert.Equal(t, strconv.Itoa(max(1, wantRF-1)), configValue(t, ra, "min.insync.replicas"))
}

func TestTestBrokerProduceConsumeN(t *testing.T) {
	b := NewTestBroker(t)
	topic := b.Topic(t, "produce-consume", 1, nil)

	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprint("v", i)),
			Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(strconv.Itoa(i))}}})
	}
	b.Produce(t, topic, recs...)
	b.Produce(t, topic, &kgo.Record{Value: []byte("v5")})

	got := b.ConsumeN(t, topic, 6, waitBound)
	require.Len(t, got, 6)
	for i, r := range got {
		assert.Equal(t, fmt.Sprint("v", i), string(r.Value))
		assert.Equal(t, int64(i), r.Offset)
		assert.Equal(t, topic, r.Topic)
	}
	assert.Equal(t, "3", string(got[3].Headers[0].Value))

	// Fewer than are there: the first n, from the start each time.
	got = b.ConsumeN(t, topic, 2, waitBound)
	require.Len(t, got, 2)
	assert.Equal(t, "v0", string(got[0].Value))
	assert.Equal(t, "v1", string(got[1].Value))
}

// fatalRecorder stands in for a test so that a helper's t.Fatal can be
// observed: it records the message and ends the goroutine, as t.Fatal does.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatal(args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

// ConsumeN on a topic with fewer records than asked fails the test with a
// message that says how many came. The short timeout is what is tested, not
// a speed assertion: the topic is empty, so no wait could be long enough.
func TestTestBrokerConsumeNFailsOnTimeout(t *testing.T) {
	b := NewTestBroker(t)
	topic := b.Topic(t, "short", 1, nil)

	rec := &fatalRecorder{TB: t}
	done := make(chan []*kgo.Record, 1)
	go func() {
		defer close(done)
		done <- b.ConsumeN(rec, topic, 1, 500*time.Millisecond)
	}()
	got, returned := <-done
	assert.False(t, returned, "ConsumeN returned %d records instead of failing", len(got))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Contains(t, rec.msg, fmt.Sprintf("ConsumeN(%q): got 0 of 1 records within 500ms", topic))
}

// A 40 MB record through the helpers' clients (ClientOpts limits) and a
// topic made by Topic.
func TestTestBrokerLargeRecord(t *testing.T) {
	b := NewTestBroker(t)
	topic := b.Topic(t, "large", 1, nil)
	value := randomBytes(t, largeRecordBytes)

	cl := b.Client(t)
	require.NoError(t, cl.ProduceSync(ctxBound(t), &kgo.Record{Topic: topic, Value: value}).FirstErr())
	got := b.ConsumeN(t, topic, 1, waitBound)
	assert.True(t, bytes.Equal(value, got[0].Value), "40 MB value differs after the round trip")
}

// Group coordination: a group member reads everything, commits, and the
// committed offsets (fetched with kadm) equal the end offsets; a new member
// of the same group then resumes after them and sees only what came later.
func TestTestBrokerConsumerGroupCommit(t *testing.T) {
	b := NewTestBroker(t)
	ctx := ctxBound(t)
	topic := b.Topic(t, "group", 3, nil)
	group := b.Group("rollup-test")

	const n = 30
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	b.Produce(t, topic, recs...)

	member := func() *kgo.Client {
		return b.Client(t,
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
		)
	}
	first := member()
	seen := map[string]bool{}
	for len(seen) < n {
		fs := first.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "group member saw %d of %d records", len(seen), n)
		fs.EachError(func(topic string, p int32, err error) { require.NoError(t, err, "%s[%d]", topic, p) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	require.NoError(t, first.CommitUncommittedOffsets(ctx))

	ends, err := b.Admin.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	committed, err := b.Admin.FetchOffsets(ctx, group)
	require.NoError(t, err)
	require.NoError(t, committed.Error())
	var total int64
	ends.Each(func(e kadm.ListedOffset) {
		require.NoError(t, e.Err)
		total += e.Offset
		if e.Offset == 0 {
			return // no record there, so nothing to commit
		}
		c, ok := committed.Lookup(topic, e.Partition)
		require.True(t, ok, "no commit for partition %d", e.Partition)
		assert.Equal(t, e.Offset, c.At, "partition %d", e.Partition)
	})
	assert.Equal(t, int64(n), total)
	first.Close() // leaves the group

	b.Produce(t, topic, &kgo.Record{Key: []byte("late"), Value: []byte("late")})
	second := member()
	var got []string
	for len(got) == 0 {
		fs := second.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "the new member fetched nothing")
		fs.EachError(func(topic string, p int32, err error) { require.NoError(t, err, "%s[%d]", topic, p) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	assert.Equal(t, []string{"late"}, got, "the new member must resume after the committed offsets")

	// The coordinator knows the group and its member.
	described, err := b.Admin.DescribeGroups(ctx, group)
	require.NoError(t, err)
	require.NoError(t, described.Error())
	assert.Len(t, described[group].Members, 1)
}

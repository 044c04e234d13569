package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

func TestInputSpecDefaultsAndValidation(t *testing.T) {
	conf, err := kafkaInputSpec().ParseYAML(`
seed_brokers: [ "127.0.0.1:1" ]
topics: [ "a, b", c ]
consumer_group: g
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newKafkaInputFromParsedConf(conf, service.MockResources())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(in.topics, ",") != "a,b,c" || in.limit != 1024 || in.commitPeriod != time.Second ||
		in.shutdownTimeout != 3*time.Second || in.revokeTimeout != 10*time.Second || len(in.balancers) != 2 ||
		in.balancers[0].ProtocolName() != "cooperative-sticky" || in.balancers[1].ProtocolName() != "range" ||
		in.fetchMaxBytes != 64<<20 || in.fetchMaxPartB != 32<<20 {
		t.Fatalf("defaults: %+v", in)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: "" }`,
		`{ seed_brokers: [ x ], topics: [ " " ], consumer_group: g }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, checkpoint_limit: 0 }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, fetch_max_bytes: 12XB }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, commit_period: 0s }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, balancers: [ ] }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, balancers: [ cooperative_sticky, rnage ] }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, group_protocol: next }`,
		`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, group_protocol: consumer, exactly_once: true }`,
	} {
		conf, err := kafkaInputSpec().ParseYAML(bad, nil)
		if err != nil {
			continue
		}
		if _, err := newKafkaInputFromParsedConf(conf, service.MockResources()); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	// The spec's example and its lint rule, through the same linter `rollup lint` uses.
	env := service.NewEnvironment()
	if err := env.NewStreamBuilder().AddInputYAML(`
kafka:
  seed_brokers: [ "${KAFKA_BOOTSTRAP_SERVERS:localhost:9092}" ]
  topics: [ "${INPUT_KAFKA_TOPIC:Scenario-Execute}" ]
  consumer_group: "${KAFKA_GROUP_ID:weekly-aggregator}"
  checkpoint_limit: 64
`); err != nil {
		t.Errorf("example config: %v", err)
	}
	if err := env.NewStreamBuilder().AddInputYAML(`
kafka: { seed_brokers: [ x ], topics: [ t ], consumer_group: g, checkpoint_limit: 0 }
`); err == nil || !strings.Contains(err.Error(), "checkpoint_limit must be at least 1") {
		t.Errorf("lint of checkpoint_limit 0: %v", err)
	}
	// Sizes read through parseSize, in any case; out of range is refused.
	conf, err = kafkaInputSpec().ParseYAML(`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, fetch_max_bytes: 64mib, fetch_max_partition_bytes: 25MB }`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in, err := newKafkaInputFromParsedConf(conf, service.MockResources()); err != nil || in.fetchMaxBytes != 64<<20 || in.fetchMaxPartB != 25e6 {
		t.Errorf("sizes: %v", err)
	}
	conf, _ = kafkaInputSpec().ParseYAML(`{ seed_brokers: [ x ], topics: [ t ], consumer_group: g, fetch_max_bytes: 2GiB }`, nil)
	if _, err := newKafkaInputFromParsedConf(conf, service.MockResources()); err == nil {
		t.Error("fetch_max_bytes 2GiB accepted")
	}
}

// TestInputConsumesAllAndCommits: N records through a stream; every offset is seen once, the
// committed offsets reach the end of each partition, metadata and metrics are filled in, and
// Close leaves the registry the readiness gate watches.
func TestInputConsumesAllAndCommits(t *testing.T) {
	const n = 300
	brokers := testBrokers(t)
	adm := adminClient(t, brokers)
	topic := createTopic(t, adm, 3)
	group := uniqueName(t, "group")
	produce(t, brokers, topic, 0, n)

	tr := newTracker()
	var metaMu sync.Mutex
	meta := map[string]any{}
	var body string
	metrics := &testMetrics{}
	st := runStream(t, streamOpts{
		input:   inputConf(brokers, topic, group, 64),
		metrics: metrics,
		consume: func(_ context.Context, msg *service.Message) error {
			id := recordID(msg)
			tr.see(id)
			if id.partition == 0 && id.offset == 0 {
				metaMu.Lock()
				_ = msg.MetaWalkMut(func(k string, v any) error { meta[k] = v; return nil })
				b, _ := msg.AsBytes()
				body = string(b)
				metaMu.Unlock()
			}
			tr.ack(id)
			return nil
		},
	})

	var committed, end map[int32]int64
	waitFor(t, "all records committed", func() bool {
		if u, _, _ := tr.counts(); u < n {
			return false
		}
		var err error
		committed, end, err = committedAndEnd(adm, group, topic)
		return err == nil && allCommitted(committed, end)
	})
	status, count := groupProgress(group)
	if lag, _ := status.totals(); count != 1 || !status.connected || len(status.parts) != 3 || lag != 0 || len(status.missing) != 0 {
		t.Errorf("progress while running: %+v (%d inputs)", status, count)
	}
	if err := st.StopWithin(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, count := groupProgress(group); count != 0 {
		t.Error("input still registered after Close")
	}

	unique, deliveries, _ := tr.counts()
	var total int64
	for _, e := range end {
		total += e
	}
	if total != n || unique != n || deliveries != n || tr.lostAgainst(end) != 0 {
		t.Fatalf("records %d, end offsets sum %d, unique %d, deliveries %d", n, total, unique, deliveries)
	}
	metaMu.Lock()
	defer metaMu.Unlock()
	key, _ := meta["kafka_key"].(string)
	if !strings.HasPrefix(key, "k-") || body != "v-"+strings.TrimPrefix(key, "k-") || meta["trace"] != "t-"+strings.TrimPrefix(key, "k-") {
		t.Errorf("key %q, body %q, header %v", key, body, meta["trace"])
	}
	if meta["kafka_topic"] != topic || meta["kafka_partition"] != int64(0) || meta["kafka_offset"] != int64(0) {
		t.Errorf("topic/partition/offset metadata: %v %v %v", meta["kafka_topic"], meta["kafka_partition"], meta["kafka_offset"])
	}
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(meta["kafka_timestamp"]))
	if err != nil || ts.Unix() != meta["kafka_timestamp_unix"] || time.Since(ts) > time.Hour {
		t.Errorf("timestamps %v / %v: %v", meta["kafka_timestamp"], meta["kafka_timestamp_unix"], err)
	}
	if lag, ok := meta["kafka_lag"].(int64); !ok || lag < 0 || lag >= end[0] {
		t.Errorf("kafka_lag %v with %d records in partition 0", meta["kafka_lag"], end[0])
	}
	if v, _ := metrics.get("kafka_commits_total"); v < 1 {
		t.Errorf("kafka_commits_total = %d", v)
	}
	if v, _ := metrics.get("kafka_rebalances_total"); v < 1 {
		t.Errorf("kafka_rebalances_total = %d", v)
	}
	for p := range end {
		if _, ok := metrics.get("kafka_consumer_lag", "topic="+topic, "partition="+partitionLabel(p)); !ok {
			t.Errorf("no kafka_consumer_lag series for partition %d", p)
		}
	}
	t.Logf("records %d, lost 0, duplicates %d", n, deliveries-unique)
}

// TestInputOutOfOrderAcksAndNacks: four pipeline threads with random delays ack out of order,
// and some deliveries are rejected. While it runs, every committed offset the broker reports is
// checked against the acknowledged set; at the end everything is committed and every rejected
// record was delivered again.
func TestInputOutOfOrderAcksAndNacks(t *testing.T) {
	const n = 400
	brokers := testBrokers(t)
	adm := adminClient(t, brokers)
	topic := createTopic(t, adm, 2)
	group := uniqueName(t, "group")
	produce(t, brokers, topic, 0, n)

	tr := newTracker()
	var rngMu sync.Mutex
	rng := rand.New(rand.NewSource(7))
	var nacked sync.Map
	metrics := &testMetrics{}
	st := runStream(t, streamOpts{
		input:   inputConf(brokers, topic, group, 16),
		threads: 4,
		metrics: metrics,
		stage: func(context.Context, *service.Message) error {
			rngMu.Lock()
			d := time.Duration(rng.Intn(3000)) * time.Microsecond
			rngMu.Unlock()
			time.Sleep(d) // shuffles completion order across the threads
			return nil
		},
		consume: func(_ context.Context, msg *service.Message) error {
			id := recordID(msg)
			if tr.see(id) == 1 {
				rngMu.Lock()
				reject := rng.Intn(25) == 0
				rngMu.Unlock()
				if reject {
					nacked.Store(id, true)
					return errors.New("simulated delivery failure")
				}
			}
			tr.ack(id)
			return nil
		},
	})

	var checks atomic.Int64
	var violation atomic.Value
	stopCheck := make(chan struct{})
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		for {
			select {
			case <-stopCheck:
				return
			case <-time.After(30 * time.Millisecond):
			}
			committed, _, err := committedAndEnd(adm, group, topic)
			if err != nil {
				continue // transient; the next round checks again
			}
			if err := tr.checkCommitted(committed); err != nil {
				violation.Store(err)
			}
			checks.Add(1)
		}
	}()
	waitFor(t, "all records acknowledged and committed", func() bool {
		if _, _, acked := tr.counts(); acked < n {
			return false
		}
		committed, end, err := committedAndEnd(adm, group, topic)
		return err == nil && allCommitted(committed, end)
	})
	close(stopCheck)
	<-checkDone
	if err := st.StopWithin(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if v := violation.Load(); v != nil {
		t.Fatal(v)
	}
	inversions := 0
	for _, order := range tr.ackOrder {
		for i := 1; i < len(order); i++ {
			if order[i] < order[i-1] {
				inversions++
			}
		}
	}
	if inversions == 0 {
		t.Fatal("acks arrived in offset order; the test did not exercise out-of-order acks")
	}
	nacks := 0
	nacked.Range(func(k, _ any) bool {
		nacks++
		tr.mu.Lock()
		again := tr.seen[k.(po)]
		tr.mu.Unlock()
		if again < 2 {
			t.Errorf("rejected record %v was not delivered again", k)
		}
		return true
	})
	if nacks == 0 {
		t.Fatal("no delivery was rejected; the test did not exercise nacks")
	}
	if got, _ := metrics.get("kafka_redeliveries_total", "topic="+topic); got != int64(nacks) {
		t.Errorf("kafka_redeliveries_total = %d, want %d (one per rejected delivery)", got, nacks)
	}
	unique, deliveries, _ := tr.counts()
	t.Logf("records %d, lost %d, out-of-order acks %d, nacks %d, deliveries %d, commit checks %d",
		n, n-unique, inversions, nacks, deliveries, checks.Load())
}

// TestInputHardStopThenRestart: a consumer acks K records, then holds the next ones without
// acking until the pipeline is stopped hard. Nothing past K is committed; a restarted consumer
// in the same group sees every offset, and duplicates stay within checkpoint_limit.
func TestInputHardStopThenRestart(t *testing.T) {
	const n, k, limit = 200, 50, 8
	brokers := testBrokers(t)
	adm := adminClient(t, brokers)
	topic := createTopic(t, adm, 1)
	group := uniqueName(t, "group")
	produce(t, brokers, topic, 0, n)
	conf := inputConf(brokers, topic, group, limit)

	tr := newTracker()
	var crashed atomic.Bool
	release := make(chan struct{})
	held := func(id po) bool { return id.offset >= k && !crashed.Load() }
	metrics := &testMetrics{}
	first := runStream(t, streamOpts{
		input:   conf,
		metrics: metrics,
		threads: 2 * limit, // room for the whole window to be in the pipeline at once
		stage: func(ctx context.Context, msg *service.Message) error {
			id := recordID(msg)
			tr.see(id)
			if held(id) {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return errors.New("crashed before finishing")
			}
			return nil
		},
		consume: func(_ context.Context, msg *service.Message) error {
			id := recordID(msg)
			if id.offset >= k || msg.GetError() != nil {
				return errors.New("crashed before delivering")
			}
			tr.ack(id)
			return nil
		},
	})
	waitFor(t, "K acked and committed with the window full", func() bool {
		unique, _, acked := tr.counts()
		committed, _, err := committedAndEnd(adm, group, topic)
		return err == nil && acked == k && unique == k+limit && committed[0] == k
	})
	status, _ := groupProgress(group)
	if _, inFlight := status.totals(); inFlight != limit {
		t.Errorf("in flight %d at the limit, want %d", inFlight, limit)
	}
	// The window is full, so fetching of the one partition is paused (the gauge is published when
	// the pause changes).
	if got, _ := metrics.get("kafka_paused_partitions"); got != 1 {
		t.Errorf("kafka_paused_partitions = %d with the window full, want 1", got)
	}
	// Hard stop: the held records are never acknowledged.
	crashed.Store(true)
	_ = first.StopWithin(3 * time.Second)
	close(release)
	waitFor(t, "the first consumer to close", func() bool { _, c := groupProgress(group); return c == 0 })
	committed, _, err := committedAndEnd(adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != k {
		t.Fatalf("after the hard stop committed %d, want %d (nothing past the unacked window)", committed[0], k)
	}
	if unique, _, _ := tr.counts(); unique > k+limit {
		t.Fatalf("first consumer saw %d records with a window of %d after %d", unique, limit, k)
	}

	second := runStream(t, streamOpts{
		input: conf,
		stage: func(_ context.Context, msg *service.Message) error { tr.see(recordID(msg)); return nil },
		consume: func(_ context.Context, msg *service.Message) error {
			tr.ack(recordID(msg))
			return nil
		},
	})
	var end map[int32]int64
	waitFor(t, "restart to commit everything", func() bool {
		committed, end, err = committedAndEnd(adm, group, topic)
		return err == nil && allCommitted(committed, end)
	})
	if err := second.StopWithin(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	unique, deliveries, _ := tr.counts()
	lost, dups := tr.lostAgainst(end), deliveries-unique
	if lost != 0 || unique != n {
		t.Fatalf("lost %d, unique %d of %d", lost, unique, n)
	}
	if dups < 1 || dups > limit {
		t.Fatalf("duplicates %d, want 1..%d (the unacked window)", dups, limit)
	}
	t.Logf("records %d, lost %d, duplicates %d (checkpoint_limit %d)", n, lost, dups, limit)
}

// TestInputRebalanceLosesNothing: two inputs in one group while records keep arriving; one
// joins, the first leaves, a third joins. Every offset is seen, everything ends up committed.
func TestInputRebalanceLosesNothing(t *testing.T) {
	for _, proto := range []string{groupClassic, groupConsumer} {
		t.Run(proto, func(t *testing.T) { testRebalanceLosesNothing(t, proto) })
	}
}

// testRebalanceLosesNothing: members join and leave a group while records flow; with either
// group protocol nothing is lost and the final commits cover every record.
func testRebalanceLosesNothing(t *testing.T, proto string) {
	const n, batches, partitions = 2000, 20, 4
	brokers := testBrokers(t)
	adm := adminClient(t, brokers)
	if proto == groupConsumer {
		skipWithoutKIP848(t, adm)
	}
	topic := createTopic(t, adm, partitions)
	group := uniqueName(t, "group")
	conf := inputConf(brokers, topic, group, 32) + "  group_protocol: " + proto + "\n"

	tr := newTracker()
	var perConsumer [3]atomic.Int64
	consumer := func(i int) streamOpts {
		return streamOpts{input: conf, consume: func(_ context.Context, msg *service.Message) error {
			id := recordID(msg)
			tr.see(id)
			tr.ack(id)
			perConsumer[i].Add(1)
			return nil
		}}
	}
	// Records keep arriving through every membership change: the producer waits for B to start
	// after the first third and for C after the second.
	produced := make(chan struct{})
	bStarted, cStarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(produced)
		for b := range batches {
			switch b {
			case batches / 3:
				<-bStarted
			case 2 * batches / 3:
				<-cStarted
			}
			produce(t, brokers, topic, b*n/batches, (b+1)*n/batches)
			time.Sleep(50 * time.Millisecond)
			// Until B has records, the middle third goes slowly: a KIP-848 coordinator moves
			// partitions at the members' next heartbeats (5 s apart by default), and B must find
			// records left on them rather than partitions A had already drained.
			for wait := time.Now().Add(1500 * time.Millisecond); b >= batches/3 && perConsumer[1].Load() == 0 && time.Now().Before(wait); {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	ackedAtLeast := func(m int) func() bool {
		return func() bool { _, _, acked := tr.counts(); return acked >= m }
	}

	a := runStream(t, consumer(0))
	waitFor(t, "first consumer progress", ackedAtLeast(n/5))
	b := runStream(t, consumer(1))
	close(bStarted)
	waitFor(t, "second consumer to get records", func() bool { return perConsumer[1].Load() > 0 })
	if err := a.StopWithin(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	c := runStream(t, consumer(2))
	close(cStarted)
	<-produced
	var end map[int32]int64
	waitFor(t, "everything committed", func() bool {
		if u, _, _ := tr.counts(); u < n {
			return false
		}
		committed, e, err := committedAndEnd(adm, group, topic)
		end = e
		return err == nil && allCommitted(committed, e)
	})
	// The group really ran the protocol asked for: only a KIP-848 group answers
	// ConsumerGroupDescribe (before the members leave it, while the group exists).
	described, derr := adm.DescribeConsumerGroups(context.Background(), group)
	if derr == nil {
		derr = described.Error()
	}
	if (proto == groupConsumer) != (derr == nil) {
		t.Errorf("group protocol %s, but ConsumerGroupDescribe says: %v", proto, derr)
	}
	for _, st := range []*service.Stream{b, c} {
		if err := st.StopWithin(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	unique, deliveries, _ := tr.counts()
	if lost := tr.lostAgainst(end); lost != 0 || unique != n {
		t.Fatalf("lost %d, unique %d of %d", lost, unique, n)
	}
	t.Logf("%s protocol: records %d, lost 0, duplicates %d, per consumer %d/%d/%d", proto,
		n, deliveries-unique, perConsumer[0].Load(), perConsumer[1].Load(), perConsumer[2].Load())
}

// skipWithoutKIP848 skips a test of the consumer group protocol on brokers that do not serve it
// (the Kafka 3.9 cluster of CI); kfake and Kafka 4 do.
func skipWithoutKIP848(t *testing.T, adm *kadm.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	why, err := kip848Missing(ctx, adm)
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		t.Skipf("no KIP-848: %s", why)
	}
}

// TestInputGroupProtocolConsumerRefusedWithoutKIP848: against a broker without KIP-848 (kfake
// limited to Kafka 3.9's API versions), group_protocol consumer is refused at connect with an
// error that names the field, the broker and the fix, instead of kgo's silent fallback to an
// eager classic group.
func TestInputGroupProtocolConsumerRefusedWithoutKIP848(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.MaxVersions(kversion.V3_9_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	yaml := func(proto string) string {
		return fmt.Sprintf("{ seed_brokers: [ %q ], topics: [ t ], consumer_group: g, group_protocol: %s }", c.ListenAddrs()[0], proto)
	}
	in := inputForConnTest(t, yaml(groupConsumer), io.Discard)
	defer in.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = in.Connect(ctx)
	if err == nil || !strings.Contains(err.Error(), `"group_protocol" is "consumer", which needs Kafka 4.0 or later`) ||
		!strings.Contains(err.Error(), "broker 0") || !strings.Contains(err.Error(), `set it to "classic"`) {
		t.Fatalf("Connect: %v", err)
	}
	// The same configuration with the classic protocol connects.
	classic := inputForConnTest(t, yaml(groupClassic), io.Discard)
	defer classic.Close(context.Background())
	if err := classic.Connect(ctx); err != nil {
		t.Fatalf("classic: %v", err)
	}
}

// TestInputLostSessionCountsWhatIsProcessedAgain: commits fail (the coordinator refuses them) while
// every record is processed, then the coordinator forgets the member (a heartbeat answered
// UNKNOWN_MEMBER_ID, as after a coordinator failover that lost the membership). The member rejoins
// and processes again everything after the last commit: nothing is lost, and the duplicates are
// exactly what the input reported in its log and in kafka_reprocessed_records_total. In-process
// kfake, for its fault injection.
func TestInputLostSessionCountsWhatIsProcessedAgain(t *testing.T) {
	const n = 40
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()[0]
	adm := adminClient(t, brokers)
	topic := createTopic(t, adm, 1)
	group := uniqueName(t, "group")
	produce(t, brokers, topic, 0, n)

	commitsFail := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group, Count: -1})
	tr := newTracker()
	metrics := &testMetrics{}
	var logs syncBuffer
	st := runStream(t, streamOpts{
		input:   inputConf(brokers, topic, group, 8),
		metrics: metrics,
		logs:    &logs,
		consume: func(_ context.Context, msg *service.Message) error {
			id := recordID(msg)
			tr.see(id)
			tr.ack(id)
			return nil
		},
	})
	defer func() { _ = st.StopWithin(10 * time.Second) }()
	waitFor(t, "every record processed once", func() bool { _, d, _ := tr.counts(); return d == n })
	if v, _ := metrics.get("kafka_commit_errors_total"); v < 1 {
		t.Fatalf("kafka_commit_errors_total = %d while the coordinator refuses commits", v)
	}

	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: group, TopLevel: true, Err: kerr.UnknownMemberID})
	waitFor(t, "the lost partitions reported", func() bool { v, _ := metrics.get("kafka_reprocessed_records_total"); return v > 0 })
	commitsFail.Remove()
	waitFor(t, "everything processed again and committed", func() bool {
		committed, end, err := committedAndEnd(adm, group, topic)
		_, d, _ := tr.counts()
		return err == nil && d == 2*n && allCommitted(committed, end)
	})

	unique, deliveries, _ := tr.counts()
	reported, _ := metrics.get("kafka_reprocessed_records_total")
	if unique != n || deliveries-unique != n || reported != n {
		t.Errorf("records %d: unique %d, processed again %d, reported %d", n, unique, deliveries-unique, reported)
	}
	if want := fmt.Sprintf("to process again: %d finished, 0 in flight", n); !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// TestInputLargeRecordBeyondFetchLimits: a 30 MB record (a 500,000-row request is about 26 MB
// gzip+base64) is consumed intact even with 1 MiB fetch limits, because brokers return a
// batch larger than the limits whole (KIP-74) and the client accepts responses up to 256 MiB.
func TestInputLargeRecordBeyondFetchLimits(t *testing.T) {
	const size = 30_000_000
	brokers := testBrokers(t)
	adm := adminClient(t, brokers)
	topic := uniqueName(t, "topic")
	maxMsg := "41943040" // 40 MiB: the topic must accept the record in the first place
	resp, err := adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &maxMsg}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(big) // incompressible
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchMaxBytes(40<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: big}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("small")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	group := uniqueName(t, "group")
	var mu sync.Mutex
	var sizes []int
	var intact bool
	st := runStream(t, streamOpts{
		input: inputConf(brokers, topic, group, 4) + `
  fetch_max_bytes: 1MiB
  fetch_max_partition_bytes: 1MiB
`,
		consume: func(_ context.Context, msg *service.Message) error {
			b, err := msg.AsBytes()
			if err != nil {
				return err
			}
			mu.Lock()
			sizes = append(sizes, len(b))
			if len(b) == size {
				intact = bytes.Equal(b, big)
			}
			mu.Unlock()
			return nil
		},
	})
	waitFor(t, "both records committed", func() bool {
		committed, end, err := committedAndEnd(adm, group, topic)
		return err == nil && allCommitted(committed, end) && end[0] == 2
	})
	if err := st.StopWithin(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != size || !intact || sizes[1] != 5 {
		t.Fatalf("received sizes %v, intact %v", sizes, intact)
	}
}

package devbroker

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests start the embedded broker themselves, so they run on it
// whatever KAFKA_BOOTSTRAP_SERVERS says; testing_test.go holds the ones that
// follow that variable.

// largeRecordBytes is about the size of a 500k-row request after gzip and
// base64, with headroom.
const largeRecordBytes = 40 << 20

// waitBound bounds waits for the broker in tests. It is a guard against a
// hang, not a speed assertion: on success nothing waits this long.
const waitBound = 60 * time.Second

func startTest(t *testing.T, opts Options) *Broker {
	t.Helper()
	b, err := Start(opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func adminFor(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func ctxBound(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n incompressible bytes, so that kgo's default
// compression cannot shrink a large record under a limit.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestStartDefaultsOnPortZero(t *testing.T) {
	b := startTest(t, Options{Addr: "127.0.0.1:0"})

	host, port, err := net.SplitHostPort(b.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.NotEqual(t, "0", port, "Addr must report the port bound, not the one asked")
	assert.Equal(t, ContractTopics(), b.Topics())
	assert.Equal(t, DefaultPartitions, b.Partitions())
	assert.Equal(t, DefaultMaxMessageBytes, b.MaxMessageBytes())
	require.NotNil(t, b.Cluster())
	assert.Equal(t, []string{b.Addr()}, b.Cluster().ListenAddrs())

	adm := adminFor(t, b.Addr())
	ctx := ctxBound(t)

	// Metadata must advertise the address we listen on, or clients that
	// bootstrap fine would then dial somewhere else.
	brokers, err := adm.ListBrokers(ctx)
	require.NoError(t, err)
	require.Len(t, brokers, 1)
	assert.Equal(t, b.Addr(), net.JoinHostPort(brokers[0].Host, strconv.Itoa(int(brokers[0].Port))))

	details, err := adm.ListTopics(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, ContractTopics(), details.Names())
	for _, name := range ContractTopics() {
		assert.Len(t, details[name].Partitions, DefaultPartitions, name)
	}

	want := strconv.Itoa(int(DefaultMaxMessageBytes))
	rcs, err := adm.DescribeTopicConfigs(ctx, ContractTopics()...)
	require.NoError(t, err)
	for _, name := range ContractTopics() {
		rc, err := rcs.On(name, nil)
		require.NoError(t, err)
		v := configValue(t, rc, "max.message.bytes")
		assert.Equal(t, want, v, "topic %s max.message.bytes", name)
	}
	brc, err := adm.DescribeBrokerConfigs(ctx)
	require.NoError(t, err)
	require.Len(t, brc, 1)
	assert.Equal(t, want, configValue(t, brc[0], "message.max.bytes"))

	b.Close()
	b.Close() // twice is harmless
	_, err = net.DialTimeout("tcp", b.Addr(), 5*time.Second)
	assert.Error(t, err, "nothing may listen on %s after Close", b.Addr())
}

func configValue(t *testing.T, rc kadm.ResourceConfig, key string) string {
	t.Helper()
	require.NoError(t, rc.Err)
	for _, c := range rc.Configs {
		if c.Key == key {
			require.NotNil(t, c.Value, key)
			return *c.Value
		}
	}
	t.Fatalf("%s has no config %q", rc.Name, key)
	return ""
}

// A 40 MB record (a 500k-row request is 25-35 MB encoded) goes in and comes
// back byte for byte over TCP, with the client limits of ClientOpts; kgo's
// defaults refuse it before it leaves the client.
func TestStartLargeRecordRoundTrip(t *testing.T) {
	b := startTest(t, Options{Addr: "127.0.0.1:0"})
	ctx := ctxBound(t)
	value := randomBytes(t, largeRecordBytes)

	plain, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	require.NoError(t, err)
	defer plain.Close()
	err = plain.ProduceSync(ctx, &kgo.Record{Topic: DefaultInputTopic, Value: value}).FirstErr()
	require.ErrorIs(t, err, kerr.MessageTooLarge, "kgo's default 1 MB batch limit should refuse 40 MB")

	prod, err := kgo.NewClient(append(ClientOpts(b.MaxMessageBytes()), kgo.SeedBrokers(b.Addr()))...)
	require.NoError(t, err)
	defer prod.Close()
	rec := &kgo.Record{Topic: DefaultInputTopic, Key: []byte("org-1"), Value: value,
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	require.NoError(t, prod.ProduceSync(ctx, rec).FirstErr())

	cons, err := kgo.NewClient(append(ClientOpts(b.MaxMessageBytes()),
		kgo.SeedBrokers(b.Addr()),
		kgo.ConsumeTopics(DefaultInputTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	require.NoError(t, err)
	defer cons.Close()
	var got []*kgo.Record
	for len(got) == 0 {
		fs := cons.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "no record fetched")
		fs.EachError(func(_ string, _ int32, err error) { require.NoError(t, err) })
		got = append(got, fs.Records()...)
	}
	require.Len(t, got, 1)
	assert.Equal(t, "org-1", string(got[0].Key))
	assert.Equal(t, rec.Headers, got[0].Headers)
	assert.True(t, bytes.Equal(value, got[0].Value), "40 MB value differs after the round trip")
}

// The size limit is the broker's, not only a client setting: a batch over a
// topic's max.message.bytes is refused by the broker with MESSAGE_TOO_LARGE.
func TestStartMaxMessageBytesEnforced(t *testing.T) {
	const limit = 1 << 20
	b := startTest(t, Options{Addr: "127.0.0.1:0", Topics: []string{"small"}, Partitions: 1, MaxMessageBytes: limit})
	ctx := ctxBound(t)

	// The client allows far more than the broker, so the broker decides.
	cl, err := kgo.NewClient(append(ClientOpts(DefaultMaxMessageBytes), kgo.SeedBrokers(b.Addr()))...)
	require.NoError(t, err)
	defer cl.Close()

	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: randomBytes(t, limit/2)}).FirstErr())
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: "small", Value: randomBytes(t, 2*limit)}).FirstErr()
	require.ErrorIs(t, err, kerr.MessageTooLarge)
}

func TestStartOptions(t *testing.T) {
	ctx := ctxBound(t)
	for _, auto := range []bool{false, true} {
		t.Run("auto_create="+strconv.FormatBool(auto), func(t *testing.T) {
			b := startTest(t, Options{Addr: "127.0.0.1:0", Partitions: 2, Topics: []string{"in", "out"}, AutoCreateTopics: auto})
			adm := adminFor(t, b.Addr())

			details, err := adm.ListTopics(ctx)
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{"in", "out"}, details.Names())
			assert.Len(t, details["in"].Partitions, 2)

			// A metadata request that asks to auto-create, as producers
			// such as kcat send.
			cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
			require.NoError(t, err)
			defer cl.Close()
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr("fresh")
			req.Topics = append(req.Topics, rt)
			req.AllowAutoTopicCreation = true
			_, err = req.RequestWith(ctx, cl)
			require.NoError(t, err)

			details, err = adm.ListTopics(ctx, "fresh")
			require.NoError(t, err)
			if auto {
				require.NoError(t, details["fresh"].Err)
				assert.Len(t, details["fresh"].Partitions, 2, "auto-created topics get Options.Partitions")
			} else {
				assert.ErrorIs(t, details["fresh"].Err, kerr.UnknownTopicOrPartition)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	for name, opts := range map[string]Options{
		"negative partitions": {Addr: "127.0.0.1:0", Partitions: -1},
		"negative size":       {Addr: "127.0.0.1:0", MaxMessageBytes: -5},
		"no port":             {Addr: "127.0.0.1"},
		"port in use":         {Addr: busy.Addr().String()},
		"bad topic name":      {Addr: "127.0.0.1:0", Topics: []string{"has space"}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Start(opts)
			if b != nil {
				b.Close()
			}
			assert.Error(t, err)
			assert.Nil(t, b)
		})
	}
}

// The cluster is reachable for fault injection: a produce fault is retried by
// the client (nothing lost, nothing doubled), and an OffsetCommit fault
// surfaces as that commit's error.
func TestStartFaultInjection(t *testing.T) {
	b := startTest(t, Options{Addr: "127.0.0.1:0", Partitions: 1})
	ctx := ctxBound(t)

	h := b.Cluster().Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: DefaultInputTopic,
		Err:   kerr.NotLeaderForPartition,
		Count: 2,
	})
	// NOT_LEADER makes kgo refresh metadata before retrying, at most once
	// per MetadataMinAge (5 s by default); lowered so the test is quick.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MetadataMinAge(10*time.Millisecond))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: DefaultInputTopic, Value: []byte("x")}).FirstErr())
	assert.Equal(t, 2, h.Hits())

	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, DefaultInputTopic)
	require.NoError(t, err)
	end, ok := ends.Lookup(DefaultInputTopic, 0)
	require.True(t, ok)
	assert.Equal(t, int64(1), end.Offset, "the faulted attempts must not have been appended")

	b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.UnknownServerError})
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: DefaultInputTopic, Partition: 0, At: 1, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(ctx, "faulty", offs)
	if err == nil {
		err = resp.Error()
	}
	require.ErrorIs(t, err, kerr.UnknownServerError)
	resp, err = adm.CommitOffsets(ctx, "faulty", offs)
	require.NoError(t, err)
	require.NoError(t, resp.Error(), "the fault had Count 1")
}

// With DataDir, topics, records and commits survive a restart on the same
// directory (and Start does not trip over the topics it finds there).
func TestStartDataDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxBound(t)

	b, err := Start(Options{Addr: "127.0.0.1:0", DataDir: dir, Partitions: 1})
	require.NoError(t, err)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	require.NoError(t, err)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: DefaultOutputTopic, Value: []byte("kept")}).FirstErr())
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: DefaultOutputTopic, Partition: 0, At: 1, LeaderEpoch: -1})
	_, err = kadm.NewClient(cl).CommitOffsets(ctx, "g", offs)
	require.NoError(t, err)
	cl.Close()
	b.Close()

	b = startTest(t, Options{Addr: "127.0.0.1:0", DataDir: dir, Partitions: 1})
	adm := adminFor(t, b.Addr())
	details, err := adm.ListTopics(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, ContractTopics(), details.Names())
	ends, err := adm.ListEndOffsets(ctx, DefaultOutputTopic)
	require.NoError(t, err)
	end, _ := ends.Lookup(DefaultOutputTopic, 0)
	assert.Equal(t, int64(1), end.Offset)
	fetched, err := adm.FetchOffsets(ctx, "g")
	require.NoError(t, err)
	got, ok := fetched.Lookup(DefaultOutputTopic, 0)
	require.True(t, ok)
	assert.Equal(t, int64(1), got.At)
}

type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

func TestAdvertiseUnspecifiedHost(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:9092":   "127.0.0.1:9092",
		"[::]:9092":      "127.0.0.1:9092",
		"127.0.0.1:9092": "127.0.0.1:9092",
		"10.1.2.3:9092":  "10.1.2.3:9092",
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		require.NoError(t, err)
		got := advertise(fakeListener{addr: a}).Addr().String()
		assert.Equal(t, want, got, in)
	}
}

func TestTopicsFromEnv(t *testing.T) {
	t.Setenv(EnvInputTopic, "")
	t.Setenv(EnvOutputTopic, "")
	t.Setenv(EnvDLQTopic, "")
	assert.Equal(t, ContractTopics(), TopicsFromEnv())

	t.Setenv(EnvInputTopic, "req")
	t.Setenv(EnvDLQTopic, "dead")
	assert.Equal(t, []string{"req", DefaultOutputTopic, "dead"}, TopicsFromEnv())
}

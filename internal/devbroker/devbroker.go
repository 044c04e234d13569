// Package devbroker runs an embedded Kafka-protocol broker (franz-go's kfake)
// for development, the demo and the test suites, so that none of them needs
// anything installed.
//
// Start gives a single-node cluster listening on a TCP address, with the
// contract's topics created and the message size limit raised for
// 500k-row requests. Command wraps it as `rollup dev-broker`. The
// TestBroker helpers (testing.go) give tests a broker: this embedded one,
// or the real one named by KAFKA_BOOTSTRAP_SERVERS.
package devbroker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults of Options and of the contract's topic variables.
const (
	DefaultAddr       = "127.0.0.1:9092"
	DefaultPartitions = 3

	// DefaultMaxMessageBytes is the largest record batch the broker accepts
	// (Kafka's message.max.bytes / max.message.bytes), 100 MiB.
	//
	// Why this size: a 500k-row request is about 165 MB of JSON, which is
	// 25-35 MB after gzip and base64 (the seed's encoding), and a request
	// sent gzip-only or as plain zstd is smaller still. 100 MiB leaves about
	// 3x headroom over the largest request the contract asks us to carry,
	// and it is exactly the default request/response size ceiling of both
	// Kafka (socket.request.max.bytes) and franz-go (BrokerMaxWriteBytes,
	// BrokerMaxReadBytes), so no client or broker left at its defaults can
	// move a larger record anyway. Kafka's own default (about 1 MB) would
	// refuse every request above roughly 20k rows.
	DefaultMaxMessageBytes int32 = 100 << 20

	DefaultInputTopic  = "Scenario-Execute"
	DefaultOutputTopic = "Scenario-Execute-Response"
	DefaultDLQTopic    = "Scenario-Execute-DLQ"

	EnvBootstrapServers = "KAFKA_BOOTSTRAP_SERVERS"
	EnvInputTopic       = "INPUT_KAFKA_TOPIC"
	EnvOutputTopic      = "OUTPUT_KAFKA_TOPIC"
	EnvDLQTopic         = "DLQ_KAFKA_TOPIC"
)

// ContractTopics returns the contract's default topic names: input,
// output (responses) and dead letters.
func ContractTopics() []string {
	return []string{DefaultInputTopic, DefaultOutputTopic, DefaultDLQTopic}
}

// TopicsFromEnv returns the input, output and DLQ topic names from
// INPUT_KAFKA_TOPIC, OUTPUT_KAFKA_TOPIC and DLQ_KAFKA_TOPIC, each falling back
// to the contract's default when unset or empty.
func TopicsFromEnv() []string {
	get := func(env, def string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	return []string{
		get(EnvInputTopic, DefaultInputTopic),
		get(EnvOutputTopic, DefaultOutputTopic),
		get(EnvDLQTopic, DefaultDLQTopic),
	}
}

// Options configures Start. The zero value gives the contract's dev broker on
// 127.0.0.1:9092.
type Options struct {
	// Addr is the host:port to listen on, default DefaultAddr. Port 0 picks
	// any free port; Broker.Addr reports the one bound. The broker
	// advertises this address in its metadata, so clients must be able to
	// reach it as written (an unspecified host such as ":9092" or
	// "0.0.0.0:9092" listens everywhere but is advertised as 127.0.0.1).
	Addr string

	// Partitions is the partition count of the created topics and of topics
	// auto-created or created with the broker's default count, default
	// DefaultPartitions.
	Partitions int

	// Topics to create, default ContractTopics(). Environment overrides of
	// the names are the caller's business (see TopicsFromEnv); Start reads
	// no environment.
	Topics []string

	// MaxMessageBytes is the broker's message.max.bytes and each created
	// topic's max.message.bytes, default DefaultMaxMessageBytes.
	MaxMessageBytes int32

	// AutoCreateTopics lets a metadata request that asks for it create a
	// missing topic (Kafka's auto.create.topics.enable, on by default in
	// Kafka). Off unless set: tests should fail on a misspelt topic.
	AutoCreateTopics bool

	// DataDir, if set, persists the cluster's state there and reloads it on
	// the next Start with the same directory. Empty keeps it in memory.
	DataDir string

	// Logger receives kfake's logs; nil discards them.
	Logger kfake.Logger

	// BrokerConfigs are more broker configs (kfake.BrokerConfigs), such as
	// log.cleaner.backoff.ms, how often topics with retention.ms are trimmed.
	BrokerConfigs map[string]string

	// ClusterOpts are more kfake options (SASL users, ACLs), for tests.
	ClusterOpts []kfake.Opt
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if len(o.Topics) == 0 {
		o.Topics = ContractTopics()
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return o
}

// Broker is a running embedded single-node cluster.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	opts    Options
}

// Start runs a kfake cluster of one broker listening on opts.Addr, with
// opts.Topics created (opts.Partitions each) and the message size limit set
// to opts.MaxMessageBytes. Consumer groups (classic and KIP-848) and offset
// commits work as on Kafka. Close it when done.
func Start(opts Options) (*Broker, error) {
	opts = opts.withDefaults()
	return start(opts, opts.Topics)
}

// start is Start without the topic default, so a test broker can start
// with no topics at all.
func start(opts Options, topics []string) (*Broker, error) {
	if opts.Partitions < 1 {
		return nil, fmt.Errorf("partitions must be at least 1, got %d", opts.Partitions)
	}
	if opts.MaxMessageBytes < 1 {
		return nil, fmt.Errorf("max message bytes must be positive, got %d", opts.MaxMessageBytes)
	}
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("address %q: %w", opts.Addr, err)
	}
	for _, t := range topics {
		if err := validTopicName(t); err != nil {
			return nil, err
		}
	}

	// kfake listens on 127.0.0.1 only (with Ports choosing the port); its
	// ListenFn hook lets us bind the host asked for as well. We listen
	// here, before the cluster exists, so a busy port is our error and the
	// bound address is known without asking the cluster.
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	ln = advertise(ln)
	used := false
	listen := func(string, string) (net.Listener, error) {
		if used {
			return nil, errors.New("devbroker: one listener per cluster")
		}
		used = true
		return ln, nil
	}

	maxBytes := strconv.Itoa(int(opts.MaxMessageBytes))
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(listen),
		kfake.ClusterID("rollup-dev"),
		kfake.DefaultNumPartitions(opts.Partitions),
		// kfake refuses a produced batch larger than the topic's
		// max.message.bytes, falling back to the broker's
		// message.max.bytes, falling back to Kafka's default of 1048588.
		// The broker value covers topics created later (by clients,
		// auto-creation or kadm without configs); the topic value below is
		// what DescribeConfigs shows for our own topics. Fetch needs
		// nothing on the broker: kfake, like Kafka (KIP-74), puts the first
		// batch of a response in whole however small the client's fetch
		// limits, and its fetch.max.bytes config is reported, never
		// enforced. The client side needs raised limits: ClientOpts.
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": maxBytes}),
	}
	if len(opts.BrokerConfigs) > 0 {
		kopts = append(kopts, kfake.BrokerConfigs(opts.BrokerConfigs))
	}
	if opts.AutoCreateTopics {
		kopts = append(kopts, kfake.AllowAutoTopicCreation())
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	if opts.Logger != nil {
		kopts = append(kopts, kfake.WithLogger(opts.Logger))
	}

	kopts = append(kopts, opts.ClusterOpts...)
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	b := &Broker{cluster: c, addr: ln.Addr().String(), opts: opts}
	b.opts.Topics = append([]string(nil), topics...)

	for _, t := range topics {
		err := c.CreateTopic(t, int32(opts.Partitions), map[string]string{"max.message.bytes": maxBytes})
		// A topic reloaded from DataDir keeps its partitions and configs.
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			c.Close()
			return nil, fmt.Errorf("create topic %q: %w", t, err)
		}
	}
	return b, nil
}

// Addr returns the address the broker listens on and advertises, with the
// real port when port 0 was asked for.
func (b *Broker) Addr() string { return b.addr }

// Topics returns the topics Start created.
func (b *Broker) Topics() []string { return append([]string(nil), b.opts.Topics...) }

// Partitions returns the partition count of the created topics.
func (b *Broker) Partitions() int { return b.opts.Partitions }

// MaxMessageBytes returns the broker's message size limit.
func (b *Broker) MaxMessageBytes() int32 { return b.opts.MaxMessageBytes }

// Cluster returns the kfake cluster, for fault injection (Fault, ControlKey)
// and inspection (GroupInfo, PartitionInfo) in tests.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker, closing its listener and client connections. With
// DataDir set it saves state first. Closing twice is harmless.
func (b *Broker) Close() { b.cluster.Close() }

// ClientOpts returns the kgo options a client needs to produce and fetch
// records of up to maxMessageBytes: franz-go defaults to 1 MB batches, 1 MiB
// per partition per fetch and 100 MiB per request or response, each of which
// would stop a large request somewhere.
func ClientOpts(maxMessageBytes int32) []kgo.Opt {
	// Request and response framing around one full batch: headers, topic
	// and partition entries. 1 MiB is far more than they take.
	const slack = 1 << 20
	return []kgo.Opt{
		kgo.ProducerBatchMaxBytes(maxMessageBytes),
		kgo.BrokerMaxWriteBytes(maxMessageBytes + slack),
		kgo.FetchMaxBytes(maxMessageBytes),
		kgo.FetchMaxPartitionBytes(maxMessageBytes),
		kgo.BrokerMaxReadBytes(maxMessageBytes + slack),
	}
}

// validTopicName applies Kafka's topic name rules, which kfake does not
// check: a name the dev broker accepted and a real cluster refused would only
// fail in production.
func validTopicName(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("topic name %q: must be 1 to 249 characters and not \".\" or \"..\"", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q: only ASCII letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// advertise makes a listener bound to an unspecified host (":9092",
// "0.0.0.0:9092", "[::]:9092") report 127.0.0.1 as its address. kfake
// advertises the listener's address in metadata, and clients told to dial
// "[::]" or "0.0.0.0" fail outside Linux.
func advertise(ln net.Listener) net.Listener {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return ln
	}
	return advertisedListener{ln, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcp.Port}}
}

type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

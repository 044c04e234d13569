package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/test/checker"
)

// cluster is the broker the bench talks to: `rollup dev-broker` as a process of its own, or the
// one named by KAFKA_BOOTSTRAP_SERVERS.
type cluster struct {
	seeds     []string
	broker    *proc // nil on an external broker
	adm       *kadm.Client
	cl        *kgo.Client
	retention string // retention.ms of the topics newTopics makes ("": the broker's default)
}

func clientOpts(seeds []string, extra ...kgo.Opt) []kgo.Opt {
	opts := append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, devbroker.ClientOpts(devbroker.DefaultMaxMessageBytes)...)
	return append(opts, extra...)
}

func startCluster(ctx context.Context, b *bench) (*cluster, error) {
	c := &cluster{}
	if s := os.Getenv("KAFKA_BOOTSTRAP_SERVERS"); s != "" {
		c.seeds = strings.Split(s, ",")
	} else {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		log, err := os.Create(filepath.Join(b.work, "dev-broker.log"))
		if err != nil {
			return nil, err
		}
		// The trimming interval only matters for topics with retention.ms (the soak's).
		if c.broker, err = startProc("dev-broker", b.repo, b.bin, []string{"dev-broker", "--addr", addr,
			"--partitions", strconv.Itoa(partitions), "--log-level", "warn",
			"--broker-config", "log.cleaner.backoff.ms=5000"}, nil, nil, nil, log); err != nil {
			return nil, err
		}
		c.seeds = []string{addr}
	}
	cl, err := kgo.NewClient(clientOpts(c.seeds, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, err
	}
	c.cl, c.adm = cl, kadm.NewClient(cl)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = cl.Ping(pctx)
	for err != nil && sleep(pctx, 50*time.Millisecond) == nil { // the dev broker may not listen yet
		err = cl.Ping(pctx)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("broker %v (dev-broker log in %s): %w", c.seeds, b.work, err)
	}
	return c, nil
}

func (c *cluster) close() {
	c.cl.Close()
	if c.broker != nil {
		c.broker.stop(5 * time.Second)
	}
}

// brokerTicks is the dev broker's CPU so far (0 on an external broker).
func (c *cluster) brokerTicks() int64 {
	if c.broker == nil {
		return 0
	}
	return c.broker.cpuTicks()
}

// uniq is base plus a random suffix, so topics and groups never collide across runs.
func uniq(base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

// topics is one run's set: input (partitions as asked), responses and dead letters (one each).
type topics struct{ in, out, dlq string }

func (c *cluster) newTopics(ctx context.Context, base string, partitions int) (topics, error) {
	t := topics{in: uniq(base + "-in"), out: uniq(base + "-out"), dlq: uniq(base + "-dlq")}
	maxMsg := strconv.Itoa(int(devbroker.DefaultMaxMessageBytes))
	for _, name := range []string{t.in, t.out, t.dlq} {
		p := int32(1)
		if name == t.in {
			p = int32(partitions)
		}
		cfg := map[string]*string{"max.message.bytes": &maxMsg}
		if c.retention != "" {
			cfg["retention.ms"] = &c.retention
		}
		resp, err := c.adm.CreateTopic(ctx, p, -1, cfg, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return t, fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	for { // a real broker may answer before every partition has a leader
		d, err := c.adm.ListTopics(ctx, t.in, t.out, t.dlq)
		ok := err == nil && d.Error() == nil && len(d) == 3
		for _, td := range d {
			for _, p := range td.Partitions {
				ok = ok && p.Err == nil && p.Leader >= 0
			}
		}
		if ok {
			return t, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return t, fmt.Errorf("topics %v not ready: %w", t, err)
		}
	}
}

// drop deletes a run's topics: the embedded broker keeps every record in memory.
func (c *cluster) drop(t topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.adm.DeleteTopics(ctx, t.in, t.out, t.dlq)
}

// waitGroupStable polls until the group is Stable with members members and every partition of
// topic assigned.
func (c *cluster) waitGroupStable(ctx context.Context, group, topic string, members, partitions int) error {
	for {
		gs, err := c.adm.DescribeGroups(ctx, group)
		if g, ok := gs[group]; err == nil && ok && g.Err == nil && g.State == "Stable" && len(g.Members) == members &&
			len(g.AssignedPartitions()[topic]) == partitions {
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("group %s not stable with %d members: %w", group, members, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// produce writes the requests round-robin over the partitions and returns each record's produce
// timestamp. Each record goes in a batch of its own, uncompressed, as a producer with Kafka's
// default 16 KiB batch.size sends 1 MiB records. This matters for memory: a consumer keeps a
// whole fetched batch alive while any of its records is.
func (c *cluster) produce(ctx context.Context, topic string, partitions int, reqs []request) (map[checker.RecordID]time.Time, error) {
	largest := 0
	recs := make([]*kgo.Record, len(reqs))
	for i, r := range reqs {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i % partitions), Key: []byte(r.org), Value: r.wire}
		largest = max(largest, len(r.wire)+len(r.org))
	}
	cl, err := kgo.NewClient(clientOpts(c.seeds, kgo.ProducerBatchMaxBytes(int32(max(largest+64<<10, 1<<20))),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	sent := make(map[checker.RecordID]time.Time, len(recs))
	for _, r := range res {
		sent[checker.RecordID{Topic: topic, Partition: r.Record.Partition, Offset: r.Record.Offset}] = r.Record.Timestamp
	}
	return sent, nil
}

// outcome is one response or dead letter as the bench consumer saw it.
type outcome struct {
	src      checker.RecordID // the input it answers, from its source_* headers
	appended time.Time        // the record's timestamp: set by the rollup output when it produced it
	seen     time.Time        // when the collector (a read_committed reader) received it
	dead     bool
	err      string
}

// collector reads a run's response and DLQ topics from their start, without a group.
type collector struct {
	cl     *kgo.Client
	dlq    string
	seen   map[checker.RecordID]bool
	dups   int
	onNew  func(n int) // called with the count of distinct outcomes after each new one
	result []outcome
}

func newCollector(c *cluster, t topics, onNew func(n int)) (*collector, error) {
	cl, err := kgo.NewClient(clientOpts(c.seeds, kgo.ConsumeTopics(t.out, t.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond),
		// As a consumer of the responses would read them in exactly-once mode; the same for
		// at-least-once, whose records are not transactional.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	return &collector{cl: cl, dlq: t.dlq, seen: map[checker.RecordID]bool{}, onNew: onNew}, err
}

// waitFor polls until want distinct inputs have an outcome, or ctx ends.
func (k *collector) waitFor(ctx context.Context, want int) ([]outcome, error) {
	for len(k.seen) < want {
		fs := k.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return k.result, fmt.Errorf("%d of %d outcomes: %w", len(k.seen), want, ctx.Err())
		}
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			o := outcome{appended: r.Timestamp, seen: now, dead: r.Topic == k.dlq}
			header := func(key string) (string, bool) {
				i := slices.IndexFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == key })
				return string(r.Headers[max(i, 0)].Value), i >= 0
			}
			o.err, _ = header("error")
			var err error
			if o.src, err = checker.SourceFromHeaders(header); err != nil {
				o.src, o.err = checker.RecordID{Topic: r.Topic, Offset: r.Offset}, o.err+" (unattributable outcome: "+err.Error()+")"
			}
			if k.seen[o.src] {
				k.dups++
				return
			}
			k.seen[o.src] = true
			k.result = append(k.result, o)
			if k.onNew != nil {
				k.onNew(len(k.seen))
			}
		})
	}
	return k.result, nil
}

func (k *collector) close() { k.cl.Close() }

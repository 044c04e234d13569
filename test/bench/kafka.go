package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// cluster is the broker the bench talks to: the embedded one as a `rollup dev-broker` process,
// or the one named by KAFKA_BOOTSTRAP_SERVERS.
type cluster struct {
	seeds  []string
	broker *proc // nil on an external broker
	adm    *kadm.Client
	cl     *kgo.Client
}

func (c *cluster) external() bool { return c.broker == nil }

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
		logf, err := os.Create(filepath.Join(b.work, "dev-broker.log"))
		if err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(pr)
			once := sync.Once{}
			for sc.Scan() {
				fmt.Fprintln(logf, sc.Text())
				if strings.Contains(sc.Text(), "listening on") {
					once.Do(func() { close(ready) })
				}
			}
		}()
		p, err := startProc("dev-broker", b.repo, b.bin,
			[]string{"dev-broker", "--addr", addr, "--partitions", strconv.Itoa(b.partitions), "--log-level", "warn"},
			nil, nil, pw, pw)
		if err != nil {
			return nil, err
		}
		select {
		case <-ready:
		case <-p.done:
			return nil, fmt.Errorf("dev-broker exited: %v (log %s)", p.err, logf.Name())
		case <-time.After(30 * time.Second):
			p.stop(time.Second)
			return nil, fmt.Errorf("dev-broker did not start within 30s (log %s)", logf.Name())
		}
		c.broker = p
		c.seeds = []string{addr}
	}
	cl, err := kgo.NewClient(clientOpts(c.seeds, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	c.adm = kadm.NewClient(cl)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("broker %v: %w", c.seeds, err)
	}
	return c, nil
}

func (c *cluster) close() {
	c.cl.Close()
	if c.broker != nil {
		c.broker.stop(5 * time.Second)
	}
}

// uniq is base plus a random suffix, so topics and groups never collide across runs (or with
// what is already on a real broker).
func uniq(base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

// topics is one run's set: input, responses and dead letters.
type topics struct{ in, out, dlq string }

func (c *cluster) newTopics(ctx context.Context, base string, partitions int) (topics, error) {
	t := topics{in: uniq(base + "-in"), out: uniq(base + "-out"), dlq: uniq(base + "-dlq")}
	maxMsg := strconv.Itoa(int(devbroker.DefaultMaxMessageBytes))
	cfg := map[string]*string{"max.message.bytes": &maxMsg}
	for _, name := range []string{t.in, t.out, t.dlq} {
		p := int32(partitions)
		if name != t.in {
			p = 1
		}
		resp, err := c.adm.CreateTopic(ctx, p, -1, cfg, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return t, fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	// A real broker may answer before every partition has a leader.
	for {
		d, err := c.adm.ListTopics(ctx, t.in, t.out, t.dlq)
		if err == nil && d.Error() == nil && len(d) == 3 {
			ok := true
			for _, td := range d {
				for _, p := range td.Partitions {
					ok = ok && p.Err == nil && p.Leader >= 0
				}
			}
			if ok {
				return t, nil
			}
		}
		select {
		case <-ctx.Done():
			return t, fmt.Errorf("topics %v not ready: %w", t, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// drop deletes a run's topics: the embedded broker keeps every record in memory.
func (c *cluster) drop(t topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.adm.DeleteTopics(ctx, t.in, t.out, t.dlq)
}

// srcKey names an input record: responses and dead letters carry it in their headers.
type srcKey struct {
	part int32
	off  int64
}

// produce writes the payloads round-robin over the partitions, synchronously, and returns each
// record's produce timestamp by partition and offset.
//
// Each record goes in a batch of its own, uncompressed, as a producer whose batch.size is below
// the record size sends it (Kafka's default batch.size is 16 KiB; the seed's requests are 1 MiB).
// This matters for memory: a consumer keeps a whole fetched batch alive while any of its records
// is, so one 100 MiB batch of 100 requests would be held until the last of them is answered.
func (c *cluster) produce(ctx context.Context, topic string, partitions int, reqs []request) (map[srcKey]time.Time, error) {
	largest := 0
	recs := make([]*kgo.Record, len(reqs))
	for i, r := range reqs {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i % partitions), Key: []byte(r.org), Value: r.wire}
		largest = max(largest, len(r.wire)+len(r.org))
	}
	cl, err := kgo.NewClient(clientOpts(c.seeds,
		kgo.ProducerBatchMaxBytes(int32(max(largest+64<<10, 1<<20))),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	sent := make(map[srcKey]time.Time, len(recs))
	for _, r := range res {
		sent[srcKey{r.Record.Partition, r.Record.Offset}] = r.Record.Timestamp
	}
	return sent, nil
}

// produceOne writes one record and returns where it landed and its timestamp.
func (c *cluster) produceOne(ctx context.Context, topic string, part int32, r request) (srcKey, time.Time, error) {
	rec := &kgo.Record{Topic: topic, Partition: part, Key: []byte(r.org), Value: r.wire}
	if err := c.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return srcKey{}, time.Time{}, err
	}
	return srcKey{rec.Partition, rec.Offset}, rec.Timestamp, nil
}

// outcome is one response or dead letter as the bench consumer saw it.
type outcome struct {
	src      srcKey
	appended time.Time // the record's timestamp: set by the rollup output when it produced it
	received time.Time // when the bench consumer got it
	dead     bool
	err      string
}

// collector reads a run's response and DLQ topics from their start, without a group.
type collector struct {
	cl     *kgo.Client
	dlq    string
	seen   map[srcKey]bool
	dups   int
	onNew  func(n int, o outcome)
	result []outcome
}

func newCollector(c *cluster, t topics, onNew func(n int, o outcome)) (*collector, error) {
	cl, err := kgo.NewClient(clientOpts(c.seeds,
		kgo.ConsumeTopics(t.out, t.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	return &collector{cl: cl, dlq: t.dlq, seen: map[srcKey]bool{}, onNew: onNew}, nil
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
			o := outcome{appended: r.Timestamp, received: now, dead: r.Topic == k.dlq}
			var perr, oerr error = errors.New("no source_partition header"), errors.New("no source_offset header")
			for _, h := range r.Headers {
				switch h.Key {
				case "source_partition":
					var p int64
					p, perr = strconv.ParseInt(string(h.Value), 10, 32)
					o.src.part = int32(p)
				case "source_offset":
					o.src.off, oerr = strconv.ParseInt(string(h.Value), 10, 64)
				case "error":
					o.err = string(h.Value)
				}
			}
			if perr != nil || oerr != nil {
				o.err += fmt.Sprintf(" (unattributable outcome: %v)", errors.Join(perr, oerr))
				o.src = srcKey{-1, r.Offset}
			}
			if k.seen[o.src] {
				k.dups++
				return
			}
			k.seen[o.src] = true
			k.result = append(k.result, o)
			if k.onNew != nil {
				k.onNew(len(k.seen), o)
			}
		})
	}
	return k.result, nil
}

func (k *collector) close() { k.cl.Close() }

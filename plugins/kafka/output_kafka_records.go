package kafka

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Helpers of the kafka output (output_kafka.go): record headers, partitioners, codecs, sizes and
// the per-topic batch size limits.

const (
	outMinBatchBytes = 512 // kgo's smallest record batch limit
	// kgo caps one broker write at 1 GiB and a produce request needs room for its framing.
	outMaxBatchBytes = 1<<30 - 1<<20
)

// outHeaderFilter decides which metadata keys become record headers (field `metadata`).
type outHeaderFilter struct {
	includePrefixes []string
	includePatterns []*regexp.Regexp
	excludePrefixes []string
}

func outHeaderFilterFromConfig(conf *service.ParsedConfig) (*outHeaderFilter, error) {
	f := &outHeaderFilter{}
	var err error
	if f.includePrefixes, err = conf.FieldStringList(outFieldMetaIncludePrefix); err != nil {
		return nil, err
	}
	if f.excludePrefixes, err = conf.FieldStringList(outFieldMetaExcludePrefix); err != nil {
		return nil, err
	}
	patterns, err := conf.FieldStringList(outFieldMetaIncludePattern)
	if err != nil {
		return nil, err
	}
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", outFieldMetaIncludePattern, i, err)
		}
		f.includePatterns = append(f.includePatterns, re)
	}
	return f, nil
}

// match: no exclusion applies, and an include applies or none is configured.
func (f *outHeaderFilter) match(key string) bool {
	for _, p := range f.excludePrefixes {
		if strings.HasPrefix(key, p) {
			return false
		}
	}
	if len(f.includePrefixes) == 0 && len(f.includePatterns) == 0 {
		return true
	}
	for _, p := range f.includePrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	for _, re := range f.includePatterns {
		if re.MatchString(key) {
			return true
		}
	}
	return false
}

// headers returns the message's headers sorted by key (metadata has no order of its own; a fixed
// one makes records reproducible).
func (f *outHeaderFilter) headers(msg *service.Message) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	// MetaWalkMut, not MetaWalk: MetaWalk turns every value into a string first, and the pipelines
	// keep the whole original request as bytes in rollup_ metadata, which is excluded anyway.
	_ = msg.MetaWalkMut(func(k string, _ any) error {
		if f.match(k) {
			v, _ := msg.MetaGet(k)
			hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		return nil
	})
	slices.SortFunc(hs, func(a, b kgo.RecordHeader) int { return strings.Compare(a.Key, b.Key) })
	return hs
}

// crc32Hasher places keys as librdkafka's consistent partitioners do: crc32 (IEEE) of the key,
// unsigned, modulo the partition count. Written out rather than kgo.SaramaHasher, whose result
// differs on 32-bit platforms.
func crc32Hasher(key []byte, n int) int {
	return int(crc32.ChecksumIEEE(key) % uint32(n))
}

func outPartitionerByName(name string) (kgo.Partitioner, error) {
	switch name {
	case "crc32":
		return kgo.StickyKeyPartitioner(crc32Hasher), nil
	case "murmur2_hash":
		return kgo.StickyKeyPartitioner(nil), nil // nil: Kafka's murmur2, as the Java client
	case "round_robin":
		return kgo.RoundRobinPartitioner(), nil
	case "least_backup":
		return kgo.LeastBackupPartitioner(), nil
	case "manual":
		return kgo.ManualPartitioner(), nil
	}
	return nil, fmt.Errorf("unknown partitioner %q", name)
}

func outCodecByName(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q", name)
}

var outByteSizeRe = regexp.MustCompile(`^\s*(\d+)\s*([A-Za-z]*)\s*$`)

var outByteUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// outParseByteSize reads "1048576", "1MB" (10^6) or "1MiB" (2^20).
func outParseByteSize(s string) (int64, error) {
	m := outByteSizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or a number with B, KB, MB, GB, KiB, MiB or GiB)", s)
	}
	unit, ok := outByteUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (B, KB, MB, GB, KiB, MiB or GiB)", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<40)/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}

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
	if !grew {
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

// newRecord builds message i's record; an error is that message's failure.
func (o *kafkaOutput) newRecord(batch service.MessageBatch, i int) (*kgo.Record, error) {
	topic, err := batch.TryInterpolatedString(i, o.topic)
	if err != nil {
		return nil, fmt.Errorf("topic interpolation: %w", err)
	}
	if topic == "" {
		return nil, errors.New("topic interpolation gave an empty topic name")
	}
	value, err := batch[i].AsBytes()
	if err != nil {
		return nil, fmt.Errorf("message value: %w", err)
	}
	r := &kgo.Record{Topic: topic, Value: value, Timestamp: time.Now(), Headers: o.headers.headers(batch[i])}
	if o.key != nil {
		key, err := batch.TryInterpolatedBytes(i, o.key)
		if err != nil {
			return nil, fmt.Errorf("key interpolation: %w", err)
		}
		if len(key) > 0 {
			r.Key = key
		}
	}
	if o.part != nil {
		s, err := batch.TryInterpolatedString(i, o.part)
		if err != nil {
			return nil, fmt.Errorf("partition interpolation: %w", err)
		}
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("partition %q is not a partition number", s)
		}
		r.Partition = int32(p)
	}
	return r, nil
}

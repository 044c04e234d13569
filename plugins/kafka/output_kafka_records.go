package kafka

import (
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Helpers of the kafka output (output_kafka.go): records, their headers, partitioners and codecs.

const (
	outMinBatchBytes = 512 // kgo's smallest record batch limit
	// kgo caps one broker write at 1 GiB and a produce request needs room for its framing.
	outMaxBatchBytes = 1<<30 - 1<<20
	// outDefaultMaxBytes is max_message_bytes' default, 100MB.
	outDefaultMaxBytes = 100_000_000
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

package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// srcKey names one input record: the contract's source_topic, source_partition and source_offset.
type srcKey struct {
	topic     string
	partition int32
	offset    int64
}

func (k srcKey) String() string { return fmt.Sprintf("%s/%d@%d", k.topic, k.partition, k.offset) }

type topicPartition struct {
	topic     string
	partition int32
}

// header returns the value of the record's header key and whether it is there.
func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// headerMap returns the record's headers as a map, failing the test on a repeated key.
func headerMap(t testing.TB, r *kgo.Record) map[string]string {
	t.Helper()
	m := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		if _, dup := m[h.Key]; dup {
			t.Errorf("record %s/%d@%d has header %q twice", r.Topic, r.Partition, r.Offset, h.Key)
		}
		m[h.Key] = string(h.Value)
	}
	return m
}

// sourceOf reads the source_* headers of an outcome record.
func sourceOf(r *kgo.Record) (srcKey, error) {
	topic, ok1 := header(r, "source_topic")
	ps, ok2 := header(r, "source_partition")
	offs, ok3 := header(r, "source_offset")
	if !ok1 || !ok2 || !ok3 {
		return srcKey{}, fmt.Errorf("record %s/%d@%d lacks a source_topic, source_partition or source_offset header (headers: %v)",
			r.Topic, r.Partition, r.Offset, r.Headers)
	}
	p, err := strconv.ParseInt(ps, 10, 32)
	if err != nil {
		return srcKey{}, fmt.Errorf("record %s/%d@%d: source_partition %q: %w", r.Topic, r.Partition, r.Offset, ps, err)
	}
	o, err := strconv.ParseInt(offs, 10, 64)
	if err != nil {
		return srcKey{}, fmt.Errorf("record %s/%d@%d: source_offset %q: %w", r.Topic, r.Partition, r.Offset, offs, err)
	}
	return srcKey{topic, int32(p), o}, nil
}

func adminCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// offsetRange returns, per partition of topic, the first and the next offset (start, end).
func offsetRange(t testing.TB, b *devbroker.TestBroker, topic string) (start, end map[int32]int64) {
	t.Helper()
	ctx, cancel := adminCtx()
	defer cancel()
	starts, err := b.Admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatalf("list start offsets of %s: %v", topic, err)
	}
	ends, err := b.Admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	start, end = map[int32]int64{}, map[int32]int64{}
	for p, lo := range starts[topic] {
		start[p] = lo.Offset
	}
	for p, lo := range ends[topic] {
		end[p] = lo.Offset
	}
	return start, end
}

// inputKeys lists every record offset of topic as it stands now.
func inputKeys(t testing.TB, b *devbroker.TestBroker, topic string) []srcKey {
	t.Helper()
	start, end := offsetRange(t, b, topic)
	var keys []srcKey
	for p, e := range end {
		for o := start[p]; o < e; o++ {
			keys = append(keys, srcKey{topic, p, o})
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].partition != keys[j].partition {
			return keys[i].partition < keys[j].partition
		}
		return keys[i].offset < keys[j].offset
	})
	return keys
}

// committed returns the group's committed offset per partition of topic (absent: none yet).
func committed(t testing.TB, b *devbroker.TestBroker, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := adminCtx()
	defer cancel()
	resp, err := b.Admin.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{} // the group has not committed (or joined) yet
	}
	if err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	out := map[int32]int64{}
	for p, r := range resp[topic] {
		if r.Err != nil {
			t.Fatalf("fetch offsets of group %s, %s/%d: %v", group, topic, p, r.Err)
		}
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out
}

// waitAllCommitted waits until the group has committed the end of every partition of topic (as it
// stands when called): every input has been answered and acknowledged. progress, if not nil, runs
// at each poll (for example to check that a process is still alive).
func waitAllCommitted(t testing.TB, b *devbroker.TestBroker, group, topic string, progress func()) {
	t.Helper()
	_, end := offsetRange(t, b, topic)
	deadline := time.Now().Add(outcomeTimeout)
	for {
		got := committed(t, b, group, topic)
		done := true
		for p, e := range end {
			if e > 0 && got[p] < e {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s has not committed the end of %s within %v: committed %v, end %v", group, topic, outcomeTimeout, got, end)
		}
		if progress != nil {
			progress()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readAll reads every record of topics from their start up to their end offsets as they stand
// when called, without a consumer group.
func readAll(t testing.TB, b *devbroker.TestBroker, topics ...string) []*kgo.Record {
	t.Helper()
	want := map[string]map[int32]kgo.Offset{}
	remaining := map[topicPartition]int64{}
	for _, topic := range topics {
		start, end := offsetRange(t, b, topic)
		for p, e := range end {
			if e > start[p] {
				if want[topic] == nil {
					want[topic] = map[int32]kgo.Offset{}
				}
				want[topic][p] = kgo.NewOffset().At(start[p])
				remaining[topicPartition{topic, p}] = e
			}
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	// Transaction markers (exactly-once mode) take offsets too, and may be the last ones: keep
	// them so that reaching the end offset tells when a partition is read; they are skipped below.
	opts := append(b.ClientOptions(), kgo.ConsumePartitions(want), kgo.KeepControlRecords())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("reader client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	var recs []*kgo.Record
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %v: still missing %v after %v (got %d records)", topics, remaining, outcomeTimeout, len(recs))
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Logf("reading %s/%d: %v (retrying)", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			e, ok := remaining[tp]
			if !ok || r.Offset >= e {
				return
			}
			if !r.Attrs.IsControl() {
				recs = append(recs, r)
			}
			if r.Offset+1 >= e {
				delete(remaining, tp)
			}
		})
	}
	return recs
}

// outcomes indexes the response and dead-letter records by the input they answer.
type outcomes struct {
	responses map[srcKey][]*kgo.Record
	dead      map[srcKey][]*kgo.Record
}

func (o *outcomes) count(k srcKey) int { return len(o.responses[k]) + len(o.dead[k]) }

// collectOutcomes reads the response and DLQ topics of f as they stand now and indexes them (a
// topic that does not exist yet has no outcomes). An outcome without source headers, or naming
// another topic, fails the test.
func collectOutcomes(t testing.TB, f *fixture) *outcomes {
	t.Helper()
	o := &outcomes{responses: map[srcKey][]*kgo.Record{}, dead: map[srcKey][]*kgo.Record{}}
	ctx, cancel := adminCtx()
	defer cancel()
	details, err := f.b.Admin.ListTopics(ctx, f.out, f.dlq)
	if err != nil {
		t.Fatalf("list topics %s, %s: %v", f.out, f.dlq, err)
	}
	var topics []string
	for _, topic := range []string{f.out, f.dlq} {
		if td, ok := details[topic]; ok && td.Err == nil {
			topics = append(topics, topic)
		}
	}
	for _, r := range readAll(t, f.b, topics...) {
		k, err := sourceOf(r)
		if err != nil {
			t.Error(err)
			continue
		}
		if k.topic != f.in {
			t.Errorf("outcome %s/%d@%d names source topic %q, want %q", r.Topic, r.Partition, r.Offset, k.topic, f.in)
		}
		if r.Topic == f.dlq {
			o.dead[k] = append(o.dead[k], r)
		} else {
			o.responses[k] = append(o.responses[k], r)
		}
	}
	return o
}

// tally is the checker's summary of a run.
type tally struct {
	inputs     int // inputs that expect an outcome
	outcomes   int // responses plus dead letters of those inputs
	lost       int // inputs with neither
	duplicated int // outcomes minus inputs answered
	maxCopies  int // most outcomes of one input
	lostKeys   []srcKey
	// unexpected counts outcomes of inputs that expect none (skip) or of offsets that do not exist.
	unexpected int
}

func (tl tally) String() string {
	return fmt.Sprintf("inputs=%d outcomes=%d lost=%d duplicated=%d max_copies=%d unexpected=%d",
		tl.inputs, tl.outcomes, tl.lost, tl.duplicated, tl.maxCopies, tl.unexpected)
}

// count compares inputs with their outcomes; inputs in skip (for example non-rollup events)
// expect none.
func count(inputs []srcKey, o *outcomes, skip map[srcKey]bool) tally {
	var tl tally
	known := map[srcKey]bool{}
	for _, k := range inputs {
		known[k] = true
		n := o.count(k)
		if skip[k] {
			tl.unexpected += n
			continue
		}
		tl.inputs++
		tl.outcomes += n
		if n == 0 {
			tl.lost++
			tl.lostKeys = append(tl.lostKeys, k)
			continue
		}
		tl.duplicated += n - 1
		tl.maxCopies = max(tl.maxCopies, n)
	}
	for _, m := range []map[srcKey][]*kgo.Record{o.responses, o.dead} {
		for k, rs := range m {
			if !known[k] {
				tl.unexpected += len(rs)
			}
		}
	}
	return tl
}

// checkCommitInvariant checks that the group's committed offsets never pass an input without an
// outcome: it reads the commits first and the outcomes after, so an outcome acknowledged before
// its commit is always seen, whatever the pipeline is doing meanwhile.
func checkCommitInvariant(t testing.TB, f *fixture, skip map[srcKey]bool) {
	t.Helper()
	got := committed(t, f.b, f.group, f.in)
	start, _ := offsetRange(t, f.b, f.in)
	o := collectOutcomes(t, f)
	for p, c := range got {
		var missing []int64
		for off := start[p]; off < c; off++ {
			k := srcKey{f.in, p, off}
			if !skip[k] && o.count(k) == 0 {
				missing = append(missing, off)
			}
		}
		if len(missing) > 0 {
			t.Errorf("partition %d committed at %d, past offsets with no response or dead letter: %v", p, c, missing)
		}
	}
}

// contractResponse is the response JSON of the contract.
type contractResponse struct {
	Event          string                      `json:"event"`
	OrganizationID string                      `json:"organizationId"`
	WeekStart      string                      `json:"week_start"`
	Weekly         map[string][]map[string]any `json:"weekly"`
}

// decodeResponse decodes base64(gzip(JSON)) with the standard library only, independently of
// plugins/payload.
func decodeResponse(t testing.TB, value []byte) contractResponse {
	t.Helper()
	bin, err := base64.StdEncoding.DecodeString(string(value))
	if err != nil {
		t.Fatalf("response is not base64: %v (first bytes %q)", err, value[:min(len(value), 40)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("response is not gzip inside base64: %v", err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("response gzip: %v", err)
	}
	var resp contractResponse
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("response JSON: %v", err)
	}
	return resp
}

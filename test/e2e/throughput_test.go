package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// TestThroughputSeedRequests sends 20 seed-sized requests (19,488 rows each, the seed's format)
// through weekly-rollup.yaml and the broker, with the pipeline's default thread count, and logs
// records/s and rows/s from the first produce to the last response on the broker. It asserts
// only that every request is answered: speed is reported, not tested (the machine is shared).
func TestThroughputSeedRequests(t *testing.T) {
	const requests = 20
	f := newFixture(t, 3, 3)
	env := f.env()
	delete(env, "ROLLUP_THREADS") // the pipeline's default: one per core

	// Generated before the clock starts: making and compressing them is not the pipeline's work.
	var recs []*kgo.Record
	rows := 0
	for i := range requests {
		o := gen.Defaults(uint64(1000 + i))
		rows += o.Rows()
		recs = append(recs, &kgo.Record{Key: []byte(o.OrganizationID()), Value: gen.Encode(gen.Request(o)),
			Headers: []kgo.RecordHeader{{Key: "seq", Value: []byte(strconv.Itoa(i))}}})
	}

	// A small request first: once it is answered the group is joined and every client connected,
	// so the figure below is the steady state, not the start-up.
	startStream(t, "weekly-rollup.yaml", env, nil)
	warm := gen.Defaults(999)
	warm.Weeks = 1
	f.b.Produce(t, f.in, &kgo.Record{Key: []byte("warm-up"), Value: gen.Encode(gen.Request(warm))})
	waitAllCommitted(t, f.b, f.group, f.in, nil)

	outcomes := func() int64 {
		var n int64
		for _, topic := range []string{f.out, f.dlq} {
			start, end := offsetRange(t, f.b, topic)
			for p, e := range end {
				n += e - start[p]
			}
		}
		return n
	}
	base := outcomes()
	begin := time.Now()
	f.b.Produce(t, f.in, recs...)
	deadline := begin.Add(outcomeTimeout)
	for outcomes()-base < requests {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests answered within %v", outcomes()-base, requests, outcomeTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(begin)

	waitAllCommitted(t, f.b, f.group, f.in, nil)
	o := collectOutcomes(t, f)
	answered := 0
	for _, r := range recs {
		k := srcKey{f.in, r.Partition, r.Offset}
		if len(o.dead[k]) > 0 {
			e, _ := header(o.dead[k][0], "error")
			t.Errorf("request %s dead-lettered: %s", k, e)
		}
		answered += len(o.responses[k])
	}
	if answered != requests {
		t.Errorf("%d responses for %d requests", answered, requests)
	}
	broker := "embedded kfake broker"
	if f.b.Real() {
		broker = "broker " + f.b.Addr
	}
	t.Logf("throughput (%s, default threads): %d seed-sized requests (%d rows) in %.2fs: %.1f records/s, %.0f rows/s",
		broker, requests, rows, took.Seconds(), float64(requests)/took.Seconds(), float64(rows)/took.Seconds())
}

package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// TestDLQReplay dead-letters two requests of different stages with weekly-rollup.yaml, then runs
// dlq-replay.yaml over the DLQ: with REPLAY_STAGE=validate only the validate dead letter goes
// back to its source topic; with REPLAY_STAGE unset (a new group) both do. A replayed record must
// be the original request again: same key, value and headers, with no error, source or internal
// header added.
func TestDLQReplay(t *testing.T) {
	f := newFixture(t, 1, 1)
	decodeBad := &kgo.Record{Key: []byte("replay-decode"), Value: []byte("%%% this is not base64, nor JSON, nor gzip %%%"),
		Headers: []kgo.RecordHeader{{Key: "trace-id", Value: []byte("replay-decode-1")}, {Key: "x-tenant", Value: []byte("café")}}}
	validateBad := &kgo.Record{Key: []byte("replay-validate"),
		Value: []byte(`{"event":"rollup","organizationId":"org-replay","weekly":[` +
			strings.Replace(validRow, `"Volume":120.0`, `"Volume":"12"`, 1) + `]}`),
		Headers: []kgo.RecordHeader{{Key: "trace-id", Value: []byte("replay-validate-1")}, {Key: "x-empty", Value: []byte{}}}}
	goodOpts := gen.Defaults(7)
	goodOpts.Weeks = 1
	good := &kgo.Record{Key: []byte("replay-good"), Value: gen.Encode(gen.Request(goodOpts)),
		Headers: []kgo.RecordHeader{{Key: "trace-id", Value: []byte("replay-good-1")}}}
	f.b.Produce(t, f.in, decodeBad, validateBad, good)

	// Dead-letter the bad ones. One input partition: its commit reaching the end means every
	// request has been answered and the outcome acknowledged.
	rollup := startStream(t, "weekly-rollup.yaml", f.env(), nil)
	waitAllCommitted(t, f.b, f.group, f.in, nil)
	rollup.stop(t)
	o := collectOutcomes(t, f)
	stages := map[string]*kgo.Record{"decode": decodeBad, "validate": validateBad}
	for stage, in := range stages {
		k := srcKey{f.in, in.Partition, in.Offset}
		if len(o.dead[k]) != 1 || len(o.responses[k]) != 0 {
			t.Fatalf("%s request %v: %d dead letters and %d responses, want 1 and 0", stage, k, len(o.dead[k]), len(o.responses[k]))
		}
		if got := headerMap(t, o.dead[k][0])["error_stage"]; got != stage {
			t.Fatalf("%s request %v dead-lettered with error_stage %q", stage, k, got)
		}
	}
	if gk := (srcKey{f.in, good.Partition, good.Offset}); len(o.responses[gk]) != 1 || len(o.dead[gk]) != 0 {
		t.Fatalf("good request: %d responses and %d dead letters, want 1 and 0", len(o.responses[gk]), len(o.dead[gk]))
	}
	if n := len(readAll(t, f.b, f.dlq)); n != 2 {
		t.Fatalf("DLQ holds %d records, want 2", n)
	}

	t.Run("stage validate", func(t *testing.T) {
		replayed := replay(t, f, "validate")
		if len(replayed) != 1 {
			t.Fatalf("%d records replayed to %s, want exactly 1 (the validate dead letter only)", len(replayed), f.in)
		}
		checkReplayed(t, replayed[0], validateBad)
	})

	t.Run("all stages", func(t *testing.T) {
		replayed := replay(t, f, "")
		if len(replayed) != 2 {
			t.Fatalf("%d records replayed to %s, want 2 (both dead letters)", len(replayed), f.in)
		}
		// Each by its key: the replay may reorder records of different keys.
		for _, in := range stages {
			var match []*kgo.Record
			for _, r := range replayed {
				if bytes.Equal(r.Key, in.Key) {
					match = append(match, r)
				}
			}
			if len(match) != 1 {
				t.Errorf("%d replayed records with key %q, want 1", len(match), in.Key)
				continue
			}
			checkReplayed(t, match[0], in)
		}
	})
}

// replay runs dlq-replay.yaml over f's DLQ in a new consumer group, with REPLAY_STAGE=stage (unset
// if empty), until the group has committed the whole DLQ, and returns the records it added to
// f's input topic.
func replay(t *testing.T, f *fixture, stage string) []*kgo.Record {
	t.Helper()
	_, before := offsetRange(t, f.b, f.in)
	group := f.b.Group("e2e-replay")
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": f.b.Addr,
		"DLQ_KAFKA_TOPIC":         f.dlq,
		"REPLAY_GROUP":            group,
		"HTTP_ADDRESS":            "127.0.0.1:0",
		"LOG_LEVEL":               "WARN",
	}
	if stage != "" {
		env["REPLAY_STAGE"] = stage
	}
	s := startStream(t, "dlq-replay.yaml", env, nil)
	// An offset is committed only once its record is replayed (acknowledged by the broker) or
	// skipped, so a commit at the DLQ's end means every replayed record is in the input topic.
	waitAllCommitted(t, f.b, group, f.dlq, nil)
	s.stop(t)

	var added []*kgo.Record
	for _, r := range readAll(t, f.b, f.in) {
		if r.Offset >= before[r.Partition] {
			added = append(added, r)
		}
	}
	return added
}

// checkReplayed compares a replayed record with the request it replays: same key and value
// byte for byte, and exactly the request's headers (none of the DLQ's error and source headers,
// nor any internal kafka_ or rollup_ metadata).
func checkReplayed(t *testing.T, got, in *kgo.Record) {
	t.Helper()
	if !bytes.Equal(got.Key, in.Key) {
		t.Errorf("replayed key %q, want the original %q", got.Key, in.Key)
	}
	if !bytes.Equal(got.Value, in.Value) {
		t.Errorf("replayed value of %q differs from the original (%d bytes, want %d): %s",
			in.Key, len(got.Value), len(in.Value), firstDiff(got.Value, in.Value))
	}
	// The forbidden headers by name, for a clear message; checkHeadersExactly then reports any
	// other header that is missing, changed or added.
	h := headerMap(t, got)
	for k := range h {
		switch {
		case k == "error", k == "error_stage", k == "source_topic", k == "source_partition",
			k == "source_offset", k == "failed_at":
			t.Errorf("replayed %q: carries the dead-letter header %q = %q", in.Key, k, h[k])
			delete(h, k)
		case strings.HasPrefix(k, "kafka_"), strings.HasPrefix(k, "rollup_"):
			t.Errorf("replayed %q: carries internal metadata as header %q", in.Key, k)
			delete(h, k)
		}
	}
	want := map[string]string{}
	for _, rh := range in.Headers {
		want[rh.Key] = string(rh.Value)
	}
	checkHeadersExactly(t, "replayed "+string(in.Key), h, want)
}

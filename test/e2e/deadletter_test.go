package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rollup-dev/rollup/internal/gen"
)

// badInput is one class of bad request: the stage it must fail in and words its error must hold.
type badInput struct {
	name  string
	stage string
	want  []string
	key   []byte
	value []byte
}

const validRow = `{"Contact Type":"Medical","Staff Type":"Medical - English","Call Center":"Default Center",` +
	`"Week":"2023-07-28 13:00:00","Volume":120.0,"Abandons":2.0,"Top Line Agents (FTE)":16.3,"Base AHT":372.5,` +
	`"Handled Threshold":108.0,"Service Level (X Seconds)":0.85,"Acceptable Wait Time":30.0,"Total Queue Time":1600.0}`

func gzipBytes(b []byte, level int) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, level)
	_, _ = w.Write(b) // a bytes.Buffer does not fail
	_ = w.Close()
	return buf.Bytes()
}

func b64(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }

// gzipBomb is base64(gzip) of 300 MiB of zeros, over the pipeline's 256 MiB max_decoded_bytes, in
// about 400 kB.
func gzipBomb() []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 300 {
		_, _ = w.Write(zeros)
	}
	_ = w.Close()
	return b64(buf.Bytes())
}

// badInputs is one request of each bad class the contract names. Requests that fail validation
// are sent in the seed's format (base64 of gzip) except where noted, so they pass decoding first.
func badInputs() []badInput {
	good := gen.Request(func() gen.Options { o := gen.Defaults(3); o.Weeks = 1; return o }())
	gz := gzipBytes(good, gzip.DefaultCompression)
	corrupt := bytes.Clone(gz)
	for i := len(corrupt) / 2; i < len(corrupt)/2+16; i++ {
		corrupt[i] ^= 0x5a
	}
	req := func(weekStart, weekly string) string {
		return `{"event":"rollup","organizationId":"org-bad",` + weekStart + `"weekly":` + weekly + `}`
	}
	return []badInput{
		{name: "bad base64", stage: "decode", want: []string{"base64"},
			value: []byte("%%% this is not base64, nor JSON, nor gzip %%%")},
		{name: "corrupt gzip", stage: "decode", want: []string{"gzip"}, value: b64(corrupt)},
		{name: "truncated gzip", stage: "decode", want: []string{"gzip", "truncated"}, value: b64(gz[:len(gz)/2])},
		{name: "gzip bomb", stage: "decode", want: []string{"max_decoded_bytes"}, value: gzipBomb()},
		{name: "empty", stage: "decode", want: []string{"empty"}, key: nil, value: []byte{}},
		{name: "invalid JSON", stage: "validate", want: []string{"JSON"},
			value: gen.Encode([]byte(`{"event":"rollup","organizationId":"org-bad","weekly":[{"Contact Type":`))},
		// Raw JSON, which the contract also accepts as a request encoding.
		{name: "wrong type", stage: "validate", want: []string{"row 0", `"Volume"`},
			value: []byte(req("", `[`+strings.Replace(validRow, `"Volume":120.0`, `"Volume":"lots"`, 1)+`]`))},
		{name: "missing dimension", stage: "validate", want: []string{"row 1", `"Call Center"`},
			value: gen.Encode([]byte(req("", `[`+validRow+`,`+strings.Replace(validRow, `"Call Center":"Default Center",`, ``, 1)+`]`)))},
		{name: "unknown week_start", stage: "validate", want: []string{"week_start", "friday"},
			value: gen.Encode([]byte(req(`"week_start":"someday",`, `[`+validRow+`]`)))},
		{name: "weekly not a list", stage: "validate", want: []string{"weekly", "list"},
			value: gen.Encode([]byte(req("", `{"rows":[`+validRow+`]}`)))},
		{name: "non-UTF-8", stage: "validate", want: []string{"UTF-8"},
			value: gen.Encode([]byte(`{"event":"rollup","organizationId":"org-` + "\xff\xfe" + `","weekly":[` + validRow + `]}`))},
	}
}

// TestDeadLetters sends each bad input class, a non-rollup event and a good request on one
// partition: each bad one must give exactly one dead letter with the original key, value and
// headers plus the contract's error headers, and no response; the event gives neither and is
// committed; the good one gets its response.
func TestDeadLetters(t *testing.T) {
	f := newFixture(t, 1, 1)
	cases := badInputs()
	var inputs []*kgo.Record
	for i, c := range cases {
		key := c.key
		if c.name != "empty" {
			key = []byte("bad-" + strings.ReplaceAll(c.name, " ", "-"))
		}
		inputs = append(inputs, &kgo.Record{Key: key, Value: c.value, Headers: []kgo.RecordHeader{
			{Key: "case", Value: []byte(c.name)},
			{Key: "trace-id", Value: []byte("dlq-" + itoa(int64(i)))},
		}})
	}
	event := &kgo.Record{Key: []byte("ping"), Value: gen.Encode([]byte(`{"event":"ping","organizationId":"org-ping","weekly":[]}`)),
		Headers: []kgo.RecordHeader{{Key: "case", Value: []byte("non-rollup event")}}}
	goodOpts := gen.Defaults(5)
	goodOpts.Weeks = 1
	good := &kgo.Record{Key: []byte("good"), Value: gen.Encode(gen.Request(goodOpts)),
		Headers: []kgo.RecordHeader{{Key: "case", Value: []byte("good")}}}
	since := time.Now()
	f.b.Produce(t, f.in, append(append(inputs, event), good)...)

	startStream(t, "weekly-rollup.yaml", f.env(), nil)
	// One partition: its commit reaching the end means every record before it was answered.
	waitAllCommitted(t, f.b, f.group, f.in, nil)
	o := collectOutcomes(t, f)

	for i, c := range cases {
		in := inputs[i]
		k := srcKey{f.in, in.Partition, in.Offset}
		t.Run(c.name, func(t *testing.T) {
			if n := len(o.responses[k]); n != 0 {
				t.Errorf("%d responses, want none", n)
			}
			if n := len(o.dead[k]); n != 1 {
				t.Fatalf("%d dead letters, want exactly one", n)
			}
			checkDeadLetter(t, o.dead[k][0], in, c, since)
		})
	}
	ek := srcKey{f.in, event.Partition, event.Offset}
	if n := o.count(ek); n != 0 {
		t.Errorf("non-rollup event: %d outcomes, want none (logged and acknowledged)", n)
	}
	gk := srcKey{f.in, good.Partition, good.Offset}
	if len(o.responses[gk]) != 1 || len(o.dead[gk]) != 0 {
		t.Errorf("good request: %d responses and %d dead letters, want 1 and 0", len(o.responses[gk]), len(o.dead[gk]))
	}
}

// checkDeadLetter checks one dead letter against the record it came from.
func checkDeadLetter(t *testing.T, dl, in *kgo.Record, c badInput, since time.Time) {
	t.Helper()
	if !bytes.Equal(dl.Key, in.Key) {
		t.Errorf("key %q, want the original %q", dl.Key, in.Key)
	}
	if !bytes.Equal(dl.Value, in.Value) {
		t.Errorf("value differs from the original (%d bytes, want %d): %s", len(dl.Value), len(in.Value), firstDiff(dl.Value, in.Value))
	}
	h := headerMap(t, dl)
	errText := h["error"]
	if errText == "" {
		t.Errorf("header error is empty or missing")
	}
	for _, w := range c.want {
		if !strings.Contains(errText, w) {
			t.Errorf("error %q does not name the problem (want it to contain %q)", errText, w)
		}
	}
	if h["error_stage"] != c.stage {
		t.Errorf("error_stage %q, want %q (error: %s)", h["error_stage"], c.stage, errText)
	}
	failedAt, err := time.Parse(time.RFC3339, h["failed_at"])
	if err != nil {
		t.Errorf("failed_at %q is not RFC 3339: %v", h["failed_at"], err)
	} else if failedAt.Before(since.Add(-time.Minute)) || failedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("failed_at %v is not the time of this run (%v to now)", failedAt, since)
	}
	want := map[string]string{
		"error": errText, "error_stage": c.stage, "failed_at": h["failed_at"],
		"source_topic": in.Topic, "source_partition": itoa(int64(in.Partition)), "source_offset": itoa(in.Offset),
	}
	for _, rh := range in.Headers {
		want[rh.Key] = string(rh.Value)
	}
	checkHeadersExactly(t, "dead letter", h, want)
}

// firstDiff describes where got first differs from want.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(i-20, 0)
	return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, got[lo:min(len(got), i+20)], want[lo:min(len(want), i+20)])
}

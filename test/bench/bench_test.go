package main

import (
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		frames []string
		want   string
	}{
		{[]string{"runtime.memmove", "github.com/klauspost/compress/zstd.(*Decoder).Read",
			"github.com/rollup-dev/rollup/plugins/payload.readCapped", "github.com/rollup-dev/rollup/plugins/payload.unzstd",
			"github.com/redpanda-data/benthos/v4/internal/pipeline.(*Processor).loop"}, stDecode},
		{[]string{"hash/crc32.ieeeCLMUL", "github.com/rollup-dev/rollup/internal/inflate.(*decoder).inflate",
			"github.com/rollup-dev/rollup/internal/inflate.Gunzip"}, stDecode},
		{[]string{"github.com/klauspost/compress/flate.(*fastEncL5).Encode",
			"github.com/rollup-dev/rollup/plugins/payload.(*gzipWriters).compress"}, stEncode},
		{[]string{"github.com/rollup-dev/rollup/plugins/rollup.parseNumber"}, stRollup},
		{[]string{"runtime.gcAssistAlloc", "runtime.mallocgc", "github.com/rollup-dev/rollup/plugins/rollup.(*Aggregator).respond"}, stGC},
		{[]string{"github.com/twmb/franz-go/pkg/kgo.(*sink).produce"}, stProduce},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "github.com/twmb/franz-go/pkg/kgo.(*brokerCxn).readSizeAndBody"}, stFetch},
		{[]string{"github.com/rollup-dev/rollup/plugins/kafka.newRecordMessage"}, stFetch},
		{[]string{"github.com/rollup-dev/rollup/plugins/kafka.(*kafkaOutput).WriteBatch"}, stProduce},
		{[]string{"encoding/json.(*Decoder).Decode", "github.com/redpanda-data/benthos/v4/internal/message.decodeJSON"}, stBenthos},
		{[]string{"runtime.futex", "runtime.findRunnable"}, stOther},
	} {
		if got := classify(c.frames); got != c.want {
			t.Errorf("classify(%s) = %q, want %q", strings.Join(c.frames, " < "), got, c.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if got := quantile(ds, .5); got != 5 {
		t.Errorf("p50 = %v, want 5", got)
	}
	if got := quantile(ds, .99); got != 10 {
		t.Errorf("p99 = %v, want 10", got)
	}
	if got := quantile(nil, .5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

func TestIntList(t *testing.T) {
	got, err := intList("1,2,0, 2", 2)
	if err != nil || len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("intList = %v, %v; want [1 2]", got, err)
	}
	if _, err := intList("1,x", 2); err == nil {
		t.Error("intList accepted x")
	}
}

func TestSame(t *testing.T) {
	w := map[string]any{"weekly": map[string]any{"a_b_c": []any{map[string]any{"Week": "2023-07-28", "Volume": 1e6, "Base AHT": nil}}}}
	ok := map[string]any{"weekly": map[string]any{"a_b_c": []any{map[string]any{"Week": "2023-07-28", "Volume": 1e6 * (1 + 5e-10), "Base AHT": nil}}}}
	if err := same("", w, ok); err != nil {
		t.Errorf("within 1e-9: %v", err)
	}
	for _, bad := range []any{
		map[string]any{"weekly": map[string]any{"a_b_c": []any{map[string]any{"Week": "2023-07-28", "Volume": 1e6 * (1 + 2e-9), "Base AHT": nil}}}},
		map[string]any{"weekly": map[string]any{"a_b_c": []any{map[string]any{"Week": "2023-07-28", "Volume": 1e6, "Base AHT": 0.0}}}},
		map[string]any{"weekly": map[string]any{"a_b_c": []any{}}},
		map[string]any{"weekly": map[string]any{"x_b_c": []any{map[string]any{"Week": "2023-07-28", "Volume": 1e6, "Base AHT": nil}}}},
	} {
		if err := same("", w, bad); err == nil {
			t.Errorf("same accepted %v", bad)
		}
	}
}

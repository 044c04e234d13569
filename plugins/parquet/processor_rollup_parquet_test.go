package parquet

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go/format"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the stream test's core components
	"github.com/redpanda-data/benthos/v4/public/service"
)

func newProc(t *testing.T, yaml string) *rollupParquetProc {
	t.Helper()
	conf, err := rollupParquetProcSpec().ParseYAML(yaml, nil)
	must(t, err, "ParseYAML")
	p, err := newRollupParquetFromParsedConf(conf, service.MockResources())
	must(t, err, "constructor")
	t.Cleanup(func() { must(t, p.Close(context.Background()), "Close") })
	return p
}

func process(t *testing.T, p *rollupParquetProc, msg *service.Message) *service.Message {
	t.Helper()
	batch, err := p.Process(context.Background(), msg)
	must(t, err, "Process")
	if len(batch) != 1 {
		t.Fatalf("want one message, got %d", len(batch))
	}
	return batch[0]
}

func TestProcessorDefaults(t *testing.T) {
	p := newProc(t, ``)
	out := process(t, p, service.NewMessage([]byte(sampleResponse)))
	must(t, out.GetError(), "message error")
	b, err := out.AsBytes()
	must(t, err, "AsBytes")
	f, rows := readBack(t, b)
	equal(t, 3, len(rows), "rows")
	equal(t, "Contact Type", columnNames(f)[0], "first column")
	n, _ := out.MetaGet(MetaRows)
	equal(t, "3", n, "metadata %s", MetaRows)
	_, failed := out.MetaGet(metaErrorStage)
	check(t, !failed, "no error_stage on success")
}

func TestProcessorConfig(t *testing.T) {
	p := newProc(t, `
dimensions: [ Queue, Site ]
metrics: [ Volume, Base AHT ]
key_separator: "|"
compression: zstd
`)
	resp := `{"organizationId":"o","weekly":{"q_1|north":[{"Week":"2023-07-28","Volume":2,"Base AHT":null,"Other":7}]}}`
	b, err := process(t, p, service.NewMessage([]byte(resp))).AsBytes()
	must(t, err, "AsBytes")
	f, rows := readBack(t, b)
	equal(t, []string{"Queue", "Site", "Week", "Volume", "Base AHT", "organizationId"}, columnNames(f), "columns")
	equal(t, []string{"q_1", "north", "d19566", "2", "null", "o"}, cells(rows[0]), "row")
	for _, cc := range f.Metadata().RowGroups[0].Columns {
		equal(t, format.Zstd, cc.MetaData.Codec, "codec")
	}
}

func TestProcessorGroupDimensionsMetadata(t *testing.T) {
	resp := `{"organizationId":"o","weekly":{"x_y_z_w":[{"Week":"2023-07-28","V":1}]}}`
	side := `{"x_y_z_w":["x","y_z","w"]}`
	tests := []struct {
		name, conf string
		meta       any // nil: not set
		want       []string
		wantErr    string
	}{
		{name: "string", meta: side, want: []string{"x", "y_z", "w"}},
		{name: "bytes", meta: []byte(side), want: []string{"x", "y_z", "w"}},
		{name: "structured", meta: map[string]any{"x_y_z_w": map[string]any{
			"Contact Type": "x_y", "Staff Type": "z", "Call Center": "w"}}, want: []string{"x_y", "z", "w"}},
		{name: "other key", conf: `group_dimensions_metadata: dims`, want: []string{"x", "y", "z_w"}},
		{name: "disabled", conf: `group_dimensions_metadata: ""`, meta: side, want: []string{"x", "y", "z_w"}},
		{name: "absent, ambiguous refused", conf: `ambiguous_keys: error`, wantErr: "is ambiguous"},
		{name: "present, ambiguous refused", conf: `ambiguous_keys: error`, meta: side, want: []string{"x", "y_z", "w"}},
		{name: "bad side channel", meta: `{"x_y_z_w":"x"}`, wantErr: `metadata "rollup_group_dimensions": group dimensions for "x_y_z_w"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProc(t, tc.conf)
			msg := service.NewMessage([]byte(resp))
			if tc.meta != nil {
				msg.MetaSetMut(MetaGroupDimensions, tc.meta)
			}
			out := process(t, p, msg)
			if tc.wantErr != "" {
				errContains(t, out.GetError(), tc.wantErr, "message error")
				stage, _ := out.MetaGet(metaErrorStage)
				equal(t, stageEncode, stage, "error_stage")
				return
			}
			must(t, out.GetError(), "message error")
			b, err := out.AsBytes()
			must(t, err, "AsBytes")
			_, rows := readBack(t, b)
			equal(t, tc.want, cells(rows[0])[:3], "dimension values")
		})
	}
}

func TestProcessorErrors(t *testing.T) {
	p := newProc(t, ``)
	for name, tc := range map[string]struct{ in, wantErr string }{
		"invalid JSON":    {`{"organizationId":`, "rollup_parquet: field \"organizationId\": unexpected EOF"},
		"empty":           {``, "rollup_parquet: response: unexpected EOF"},
		"a request":       {`{"organizationId":"o","weekly":[{"Week":"2023-07-28 13:00:00"}]}`, `field "weekly": want an object, got a list`},
		"metric string":   {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"2023-07-28","Volume":"12"}]}}`, `group "a_b_c" week 0: field "Volume": want a number or null`},
		"no organization": {`{"weekly":{}}`, `no "organizationId"`},
		"bad week":        {`{"organizationId":"o","weekly":{"a_b_c":[{"Week":"28/07/2023"}]}}`, `field "Week": want a date YYYY-MM-DD`},
		"group key short": {`{"organizationId":"o","weekly":{"a":[{"Week":"2023-07-28"}]}}`, `group key "a" has 1 parts`},
	} {
		t.Run(name, func(t *testing.T) {
			out := process(t, p, service.NewMessage([]byte(tc.in)))
			errContains(t, out.GetError(), tc.wantErr, "message error")
			stage, _ := out.MetaGet(metaErrorStage)
			equal(t, stageEncode, stage, "error_stage")
			b, err := out.AsBytes()
			must(t, err, "AsBytes")
			equal(t, tc.in, string(b), "a failed message keeps its content")
			_, hasRows := out.MetaGet(MetaRows)
			check(t, !hasRows, "no %s on failure", MetaRows)
		})
	}
}

func TestProcessorConfigErrors(t *testing.T) {
	for conf, wantErr := range map[string]string{
		`key_separator: ""`: "key_separator must not be empty",
		`dimensions: []`:    "at least one dimension",
		`compression: lzo`:  `unknown compression "lzo"`,
	} {
		parsed, err := rollupParquetProcSpec().ParseYAML(conf, nil)
		must(t, err, "ParseYAML %s", conf)
		_, err = newRollupParquetFromParsedConf(parsed, service.MockResources())
		errContains(t, err, wantErr, "%s", conf)
	}
}

// TestProcessorInStream runs the registered processor in a stream built from YAML, as a pipeline would,
// and checks the spec's lint rule.
func TestProcessorInStream(t *testing.T) {
	sb := service.NewStreamBuilder()
	must(t, sb.SetLoggerYAML(`level: none`), "logger")
	errContains(t, sb.AddProcessorYAML(`rollup_parquet: { key_separator: "" }`), "key_separator must not be empty", "lint")
	must(t, sb.AddProcessorYAML(`rollup_parquet: { compression: gzip }`), "AddProcessorYAML")
	produce, err := sb.AddProducerFunc()
	must(t, err, "AddProducerFunc")
	var (
		mu  sync.Mutex
		got [][]byte
	)
	must(t, sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		b, err := m.AsBytes()
		mu.Lock() // the consumer may be called from several goroutines
		defer mu.Unlock()
		got = append(got, b)
		return err
	}), "AddConsumerFunc")
	stream, err := sb.Build()
	must(t, err, "Build")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	must(t, produce(ctx, service.NewMessage([]byte(sampleResponse))), "produce")
	must(t, stream.Stop(ctx), "Stop")
	if err := <-done; err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Run: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("want one Parquet file, got %d messages", len(got))
	}
	_, rows := readBack(t, got[0])
	equal(t, 3, len(rows), "rows")
}

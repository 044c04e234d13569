package parquet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	rpFieldDimensions        = "dimensions"
	rpFieldMetrics           = "metrics"
	rpFieldKeySeparator      = "key_separator"
	rpFieldCompression       = "compression"
	rpFieldGroupDimsMetadata = "group_dimensions_metadata"
	rpFieldAmbiguousKeys     = "ambiguous_keys"

	// MetaRows is the output metadata key holding the number of rows in the Parquet file.
	MetaRows = "parquet_rows"
	// MetaGroupDimensions is the default metadata key read for group dimension values (see
	// ParseGroupDimensions); a processor before this one (e.g. weekly_rollup) may set it.
	MetaGroupDimensions = "rollup_group_dimensions"

	metaErrorStage = "error_stage"
	stageEncode    = "encode"
)

func rollupParquetProcSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Stable().
		Categories("Rollup").
		Summary("Turns a weekly rollup response (JSON) into a Parquet file: one row per group and week.").
		Description(`
The message must hold a rollup response as produced by `+"`weekly_rollup`"+`:
`+"`{\"event\", \"organizationId\", \"week_start\", \"weekly\": {groupKey: [{\"Week\": \"YYYY-MM-DD\", metric: number|null, ...}]}}`"+`.
It is replaced by the bytes of one Parquet file with these columns, in this order:

- the `+"`dimensions`"+` (required strings);
- `+"`Week`"+` (DATE: int32 days since 1970-01-01);
- one nullable DOUBLE per metric: the `+"`metrics`"+` list if set, else every metric key of the response in
  order of first appearance (null where the response has null or lacks the metric);
- `+"`organizationId`"+` (required string).

The file's key-value metadata carries `+"`week_start`"+`. pyarrow, pandas and DuckDB read it without options.

### Dimension values

The response's group key is the dimension values joined by `+"`key_separator`"+`, which is ambiguous when a
value contains the separator. The values of each row are taken from, in order:

1. the row itself, when it carries every dimension as a string field (such fields are not metrics);
2. the metadata key named by `+"`group_dimensions_metadata`"+`, when present: a JSON object mapping each group
   key to its values, as a list in `+"`dimensions`"+` order or an object by dimension name;
3. the group key split on `+"`key_separator`"+`. With more parts than dimensions the surplus stays in the last
   dimension, or the message fails if `+"`ambiguous_keys: error`"+`.

### Errors

An invalid response (not JSON, wrong types, a bad `+"`Week`"+` date, no `+"`organizationId`"+`, duplicate column
names) leaves the message unchanged, failed, with metadata `+"`error_stage: encode`"+`. On success the metadata
`+"`"+MetaRows+"`"+` holds the number of rows.`).
		Fields(
			service.NewStringListField(rpFieldDimensions).
				Description("Dimension column names, in the order their values are joined in the group key.").
				Default(DefaultDimensions()),
			service.NewStringListField(rpFieldMetrics).
				Description("Metric columns, in order. Empty: every metric key of the response, in order of first appearance. With a list, other keys are ignored.").
				Default([]string{}).
				Example([]string{"Volume", "Base AHT"}),
			service.NewStringField(rpFieldKeySeparator).
				Description("Separator between dimension values in the group key (the contract's is `_`).").
				Default("_"),
			service.NewStringEnumField(rpFieldCompression, CompressionSnappy, CompressionZstd, CompressionGzip, CompressionNone).
				Description("Compression codec of the Parquet pages.").
				Default(CompressionSnappy),
			service.NewStringField(rpFieldGroupDimsMetadata).
				Description("Metadata key holding the group key to dimension values map (JSON), used when rows do not carry their dimensions. Empty: never read.").
				Default(MetaGroupDimensions).
				Advanced(),
			service.NewStringEnumField(rpFieldAmbiguousKeys, "last_dimension", "error").
				Description("When a group key split on `key_separator` has more parts than there are dimensions (and no other source gives the values): `last_dimension` keeps the surplus in the last dimension, `error` fails the message.").
				Default("last_dimension").
				Advanced(),
		).
		LintRule(`root = if this.key_separator == "" { "key_separator must not be empty" }`).
		Example("Parquet with zstd pages",
			"Replaces each rollup response with a Parquet file whose pages are zstd-compressed.",
			`
pipeline:
  processors:
    - rollup_parquet:
        compression: zstd
`)
}

func init() {
	service.MustRegisterProcessor("rollup_parquet", rollupParquetProcSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			return newRollupParquetFromParsedConf(conf, mgr)
		})
}

type rollupParquetProc struct {
	opts    Options
	metaKey string
}

func newRollupParquetFromParsedConf(conf *service.ParsedConfig, _ *service.Resources) (*rollupParquetProc, error) {
	var (
		p   = &rollupParquetProc{}
		err error
	)
	if p.opts.Dimensions, err = conf.FieldStringList(rpFieldDimensions); err != nil {
		return nil, err
	}
	if len(p.opts.Dimensions) == 0 {
		return nil, fmt.Errorf("%s: at least one dimension is needed", rpFieldDimensions)
	}
	if p.opts.Metrics, err = conf.FieldStringList(rpFieldMetrics); err != nil {
		return nil, err
	}
	if p.opts.KeySeparator, err = conf.FieldString(rpFieldKeySeparator); err != nil {
		return nil, err
	}
	if p.opts.KeySeparator == "" {
		return nil, fmt.Errorf("%s must not be empty", rpFieldKeySeparator)
	}
	if p.opts.Compression, err = conf.FieldString(rpFieldCompression); err != nil {
		return nil, err
	}
	if _, err := codecOf(p.opts.Compression); err != nil {
		return nil, err
	}
	if p.metaKey, err = conf.FieldString(rpFieldGroupDimsMetadata); err != nil {
		return nil, err
	}
	amb, err := conf.FieldString(rpFieldAmbiguousKeys)
	if err != nil {
		return nil, err
	}
	p.opts.RejectAmbiguousKeys = amb == "error"
	return p, nil
}

func (p *rollupParquetProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	fail := func(err error) (service.MessageBatch, error) {
		msg.SetError(fmt.Errorf("rollup_parquet: %w", err))
		msg.MetaSetMut(metaErrorStage, stageEncode)
		return service.MessageBatch{msg}, nil
	}
	resp, err := msg.AsBytes()
	if err != nil {
		return fail(err)
	}
	opts := p.opts
	if p.metaKey != "" {
		if raw, ok := msg.MetaGetMut(p.metaKey); ok {
			b, err := metaBytes(raw)
			if err != nil {
				return fail(fmt.Errorf("metadata %q: %w", p.metaKey, err))
			}
			if opts.GroupDimensions, err = ParseGroupDimensions(b, opts.Dimensions); err != nil {
				return fail(fmt.Errorf("metadata %q: %w", p.metaKey, err))
			}
		}
	}
	var buf bytes.Buffer
	rows, err := WriteResponse(&buf, resp, opts)
	if err != nil {
		return fail(err)
	}
	msg.SetBytes(buf.Bytes())
	msg.MetaSetMut(MetaRows, strconv.Itoa(rows))
	return service.MessageBatch{msg}, nil
}

// metaBytes accepts the side channel as bytes, a string, or an already structured value (set by a
// mapping such as `meta rollup_group_dimensions = {...}`), and returns it as JSON.
func metaBytes(v any) ([]byte, error) {
	switch t := v.(type) {
	case []byte:
		return t, nil
	case string:
		return []byte(t), nil
	}
	return json.Marshal(v)
}

func (p *rollupParquetProc) Close(context.Context) error { return nil }

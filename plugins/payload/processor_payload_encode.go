package payload

import (
	"context"
	"fmt"

	"github.com/klauspost/compress/gzip"
	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	peFieldFormat    = "format"
	peFieldGzipLevel = "gzip_level"
)

func payloadEncodeProcSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Categories("Parsing").
		Summary("Turns a response's JSON bytes into the wire format: base64 of gzip by default, as the seed sent, or gzip, zstd, base64 of zstd, or plain JSON.").
		Description(`
The message content (the response JSON) is replaced by its encoding in `+"`format`"+`. Base64 is the standard alphabet with `+"`=`"+` padding, which is what the seed's consumers (Python's `+"`base64.b64decode`"+`) expect. Every format round-trips through `+"`payload_decode`"+`, which detects it from the bytes.

gzip output is a single member without file name or modification time, so equal input gives equal output. zstd output is one frame with its content size and a checksum, at klauspost/compress's default level (close to zstd level 3); empty input still gives a valid, empty frame.

Performance: gzip writers are pooled and reset per message, one zstd encoder is shared by all messages (its `+"`EncodeAll`"+` is safe for concurrent use), and intermediate bytes go through pooled buffers, so a message allocates little more than its output.

On failure (not expected in practice: compression of bytes in memory does not fail) the message keeps its content, is marked with the error, and gets metadata `+"`error_stage: encode`"+`.
`).
		Field(service.NewStringAnnotatedEnumField(peFieldFormat, map[string]string{
			string(FormatGzipBase64): "Standard, padded base64 of gzip: the seed's format and the default.",
			string(FormatGzip):       "gzip bytes.",
			string(FormatZstd):       "zstd bytes (one frame).",
			string(FormatZstdBase64): "Standard, padded base64 of zstd.",
			string(FormatJSON):       "The JSON as is (no copy).",
		}).
			Description("The wire format of the output.").
			Default(string(FormatGzipBase64))).
		Field(service.NewIntField(peFieldGzipLevel).
			Description("gzip compression level for `gzip` and `gzip_base64`: -1 is klauspost/compress's default (level 5, a good speed/size balance), 1 (fastest) to 9 (smallest), 0 stores without compression, -2 is Huffman-only, -3 is stateless compression. Ignored by other formats.").
			Default(gzip.DefaultCompression).
			Advanced().
			LintRule(`root = if this < -3 || this > 9 { ["gzip_level must be between -3 and 9"] }`)).
		Example("Seed responses",
			"Encode the rollup response as the seed did, base64 of gzip.",
			`
pipeline:
  processors:
    - payload_decode: {}
    - weekly_rollup: {}
    - payload_encode: {}
`).
		Example("Format from the environment",
			"Let operators choose the response format, and compress harder when it is gzip.",
			`
pipeline:
  processors:
    - payload_encode:
        format: ${OUTPUT_ENCODING:gzip_base64}
        gzip_level: 9
`)
}

func init() {
	service.MustRegisterProcessor("payload_encode", payloadEncodeProcSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			return newPayloadEncodeFromParsedConf(conf, mgr)
		})
}

type payloadEncodeProc struct {
	format Format
	gzip   *gzipWriters
}

func newPayloadEncodeFromParsedConf(conf *service.ParsedConfig, _ *service.Resources) (*payloadEncodeProc, error) {
	s, err := conf.FieldString(peFieldFormat)
	if err != nil {
		return nil, err
	}
	format, err := parseFormat(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", peFieldFormat, err)
	}
	level, err := conf.FieldInt(peFieldGzipLevel)
	if err != nil {
		return nil, err
	}
	gz := defaultGzipWriters()
	if level != gzip.DefaultCompression {
		if gz, err = newGzipWriters(level); err != nil {
			return nil, fmt.Errorf("%s: %w", peFieldGzipLevel, err)
		}
	}
	return &payloadEncodeProc{format: format, gzip: gz}, nil
}

// Process replaces the content with its encoding. On failure the message goes
// on unchanged, marked with the error and error_stage=encode.
func (p *payloadEncodeProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	raw, err := msg.AsBytes()
	var out []byte
	if err == nil {
		out, err = encode(p.format, raw, p.gzip)
	}
	if err != nil {
		msg.SetError(fmt.Errorf("encoding %s: %w", p.format, err))
		msg.MetaSet(metaErrorStage, "encode")
		return service.MessageBatch{msg}, nil
	}
	if p.format != FormatJSON {
		msg.SetBytes(out)
	}
	return service.MessageBatch{msg}, nil
}

// Close releases nothing: writers are pooled and the zstd encoder is shared
// for the life of the process.
func (p *payloadEncodeProc) Close(context.Context) error { return nil }

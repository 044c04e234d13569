package payload

import (
	"context"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const (
	pdFieldMaxDecodedBytes = "max_decoded_bytes"
	pdFieldMaxEncodedBytes = "max_encoded_bytes"
	pdFieldDecoder         = "decoder"

	// metaErrorStage is the metadata key every rollup processor sets on failure.
	metaErrorStage = "error_stage"
	// metaPayloadFormat is set by payload_decode on success to the detected format.
	metaPayloadFormat = "rollup_payload_format"
)

func payloadDecodeProcSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Categories("Parsing").
		Summary("Turns a record value into JSON bytes, detecting raw JSON, gzip, zstd, and base64 of gzip or zstd from the bytes themselves.").
		Description(`
Scenario requests arrive in the seed's format, `+"`base64(gzip(JSON))`"+`, but producers may also send plain JSON, gzip, zstd, or base64 of zstd. The format is never configured: it is read from the payload, in this order:

1. Empty payload (zero bytes, or only whitespace): error `+"`empty payload`"+`.
2. gzip magic `+"`1f 8b`"+`: gunzip. Concatenated gzip members are decoded one after the other, and every member's CRC-32 and length are checked.
3. zstd magic `+"`28 b5 2f fd`"+`: decompress all frames (checksums verified when present).
4. First byte after optional whitespace (space, tab, CR, LF) is `+"`{`"+` or `+"`[`"+`: raw JSON, passed on unchanged without a copy. Whether it parses is for the next processor to say.
5. Anything else is tried as base64: standard or URL-safe alphabet, padding optional, surrounding whitespace and line breaks ignored. What it decodes to must start with the gzip or zstd magic and is then decompressed as above. Base64 of plain JSON is not accepted (the contract does not list it).

The result replaces the message content, and metadata `+"`rollup_payload_format`"+` is set to `+"`json`, `gzip`, `zstd`, `gzip_base64` or `zstd_base64`"+`.

== Size caps

`+"`max_decoded_bytes`"+` caps the decoded JSON (raw JSON included). It is enforced while decompressing: at most one byte more than the cap is ever inflated, so a compression bomb (say 200 MB of zeros in 200 KB of gzip) is refused after a few milliseconds and about the cap's worth of memory. A zstd frame that declares a content size over the cap is refused from its header alone. A zstd stream decoder reserves a frame's window of memory, so windows over the larger of the cap and 8 MiB are refused as over the cap, and windows over both 8 MiB and what the payload could possibly decode to are refused as corrupt: a few hostile bytes cannot make the decoder reserve the cap. Size hints are treated the same way: the gzip trailer's size and a zstd frame's declared size only pre-size the output when the input could really expand that far.

`+"`max_encoded_bytes`"+`, when above 0, refuses a record value longer than that before any decoding.

== Errors

A failed message keeps its content exactly as received (so a dead-letter queue can carry the original bytes), is marked with the error (`+"`error()`"+` in Bloblang), and gets metadata `+"`error_stage: decode`"+`. The error texts are:

- `+"`empty payload`"+`
- `+"`payload is neither JSON, gzip, zstd nor base64 (first bytes 0x3c68746d6c3e \"<html>\"): illegal base64 data at input byte 0`"+`
- `+"`payload is base64 but decodes to neither gzip nor zstd (first decoded bytes 0x7b2265 \"{\\\"e\")`"+`
- `+"`gzip payload is truncated: unexpected EOF`"+`, `+"`gzip (inside base64) payload is corrupt: gzip: invalid checksum`"+`, `+"`zstd payload is corrupt: ...`"+`: the codec, whether it sat inside base64, and the decompressor's own error.
- `+"`decoded payload exceeds max_decoded_bytes (268435456)`"+`, sometimes followed by how it was noticed (for example `+"`: zstd frame declares 209715200 bytes`"+`).
- `+"`encoded payload is 1048577 bytes, over max_encoded_bytes (1048576)`"+`

== Performance

gzip is inflated by internal/inflate (`+"`decoder: fast`"+`, the default), which decodes the whole payload straight into one output slice (about twice as fast as a streaming gzip reader, and tested byte for byte against klauspost/compress's; `+"`decoder: klauspost`"+` switches to that reader); zstd by pooled single-goroutine klauspost/compress decoders. base64 is decoded into a pooled scratch buffer. The output is sized up front from the gzip trailer's ISIZE or the zstd frame's declared content size when those are plausible, so a typical message allocates its output once and nothing else of note.
`).
		Field(service.NewIntField(pdFieldMaxDecodedBytes).
			Description("The largest decoded (JSON) payload accepted, in bytes. Checked while decompressing, so an oversized or malicious payload is refused without being inflated. Raw JSON over this size is refused too. Default 268435456 (256 MiB).").
			Default(DefaultMaxDecodedBytes).
			LintRule(`root = if this < 1 { ["max_decoded_bytes must be at least 1"] }`)).
		Field(service.NewIntField(pdFieldMaxEncodedBytes).
			Description("The largest record value accepted before decoding, in bytes; 0 means no cap. Useful to refuse huge base64 text before it is decoded into memory.").
			Default(0).
			Advanced().
			LintRule(`root = if this < 0 { ["max_encoded_bytes must be 0 (no cap) or more"] }`)).
		Field(service.NewStringAnnotatedEnumField(pdFieldDecoder, map[string]string{
			decoderFast:      "internal/inflate, our flat-output DEFLATE decoder: 1.8 to 2.2 times as fast as klauspost's reader on request-shaped JSON (internal/inflate's BenchmarkGunzip, one core), because it inflates straight into one output slice sized from the gzip trailer instead of streaming through a window. It is checked against klauspost/compress and Go's compress/gzip by differential tests (every level of both encoders, multiple members, header fields, every truncation and bit flip of small streams) and by fuzzing.",
			decoderKlauspost: "klauspost/compress's streaming gzip reader, the widely used implementation. Switch to it if a request that klauspost or Go's compress/gzip accept is refused by `fast` (please report the payload), or as a precaution while investigating a decoding problem.",
		}).
			Description("Which gzip decompressor to use, for gzip and base64 of gzip; zstd is not affected. Both give the same output, the same error texts and the same `max_decoded_bytes` enforcement (a bomb is stopped at the cap either way). The known differences, all on broken input: in `flate: corrupt input before offset N` the offset can differ (each decoder notices the damage at its own point: 15 to 22% of the single-bit flips tried), a stream that is corrupt and also cut short may be called corrupt by `fast` where klauspost calls it truncated, and a malformed dynamic block (a match sent with an empty distance code) that klauspost decodes with the previous block's codes is refused by `fast`, as by Go's compress/gzip.").
			Default(decoderFast).
			Advanced()).
		Example("Seed requests",
			"Decode requests in any accepted format, with the default 256 MiB cap, before the rollup.",
			`
pipeline:
  processors:
    - payload_decode: {}
    - weekly_rollup: {}
`).
		Example("Tight caps",
			"Refuse record values over 16 MiB and decoded requests over 128 MiB; failures carry `error_stage: decode` for the dead-letter route.",
			`
pipeline:
  processors:
    - payload_decode:
        max_decoded_bytes: 134217728
        max_encoded_bytes: 16777216
`)
}

func init() {
	service.MustRegisterProcessor("payload_decode", payloadDecodeProcSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Processor, error) {
			return newPayloadDecodeFromParsedConf(conf, mgr)
		})
}

// The values of the decoder field.
const (
	decoderFast      = "fast"
	decoderKlauspost = "klauspost"
)

type payloadDecodeProc struct {
	maxDecoded int
	maxEncoded int
	gunzip     gunzipFunc
}

func newPayloadDecodeFromParsedConf(conf *service.ParsedConfig, _ *service.Resources) (*payloadDecodeProc, error) {
	maxDecoded, err := conf.FieldInt(pdFieldMaxDecodedBytes)
	if err != nil {
		return nil, err
	}
	if maxDecoded < 1 {
		return nil, fmt.Errorf("%s must be at least 1, got %d", pdFieldMaxDecodedBytes, maxDecoded)
	}
	maxEncoded, err := conf.FieldInt(pdFieldMaxEncodedBytes)
	if err != nil {
		return nil, err
	}
	if maxEncoded < 0 {
		return nil, fmt.Errorf("%s must be 0 (no cap) or more, got %d", pdFieldMaxEncodedBytes, maxEncoded)
	}
	decoder, err := conf.FieldString(pdFieldDecoder)
	if err != nil {
		return nil, err
	}
	// Checked here as well as by the enum's lint rule: a config built in code or run unlinted
	// must not fall back to a decoder nobody chose.
	var gz gunzipFunc
	switch decoder {
	case decoderFast:
		gz = gunzip
	case decoderKlauspost:
		gz = gunzipKlauspost
	default:
		return nil, fmt.Errorf("%s must be %q or %q, got %q", pdFieldDecoder, decoderFast, decoderKlauspost, decoder)
	}
	return &payloadDecodeProc{maxDecoded: maxDecoded, maxEncoded: maxEncoded, gunzip: gz}, nil
}

// Process replaces the content with the decoded JSON. On failure the message
// goes on unchanged, marked with the error and error_stage=decode, so the
// pipeline's dead-letter route gets the original bytes.
func (p *payloadDecodeProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	raw, err := msg.AsBytes()
	if err == nil && p.maxEncoded > 0 && len(raw) > p.maxEncoded {
		err = fmt.Errorf("encoded payload is %d bytes, over %s (%d)", len(raw), pdFieldMaxEncodedBytes, p.maxEncoded)
	}
	var out []byte
	var format Format
	if err == nil {
		out, format, err = decodeWith(raw, p.maxDecoded, p.gunzip)
	}
	if err != nil {
		msg.SetError(err)
		msg.MetaSet(metaErrorStage, "decode")
		return service.MessageBatch{msg}, nil
	}
	if format != FormatJSON {
		msg.SetBytes(out)
	}
	msg.MetaSet(metaPayloadFormat, string(format))
	return service.MessageBatch{msg}, nil
}

// Close releases nothing: the codecs are pooled package-wide.
func (p *payloadDecodeProc) Close(context.Context) error { return nil }

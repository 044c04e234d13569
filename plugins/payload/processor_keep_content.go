package payload

import (
	"context"
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"
)

const kcFieldMetadataKey = "metadata_key"

func keepContentProcSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Categories("Utility").
		Summary("Keeps the message's current bytes in a metadata key, without copying or parsing them.").
		Description(`
The pipelines keep the record value as received (for dead letters, which must carry the original bytes)
and the response JSON (for Parquet) this way. A ` + "`mutation: meta x = content()`" + ` would do the same
job, but Benthos then treats the message as structured and re-serialises it, which parses megabytes of
JSON per request and reorders the response's keys; this processor only stores a reference to the bytes.

The value is stored as bytes (mutable metadata): ` + "`@key`" + ` in Bloblang gives the bytes back, and
outputs that turn metadata into headers must exclude the key (the ` + "`kafka`" + ` output excludes the
` + "`rollup_`" + ` prefix by default).`).
		Field(service.NewStringField(kcFieldMetadataKey).
			Description("The metadata key to store the bytes under.").
			Example("rollup_original"))
}

func init() {
	service.MustRegisterProcessor("keep_content", keepContentProcSpec(),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.Processor, error) {
			return newKeepContentFromParsedConf(conf)
		})
}

func newKeepContentFromParsedConf(conf *service.ParsedConfig) (*keepContentProc, error) {
	key, err := conf.FieldString(kcFieldMetadataKey)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errors.New("metadata_key must not be empty")
	}
	return &keepContentProc{key: key}, nil
}

type keepContentProc struct{ key string }

func (p *keepContentProc) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	b, err := msg.AsBytes()
	if err != nil {
		return nil, err
	}
	// Safe without a copy: processors replace a message's content with SetBytes (a new slice)
	// rather than writing into the old one, so these bytes stay as they are now.
	msg.MetaSetMut(p.key, b)
	return service.MessageBatch{msg}, nil
}

func (p *keepContentProc) Close(context.Context) error { return nil }

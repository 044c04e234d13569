package payload

import (
	"context"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure" // the switch processor
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPayloadProcessorsInAStream runs both processors as registered plugins in
// a Benthos stream: a good request is decoded and re-encoded, a bad one flows
// on with its error and error_stage, untouched by payload_encode's success path.
func TestPayloadProcessorsInAStream(t *testing.T) {
	builder := service.NewStreamBuilder()
	require.NoError(t, builder.SetLoggerYAML(`level: none`))
	produce, err := builder.AddProducerFunc()
	require.NoError(t, err)
	require.NoError(t, builder.AddProcessorYAML(`payload_decode: {max_decoded_bytes: 1048576}`))
	require.NoError(t, builder.AddProcessorYAML(`
switch:
  - check: '!errored()'
    processors:
      - payload_encode: {format: zstd}
`))

	type result struct {
		content      []byte
		err          error
		stage        string
		decodeFormat string
	}
	var mu sync.Mutex
	var got []result
	require.NoError(t, builder.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		b, err := m.AsBytes()
		if err != nil {
			return err
		}
		stage, _ := m.MetaGet(metaErrorStage)
		format, _ := m.MetaGet(metaPayloadFormat)
		mu.Lock()
		got = append(got, result{append([]byte(nil), b...), m.GetError(), stage, format})
		mu.Unlock()
		return nil
	}))
	stream, err := builder.Build()
	require.NoError(t, err)

	js := sampleRequestJSON(100)
	good, bad := b64(stdGzip(t, js)), []byte("H4sI%%%%")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produced := make(chan error, 1)
	go func() {
		defer func() { produced <- stream.StopWithin(10 * time.Second) }()
		for _, b := range [][]byte{good, bad} {
			if err := produce(ctx, service.NewMessage(b)); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	runErr := stream.Run(ctx)
	cancel() // a failed Run leaves produce blocked; release it before the test ends
	stopErr := <-produced
	require.NoError(t, runErr)
	require.NoError(t, stopErr)

	require.Len(t, got, 2)
	assert.NoError(t, got[0].err)
	assert.Equal(t, "gzip_base64", got[0].decodeFormat)
	assert.Equal(t, js, refUnzstd(t, got[0].content))
	assert.Empty(t, got[0].stage)

	require.Error(t, got[1].err)
	assert.Contains(t, got[1].err.Error(), "payload is neither JSON, gzip, zstd nor base64")
	assert.Equal(t, "decode", got[1].stage)
	assert.Equal(t, bad, got[1].content)
}

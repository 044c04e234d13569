package payload

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
)

// Test inputs are produced with independent encoders: the standard library's
// compress/gzip and encoding/base64, and fresh klauspost zstd encoders and
// decoders (never the package's pooled or shared ones).

// sampleRequestJSON builds a scenario request of n hourly rows shaped like the
// contract's example: 12 groups, hourly timestamps, varied metric values. At
// 20,000 rows it is about 6.6 MB, the seed's request size.
func sampleRequestJSON(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	type group struct{ contact, staff, center string }
	var groups []group
	for _, c := range []string{"Medical", "Billing", "Pharmacy"} {
		for _, l := range []string{"English", "Spanish"} {
			for _, cc := range []string{"Default Center", "Overflow Center"} {
				groups = append(groups, group{c, c + " - " + l, cc})
			}
		}
	}
	start := time.Date(2023, 7, 28, 13, 0, 0, 0, time.UTC)
	b := make([]byte, 0, n*340+256)
	b = append(b, `{"event": "rollup", "organizationId": "5a8acad4-2e10-44c3-856e-3477fae1fba8", "week_start": "friday", "weekly": [`...)
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		g := groups[i%len(groups)]
		ts := start.Add(time.Duration(i/len(groups)) * time.Hour)
		b = fmt.Appendf(b, `{"Contact Type": %q, "Staff Type": %q, "Call Center": %q, "Week": %q, `+
			`"Volume": %d.0, "Abandons": %d.0, "Top Line Agents (FTE)": %.4f, "Base AHT": %.2f, `+
			`"Handled Threshold": %d.0, "Service Level (X Seconds)": %.5f, "Acceptable Wait Time": 30.0, "Total Queue Time": %d.0}`,
			g.contact, g.staff, g.center, ts.Format(time.DateTime),
			rng.IntN(400), rng.IntN(12), rng.Float64()*40, 300+rng.Float64()*150,
			rng.IntN(380), 0.7+rng.Float64()*0.3, rng.IntN(5000))
	}
	return append(b, "]}"...)
}

func stdGzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func stdGunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	return out
}

// refZstd compresses with a fresh encoder; with a content size the frame
// header declares it (single segment), without it the frame is a stream of
// unknown size.
func refZstd(t testing.TB, b []byte, declareSize bool) []byte {
	t.Helper()
	if declareSize {
		enc, err := zstd.NewWriter(nil)
		require.NoError(t, err)
		defer enc.Close()
		return enc.EncodeAll(b, nil)
	}
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	require.NoError(t, err)
	_, err = enc.Write(b)
	require.NoError(t, err)
	require.NoError(t, enc.Close())
	return buf.Bytes()
}

func refUnzstd(t testing.TB, b []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	out, err := dec.DecodeAll(b, nil)
	require.NoError(t, err)
	return out
}

func b64(b []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(b))
}

func newDecodeProc(t testing.TB, yaml string) *payloadDecodeProc {
	t.Helper()
	conf, err := payloadDecodeProcSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	p, err := newPayloadDecodeFromParsedConf(conf, service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func newEncodeProc(t testing.TB, yaml string) *payloadEncodeProc {
	t.Helper()
	conf, err := payloadEncodeProcSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	p, err := newPayloadEncodeFromParsedConf(conf, service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// runProc sends one message through a processor and returns the single
// message that must come out.
func runProc(t testing.TB, p service.Processor, content []byte) *service.Message {
	t.Helper()
	batch, err := p.Process(context.Background(), service.NewMessage(content))
	require.NoError(t, err)
	require.Len(t, batch, 1)
	return batch[0]
}

func content(t testing.TB, m *service.Message) []byte {
	t.Helper()
	b, err := m.AsBytes()
	require.NoError(t, err)
	return b
}

func meta(m *service.Message, key string) string {
	v, _ := m.MetaGet(key)
	return v
}

// lintProcessor lints a processor config with the global environment, where
// init registered the plugins.
func lintProcessor(t testing.TB, yaml string) []string {
	t.Helper()
	lints, err := service.GlobalEnvironment().NewComponentConfigLinter().LintProcessorYAML([]byte(yaml))
	require.NoError(t, err)
	var out []string
	for _, l := range lints {
		out = append(out, l.What)
	}
	return out
}

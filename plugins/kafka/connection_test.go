package kafka

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func captureLogger(w io.Writer) *service.Logger {
	return service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func TestConnectionFieldsParse(t *testing.T) {
	spec := service.NewConfigSpec().Fields(connectionFields()...)
	conf, err := spec.ParseYAML(`
seed_brokers: [ "a:9092, b:9092", "c:9092" ]
sasl:
  - mechanism: SCRAM-SHA-512
    username: svc
    password: topsecret
  - mechanism: PLAIN
    username: svc
    password: other
tls:
  enabled: true
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	seeds, err := seedBrokersFromConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seeds, " ") != "a:9092 b:9092 c:9092" {
		t.Fatalf("seeds = %q", seeds)
	}
	mechs, secrets, err := saslFromConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(mechs) != 2 || mechs[0].Name() != "SCRAM-SHA-512" || mechs[1].Name() != "PLAIN" {
		t.Fatalf("mechanisms = %v", mechs)
	}
	if strings.Join(secrets, ",") != "topsecret,other" {
		t.Fatalf("secrets to redact = %q", secrets)
	}
	opts, err := connectionOptsFromConfig(conf, captureLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...) // no request is sent until the client is used
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ClientID); got != "rollup" {
		t.Errorf("client ID %v, want the default rollup", got)
	}
	if got := cl.OptValue(kgo.MetadataMaxAge); got != 5*time.Minute {
		t.Errorf("metadata max age %v, want 5m", got)
	}
	if got, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); got == nil {
		t.Error("TLS enabled but no dial TLS config")
	}
	if got, _ := cl.OptValue(kgo.SeedBrokers).([]string); len(got) != 3 {
		t.Errorf("seed brokers %v", got)
	}
	b, err := fatalBackoffFromConfig(conf)
	if err != nil || b.base != 30*time.Second {
		t.Fatalf("auth_error_backoff default %v, %v", b, err)
	}
}

func TestConnectionFieldsRejectBadValues(t *testing.T) {
	spec := service.NewConfigSpec().Fields(connectionFields()...)
	conf, err := spec.ParseYAML(`seed_brokers: [ " , " ]`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectionOptsFromConfig(conf, nil); err == nil || !strings.Contains(err.Error(), "seed_brokers") {
		t.Fatalf("empty seed list accepted: %v", err)
	}
	conf, err = spec.ParseYAML(`
seed_brokers: [ "a:9092" ]
sasl: [ { mechanism: OAUTHBEARER, username: u, password: p } ]
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectionOptsFromConfig(conf, nil); err == nil || !strings.Contains(err.Error(), "OAUTHBEARER") {
		t.Fatalf("unknown SASL mechanism accepted: %v", err)
	}
}

func TestConnectionLoggerRedactsSecrets(t *testing.T) {
	var buf syncBuffer
	l := &kgoLogger{log: captureLogger(&buf), secrets: []string{"hunter2"}}
	if l.Level() != kgo.LogLevelWarn {
		t.Fatalf("level %v, want warn", l.Level())
	}
	l.Log(kgo.LogLevelWarn, "auth failed", "err", errors.New("bad password hunter2 for user x"), "broker", 1)
	l.Log(kgo.LogLevelError, "boom hunter2")
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret logged: %s", out)
	}
	if !strings.Contains(out, "[redacted]") || !strings.Contains(out, "broker=1") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("log lines missing content: %s", out)
	}
}

func TestConnectionIsFatalClientErr(t *testing.T) {
	for _, tc := range []struct {
		err   error
		fatal bool
	}{
		{nil, false},
		{errors.New("dial tcp: connection refused"), false},
		{kerr.RebalanceInProgress, false},
		{kerr.NotCoordinator, false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("reach brokers: %w", kerr.SaslAuthenticationFailed), true},
		{&kgo.ErrGroupSession{Err: kerr.GroupAuthorizationFailed}, true},
		{kerr.TopicAuthorizationFailed, true},
		{kerr.UnsupportedSaslMechanism, true},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true},
		{fmt.Errorf("x: %w", x509.HostnameError{}), true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
	} {
		if got := isFatalClientErr(tc.err); got != tc.fatal {
			t.Errorf("isFatalClientErr(%v) = %v, want %v", tc.err, got, tc.fatal)
		}
	}
}

func TestConnectionFatalBackoffDoublesAndCaps(t *testing.T) {
	b := newFatalBackoff(30 * time.Second)
	var got []time.Duration
	for range 6 {
		got = append(got, b.failed())
	}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("back-offs %v, want %v", got, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait during back-off returned %v", err)
	}
	b.reset()
	if err := b.wait(ctx); err != nil {
		t.Fatalf("wait after reset returned %v", err)
	}
}

// inputForConnTest builds a kafka input logging into buf.
func inputForConnTest(t *testing.T, yaml string, buf io.Writer) *kafkaInput {
	t.Helper()
	conf, err := kafkaInputSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newKafkaInputFromParsedConf(conf, service.MockResources(service.MockResourcesOptUseLogger(captureLogger(buf))))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestConnectionWrongPasswordFailsClosed: against a SASL/SCRAM broker, a wrong password fails
// Connect with a non-retryable error, the next Connect waits out the back-off instead of
// hammering the broker, and the password appears nowhere in the logs.
func TestConnectionWrongPasswordFailsClosed(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "the-right-one"), kfake.SeedTopics(1, "secure"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const password = "Wr0ngPassw0rd-do-not-log"
	var logs syncBuffer
	in := inputForConnTest(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topics: [ secure ]
consumer_group: g
auth_error_backoff: 1h
sasl:
  - mechanism: SCRAM-SHA-256
    username: admin
    password: %q
`, c.ListenAddrs()[0], password), &logs)

	err = in.Connect(context.Background())
	if err == nil || !isFatalClientErr(err) {
		t.Fatalf("Connect with a wrong password: %v (fatal %v)", err, isFatalClientErr(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := in.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Connect did not wait out the back-off: %v", err)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), password) || strings.Contains(err.Error(), password) {
		t.Fatalf("password leaked: %s", logs.String())
	}

	// The right password connects (and proves the broker side is fine).
	good := inputForConnTest(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topics: [ secure ]
consumer_group: g
sasl: [ { mechanism: SCRAM-SHA-256, username: admin, password: the-right-one } ]
`, c.ListenAddrs()[0]), io.Discard)
	if err := good.Connect(context.Background()); err != nil {
		t.Fatalf("Connect with the right password: %v", err)
	}
	if err := good.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestConnectionUnknownCAFailsClosed: a broker certificate from a CA the client does not trust
// is a non-retryable error.
func TestConnectionUnknownCAFailsClosed(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(selfSignedServerTLS(t)), kfake.SeedTopics(1, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := inputForConnTest(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topics: [ tls ]
consumer_group: g
tls: { enabled: true }
`, c.ListenAddrs()[0]), io.Discard)
	err = in.Connect(context.Background())
	if err == nil || !isFatalClientErr(err) {
		t.Fatalf("Connect to an untrusted certificate: %v", err)
	}
	if err := in.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// selfSignedServerTLS returns a server TLS config with a fresh self-signed certificate for
// 127.0.0.1, which no client trusts.
func selfSignedServerTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kfake-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// Package kafka holds the `kafka` input and output on franz-go (kgo): a consumer-group input with
// ordered per-partition checkpoints and lag, and a producer output. Both share the connection
// fields defined in this file.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Connection field names, shared by the input and the output. Names match Redpanda Connect's
// `redpanda` components so that pipelines move between the two.
const (
	connFieldSeedBrokers      = "seed_brokers"
	connFieldClientID         = "client_id"
	connFieldTLS              = "tls"
	connFieldSASL             = "sasl"
	connFieldSASLMechanism    = "mechanism"
	connFieldSASLUsername     = "username"
	connFieldSASLPassword     = "password"
	connFieldMetadataMaxAge   = "metadata_max_age"
	connFieldAuthErrorBackoff = "auth_error_backoff"
)

// fatalBackoffMax caps the exponential back-off after consecutive non-retryable client errors.
const fatalBackoffMax = 5 * time.Minute

// connectionFields returns the fields every Kafka component of this package shares.
func connectionFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewStringListField(connFieldSeedBrokers).
			Description("Addresses of the Kafka brokers to bootstrap from (`host:port`). Each entry may itself hold several comma-separated addresses, so a single environment variable such as `${KAFKA_BOOTSTRAP_SERVERS}` works. Only one needs to answer; the client discovers the rest of the cluster from it.").
			Example([]string{"localhost:9092"}).
			Example([]string{"broker-1:9092,broker-2:9092"}).
			Example([]string{"${KAFKA_BOOTSTRAP_SERVERS}"}),
		service.NewStringField(connFieldClientID).
			Description("Client ID sent to the brokers with every request; shows up in broker logs and quotas.").
			Default("rollup").
			Advanced(),
		service.NewTLSToggledField(connFieldTLS),
		service.NewObjectListField(connFieldSASL,
			service.NewStringEnumField(connFieldSASLMechanism, "none", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512").
				Description("The SASL mechanism to authenticate with; `none` disables the entry, so a pipeline can switch SASL on and off from one environment variable."),
			service.NewStringField(connFieldSASLUsername).
				Description("The user name to authenticate as.").
				Default(""),
			service.NewStringField(connFieldSASLPassword).
				Description("The password of the user. Never logged.").
				Default("").
				Secret(),
		).
			Description("SASL authentication. Several entries are tried in order until the broker accepts one mechanism. Use with `tls` unless the network is trusted: PLAIN sends the password in clear text.").
			Example([]any{map[string]any{"mechanism": "SCRAM-SHA-512", "username": "${KAFKA_USER}", "password": "${KAFKA_PASSWORD}"}}).
			Optional().
			Advanced(),
		service.NewDurationField(connFieldMetadataMaxAge).
			Description("How often cluster metadata (brokers, partition leaders, new partitions) is refreshed even when nothing forces a refresh.").
			Default("5m").
			Advanced(),
		service.NewDurationField(connFieldAuthErrorBackoff).
			Description("How long to wait before reconnecting after a non-retryable client error: wrong credentials, a SASL failure, an authorization failure or a TLS handshake failure (unknown CA, wrong host name, TLS against a plain-text port). The wait doubles on each consecutive failure up to 5 minutes and is reset by a successful connection, so a misconfigured service neither hammers the brokers nor floods its logs.").
			Default("30s").
			Advanced(),
	}
}

// connectionOptsFromConfig turns the fields of connectionFields into client options: seed brokers,
// client ID, TLS, SASL, metadata max age and a logger that writes kgo's warnings and errors to the
// Benthos logger with every configured password redacted.
func connectionOptsFromConfig(conf *service.ParsedConfig, log *service.Logger) ([]kgo.Opt, error) {
	seeds, err := seedBrokersFromConfig(conf)
	if err != nil {
		return nil, err
	}
	clientID, err := conf.FieldString(connFieldClientID)
	if err != nil {
		return nil, err
	}
	maxAge, err := conf.FieldDuration(connFieldMetadataMaxAge)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(clientID),
		kgo.MetadataMaxAge(maxAge),
	}

	tlsConf, tlsEnabled, err := conf.FieldTLSToggled(connFieldTLS)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", connFieldTLS, err)
	}
	if tlsEnabled {
		opts = append(opts, kgo.DialTLSConfig(tlsConf))
	}

	mechs, secrets, err := saslFromConfig(conf)
	if err != nil {
		return nil, err
	}
	if len(mechs) > 0 {
		opts = append(opts, kgo.SASL(mechs...))
	}
	if log != nil {
		opts = append(opts, kgo.WithLogger(&kgoLogger{log: log, secrets: secrets}))
	}
	if len(mechs) > 0 {
		opts = append(opts, kgo.WithHooks(&saslWatch{}))
	}
	return opts, nil
}

// seedBrokersFromConfig flattens the seed list, splitting comma-separated entries.
func seedBrokersFromConfig(conf *service.ParsedConfig) ([]string, error) {
	raw, err := conf.FieldStringList(connFieldSeedBrokers)
	if err != nil {
		return nil, err
	}
	var seeds []string
	for _, entry := range raw {
		for _, addr := range strings.Split(entry, ",") {
			if addr = strings.TrimSpace(addr); addr != "" {
				seeds = append(seeds, addr)
			}
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("field %q: no broker address given", connFieldSeedBrokers)
	}
	return seeds, nil
}

// saslFromConfig builds the SASL mechanisms and returns the passwords so the logger can redact them.
func saslFromConfig(conf *service.ParsedConfig) ([]sasl.Mechanism, []string, error) {
	if !conf.Contains(connFieldSASL) {
		return nil, nil, nil
	}
	list, err := conf.FieldObjectList(connFieldSASL)
	if err != nil {
		return nil, nil, err
	}
	var mechs []sasl.Mechanism
	var secrets []string
	for i, c := range list {
		mech, err := c.FieldString(connFieldSASLMechanism)
		if err != nil {
			return nil, nil, fmt.Errorf("%s[%d]: %w", connFieldSASL, i, err)
		}
		user, err := c.FieldString(connFieldSASLUsername)
		if err != nil {
			return nil, nil, fmt.Errorf("%s[%d]: %w", connFieldSASL, i, err)
		}
		pass, err := c.FieldString(connFieldSASLPassword)
		if err != nil {
			return nil, nil, fmt.Errorf("%s[%d]: %w", connFieldSASL, i, err)
		}
		if pass != "" {
			secrets = append(secrets, pass)
		}
		switch mech {
		case "none", "":
			// Disabled entry (e.g. KAFKA_SASL_MECHANISM unset): no authentication from it.
		case "PLAIN":
			mechs = append(mechs, plain.Auth{User: user, Pass: pass}.AsMechanism())
		case "SCRAM-SHA-256":
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
		case "SCRAM-SHA-512":
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
		default:
			return nil, nil, fmt.Errorf("%s[%d].%s: unknown mechanism %q", connFieldSASL, i, connFieldSASLMechanism, mech)
		}
	}
	return mechs, secrets, nil
}

// kgoLogger adapts kgo's logger to the Benthos logger. It logs at warn and above only (kgo's info
// level logs every request), and replaces each configured password with "[redacted]" in the
// message and the key/values, so a secret echoed in an error can never reach the logs.
type kgoLogger struct {
	log     *service.Logger
	secrets []string
}

func (l *kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l *kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var b strings.Builder
	b.WriteString("kafka client: ")
	b.WriteString(msg)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fmt.Fprintf(&b, " %v=%v", keyvals[i], keyvals[i+1])
	}
	line := b.String()
	for _, s := range l.secrets {
		line = strings.ReplaceAll(line, s, "[redacted]")
	}
	switch level {
	case kgo.LogLevelError:
		l.log.Error(line)
	case kgo.LogLevelWarn:
		l.log.Warn(line)
	}
}

// isFatalClientErr reports whether err is a client error that retrying soon cannot fix: wrong
// credentials, a rejected SASL mechanism, missing authorization, or a TLS handshake failure
// (certificate from an unknown CA, wrong host name, expired certificate, TLS spoken to a
// plain-text listener). Callers turn these into a long back-off (fatalBackoff) instead of kgo's
// sub-second retries, which would otherwise hammer the broker and flood the logs.
func isFatalClientErr(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, errSASLRejected),
		errors.Is(err, kerr.SaslAuthenticationFailed),
		errors.Is(err, kerr.UnsupportedSaslMechanism),
		errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed):
		return true
	}
	var (
		recordHdr   tls.RecordHeaderError
		verifyErr   *tls.CertificateVerificationError
		alertErr    tls.AlertError
		unknownCA   x509.UnknownAuthorityError
		hostnameErr x509.HostnameError
		invalidErr  x509.CertificateInvalidError
	)
	return errors.As(err, &recordHdr) || errors.As(err, &verifyErr) || errors.As(err, &alertErr) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostnameErr) || errors.As(err, &invalidErr)
}

// errSASLRejected marks a connection the broker closed during SASL authentication; see
// annotateClientErr.
var errSASLRejected = errors.New("SASL authentication rejected")

// Kafka API keys of the SASL exchange.
const (
	apiKeySASLHandshake    = 17
	apiKeySASLAuthenticate = 36
)

// saslWatch is a kgo hook that notices a broker closing the connection in the middle of SASL
// authentication. Apache Kafka answers a wrong password with SASL_AUTHENTICATION_FAILED, but
// some brokers (kfake among them) just close the connection, which the client reports as a bare
// EOF that looks like any network blip. connectionOptsFromConfig installs it when SASL is on.
type saslWatch struct{ failed atomic.Bool }

// saslWatches maps each live client to its watch, so that annotateClientErr can find it.
var saslWatches sync.Map // *kgo.Client -> *saslWatch

func (w *saslWatch) OnNewClient(cl *kgo.Client)    { saslWatches.Store(cl, w) }
func (w *saslWatch) OnClientClosed(cl *kgo.Client) { saslWatches.Delete(cl) }

// OnBrokerRead records whether the latest read of a SASL response failed; a later successful
// SASL read clears it.
func (w *saslWatch) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == apiKeySASLHandshake || key == apiKeySASLAuthenticate {
		w.failed.Store(err != nil)
	}
}

// annotateClientErr returns err wrapped as errSASLRejected (so isFatalClientErr reports it)
// when cl's last SASL exchange was cut off by the broker; otherwise err unchanged. Call it on
// errors from a client built with connectionOptsFromConfig, e.g. after a failed Ping.
func annotateClientErr(cl *kgo.Client, err error) error {
	if err == nil || cl == nil || isFatalClientErr(err) {
		return err
	}
	if w, ok := saslWatches.Load(cl); ok && w.(*saslWatch).failed.Load() {
		return fmt.Errorf("%w: the broker closed the connection during authentication (wrong credentials or mechanism?): %v", errSASLRejected, err)
	}
	return err
}

// fatalBackoff is a capped exponential back-off for non-retryable client errors. Usage, in a
// component's Connect:
//
//	if err := b.wait(ctx); err != nil { return err } // sleeps only after a fatal failure
//	err := connect()
//	if isFatalClientErr(err) { b.failed() } else if err == nil { b.reset() }
//
// Benthos retries Connect after about a second; wait turns that into base, 2*base, ... up to
// fatalBackoffMax. Safe for concurrent use.
type fatalBackoff struct {
	base time.Duration
	max  time.Duration // 0: fatalBackoffMax

	mu       sync.Mutex
	failures int
	until    time.Time
}

func newFatalBackoff(base time.Duration) *fatalBackoff {
	if base <= 0 {
		base = 30 * time.Second
	}
	return &fatalBackoff{base: base}
}

// fatalBackoffFromConfig reads `auth_error_backoff`.
func fatalBackoffFromConfig(conf *service.ParsedConfig) (*fatalBackoff, error) {
	d, err := conf.FieldDuration(connFieldAuthErrorBackoff)
	if err != nil {
		return nil, err
	}
	return newFatalBackoff(d), nil
}

// failed records a fatal failure and returns how long the next attempt will wait.
func (b *fatalBackoff) failed() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	ceil := b.max
	if ceil <= 0 {
		ceil = fatalBackoffMax
	}
	d := b.base
	for i := 0; i < b.failures && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	b.failures++
	b.until = time.Now().Add(d)
	return d
}

// remaining is how long the back-off of the last failure still runs (0 or less: over).
func (b *fatalBackoff) remaining() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Until(b.until)
}

// reset forgets earlier failures after a successful connection.
func (b *fatalBackoff) reset() {
	b.mu.Lock()
	b.failures = 0
	b.until = time.Time{}
	b.mu.Unlock()
}

// wait blocks until the back-off after the last fatal failure has passed, or ctx is done.
func (b *fatalBackoff) wait(ctx context.Context) error {
	b.mu.Lock()
	d := time.Until(b.until)
	b.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

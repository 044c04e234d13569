//go:build fault

package fault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/rollup-dev/rollup/test/checker"
)

// failClosedWindow is how long a misconfigured service is watched. The Kafka components back off
// 30s (auth_error_backoff) after the first non-retryable failure, doubling, so a healthy back-off
// shows a handful of attempts in this window and a hot loop shows hundreds.
const failClosedWindow = 30 * time.Second

// maxAttemptsInWindow is the most connection attempts allowed in failClosedWindow: the input and
// the two outputs each try at start, and once more after the back-off, with some slack for the
// client's own retries within one attempt.
const maxAttemptsInWindow = 12

// wrongPassword is distinctive so that a log line holding it cannot be a coincidence.
const wrongPassword = "wr0ng-Pa55word-7f3a9c"

// countingListener counts accepted TCP connections: the broker's view of connection attempts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// secBroker is a broker endpoint with security for scenario 9.
type secBroker struct {
	addr      string
	adminOpts []kgo.Opt         // how the suite itself authenticates
	conns     func() int64      // accepted connections so far, or nil (real Kafka)
	good, bad map[string]string // pipeline env: right and wrong credentials
	secret    string            // what must not appear in the logs ("" for none)
	badReason []string          // one of these must appear in the logs: the reason is visible
	what      string
}

// TestScenario09Security runs the service with a wrong SASL password and, separately, with a TLS
// CA that did not sign the broker's certificate. Each time it must fail closed (nothing consumed,
// nothing committed), back off instead of retrying in a loop, and keep the password out of its
// logs; with the right credentials it then answers every request. Against real Kafka the SASL and
// TLS listeners of `KAFKA_SECURITY=sasl_scram,tls kafka.sh start` are used; otherwise (the
// dev-broker command has no SASL or TLS) two in-process kfake brokers with SASL/SCRAM and TLS.
func TestScenario09Security(t *testing.T) {
	// In parallel: each has its own listener, topics and group, and spends most of its time waiting
	// out failClosedWindow with bad credentials, so running them together halves the scenario.
	t.Run("wrong SASL password", func(t *testing.T) {
		t.Parallel()
		runFailClosed(t, "9a wrong SASL password", saslBroker(t))
	})
	t.Run("TLS unknown CA", func(t *testing.T) {
		t.Parallel()
		runFailClosed(t, "9b TLS cert from unknown CA", tlsBroker(t))
	})
}

func saslBroker(t *testing.T) secBroker {
	if sec := brk.Security(); sec != nil {
		env := func(pass string) map[string]string {
			return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": sec.SASLAddr, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
				"KAFKA_SASL_USERNAME": sec.SASLUser, "KAFKA_SASL_PASSWORD": pass}
		}
		return secBroker{
			addr: brk.Addr(), good: env(sec.SASLPassword), bad: env(wrongPassword), secret: wrongPassword,
			badReason: []string{"SASL", "authentication"},
			what:      "real Kafka SASL_PLAINTEXT listener " + sec.SASLAddr + " (topics made on PLAINTEXT)",
		}
	}
	const user, pass = "rollup", "rollup-secret"
	var n atomic.Int64
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", user, pass),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(maxMessageBytes)}),
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			return countingListener{ln, &n}, err
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	env := func(p string) map[string]string {
		return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": addr, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
			"KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": p}
	}
	return secBroker{
		addr:      addr,
		adminOpts: []kgo.Opt{kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())},
		conns:     n.Load, good: env(pass), bad: env(wrongPassword), secret: wrongPassword,
		badReason: []string{"SASL", "authentication"},
		what:      "in-process kfake with SASL/SCRAM-SHA-512 at " + addr,
	}
}

func tlsBroker(t *testing.T) secBroker {
	if sec := brk.Security(); sec != nil {
		env := func(ca string) map[string]string {
			return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": sec.TLSAddr, "KAFKA_TLS_ENABLED": "true", "KAFKA_TLS_CA_FILE": ca}
		}
		return secBroker{
			addr: brk.Addr(), good: env(sec.CAFile), bad: env(sec.UnknownCAFile),
			badReason: []string{"certificate", "unknown authority"},
			what:      "real Kafka SSL listener " + sec.TLSAddr + " (topics made on PLAINTEXT)",
		}
	}
	dir := filepath.Join(runDir, "tls")
	serverConf, caFile, unknownCAFile, clientConf := makeTLS(t, dir)
	var n atomic.Int64
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverConf),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(maxMessageBytes)}),
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			return countingListener{ln, &n}, err
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	env := func(ca string) map[string]string {
		return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": addr, "KAFKA_TLS_ENABLED": "true", "KAFKA_TLS_CA_FILE": ca}
	}
	return secBroker{
		addr: addr, adminOpts: []kgo.Opt{kgo.DialTLSConfig(clientConf)}, conns: n.Load,
		good: env(caFile), bad: env(unknownCAFile),
		badReason: []string{"certificate", "unknown authority"},
		what:      "in-process kfake with TLS at " + addr,
	}
}

func runFailClosed(t *testing.T, name string, b secBroker) {
	s := newScenario(t, name, scenarioOpts{brokers: strings.Split(b.addr, ","), clientOpts: b.adminOpts})
	small, _ := pool()
	s.mustProduce(small[:20]...)
	s.addLoad("backlog 20")
	s.note("%s", b.what)

	// With the wrong credentials: watch it for a while.
	env := func(sec map[string]string) []string {
		var kv []string
		for k, v := range sec {
			kv = append(kv, k, v)
		}
		return kv
	}
	var before int64
	if b.conns != nil {
		before = b.conns()
	}
	bad := s.start("rollup-misconfigured", env(b.bad)...)
	time.Sleep(failClosedWindow)
	var conns int64 = -1
	if b.conns != nil {
		conns = b.conns() - before
	}
	aliveDuring := bad.alive()
	bad.stop(t, time.Minute)
	log := bad.log()

	// Fail closed: nothing answered, nothing committed.
	outs, err := s.chk.ReadOutcomes(t.Context(), checker.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) > 0 {
		t.Errorf("%d outcomes written with wrong credentials", len(outs))
	}
	if c := s.committed(); c != 0 {
		t.Errorf("group committed %d offsets with wrong credentials", c)
	}
	// The reason is in the logs, the password is not.
	if b.secret != "" && strings.Contains(log, b.secret) {
		t.Errorf("the password %q appears in the logs (%s)", b.secret, bad.logPath)
	}
	if b.secret != "" {
		if b64s := strings.Contains(log, "d3Iwbmc"); b64s { // base64 of "wr0ng"
			t.Errorf("the password appears base64-encoded in the logs (%s)", bad.logPath)
		}
	}
	reason := false
	for _, r := range b.badReason {
		reason = reason || strings.Contains(strings.ToLower(log), strings.ToLower(r))
	}
	if !reason {
		t.Errorf("no log line names the cause (%v); log %s:\n%s", b.badReason, bad.logPath, bad.tail(20))
	}
	// Back-off: connection attempts as logged, and as the broker counted them.
	attempts := countAttempts(bad)
	s.note("%v with bad credentials: %d failed attempts logged", failClosedWindow, attempts)
	if conns >= 0 {
		s.note("%d TCP connections accepted by the broker", conns)
	}
	if attempts == 0 {
		t.Errorf("no failed connection attempt logged in %v; log %s", failClosedWindow, bad.logPath)
	}
	if attempts > maxAttemptsInWindow || conns > 3*maxAttemptsInWindow {
		t.Errorf("%d logged attempts and %d connections in %v: a retry loop, not a back-off (log %s)",
			attempts, conns, failClosedWindow, bad.logPath)
	}
	if aliveDuring {
		s.note("process stayed up, not ready")
	} else {
		s.note("process exited (%v)", bad.exitErr)
	}
	s.note("password not in logs")

	// With the right credentials every request is answered: nothing was consumed and lost.
	good := s.start("rollup-fixed", env(b.good)...)
	s.chk.MarkFaultCleared()
	good.waitReady(t, time.Minute)
	s.finish(finishOpts{maxDuplicated: 0})
	good.stop(t, time.Minute)
}

// countAttempts counts the failed connection attempts a process logged: the lines at warning
// or error level from a Kafka component that say it could not connect.
func countAttempts(p *rollupProc) int {
	n := 0
	for _, l := range p.logLines() {
		if l.Level != "error" && l.Level != "warning" {
			continue
		}
		m := strings.ToLower(l.Msg)
		if strings.Contains(m, "failed to connect") || strings.Contains(m, "non-retryable") ||
			strings.Contains(m, "unable to open connection") || strings.Contains(m, "authentication") {
			n++
		}
	}
	return n
}

// makeTLS writes a CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA.
func makeTLS(t *testing.T, dir string) (server *tls.Config, caFile, unknownCAFile string, client *tls.Config) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	newCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	ca, caKey, caPEM := newCA("rollup fault-suite CA")
	_, _, otherPEM := newCA("rollup fault-suite unknown CA")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, unknownCAFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "unknown-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unknownCAFile, otherPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, caFile, unknownCAFile, client
}

//go:build fault

package fault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerCtl is the broker under test and the faults the suite can inflict on it.
type brokerCtl interface {
	Name() string
	Addr() string
	// Kill9 kills the broker with SIGKILL, keeping its data; Restart starts it again on the
	// same data and address and returns once it answers.
	Kill9() error
	Restart() error
	// Pause and Resume send SIGSTOP and SIGCONT.
	Pause() error
	Resume() error
	// Security returns the SASL and TLS listeners of a real broker started with
	// KAFKA_SECURITY=sasl_scram,tls (from `kafka.sh env`), or nil.
	Security() *securityEnv
	Close()
}

// securityEnv is what `kafka.sh env` prints for the SASL and TLS listeners.
type securityEnv struct {
	SASLAddr, SASLUser, SASLPassword string
	TLSAddr, CAFile, UnknownCAFile   string
}

// procAttr puts a child in its own process group (a Ctrl-C on the terminal reaches the test,
// which then cleans up, not the child directly) and kills it if the test process dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitAnswers waits until a broker at addr answers a metadata request.
func waitAnswers(addr string, timeout time.Duration, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = cl.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker %s does not answer after %v: %w", addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// devBroker is `rollup dev-broker --data-dir` run as a process of its own, so that SIGKILL,
// SIGSTOP and SIGCONT reach a real process and the data dir is all that survives a crash.
type devBroker struct {
	addr, dataDir, logPath string
	cmd                    *exec.Cmd
	exited                 chan struct{}
	starts                 int
}

func startDevBroker(dir string) (*devBroker, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d := &devBroker{addr: addr, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "broker.log")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return d, d.start()
}

func (d *devBroker) start() error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.starts++
	fmt.Fprintf(logf, "==== fault suite: start %d at %s ====\n", d.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(rollup, "dev-broker", "--addr", d.addr, "--partitions", "3", "--data-dir", d.dataDir, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start dev-broker: %w", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	if err := waitAnswers(d.addr, 60*time.Second); err != nil {
		return fmt.Errorf("dev-broker (log %s): %w", d.logPath, err)
	}
	return nil
}

func (d *devBroker) Name() string {
	return "the dev-broker process (kfake, `rollup dev-broker --data-dir`)"
}
func (d *devBroker) Addr() string             { return d.addr }
func (d *devBroker) Security() *securityEnv   { return nil }
func (d *devBroker) signal(s os.Signal) error { return d.cmd.Process.Signal(s) }
func (d *devBroker) Pause() error             { return d.signal(syscall.SIGSTOP) }
func (d *devBroker) Resume() error            { return d.signal(syscall.SIGCONT) }

func (d *devBroker) Kill9() error {
	if err := d.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("dev-broker survived SIGKILL for 30s")
	}
}

func (d *devBroker) Restart() error { return d.start() }

func (d *devBroker) Close() {
	select {
	case <-d.exited:
		return
	default:
	}
	d.signal(syscall.SIGCONT)
	d.signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.signal(syscall.SIGKILL)
		<-d.exited
	}
}

// kafkaScript is a real Apache Kafka broker managed by test/kafka/kafka.sh, which the suite calls
// with the environment it was started with (KAFKA_PORT, KAFKA_WORKDIR, KAFKA_SECURITY) for kill9,
// restart, pause and resume.
type kafkaScript struct {
	addr   string
	script string
	env    []string
	sec    *securityEnv
}

func newKafkaScript(addr string) (*kafkaScript, error) {
	k := &kafkaScript{addr: addr, script: filepath.Join(repoRoot, "test", "kafka", "kafka.sh")}
	env := os.Environ()
	// kafka.sh finds its broker by port (and work dir): default the port to the one in
	// KAFKA_BOOTSTRAP_SERVERS.
	if os.Getenv("KAFKA_PORT") == "" {
		if _, port, err := net.SplitHostPort(strings.Split(addr, ",")[0]); err == nil {
			env = append(env, "KAFKA_PORT="+port)
		}
	}
	k.env = env
	out, err := k.run("env")
	if err != nil {
		return nil, err
	}
	vars := parseExports(out)
	if vars["KAFKA_BOOTSTRAP_SERVERS"] != "" && vars["KAFKA_BOOTSTRAP_SERVERS"] != addr {
		return nil, fmt.Errorf("KAFKA_BOOTSTRAP_SERVERS=%s but `kafka.sh env` describes a broker at %s: run the suite with the KAFKA_PORT/KAFKA_WORKDIR the broker was started with",
			addr, vars["KAFKA_BOOTSTRAP_SERVERS"])
	}
	// A restart must bring the same listeners back: take KAFKA_SECURITY from what runs.
	if os.Getenv("KAFKA_SECURITY") == "" {
		var sec []string
		if vars["KAFKA_SASL_BOOTSTRAP_SERVERS"] != "" {
			sec = append(sec, "sasl_scram")
		}
		if vars["KAFKA_TLS_BOOTSTRAP_SERVERS"] != "" {
			sec = append(sec, "tls")
		}
		k.env = append(k.env, "KAFKA_SECURITY="+strings.Join(sec, ","))
	}
	if vars["KAFKA_SASL_BOOTSTRAP_SERVERS"] != "" && vars["KAFKA_TLS_BOOTSTRAP_SERVERS"] != "" {
		k.sec = &securityEnv{
			SASLAddr: vars["KAFKA_SASL_BOOTSTRAP_SERVERS"], SASLUser: vars["KAFKA_SASL_USERNAME"],
			SASLPassword: vars["KAFKA_SASL_PASSWORD"], TLSAddr: vars["KAFKA_TLS_BOOTSTRAP_SERVERS"],
			CAFile: vars["KAFKA_TLS_CA_FILE"], UnknownCAFile: vars["KAFKA_TLS_UNKNOWN_CA_FILE"],
		}
	}
	if err := waitAnswers(addr, 60*time.Second); err != nil {
		return nil, err
	}
	return k, nil
}

// parseExports reads `export K=V` lines (values as bash's printf %q writes simple strings).
func parseExports(out string) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `'"`)
		v = strings.ReplaceAll(v, `\`, "")
		vars[k] = v
	}
	return vars
}

func (k *kafkaScript) run(args ...string) (string, error) {
	return k.runEnv(nil, args...)
}

func (k *kafkaScript) runEnv(extra []string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{k.script}, args...)...)
	cmd.Env = append(append([]string(nil), k.env...), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kafka.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (k *kafkaScript) Name() string {
	name := "Apache Kafka 3.9.0 (test/kafka/kafka.sh)"
	if k.sec != nil {
		name = "Apache Kafka 3.9.0 (test/kafka/kafka.sh, KAFKA_SECURITY=sasl_scram,tls)"
	}
	return name
}
func (k *kafkaScript) Addr() string           { return k.addr }
func (k *kafkaScript) Security() *securityEnv { return k.sec }
func (k *kafkaScript) Kill9() error           { _, err := k.run("kill9"); return err }
func (k *kafkaScript) Pause() error           { _, err := k.run("pause"); return err }
func (k *kafkaScript) Resume() error          { _, err := k.run("resume"); return err }
func (k *kafkaScript) Close()                 {}

func (k *kafkaScript) Restart() error {
	if _, err := k.runEnv([]string{"KAFKA_REUSE_DATA=1"}, "start"); err != nil {
		return err
	}
	return waitAnswers(k.addr, 60*time.Second)
}

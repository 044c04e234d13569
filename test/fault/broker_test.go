//go:build fault

package fault

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerCtl is the broker (or cluster) under test and the faults the suite can inflict on it.
// Faults name one broker by its node id: on a 3-node cluster, killing or pausing one is a partial
// failure (its partitions' leadership moves to the others). The dev broker is one node and
// ignores the id.
type brokerCtl interface {
	Name() string
	Addr() string
	// Nodes is the number of brokers.
	Nodes() int
	// Kill9 kills broker id with SIGKILL, keeping its data; Restart starts it again on the same
	// data and address and returns once it answers.
	Kill9(id int32) error
	Restart(id int32) error
	// Pause and Resume send SIGSTOP and SIGCONT to broker id.
	Pause(id int32) error
	Resume(id int32) error
	// Stop stops broker id with SIGTERM (a controlled shutdown), keeping its data; Restart
	// starts it again.
	Stop(id int32) error
	// Controller returns the id of the active KRaft controller.
	Controller() (int32, error)
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

// waitAnswers waits until a broker at addr (a comma list for a cluster) answers a metadata
// request.
func waitAnswers(addr string, timeout time.Duration, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(addr, ",")...)}, opts...)...)
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
func (d *devBroker) Addr() string               { return d.addr }
func (d *devBroker) Nodes() int                 { return 1 }
func (d *devBroker) Security() *securityEnv     { return nil }
func (d *devBroker) signal(s os.Signal) error   { return d.cmd.Process.Signal(s) }
func (d *devBroker) Pause(int32) error          { return d.signal(syscall.SIGSTOP) }
func (d *devBroker) Resume(int32) error         { return d.signal(syscall.SIGCONT) }
func (d *devBroker) Kill9(int32) error          { return d.stopWith(syscall.SIGKILL) }
func (d *devBroker) Stop(int32) error           { return d.stopWith(syscall.SIGTERM) }
func (d *devBroker) Restart(int32) error        { return d.start() }
func (d *devBroker) Controller() (int32, error) { return 0, nil }

func (d *devBroker) stopWith(sig syscall.Signal) error {
	if err := d.signal(sig); err != nil {
		return err
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("dev-broker survived %v for 30s", sig)
	}
}

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

// kafkaScript is a real Apache Kafka cluster managed by test/kafka/kafka.sh, which the suite calls
// with the environment it was started with (KAFKA_PORT, KAFKA_WORKDIR) to kill, restart, stop and
// pause one broker (`kafka.sh kill9 ID`, `start ID`, ...) and to find the active controller.
type kafkaScript struct {
	addr    string
	script  string
	env     []string
	sec     *securityEnv
	version string
	nodes   int
}

func newKafkaScript(addr string) (*kafkaScript, error) {
	k := &kafkaScript{addr: addr, script: filepath.Join(repoRoot, "test", "kafka", "kafka.sh")}
	env := os.Environ()
	// kafka.sh finds its cluster by port (and work dir): default the port to the first one in
	// KAFKA_BOOTSTRAP_SERVERS (node 1's). It reads the version, node count and security of the
	// running cluster back from its work dir.
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
		return nil, fmt.Errorf("KAFKA_BOOTSTRAP_SERVERS=%s but `kafka.sh env` describes a cluster at %s: run the suite with the KAFKA_PORT/KAFKA_WORKDIR the cluster was started with",
			addr, vars["KAFKA_BOOTSTRAP_SERVERS"])
	}
	k.version = vars["KAFKA_VERSION"]
	k.nodes = len(strings.Split(addr, ","))
	if n, err := strconv.Atoi(vars["KAFKA_BROKERS"]); err == nil {
		k.nodes = n
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
	name := fmt.Sprintf("Apache Kafka %s, %d-node KRaft cluster (test/kafka/kafka.sh", cmp.Or(k.version, "?"), k.nodes)
	if k.nodes == 1 {
		name = fmt.Sprintf("Apache Kafka %s, one KRaft node (test/kafka/kafka.sh", cmp.Or(k.version, "?"))
	}
	if k.sec != nil {
		name += ", KAFKA_SECURITY=sasl_scram,tls"
	}
	return name + ")"
}
func (k *kafkaScript) Addr() string           { return k.addr }
func (k *kafkaScript) Nodes() int             { return k.nodes }
func (k *kafkaScript) Security() *securityEnv { return k.sec }
func (k *kafkaScript) Close()                 {}
func (k *kafkaScript) Kill9(id int32) error   { return k.node("kill9", id) }
func (k *kafkaScript) Pause(id int32) error   { return k.node("pause", id) }
func (k *kafkaScript) Resume(id int32) error  { return k.node("resume", id) }
func (k *kafkaScript) Stop(id int32) error    { return k.node("stop", id) }

func (k *kafkaScript) node(cmd string, id int32) error {
	_, err := k.run(cmd, strconv.Itoa(int(id)))
	return err
}

// Restart starts broker id again on its data; kafka.sh returns once it is up and listed.
func (k *kafkaScript) Restart(id int32) error {
	if err := k.node("start", id); err != nil {
		return err
	}
	return waitAnswers(k.addr, 60*time.Second)
}

func (k *kafkaScript) Controller() (int32, error) {
	out, err := k.run("controller")
	if err != nil {
		return -1, err
	}
	id, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return -1, fmt.Errorf("kafka.sh controller printed %q", out)
	}
	return int32(id), nil
}

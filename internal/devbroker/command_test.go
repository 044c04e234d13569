package devbroker

import (
	"bufio"
	"context"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

// runningCommand is `rollup dev-broker` running in a goroutine, its stdout
// read line by line so that it never blocks on a write.
type runningCommand struct {
	lines <-chan string
	done  <-chan error
}

func runCommandAsync(ctx context.Context, t *testing.T, args ...string) runningCommand {
	t.Helper()
	pr, pw := io.Pipe()
	app := &cli.App{
		Name:      "rollup",
		Commands:  []*cli.Command{Command()},
		Writer:    pw,
		ErrWriter: io.Discard,
	}
	lines := make(chan string, 4096) // more than any help text, so the command never blocks on output nobody reads
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	done := make(chan error, 1)
	go func() {
		err := app.RunContext(ctx, append([]string{"rollup", "dev-broker"}, args...))
		pw.Close()
		done <- err
	}()
	return runningCommand{lines: lines, done: done}
}

// next returns the next line printed, failing if the command ended first.
func (r runningCommand) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-r.lines:
		if ok {
			return l
		}
	case err := <-r.done:
		t.Fatalf("dev-broker ended before printing: %v", err)
	}
	t.Fatal("dev-broker output closed")
	return ""
}

var listeningLine = regexp.MustCompile(`^dev-broker: listening on (\S+) \(topics: (.+); (\d+) partitions each; max message (\d+) bytes\)$`)

// waitListening reads the two start lines and returns the address, after
// checking them against the broker itself.
func (r runningCommand) waitListening(t *testing.T, wantTopics []string, wantPartitions int) string {
	t.Helper()
	m := listeningLine.FindStringSubmatch(r.next(t))
	require.NotNil(t, m, "first line does not match %s", listeningLine)
	addr := m[1]
	assert.Equal(t, strings.Join(wantTopics, ", "), m[2])
	assert.Equal(t, strconv.Itoa(wantPartitions), m[3])
	assert.Equal(t, strconv.Itoa(int(DefaultMaxMessageBytes)), m[4])
	assert.Equal(t, "export KAFKA_BOOTSTRAP_SERVERS="+addr, r.next(t))

	adm := adminFor(t, addr)
	details, err := adm.ListTopics(ctxBound(t))
	require.NoError(t, err)
	assert.ElementsMatch(t, wantTopics, details.Names())
	for _, name := range wantTopics {
		assert.Len(t, details[name].Partitions, wantPartitions, name)
	}
	return addr
}

func TestCommandRunsUntilContextEnds(t *testing.T) {
	t.Setenv(EnvInputTopic, "Custom-In")
	t.Setenv(EnvOutputTopic, "")
	t.Setenv(EnvDLQTopic, "Custom-DLQ")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := runCommandAsync(ctx, t, "--addr", "127.0.0.1:0", "--partitions", "2", "--log-level", "none")
	addr := r.waitListening(t, []string{"Custom-In", DefaultOutputTopic, "Custom-DLQ"}, 2)

	cancel()
	require.NoError(t, <-r.done)
	assert.Equal(t, "dev-broker: stopping", r.next(t))
	assertClosed(t, addr)
}

// SIGINT stops it cleanly (exit without error). The signal is sent only once
// the address is printed, which the command does after it has started
// catching signals, so the test process is never at risk of the default
// action.
func TestCommandStopsOnSIGINT(t *testing.T) {
	t.Setenv(EnvInputTopic, "")
	t.Setenv(EnvOutputTopic, "")
	t.Setenv(EnvDLQTopic, "")

	r := runCommandAsync(context.Background(), t, "--addr", "127.0.0.1:0")
	addr := r.waitListening(t, ContractTopics(), DefaultPartitions)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
	require.NoError(t, <-r.done)
	assertClosed(t, addr)
}

func assertClosed(t *testing.T, addr string) {
	t.Helper()
	// Rebinding the exact address proves the listener is gone, without
	// timing: a port still held fails with "address already in use".
	b, err := Start(Options{Addr: addr, Topics: []string{"probe"}})
	if err != nil {
		t.Fatalf("the broker's address %s is still in use after the command returned: %v", addr, err)
	}
	b.Close()
}

func TestCommandFlagErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"partitions zero":   {[]string{"--addr", "127.0.0.1:0", "--partitions", "0"}, "--partitions must be at least 1"},
		"partitions text":   {[]string{"--addr", "127.0.0.1:0", "--partitions", "many"}, "invalid value"},
		"bad log level":     {[]string{"--addr", "127.0.0.1:0", "--log-level", "loud"}, `--log-level "loud"`},
		"address sans port": {[]string{"--addr", "127.0.0.1"}, "missing port"},
		"extra argument":    {[]string{"--addr", "127.0.0.1:0", "now"}, "takes no arguments"},
		"unknown flag":      {[]string{"--addr", "127.0.0.1:0", "--topics", "x"}, "flag provided but not defined"},
	} {
		t.Run(name, func(t *testing.T) {
			// A context that is already done: were the flags accepted, the
			// command would start and stop at once without error.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			r := runCommandAsync(ctx, t, tc.args...)
			err := <-r.done
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCommandAcceptsValidFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCommandAsync(ctx, t, "--addr", "127.0.0.1:0", "--partitions", "1", "--log-level", "DEBUG",
		"--data-dir", t.TempDir())
	require.NoError(t, <-r.done)
}

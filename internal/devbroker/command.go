package devbroker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/urfave/cli/v2"
)

// Command returns `dev-broker`, which runs the embedded broker until SIGINT
// or SIGTERM (or until the command's context ends). Add it to the binary with
// service.CLIOptAddCommand(devbroker.Command()).
func Command() *cli.Command {
	// Benthos runs Usage and Description through text/template: no double
	// braces in them.
	return &cli.Command{
		Name:  "dev-broker",
		Usage: "Run an embedded Kafka-protocol broker for development (nothing to install)",
		Description: `Runs a single-node Kafka-protocol broker (franz-go's kfake) in this process
until interrupted, with the contract's topics created and a message size limit
of 100 MiB, enough for 500k-row requests. Topic names come from
INPUT_KAFKA_TOPIC, OUTPUT_KAFKA_TOPIC and DLQ_KAFKA_TOPIC (defaults
Scenario-Execute, Scenario-Execute-Response, Scenario-Execute-DLQ), so
"rollup -e .env dev-broker" matches a pipeline run with the same .env.
Topics a client asks to auto-create are created with --partitions partitions.
Data lives in memory unless --data-dir is given.

  rollup dev-broker
  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
  rollup run pipelines/weekly-rollup.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:  "addr",
				Value: DefaultAddr,
				Usage: "host:port to listen on and advertise (port 0: any free port)",
			},
			&cli.IntFlag{
				Name:  "partitions",
				Value: DefaultPartitions,
				Usage: "partitions per topic",
			},
			&cli.StringFlag{
				Name:  "data-dir",
				Usage: "persist the broker's state in this directory and reload it on restart (default: memory only)",
			},
			&cli.StringSliceFlag{
				Name:  "broker-config",
				Usage: "KEY=VALUE broker config, repeatable (e.g. log.cleaner.backoff.ms=5000, so that topics with retention.ms are trimmed every 5 s in long runs)",
			},
			&cli.StringFlag{
				Name:  "log-level",
				Value: "warn",
				Usage: "broker log level on stderr: none, error, warn, info, debug",
			},
		},
		Action: runCommand,
	}
}

func runCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("dev-broker takes no arguments, got %q", c.Args().Slice())
	}
	level, err := parseLogLevel(c.String("log-level"))
	if err != nil {
		return err
	}
	if n := c.Int("partitions"); n < 1 {
		return fmt.Errorf("--partitions must be at least 1, got %d", n)
	}

	// Catch signals before the broker exists: a SIGINT sent as soon as the
	// address is printed must stop the broker, not kill the process.
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := Options{
		Addr:             c.String("addr"),
		Partitions:       c.Int("partitions"),
		Topics:           TopicsFromEnv(),
		AutoCreateTopics: true, // as Kafka's default, so kcat -P to a new topic works
		DataDir:          c.String("data-dir"),
		BrokerConfigs:    map[string]string{},
	}
	for _, kv := range c.StringSlice("broker-config") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--broker-config %q: want KEY=VALUE", kv)
		}
		opts.BrokerConfigs[k] = v
	}
	if level != kfake.LogLevelNone {
		opts.Logger = kfake.BasicLogger(errWriter(c), level)
	}
	b, err := Start(opts)
	if err != nil {
		return fmt.Errorf("dev-broker: %w", err)
	}
	defer b.Close()

	w := outWriter(c)
	fmt.Fprintf(w, "dev-broker: listening on %s (topics: %s; %d partitions each; max message %d bytes)\n",
		b.Addr(), strings.Join(b.Topics(), ", "), b.Partitions(), b.MaxMessageBytes())
	fmt.Fprintf(w, "export %s=%s\n", EnvBootstrapServers, b.Addr())

	<-ctx.Done()
	fmt.Fprintln(w, "dev-broker: stopping")
	return nil
}

func parseLogLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none", "off", "":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn", "warning":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return 0, fmt.Errorf("--log-level %q: want none, error, warn, info or debug", s)
}

func outWriter(c *cli.Context) io.Writer {
	if c.App != nil && c.App.Writer != nil {
		return c.App.Writer
	}
	return os.Stdout
}

func errWriter(c *cli.Context) io.Writer {
	if c.App != nil && c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

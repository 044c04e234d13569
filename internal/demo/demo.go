// Package demo is `rollup demo`: the real job end to end with nothing installed. It starts the
// embedded broker, runs pipelines/weekly-rollup.yaml in-process against it, produces generated
// seed-sized requests, waits for their answers and prints a weekly table per group.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/internal/gen"
	"github.com/rollup-dev/rollup/pipelines"
	"github.com/rollup-dev/rollup/plugins/parquet"
	"github.com/rollup-dev/rollup/plugins/payload"
)

// Options of one demo run.
type Options struct {
	Requests   int           // how many generated requests to send
	ParquetDir string        // when set, one Parquet file per response is written there
	Config     string        // pipeline file; empty: the embedded pipelines/weekly-rollup.yaml
	Timeout    time.Duration // give up waiting for answers after this long
	Quiet      bool          // print the summary only, not the weekly tables
	Out        io.Writer
}

// Command is the `demo` CLI command.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "Run the weekly rollup end to end on an embedded Kafka broker (nothing to install)",
		Description: "Starts an embedded Kafka broker, runs pipelines/weekly-rollup.yaml in-process, produces a\n" +
			"generated seed-sized request (19,488 hourly rows), waits for the response and prints its\n" +
			"weekly table per group.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "requests", Value: 1, Usage: "how many requests to send"},
			&cli.StringFlag{Name: "parquet-dir", Usage: "also write each response as Parquet into this directory"},
			&cli.StringFlag{Name: "config", Usage: "pipeline to run instead of the embedded weekly-rollup.yaml"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long to wait for the answers"},
			&cli.BoolFlag{Name: "quiet", Usage: "print only the summary, not the weekly tables"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, Options{
				Requests:   c.Int("requests"),
				ParquetDir: c.String("parquet-dir"),
				Config:     c.String("config"),
				Timeout:    c.Duration("timeout"),
				Quiet:      c.Bool("quiet"),
				Out:        c.App.Writer,
			})
		},
	}
}

const (
	inTopic   = "Scenario-Execute"
	outTopic  = "Scenario-Execute-Response"
	dlqTopic  = "Scenario-Execute-DLQ"
	demoGroup = "rollup-demo"
)

// Run runs one demo and returns nil once every request has its response.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Requests < 1 {
		return fmt.Errorf("--requests must be at least 1, got %d", o.Requests)
	}
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Out, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	step("starting the embedded Kafka broker")
	broker, err := devbroker.Start(devbroker.Options{Addr: "127.0.0.1:0", Partitions: 3,
		Topics: []string{inTopic, outTopic, dlqTopic}})
	if err != nil {
		return fmt.Errorf("start embedded broker: %w", err)
	}
	defer broker.Close()
	step("broker listening on %s", broker.Addr())

	stream, err := buildStream(o.Config, broker.Addr())
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	// Run's context only aborts; a clean end (drain, commit, leave the group) is stream.Stop below.
	go func() { runErr <- stream.Run(context.Background()) }()
	defer func() { _ = stream.StopWithin(10 * time.Second) }()
	step("pipeline weekly-rollup running (consumer group %q)", demoGroup)

	opts := append(devbroker.ClientOpts(broker.MaxMessageBytes()), kgo.SeedBrokers(broker.Addr()),
		kgo.ConsumeTopics(outTopic, dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	defer cl.Close()

	want := map[string]bool{}
	rows := 0
	for i := 0; i < o.Requests; i++ {
		g := gen.Defaults(uint64(i + 1))
		js := gen.Request(g)
		val := gen.Encode(js)
		rows += g.Rows()
		want[g.OrganizationID()] = true
		rec := &kgo.Record{Topic: inTopic, Key: []byte(g.OrganizationID()), Value: val,
			Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("rollup-demo")}}}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("produce request %d: %w", i+1, err)
		}
		step("produced request %d: organizationId %s, %d hourly rows, %.1f MB JSON, %.1f MB on the wire",
			i+1, g.OrganizationID(), g.Rows(), float64(len(js))/1e6, float64(len(val))/1e6)
	}
	sent := time.Now()

	waitCtx, cancelWait := context.WithTimeout(ctx, o.Timeout)
	defer cancelWait()
	for len(want) > 0 {
		fetches := cl.PollFetches(waitCtx)
		if waitCtx.Err() != nil {
			select {
			case err := <-runErr:
				return fmt.Errorf("pipeline stopped: %v", err)
			default:
			}
			return fmt.Errorf("no answer for %d request(s) after %s", len(want), o.Timeout)
		}
		for _, fe := range fetches.Errors() {
			return fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		for _, r := range fetches.Records() {
			if r.Topic == dlqTopic {
				return fmt.Errorf("request dead-lettered: %s", header(r, "error"))
			}
			if err := show(o, r, step); err != nil {
				return err
			}
			delete(want, string(r.Key))
		}
	}
	took := time.Since(sent)
	step("all %d response(s) received: %d rows in %.2fs (%.0f rows/s, produce to response)",
		o.Requests, rows, took.Seconds(), float64(rows)/took.Seconds())

	if err := stream.StopWithin(30 * time.Second); err != nil {
		return fmt.Errorf("stop pipeline: %w", err)
	}
	if err := <-runErr; err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	step("done: offsets committed, left the consumer group")
	return nil
}

func buildStream(configPath, addr string) (*service.Stream, error) {
	if err := pipelines.RegisterTemplates(); err != nil {
		return nil, err
	}
	conf, err := pipelines.File("weekly-rollup.yaml")
	if configPath != "" {
		conf, err = os.ReadFile(configPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read pipeline: %w", err)
	}
	b := service.NewStreamBuilder()
	env := map[string]string{
		"KAFKA_BOOTSTRAP_SERVERS": addr,
		"KAFKA_GROUP_ID":          demoGroup,
		"LOG_LEVEL":               "WARN",
	}
	b.SetEnvVarLookupFunc(func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	})
	if err := b.SetYAML(string(conf)); err != nil {
		return nil, fmt.Errorf("pipeline config: %w", err)
	}
	s, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("build pipeline: %w", err)
	}
	return s, nil
}

type response struct {
	OrganizationID string                       `json:"organizationId"`
	WeekStart      string                       `json:"week_start"`
	Weekly         map[string][]json.RawMessage `json:"weekly"`
}

func show(o Options, r *kgo.Record, step func(string, ...any)) error {
	js, err := payload.Decode(r.Value, 1<<30)
	if err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	var resp response
	if err := json.Unmarshal(js, &resp); err != nil {
		return fmt.Errorf("parse response: %w", err)
	}
	step("response for %s: %d group(s), week start %s, %d bytes on the wire (key %q, header source=%q)",
		resp.OrganizationID, len(resp.Weekly), resp.WeekStart, len(r.Value), r.Key, header(r, "source"))
	if o.ParquetDir != "" {
		if err := os.MkdirAll(o.ParquetDir, 0o755); err != nil {
			return err
		}
		path := filepath.Join(o.ParquetDir, resp.OrganizationID+".parquet")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		n, err := parquet.WriteResponse(f, js, parquet.Options{})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		step("wrote %s (%d rows)", path, n)
	}
	if !o.Quiet {
		printTables(o.Out, js)
	}
	return nil
}

// printTables prints each group's weeks, one line per week, metrics in response order.
func printTables(w io.Writer, js []byte) {
	var raw struct {
		Weekly map[string][]json.RawMessage `json:"weekly"`
	}
	if json.Unmarshal(js, &raw) != nil {
		return
	}
	groups := make([]string, 0, len(raw.Weekly))
	for g := range raw.Weekly {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		fmt.Fprintf(w, "\n== %s (%d weeks)\n", g, len(raw.Weekly[g]))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for i, week := range raw.Weekly[g] {
			keys, vals := orderedFields(week)
			if i == 0 {
				fmt.Fprintln(tw, strings.Join(keys, "\t")+"\t")
			}
			fmt.Fprintln(tw, strings.Join(vals, "\t")+"\t")
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w)
}

// orderedFields returns an object's keys and formatted values in document order.
func orderedFields(obj json.RawMessage) (keys, vals []string) {
	dec := json.NewDecoder(strings.NewReader(string(obj)))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, nil
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return keys, vals
		}
		v, err := dec.Token()
		if err != nil {
			return keys, vals
		}
		keys = append(keys, fmt.Sprint(k))
		switch x := v.(type) {
		case json.Number:
			f, _ := x.Float64()
			vals = append(vals, fmt.Sprintf("%.2f", f))
		case nil:
			vals = append(vals, "null")
		default:
			vals = append(vals, fmt.Sprint(x))
		}
	}
	return keys, vals
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

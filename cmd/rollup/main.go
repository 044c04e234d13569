// Command rollup is the Benthos engine with this project's plugins compiled in: Kafka input and
// output on franz-go, payload codecs, the weekly rollup, Parquet and a Prometheus exporter, plus the
// `dev-broker` and `demo` commands. Every stock Benthos command (run, lint, test, list, echo, blobl)
// works as documented by Benthos.
//
// Where things live (two hops from here):
//
//	plugins/kafka       kafka input and output (consumer group, ordered checkpoints, lag)
//	plugins/payload     payload_decode / payload_encode (base64, gzip, zstd, size caps)
//	plugins/rollup      weekly_rollup (request model, week buckets, aggregation rules, response)
//	plugins/parquet     rollup_parquet (a response as a Parquet file)
//	plugins/prometheus  the prometheus metrics exporter
//	pipelines/          the YAML pipelines and the shared rollup_request template
//	internal/devbroker  the embedded Kafka broker (kfake) behind `rollup dev-broker`
//	internal/demo       `rollup demo`
package main

import (
	"context"
	"fmt"
	"os"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure/extended"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/rollup-dev/rollup/internal/demo"
	"github.com/rollup-dev/rollup/internal/devbroker"
	"github.com/rollup-dev/rollup/pipelines"
	_ "github.com/rollup-dev/rollup/plugins/kafka"
	_ "github.com/rollup-dev/rollup/plugins/parquet"
	_ "github.com/rollup-dev/rollup/plugins/payload"
	_ "github.com/rollup-dev/rollup/plugins/prometheus"
	_ "github.com/rollup-dev/rollup/plugins/rollup"
)

// Set at build time: -ldflags "-X main.version=... -X main.dateBuilt=...".
var (
	version   = "dev"
	dateBuilt = "unknown"
)

func main() {
	if err := pipelines.RegisterTemplates(); err != nil {
		fmt.Fprintf(os.Stderr, "rollup: %v\n", err)
		os.Exit(1)
	}
	service.RunCLI(context.Background(),
		service.CLIOptSetBinaryName("rollup"),
		service.CLIOptSetProductName("rollup"),
		service.CLIOptSetVersion(version, dateBuilt),
		service.CLIOptAddCommand(devbroker.Command()),
		service.CLIOptAddCommand(demo.Command()),
	)
}

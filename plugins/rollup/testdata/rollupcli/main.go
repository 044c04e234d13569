// Command rollupcli rolls up request JSON files with the rollup package's default configuration and
// prints one response per line, or `{"error":...,"error_stage":...}`. It serves crosscheck.py; being
// under testdata, it is not part of `go build ./...` or `go test ./...`.
//
//	go run ./plugins/rollup/testdata/rollupcli [-exact] request.json...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/rollup-dev/rollup/plugins/rollup"
)

func main() {
	exact := flag.Bool("exact", false, "use the exact encoding/json path only")
	flag.Parse()
	agg, err := rollup.NewAggregator(rollup.DefaultConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range flag.Args() {
		req, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		roll := agg.Rollup
		if *exact {
			roll = agg.RollupExact
		}
		resp, info, err := roll(req)
		switch {
		case err != nil:
			resp, _ = json.Marshal(map[string]string{"error": err.Error(), "error_stage": rollup.StageOf(err)})
		case info.Skipped:
			resp = []byte(`{"skipped":true}`)
		}
		os.Stdout.Write(append(resp, '\n'))
	}
}

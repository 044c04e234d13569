// Package pipelines embeds the pipeline configurations and the shared step templates, so that the
// binary can register the templates at start-up and the demo can run a pipeline from any directory.
package pipelines

import (
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
)

//go:embed *.yaml templates/*.yaml
var files embed.FS

// File returns the embedded pipeline or template at name (e.g. "weekly-rollup.yaml").
func File(name string) ([]byte, error) {
	return files.ReadFile(name)
}

// RegisterTemplates registers every template under templates/ with the global environment, once
// however often it is called (main, the demo and tests all call it).
var RegisterTemplates = sync.OnceValue(func() error {
	names, err := fs.Glob(files, "templates/*.yaml")
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return err
		}
		if err := service.RegisterTemplateYAML(string(b)); err != nil {
			return fmt.Errorf("template %s: %w", n, err)
		}
	}
	return nil
})

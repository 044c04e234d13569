package payload

import (
	"context"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestKeepContentStoresBytesWithoutTouchingContent(t *testing.T) {
	conf, err := keepContentProcSpec().ParseYAML(`metadata_key: rollup_response`, nil)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := newKeepContentFromParsedConf(conf)
	if err != nil {
		t.Fatal(err)
	}
	// Key order and number formatting must survive: a structured round trip would sort the keys
	// and turn 1.0 into 1.
	const js = `{"z":1.0,"a":[2.50,"x"]}`
	out, err := proc.Process(context.Background(), service.NewMessage([]byte(js)))
	if err != nil || len(out) != 1 {
		t.Fatalf("Process: %v, %d messages", err, len(out))
	}
	got, _ := out[0].AsBytes()
	if string(got) != js {
		t.Fatalf("content changed: %s", got)
	}
	v, ok := out[0].MetaGetMut("rollup_response")
	if !ok {
		t.Fatal("metadata key not set")
	}
	if b, ok := v.([]byte); !ok || string(b) != js {
		t.Fatalf("metadata = %#v, want the bytes %s", v, js)
	}
	out[0].SetBytes([]byte("replaced"))
	v, _ = out[0].MetaGetMut("rollup_response")
	if string(v.([]byte)) != js {
		t.Fatalf("kept bytes changed after SetBytes: %s", v)
	}
	if err := proc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestKeepContentRejectsEmptyKey(t *testing.T) {
	conf, err := keepContentProcSpec().ParseYAML(`metadata_key: ""`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newKeepContentFromParsedConf(conf); err == nil {
		t.Fatal("empty metadata_key accepted")
	}
}

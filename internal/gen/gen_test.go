package gen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"testing"

	stdgzip "compress/gzip"
)

func TestRequestIsValidJSONWithExpectedShape(t *testing.T) {
	o := Defaults(7)
	o.Weeks = 2
	o.Nulls = 0.1
	js := Request(o)
	var req struct {
		Event, OrganizationID, WeekStart string
		Weekly                           []map[string]any
	}
	if err := json.Unmarshal(js, &req); err != nil {
		t.Fatalf("request is not JSON: %v", err)
	}
	if len(req.Weekly) != o.Rows() || o.Rows() != 2*2*168 {
		t.Fatalf("rows = %d, want %d", len(req.Weekly), o.Rows())
	}
	if req.Weekly[0]["Week"] != "2023-07-28 00:00:00" || req.Weekly[0]["Staff Type"] != "Medical - English" {
		t.Fatalf("first row = %v", req.Weekly[0])
	}
	nulls := 0
	for _, r := range req.Weekly {
		if r["Volume"] == nil {
			nulls++
		}
	}
	if nulls == 0 || nulls == len(req.Weekly) {
		t.Fatalf("with Nulls=0.1, %d of %d volumes are null", nulls, len(req.Weekly))
	}
	if !bytes.Equal(js, Request(o)) {
		t.Fatal("same options gave different requests")
	}
}

func TestEncodeIsBase64OfGzip(t *testing.T) {
	js := Request(Defaults(1))
	enc := Encode(js)
	z, err := base64.StdEncoding.DecodeString(string(enc))
	if err != nil {
		t.Fatal(err)
	}
	r, err := stdgzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(back, js) {
		t.Fatalf("round trip failed: %v", err)
	}
}

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/rollup-dev/rollup/internal/gen"
)

// kcat runs kcat with args and stdin, failing the test on an error. kcat is librdkafka's command
// line client: a client other than franz-go, as most of the seed's producers and consumers are.
func kcat(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed for the interop test and is not installed (apt-get install kcat, or bash test/kafka/install-deps.sh): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// TestKcatInterop produces a seed-sized request in the seed's format with kcat (key and headers
// set), lets weekly-rollup.yaml answer it, and reads the response back with kcat: its key, headers
// and value must be what the contract says.
func TestKcatInterop(t *testing.T) {
	f := newFixture(t, 1, 1)
	startStream(t, "weekly-rollup.yaml", f.env(), nil)

	opts := gen.Defaults(42)
	value := gen.Encode(gen.Request(opts))
	// One record: the value is one line of base64 (kcat splits stdin on newlines). At about
	// 1.06 MB it is over librdkafka's default message.max.bytes (1,000,000), as seed requests are.
	if len(value) <= 1_000_000 {
		t.Fatalf("generated request is %d bytes; the test wants one over librdkafka's default limit", len(value))
	}
	kcat(t, append(value, '\n'), "-P", "-q", "-b", f.b.Addr, "-t", f.in,
		"-k", "kcat-request-1", "-H", "trace-id=kcat-trace-1", "-H", "producer=kcat",
		"-X", "message.max.bytes=16000000")

	waitAllCommitted(t, f.b, f.group, f.in, nil)
	if dead := readAll(t, f.b, f.dlq); len(dead) > 0 {
		e, _ := header(dead[0], "error")
		t.Fatalf("the kcat request was dead-lettered: %s", e)
	}

	// %k key, %h headers (k=v,k=v), %s value; one record, then exit.
	out := kcat(t, nil, "-C", "-q", "-b", f.b.Addr, "-t", f.out, "-o", "beginning", "-c", "1", "-e",
		"-X", "fetch.message.max.bytes=16000000",
		"-f", "key=%k\nheaders=%h\nvalue=%s\n")
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unexpected kcat output line %q in:\n%s", line, out)
		}
		fields[k] = v
	}
	t.Logf("kcat read: key=%s headers=%s value=%d bytes", fields["key"], fields["headers"], len(fields["value"]))
	if fields["key"] != opts.OrganizationID() {
		t.Errorf("response key read by kcat %q, want organizationId %q", fields["key"], opts.OrganizationID())
	}
	headers := map[string]string{}
	for _, kv := range strings.Split(fields["headers"], ",") {
		k, v, _ := strings.Cut(kv, "=")
		headers[k] = v
	}
	want := map[string]string{"trace-id": "kcat-trace-1", "producer": "kcat",
		"source_topic": f.in, "source_partition": "0", "source_offset": "0"}
	for k, v := range want {
		if headers[k] != v {
			t.Errorf("response header %q read by kcat = %q, want %q (headers %s)", k, headers[k], v, fields["headers"])
		}
	}
	resp := decodeResponse(t, []byte(fields["value"]))
	if resp.OrganizationID != opts.OrganizationID() || resp.WeekStart != "friday" || len(resp.Weekly) != 2 {
		t.Errorf("response organizationId=%q week_start=%q groups=%d, want %q, friday, 2",
			resp.OrganizationID, resp.WeekStart, len(resp.Weekly), opts.OrganizationID())
	}
	for g, weeks := range resp.Weekly {
		if len(weeks) != opts.Weeks {
			t.Errorf("group %q has %d weeks, want %d", g, len(weeks), opts.Weeks)
		}
	}
}

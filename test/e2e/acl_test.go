package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rollup-dev/rollup/internal/devbroker"
)

// deniedFor is how long the response topic's WRITE is denied in TestResponseTopicWriteDenied.
const deniedFor = 20 * time.Second

// TestResponseTopicWriteDenied: the service's user may read the requests and see the response
// topic, but an ACL denies it WRITE on that topic (a permission forgotten at deployment). That is a
// connection problem, not a property of the requests: nothing may be dead-lettered, nothing
// committed, `/ready` must answer 503 and the log must name the topic and
// TOPIC_AUTHORIZATION_FAILED. Once the ACL is removed, the same process answers every request.
// On real Kafka (KAFKA_SASL_BOOTSTRAP_SERVERS set, as `kafka.sh env` does with KAFKA_SECURITY
// including sasl_scram) the service connects through the SASL listener as the SCRAM user, and the
// cluster's authorizer applies the ACL; otherwise the broker is an embedded one with SASL/SCRAM and
// ACLs (kfake), so this runs everywhere.
func TestResponseTopicWriteDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 20 s")
	}
	if addr := os.Getenv("KAFKA_SASL_BOOTSTRAP_SERVERS"); addr != "" && os.Getenv(devbroker.EnvBootstrapServers) != "" {
		b := devbroker.NewTestBroker(t)
		writeDenied(t, b, addr, os.Getenv("KAFKA_SASL_USERNAME"), os.Getenv("KAFKA_SASL_PASSWORD"))
		return
	}
	const user, password = "rollup", "rollup-secret"
	allow := func(res kmsg.ACLResourceType, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: res, Name: "e2e-", Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Allow: true}
	}
	b := devbroker.NewSecuredTestBroker(t, kfake.User("SCRAM-SHA-256", user, password,
		allow(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationRead),
		allow(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationWrite),
		allow(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationDescribe),
		allow(kmsg.ACLResourceTypeTopic, kmsg.ACLOperationDescribeConfigs),
		allow(kmsg.ACLResourceTypeGroup, kmsg.ACLOperationRead),
		allow(kmsg.ACLResourceTypeGroup, kmsg.ACLOperationDescribe),
		kfake.ACL{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationIdempotentWrite, Allow: true},
	))
	writeDenied(t, b, b.Addr, user, password)
}

// writeDenied is TestResponseTopicWriteDenied on broker b (admin access through b) with the service
// connecting to saslAddr as user.
func writeDenied(t *testing.T, b *devbroker.TestBroker, saslAddr, user, password string) {
	t.Helper()
	f := &fixture{b: b, in: b.Topic(t, "e2e-in", 2, nil), out: b.Topic(t, "e2e-out", 2, nil),
		dlq: b.Topic(t, "e2e-dlq", 1, nil), group: b.Group("e2e-rollup")}
	deny := kadm.NewACLs().Deny("User:" + user).DenyHosts("*").Topics(f.out).Operations(kadm.OpWrite).
		ResourcePatternType(kadm.ACLPatternLiteral)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := b.Admin.CreateACLs(ctx, deny); err != nil || res[0].Err != nil {
		t.Fatalf("deny WRITE on %s: %v %v", f.out, err, res)
	}

	recs, _ := mixedInputs(10, 0, 2)
	b.Produce(t, f.in, recs...)
	addr := freeAddr(t)
	p := startProcess(t, pipelineFile(t, "weekly-rollup.yaml"), f.env("HTTP_ADDRESS", addr, "LOG_LEVEL", "INFO",
		"KAFKA_BOOTSTRAP_SERVERS", saslAddr,
		"KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", "KAFKA_SASL_USERNAME", user, "KAFKA_SASL_PASSWORD", password), 1)

	sawReady := false
	for deadline := time.Now().Add(deniedFor); time.Now().Before(deadline); {
		if p.exited() {
			t.Fatal("rollup exited while WRITE was denied")
		}
		sawReady = sawReady || ready(addr)
		time.Sleep(250 * time.Millisecond)
	}
	if sawReady {
		t.Errorf("/ready answered 200 while WRITE on %s was denied", f.out)
	}
	o := collectOutcomes(t, f)
	if len(o.dead) != 0 || len(o.responses) != 0 {
		t.Errorf("%d dead letters and %d responses while WRITE was denied, want none (first error: %s)", len(o.dead), len(o.responses), firstError(o))
	}
	if c := committed(t, b, f.group, f.in); len(c) != 0 {
		t.Errorf("offsets committed while WRITE was denied: %v", c)
	}
	logText := processLog(t, p)
	if !strings.Contains(logText, f.out) || !strings.Contains(logText, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("the log does not name topic %q and TOPIC_AUTHORIZATION_FAILED:\n%s", f.out, logTail([]byte(logText)))
	}

	if res, err := b.Admin.DeleteACLs(ctx, deny); err != nil || res[0].Err != nil {
		t.Fatalf("remove the DENY: %v %v", err, res)
	}
	waitAllCommitted(t, b, f.group, f.in, func() {
		if p.exited() {
			t.Fatal("rollup exited after WRITE was granted")
		}
	})
	waitFor(t, "/ready to answer 200", func() bool { return ready(addr) })
	p.terminate(t)

	o = collectOutcomes(t, f)
	tl := count(inputKeys(t, b, f.in), o, nil)
	t.Logf("WRITE denied for %v, then granted: %v", deniedFor, tl)
	if tl.lost != 0 || tl.duplicated != 0 || tl.unexpected != 0 || len(o.dead) != 0 {
		t.Errorf("lost=%d duplicated=%d unexpected=%d dead letters=%d, want every request answered once", tl.lost, tl.duplicated, tl.unexpected, len(o.dead))
	}
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionsAddedWhileRunning: partitions added to the input topic while the service runs are
// consumed after the next metadata refresh (at most 30 s), without a restart, and nothing is lost.
func TestPartitionsAddedWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a metadata refresh")
	}
	f := newFixture(t, 2, 2)
	recs, bad := mixedInputs(20, 0, 2)
	f.b.Produce(t, f.in, recs[:10]...)
	startStream(t, "weekly-rollup.yaml", f.env(), nil)
	waitAllCommitted(t, f.b, f.group, f.in, nil)

	ctx, cancel := adminCtx()
	defer cancel()
	if res, err := f.b.Admin.CreatePartitions(ctx, 2, f.in); err != nil || res.Error() != nil {
		t.Fatalf("add 2 partitions to %s: %v %v", f.in, err, res.Error())
	}
	added := time.Now()
	// The rest go to the new partitions only.
	cl := f.b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, r := range recs[10:] {
		r.Topic, r.Partition = f.in, int32(2+i%2)
		produceToNewPartition(t, cl, r)
	}
	waitAllCommitted(t, f.b, f.group, f.in, nil)
	t.Logf("partitions 2 and 3 added: their records all committed %.1f s later", time.Since(added).Seconds())

	o := collectOutcomes(t, f)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	checkRouting(t, f, recs, bad, o)
	if tl.inputs != 20 || tl.lost != 0 || tl.unexpected != 0 {
		t.Errorf("inputs=%d lost=%d unexpected=%d, want 20 inputs each answered", tl.inputs, tl.lost, tl.unexpected)
	}
}

// produceToNewPartition writes r to a partition that was just added. On a cluster, the broker that
// answers the producer's metadata request may not know of the new partitions yet; the manual
// partitioner then refuses at once ("invalid record partitioning choice"), so refresh and try again.
func produceToNewPartition(t *testing.T, cl *kgo.Client, r *kgo.Record) {
	t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for {
		// kgo keeps the first attempt's (now cancelled) context in r.Context: clear it.
		r.Context = nil
		pctx, pcancel := context.WithTimeout(context.Background(), stopTimeout)
		err := cl.ProduceSync(pctx, r).FirstErr()
		pcancel()
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "invalid record partitioning choice") || time.Now().After(deadline) {
			t.Fatalf("produce to the new partition %d: %v", r.Partition, err)
		}
		cl.ForceMetadataRefresh()
		time.Sleep(200 * time.Millisecond)
	}
}

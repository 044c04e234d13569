package e2e

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// faultPlan injects broker faults into the embedded cluster: the first produceFaults produce
// requests to one topic fail (not leader, request timed out, or a dropped connection), and every
// offset commit of one group fails for commitWindow after the group's first commit.
type faultPlan struct {
	c            *kfake.Cluster
	topic, group string
	produceFault int
	commitWindow time.Duration
	topicID      [16]byte // of topic, read before install: the cluster cannot be asked from a control function

	// Read and written by the control functions, which kfake runs one at a time on its own
	// goroutine, and read by the test at the end; the mutex makes that handover explicit.
	mu                         sync.Mutex
	produced, committed        int
	firstCommit                time.Time
	producesFailed, dropped    int
	commitsFailed, commitsSeen int
}

func (fp *faultPlan) install() {
	fp.topicID = fp.c.TopicInfo(fp.topic).TopicID
	fp.c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if !fp.producesTo(pr) {
			return nil, nil, false // other topics pass; the function stays installed
		}
		fp.mu.Lock()
		defer fp.mu.Unlock()
		fp.produced++
		if fp.produced > fp.produceFault {
			fp.c.DropControl()
			return nil, nil, false
		}
		fp.c.KeepControl()
		if fp.produced%4 == 0 {
			// The request never reaches the log: the client sees its connection die mid-request.
			fp.dropped++
			return nil, errors.New("injected: connection dropped during produce"), true
		}
		code := kerr.NotLeaderForPartition.Code
		if fp.produced%2 == 0 {
			code = kerr.RequestTimedOut.Code
		}
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		fp.producesFailed++
		return resp, nil, true
	})

	fp.c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		oc := req.(*kmsg.OffsetCommitRequest)
		if oc.Group != fp.group {
			return nil, nil, false
		}
		fp.mu.Lock()
		defer fp.mu.Unlock()
		fp.commitsSeen++
		if fp.firstCommit.IsZero() {
			fp.firstCommit = time.Now()
		}
		if time.Since(fp.firstCommit) > fp.commitWindow {
			fp.c.DropControl()
			return nil, nil, false
		}
		fp.c.KeepControl()
		// Alternate an error the client retries itself (coordinator loading) with one it hands
		// to the input (timed out), which must keep the offsets and commit them later.
		code := kerr.RequestTimedOut.Code
		if fp.commitsFailed%2 == 0 {
			code = kerr.CoordinatorLoadInProgress.Code
		}
		resp := oc.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range oc.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		fp.commitsFailed++
		return resp, nil, true
	})
}

// producesTo reports whether a produce request writes to the plan's topic (by name, or by topic
// ID from produce v13 on).
func (fp *faultPlan) producesTo(pr *kmsg.ProduceRequest) bool {
	for _, t := range pr.Topics {
		if t.Topic == fp.topic || t.Topic == "" && t.TopicID == fp.topicID {
			return true
		}
	}
	return false
}

// TestBrokerFaults runs weekly-rollup.yaml while the embedded broker fails produce requests of
// responses (not leader, timeouts, dropped connections) and refuses offset commits for a while:
// every request must still get its response (not a dead letter), nothing may be lost, and no
// commit may pass an unanswered input. On a real broker (KAFKA_BOOTSTRAP_SERVERS) the same run
// happens without faults, which kfake alone can inject.
func TestBrokerFaults(t *testing.T) {
	const inputs = 200
	f := newFixture(t, 3, 3)
	var fp *faultPlan
	if f.b.Cluster != nil {
		fp = &faultPlan{c: f.b.Cluster, topic: f.out, group: f.group, produceFault: 12, commitWindow: 4 * time.Second}
		fp.install()
	} else {
		t.Logf("real broker %s: no fault injection (kfake only), running the same flow without faults", f.b.Addr)
	}
	recs, bad := mixedInputs(inputs, 0, 1)
	startStream(t, "weekly-rollup.yaml", f.env("KAFKA_CHECKPOINT_LIMIT", "16"), nil)
	fl := startFlow(t, f.b, f.in, recs, 20*time.Millisecond)
	for range 5 {
		time.Sleep(time.Second)
		checkCommitInvariant(t, f, nil)
	}
	fl.wait(t)
	waitAllCommitted(t, f.b, f.group, f.in, nil)

	o := collectOutcomes(t, f)
	tl := count(inputKeys(t, f.b, f.in), o, nil)
	checkRouting(t, f, recs, bad, o)
	t.Logf("faults: %v", tl)
	if fp != nil {
		fp.mu.Lock()
		t.Logf("faults injected: %d produce errors and %d dropped connections on %s; %d of %d offset commits refused",
			fp.producesFailed, fp.dropped, fp.topic, fp.commitsFailed, fp.commitsSeen)
		if fp.producesFailed+fp.dropped != fp.produceFault {
			t.Errorf("only %d of %d produce faults were injected: the test did not exercise them", fp.producesFailed+fp.dropped, fp.produceFault)
		}
		if fp.commitsFailed < 2 {
			t.Errorf("only %d offset commits were refused: the test did not exercise commit errors", fp.commitsFailed)
		}
		fp.mu.Unlock()
	}
	if tl.lost != 0 {
		t.Errorf("lost=%d, want 0: %v", tl.lost, tl.lostKeys)
	}
	if tl.inputs != inputs || tl.unexpected != 0 {
		t.Errorf("inputs=%d (want %d), unexpected outcomes=%d", tl.inputs, inputs, tl.unexpected)
	}
}

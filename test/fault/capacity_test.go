//go:build fault

package fault

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The fault scenarios run their record flow at a share of the pipeline's capacity on this
// machine and broker, measured once per run (issue 11: at least 70 %), so that the paths only a
// backlog exercises (a full checkpoint window, paused partitions, threads all busy) are taken.
var (
	capacityOnce sync.Once
	capacityRate float64 // requests/s of the mixed flow that one instance works off
	loadShare    = 0.7   // FAULT_LOAD overrides
)

// capacityBacklog is how many requests of the mixed flow (one seed-sized in 25) the measurement
// works off: 100 seed-sized ones; about 10 s of work here, so that the first and last answers bound a steady stretch.
const capacityBacklog = 2500

// flowInterval is the pause between two requests of a scenario's flow: loadShare of the capacity.
// The first call measures the capacity (in the calling test, whose row it also writes).
func flowInterval(t *testing.T) time.Duration {
	t.Helper()
	capacityOnce.Do(func() { capacityRate = measureCapacity(t) })
	if capacityRate <= 0 {
		t.Fatal("the capacity measurement failed (see scenario 0), so the load cannot be set")
	}
	return time.Duration(float64(time.Second) / (loadShare * capacityRate))
}

// commitAllowance bounds how long answered records wait for their commit: the kafka input commits as
// soon as an acknowledgement moves a position, one commit at a time, so a record acknowledged just
// after a commit left waits for that round trip and its own (well under 50 ms each on the test
// cluster, whose offset commits are replicated to three brokers).
const commitAllowance = 100 * time.Millisecond

// crashDupBound is what one crash of an at-least-once process may answer twice: the records in
// flight (the checkpoint window of each of its partitions) plus those acknowledged within the
// commit allowance at the measured capacity (the rate of a member working off a backlog, as a new
// member does after waiting out a killed one's session).
func crashDupBound(partitions int) int {
	return partitions*checkpointLimit() + int(math.Ceil(capacityRate*commitAllowance.Seconds()))
}

// TestScenario00Capacity measures the capacity first when the whole suite runs.
func TestScenario00Capacity(t *testing.T) { flowInterval(t) }

// measureCapacity produces capacityBacklog requests of the mixed flow, then starts one instance
// (the pipeline's default threads) and times how fast it answers them: from the first answer to
// the last, so that start-up and the group join do not count. The row also checks the run.
func measureCapacity(t *testing.T) float64 {
	if v := os.Getenv("FAULT_LOAD"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 2 {
			t.Fatalf("FAULT_LOAD=%q: want a share of capacity such as 0.7", v)
		}
		loadShare = f
	}
	s := newScenario(t, "0 capacity: a backlog worked off by one instance", scenarioOpts{})
	s.noFault = true
	reqs := make([]request, capacityBacklog)
	for i := range reqs {
		reqs[i] = mixed(i)
	}
	s.mustProduce(reqs...)
	s.addLoad(fmt.Sprintf("backlog %d", len(reqs)))
	p := s.start("capacity")
	r := s.finish(finishOpts{maxDuplicated: 0})
	p.stop(t, time.Minute)
	span := r.LastAnswer.Sub(r.FirstAnswer)
	if r.Lost > 0 || span <= 0 {
		return 0
	}
	rate := float64(r.Inputs-1) / span.Seconds()
	s.note("%d requests (one seed-sized in 25) answered in %.1f s: capacity %.1f req/s; the scenarios' flows run at %.0f %%: %.1f req/s",
		r.Inputs, span.Seconds(), rate, 100*loadShare, loadShare*rate)
	fmt.Printf("fault: capacity %.1f req/s of the mixed flow; flows at %.0f %%: %.1f req/s\n", rate, 100*loadShare, loadShare*rate)
	return rate
}

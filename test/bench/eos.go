package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// eosRounds is how many times the exactly-once comparison alternates the two modes.
const eosRounds = 3

// compareEOS measures exactly-once mode beside at-least-once on the same machine, same requests,
// same configuration (cores threads x 1 replica, warm group), alternating the modes so that a
// change in the machine's load hits both; then the latency of each at half the at-least-once
// capacity, as a read_committed reader sees it (a response of a transaction is visible only once
// the transaction commits).
func (b *bench) compareEOS(ctx context.Context) error {
	defer b.setEOS(false)
	for round := 1; round <= eosRounds; round++ {
		for _, eos := range []bool{false, true} {
			b.setEOS(eos)
			logf("exactly-once comparison, round %d, %s: %d requests, %d threads x 1 replica", round, modeName(eos), b.n, b.cores)
			res, err := b.throughput(ctx, b.cores, 1, b.reqs, true, false, 0)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", modeName(eos), round, err)
			}
			b.eosTP = append(b.eosTP, res)
			logf("  %.1f req/s steady, %.4f CPU s/req", res.steadyRate(), res.cpu)
		}
	}
	rate := b.medianRate(false) / 2
	m := min(len(b.reqs), max(10, int(rate*15)))
	for _, eos := range []bool{false, true} {
		b.setEOS(eos)
		logf("exactly-once comparison, latency, %s: %d requests at %.1f/s", modeName(eos), m, rate)
		res, err := b.throughput(ctx, b.cores, 1, b.reqs[:m], true, false, rate)
		if err != nil {
			return fmt.Errorf("%s latency: %w", modeName(eos), err)
		}
		b.eosTP = append(b.eosTP, res)
	}
	return nil
}

func (b *bench) setEOS(on bool) {
	if on {
		b.extraEnv["KAFKA_EXACTLY_ONCE"] = "true"
	} else {
		delete(b.extraEnv, "KAFKA_EXACTLY_ONCE")
	}
}

func modeName(eos bool) string {
	if eos {
		return "exactly-once"
	}
	return "at-least-once"
}

// medianRate is the median steady rate of the comparison's throughput runs of one mode.
func (b *bench) medianRate(eos bool) float64 {
	var rates []float64
	for _, r := range b.eosTP {
		if r.eos == eos && r.rate == 0 {
			rates = append(rates, r.steadyRate())
		}
	}
	if len(rates) == 0 {
		return 0
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}

// eosReport is the comparison's section of the report.
func (b *bench) eosReport(w *md) {
	if len(b.eosTP) == 0 {
		return
	}
	w.p("### Exactly-once beside at-least-once (%d threads x 1 replica, warm, alternating runs)\n\n", b.cores)
	w.p("Same %d requests, same configuration; KAFKA_EXACTLY_ONCE=true for the exactly-once rows. Visible = produce → received ", b.n)
	w.p("by a read_committed reader (in exactly-once mode a response is visible once its transaction commits).\n\n")
	w.p("| mode | kind | req/s steady | CPU s/req rollup | CPU s/req broker | visible p50 | visible p90 | visible p99 | dups | load |\n")
	w.p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range b.eosTP {
		kind := "throughput (backlog)"
		if r.rate > 0 {
			kind = fmt.Sprintf("latency at %.1f req/s", r.rate)
		}
		w.p("| %s | %s | %.1f | %.4f | %.4f | %s | %s | %s | %d | %s |\n", modeName(r.eos), kind, r.steadyRate(), r.cpu, r.brokerCPU,
			ms(quantile(r.visLat, .5)), ms(quantile(r.visLat, .9)), ms(quantile(r.visLat, .99)), r.dups, r.load)
	}
	alo, eos := b.medianRate(false), b.medianRate(true)
	var pairs []string // each round's exactly-once run over the at-least-once run just before it
	for i := 0; i+1 < len(b.eosTP); i += 2 {
		if a, e := b.eosTP[i], b.eosTP[i+1]; a.rate == 0 && !a.eos && e.eos {
			pairs = append(pairs, fmt.Sprintf("%.0f %%", 100*e.steadyRate()/max(a.steadyRate(), 1e-9)))
		}
	}
	w.p("\n**Exactly-once: %.1f req/s, %.0f %% of at-least-once's %.1f req/s (medians of %d runs each; round by round: %s).**\n\n",
		eos, 100*eos/max(alo, 1e-9), alo, eosRounds, strings.Join(pairs, ", "))
}

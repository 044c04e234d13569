package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// workerResult is the scenario-worker run: n records on one partition, each a task of task, with
// threads threads.
type workerResult struct {
	n, threads             int
	task                   time.Duration
	sinceStart, sinceFirst time.Duration // process start / first "Processing message" to the last "Finished processing"
	maxRunning             int           // most tasks seen running at once (started minus finished)
	committed              int64         // offset committed by the group at the end
	commitWait             time.Duration // last finish to every offset committed
	seed                   time.Duration // n x task / cores: the seed, one task per core at a time
	load                   string
}

func (b *bench) runWorker(ctx context.Context) (*workerResult, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	res := &workerResult{n: workerN, threads: workerThreads, task: workerTask, load: loadAvg(),
		seed: time.Duration(workerN) * workerTask / time.Duration(b.cores)}
	logf("worker: %d records on 1 partition, TASK_DURATION=%v, WORKER_THREADS=%d", workerN, workerTask, workerThreads)
	t, err := b.cl.newTopics(ctx, "bench-worker", 1) // the scenario: many records of one partition at once
	if err != nil {
		return nil, err
	}
	defer b.cl.drop(t)
	recs := make([]*kgo.Record, workerN)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: t.in, Value: fmt.Appendf(nil, `{"event":"task","n":%d}`, i)}
	}
	if err := b.cl.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, err
	}
	var (
		mu                sync.Mutex // the log watcher runs on the process's output goroutine
		started, finished int
		tFirst, tLast     time.Time
		allDone           = make(chan struct{})
	)
	watch := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.Contains(line, "Processing message"):
			if started == 0 {
				tFirst = time.Now()
			}
			started++
			res.maxRunning = max(res.maxRunning, started-finished)
		case strings.Contains(line, "Finished processing"):
			if finished++; finished == workerN {
				tLast = time.Now()
				close(allDone)
			}
		}
	}
	group := uniq("bench-worker-group")
	env := map[string]string{"KAFKA_BOOTSTRAP_SERVERS": strings.Join(b.cl.seeds, ","), "KAFKA_TOPIC": t.in,
		"WORKER_GROUP_ID": group, "WORKER_DLQ_KAFKA_TOPIC": t.dlq, "TASK_DURATION": workerTask.String(),
		"WORKER_THREADS": strconv.Itoa(workerThreads)}
	tStart := time.Now()
	p, _, err := b.startPipeline("bench-worker", "pipelines/scenario-worker.yaml", env, false, watch)
	if err != nil {
		return nil, err
	}
	defer p.stop(20 * time.Second)
	select {
	case <-allDone:
	case <-p.done:
		return nil, fmt.Errorf("worker pipeline exited: %v (logs in %s)", p.err, b.work)
	case <-ctx.Done():
		return nil, fmt.Errorf("not all %d finished: %w (logs in %s)", workerN, ctx.Err(), b.work)
	}
	mu.Lock()
	res.sinceStart, res.sinceFirst = tLast.Sub(tStart), tLast.Sub(tFirst)
	mu.Unlock()
	for { // every record is finished: its offset must now be committed
		if offs, err := b.cl.adm.FetchOffsets(ctx, group); err == nil {
			if o, ok := offs.Lookup(t.in, 0); ok && o.Err == nil {
				res.committed = o.At
			}
		}
		if res.committed >= int64(workerN) {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return res, fmt.Errorf("committed offset %d of %d: %w", res.committed, workerN, err)
		}
	}
	res.commitWait = time.Since(tLast)
	return res, nil
}

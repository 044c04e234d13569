package kafka

import (
	"slices"
	"sync"
	"time"
)

// InputStatus is a point-in-time view of one running `kafka` input, for readiness checks.
//
// A readiness rule that reflects progress rather than a mere connection (the lead wires it):
//
//	ready := st.Connected &&
//		!(st.Lag > 0 && time.Since(latest(st.LastCommit, st.ConnectedSince)) > stallTime)
//
// i.e. not ready while disconnected, or while there is lag and nothing has been committed for
// stallTime since the later of the last commit and the (re)connection.
type InputStatus struct {
	Group  string
	Topics []string

	// Connected: a client session is up and has joined the group (kgo assigned partitions,
	// possibly none) since the last lost session or fatal error.
	Connected bool
	// ConnectedSince is when the current client session started (zero without one).
	ConnectedSince time.Time
	// Partitions currently assigned to this member.
	Partitions int
	// InFlight sums the partitions' checkpoint windows: records from the oldest unacknowledged
	// to the newest handed out.
	InFlight int
	// Lag sums, over assigned partitions, the latest high watermark minus the commit position
	// (the oldest unacknowledged offset). Partitions with no fetch yet count zero.
	Lag int64
	// LastCommit is the last successful offset commit of this input, over all its sessions
	// (zero: none yet in this process).
	LastCommit time.Time
}

// inputRegistry holds the inputs between their first Connect and their Close.
var inputRegistry = struct {
	sync.Mutex
	inputs map[*kafkaInput]struct{}
}{inputs: make(map[*kafkaInput]struct{})}

func registerInput(i *kafkaInput) {
	inputRegistry.Lock()
	inputRegistry.inputs[i] = struct{}{}
	inputRegistry.Unlock()
}

func unregisterInput(i *kafkaInput) {
	inputRegistry.Lock()
	delete(inputRegistry.inputs, i)
	inputRegistry.Unlock()
}

// InputStatuses returns the status of every `kafka` input of this process that has connected at
// least once and is not closed, ordered by group then topics. Safe to call from any goroutine
// (an HTTP readiness handler).
func InputStatuses() []InputStatus {
	inputRegistry.Lock()
	inputs := make([]*kafkaInput, 0, len(inputRegistry.inputs))
	for i := range inputRegistry.inputs {
		inputs = append(inputs, i)
	}
	inputRegistry.Unlock()

	out := make([]InputStatus, 0, len(inputs))
	for _, i := range inputs {
		out = append(out, i.status())
	}
	slices.SortFunc(out, func(a, b InputStatus) int {
		if a.Group != b.Group {
			if a.Group < b.Group {
				return -1
			}
			return 1
		}
		return slices.Compare(a.Topics, b.Topics)
	})
	return out
}

func (i *kafkaInput) status() InputStatus {
	st := InputStatus{Group: i.group, Topics: slices.Clone(i.topics)}
	if n := i.lastCommit.Load(); n != 0 {
		st.LastCommit = time.Unix(0, n)
	}
	i.mu.Lock()
	s := i.sess
	i.mu.Unlock()
	if s == nil {
		return st
	}
	select {
	case <-s.dead:
		return st
	default:
	}
	st.Connected = s.joined.Load()
	st.ConnectedSince = time.Unix(0, s.since.Load())
	for _, p := range s.cp.stats() {
		st.Partitions++
		st.InFlight += p.inFlight
		st.Lag += max(p.lag, 0)
	}
	return st
}

package devbroker

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// MaxTestReplicationFactor is the replication factor test topics get on a
// cluster of three or more brokers (test/kafka/kafka.sh runs three).
const MaxTestReplicationFactor = 3

// TestReplication says how a test topic is replicated on the cluster adm
// talks to: replication factor min(3, brokers) and min.insync.replicas
// max(1, RF-1). That is RF 3 and min ISR 2 on a 3-node cluster, so acks=all
// survives one broker down and refuses writes with two down, and RF 1 and
// min ISR 1 on kfake or a single node. Topics carry both explicitly rather
// than relying on the brokers' defaults, which a developer's cluster may set
// otherwise.
func TestReplication(ctx context.Context, adm *kadm.Client) (rf int16, minISR int, err error) {
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("devbroker: list brokers: %w", err)
	}
	n := min(len(brokers), MaxTestReplicationFactor)
	if n < 1 {
		return 0, 0, fmt.Errorf("devbroker: the cluster lists no brokers")
	}
	return int16(n), max(1, n-1), nil
}

// WithTestReplication returns configs plus min.insync.replicas (unless set)
// and the replication factor for CreateTopic, from TestReplication.
func WithTestReplication(ctx context.Context, adm *kadm.Client, configs map[string]*string) (int16, map[string]*string, error) {
	rf, minISR, err := TestReplication(ctx, adm)
	if err != nil {
		return 0, nil, err
	}
	out := make(map[string]*string, len(configs)+1)
	for k, v := range configs {
		out[k] = v
	}
	if _, ok := out["min.insync.replicas"]; !ok {
		v := fmt.Sprint(minISR)
		out["min.insync.replicas"] = &v
	}
	return rf, out, nil
}

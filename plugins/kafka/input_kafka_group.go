package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The two consumer group protocols (Kafka's group.protocol names).
const (
	// groupClassic: JoinGroup/SyncGroup, the members' own balancers assign partitions.
	groupClassic = "classic"
	// groupConsumer: KIP-848, the broker's coordinator assigns partitions incrementally through
	// ConsumerGroupHeartbeat.
	groupConsumer = "consumer"
)

// groupFromConfig reads `group_protocol` and `balancers`.
func (i *kafkaInput) groupFromConfig(conf *service.ParsedConfig) error {
	var err error
	if i.groupProtocol, err = conf.FieldString(inFieldGroupProtocol); err != nil {
		return err
	}
	if i.groupProtocol != groupClassic && i.groupProtocol != groupConsumer {
		return fmt.Errorf("field %q: unknown protocol %q (valid: %s, %s)", inFieldGroupProtocol, i.groupProtocol, groupClassic, groupConsumer)
	}
	names, err := conf.FieldStringList(inFieldBalancers)
	if err != nil {
		return err
	}
	if i.balancers, err = balancersByName(names); err != nil {
		return fmt.Errorf("field %q: %w", inFieldBalancers, err)
	}
	if i.groupProtocol == groupConsumer {
		if on, _ := conf.FieldBool(inFieldExactlyOnce); on {
			// franz-go's transactional group session is built and tested on the classic protocol;
			// until the pair is tested here, refuse it rather than run it untested.
			return fmt.Errorf("field %q: %q cannot be combined with %q yet; use %q", inFieldGroupProtocol, groupConsumer, inFieldExactlyOnce, groupClassic)
		}
		// kgo runs KIP-848 only when the first balancer is sticky ("uniform" on the broker) or
		// range; uniform is the broker's default assignor and moves the fewest partitions.
		i.balancers = append([]kgo.GroupBalancer{kgo.StickyBalancer()}, i.balancers...)
	}
	return nil
}

// balancersByName maps the `balancers` names to kgo's group balancers.
func balancersByName(names []string) ([]kgo.GroupBalancer, error) {
	if len(names) == 0 {
		return nil, errors.New("at least one balancer is required")
	}
	var out []kgo.GroupBalancer
	for _, n := range strings.Split(strings.Join(names, ","), ",") {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "cooperative_sticky", "cooperative-sticky":
			out = append(out, kgo.CooperativeStickyBalancer())
		case "range":
			out = append(out, kgo.RangeBalancer())
		case "round_robin", "roundrobin":
			out = append(out, kgo.RoundRobinBalancer())
		case "sticky":
			out = append(out, kgo.StickyBalancer())
		default:
			return nil, fmt.Errorf("unknown balancer %q (valid: cooperative_sticky, range, round_robin, sticky)", n)
		}
	}
	return out, nil
}

// checkGroupProtocol refuses group_protocol consumer against brokers that do not serve KIP-848.
// kgo would fall back to the classic protocol on its own, with the sticky balancer first, which
// is eager: every rebalance would stop every member. An operator who asked for the new protocol
// gets an error naming the broker instead, and the slow back-off of a configuration mistake.
func (i *kafkaInput) checkGroupProtocol(ctx context.Context) error {
	if i.groupProtocol != groupConsumer {
		return nil
	}
	cl, err := kgo.NewClient(i.connOpts...)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	why, err := kip848Missing(pctx, kadm.NewClient(cl))
	if err != nil {
		return annotateClientErr(cl, err)
	}
	if why != "" {
		d := i.backoff.failed()
		return fmt.Errorf("field %q is %q, which needs Kafka 4.0 or later (KIP-848), but %s; set it to %q (next attempt in %v)",
			inFieldGroupProtocol, groupConsumer, why, groupClassic, d)
	}
	return nil
}

// kip848Missing says which broker cannot run a KIP-848 group ("" when every one can): each must
// serve ConsumerGroupHeartbeat v1 (Kafka 4.0), the version kgo implements (client-chosen member
// ids). err is set when a broker does not answer.
func kip848Missing(ctx context.Context, adm *kadm.Client) (why string, err error) {
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return "", fmt.Errorf("reach brokers: %w", err)
	}
	for _, v := range versions.Sorted() {
		if v.Err != nil {
			return "", fmt.Errorf("broker %d: api versions: %w", v.NodeID, v.Err)
		}
		if max, ok := v.KeyMaxVersion(kmsg.ConsumerGroupHeartbeat.Int16()); !ok || max < 1 {
			return fmt.Sprintf("broker %d does not serve ConsumerGroupHeartbeat v1 (it looks like Kafka %s)", v.NodeID, v.VersionGuess()), nil
		}
	}
	return "", nil
}

// groupOpts are the client options of both kinds of session: connection, group, fetching.
func (i *kafkaInput) groupOpts() []kgo.Opt {
	opts := append(slices.Clone(i.connOpts),
		kgo.ConsumerGroup(i.group),
		kgo.ConsumeTopics(i.topics...),
		kgo.ConsumeResetOffset(i.startOffset),
		kgo.Balancers(i.balancers...),
		// Offsets are committed by the session (the checkpointer's, or the transaction's), never
		// by kgo on its own.
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(i.sessionTimeout),
		kgo.RebalanceTimeout(i.rebalanceTimeout),
		kgo.HeartbeatInterval(i.heartbeat),
		kgo.FetchMaxBytes(i.fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(i.fetchMaxPartB),
		kgo.FetchMaxWait(i.fetchMaxWait),
		// Partitions added to an input topic are seen at the next metadata refresh (then the group
		// rebalances to assign them): within 30 s rather than kgo's default 5 minutes.
		kgo.MetadataMaxAge(metadataMaxAge),
		kgo.BrokerMaxReadBytes(int32(min(max(minBrokerReadBytes, int64(i.fetchMaxBytes)+16<<20), 1<<30))),
	)
	if i.groupProtocol == groupConsumer {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	if i.instanceID != "" {
		opts = append(opts, kgo.InstanceID(i.instanceID))
	}
	return opts
}

// Package e2e holds the end-to-end tests of the Kafka pipelines (issue 3): pipelines/weekly-rollup.yaml
// and pipelines/scenario-worker.yaml run in-process or as the real `rollup` binary against a broker
// reached over TCP, and the records they write are checked from the outside.
//
// The broker is the embedded kfake one by default, or the cluster named by KAFKA_BOOTSTRAP_SERVERS
// (for example real Apache Kafka from test/kafka/kafka.sh): the same tests run against either, and
// none of them skips. Every topic and consumer group is uniquely named, so runs never see each
// other's records on a real broker.
//
// Outcomes are matched to inputs by the contract's headers: every response and dead letter names
// the input record it answers (source_topic, source_partition, source_offset). From those the
// helpers compute lost (inputs with no outcome), duplicated (outcomes minus distinct inputs) and the
// most copies of one input, and check that a committed offset never passes an unanswered input.
//
// Run with `go test ./test/e2e/`; the interop test needs kcat (apt package `kcat`).
package e2e

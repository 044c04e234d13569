#!/usr/bin/env python3
"""The old Python service, as its Kafka clients behave, for the cutover scenario of the fault suite.

A librdkafka consumer (confluent-kafka) with librdkafka's default assignors (range, roundrobin) in the
consumer group that rollup members join during a rolling cutover; settings from the same environment
variables (KAFKA_BOOTSTRAP_SERVERS, KAFKA_GROUP_ID, INPUT_KAFKA_TOPIC, OUTPUT_KAFKA_TOPIC,
DLQ_KAFKA_TOPIC). Each request is answered as the old service answered it (base64(gzip(JSON)), key =
organizationId, the request's headers carried over), plus the source_* headers the fault suite's
checker pairs outcomes with. Offsets are committed synchronously after the response is acknowledged
(at-least-once). A request it cannot read goes to the DLQ with the contract's error headers, so the
checker can tell it from a lost one. SIGTERM: finish the current request, commit, leave the group.

The weekly rollup is a plain-Python one (sums and means per group and week); the scenario checks
delivery, not arithmetic, which the reference implementation in test/reference checks.
"""
import base64
import gzip
import json
import os
import signal
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

from confluent_kafka import Consumer, KafkaError, Producer

DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SUMS = ["Volume", "Abandons", "Top Line Agents (FTE)", "Handled Threshold", "Total Queue Time"]
MEANS = ["Base AHT", "Service Level (X Seconds)", "Acceptable Wait Time"]


def rollup(req):
    ws = (req.get("week_start") or "friday").lower()
    target = DAYS.index(ws)
    acc = defaultdict(lambda: defaultdict(list))
    for row in req["weekly"]:
        key = "_".join([row["Contact Type"], row["Staff Type"], row["Call Center"]])
        d = date.fromisoformat(row["Week"][:10])
        week = d - timedelta(days=(d.weekday() - target) % 7)
        cell = acc[key][week]
        cell.append(row)
    weekly = {}
    for key, weeks in acc.items():
        out = []
        for week in sorted(weeks):
            rows = weeks[week]
            rec = {"Week": week.isoformat()}
            for m in SUMS:
                rec[m] = float(sum(r[m] for r in rows if r.get(m) is not None))
            for m in MEANS:
                vals = [r[m] for r in rows if r.get(m) is not None]
                rec[m] = sum(vals) / len(vals) if vals else None
            out.append(rec)
        weekly[key] = out
    return {"event": "rollup", "organizationId": req["organizationId"], "week_start": ws, "weekly": weekly}


def main():
    env = os.environ.get
    brokers = env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    out_topic = env("OUTPUT_KAFKA_TOPIC", "Scenario-Execute-Response")
    dlq_topic = env("DLQ_KAFKA_TOPIC", "Scenario-Execute-DLQ")
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": env("KAFKA_GROUP_ID", "weekly-aggregator"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": int(env("OLD_SESSION_TIMEOUT_MS", "10000")),
        "fetch.message.max.bytes": 64 << 20,
        "receive.message.max.bytes": 256 << 20,
    })
    producer = Producer({"bootstrap.servers": brokers, "message.max.bytes": 64 << 20, "enable.idempotence": True})
    consumer.subscribe([env("INPUT_KAFKA_TOPIC", "Scenario-Execute")])

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    answered = 0
    while not stop:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                print(f"old-service: consume error: {msg.error()}", file=sys.stderr, flush=True)
            continue
        headers = list(msg.headers() or [])
        headers += [("source_topic", msg.topic().encode()), ("source_partition", str(msg.partition()).encode()),
                    ("source_offset", str(msg.offset()).encode())]
        try:
            req = json.loads(gzip.decompress(base64.b64decode(msg.value(), validate=True)))
            if req.get("event") != "rollup":
                print(f"old-service: skipping event {req.get('event')!r}", flush=True)
                consumer.commit(message=msg, asynchronous=False)
                continue
            resp = base64.b64encode(gzip.compress(json.dumps(rollup(req)).encode()))
            producer.produce(out_topic, value=resp, key=req["organizationId"].encode(), headers=headers)
        except Exception as e:  # the old service had no DLQ; here a dead letter keeps the checker honest
            headers += [("error", f"old-service: {e}"[:1024].encode()), ("error_stage", b"validate"),
                        ("failed_at", datetime.now(timezone.utc).isoformat().encode())]
            producer.produce(dlq_topic, value=msg.value(), key=msg.key(), headers=headers)
        if producer.flush(60) != 0:
            print("old-service: a response was not acknowledged within 60 s; exiting without commit", file=sys.stderr, flush=True)
            sys.exit(1)
        consumer.commit(message=msg, asynchronous=False)
        answered += 1
    consumer.close()  # leaves the group
    print(f"old-service: stopped after {answered} requests", flush=True)


if __name__ == "__main__":
    main()

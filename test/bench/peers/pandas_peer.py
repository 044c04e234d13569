#!/usr/bin/env python3
"""The old Python service's processing path, as this project's peer for the bench (pandas).

One request per stdin line, base64(gzip(JSON)) as on the seed's topic; one response per stdout line in
the same encoding; on stderr, "wall cpu" seconds for each request inside this process (start-up and the
pandas import excluded, so the peer is timed at its best).

The steps are the old service's, kept on purpose so the bench measures what it replaces: a DataFrame from
the decoded rows, the joined group key, pd.to_datetime on the full timestamp, the week start found row by
row (Series.apply), groupby on key and week, sum/mean, records per group. Two corrections the contract
asks for and the old service lacked: the row's calendar date is taken as written (an offset is not
applied), and a mean of only nulls is written as null, not NaN.
"""
import base64
import gzip
import json
import sys
import time
from datetime import timedelta

import pandas as pd

DIMENSIONS = ["Contact Type", "Staff Type", "Call Center"]
RULES = {  # metric -> rule, in the response's field order
    "Volume": "sum", "Abandons": "sum", "Top Line Agents (FTE)": "sum", "Base AHT": "mean",
    "Handled Threshold": "sum", "Service Level (X Seconds)": "mean", "Acceptable Wait Time": "mean",
    "Total Queue Time": "sum",
}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def week_start_name(value):
    """The request's week_start as a full lower-case day name; missing or null means friday."""
    if value is None:
        return "friday"
    v = str(value).strip().lower()
    for day in WEEKDAYS:
        if v in (day, day[:3]):
            return day
    raise ValueError(f"week_start {value!r}: want one of {', '.join(WEEKDAYS)}")


def rollup(rows, week_start):
    frame = pd.DataFrame(rows)
    for metric in RULES:  # a metric missing from every row is all null; numbers as float64
        frame[metric] = pd.to_numeric(frame[metric], errors="raise") if metric in frame else float("nan")
        frame[metric] = frame[metric].astype("float64")
    frame["key"] = frame[DIMENSIONS[0]].str.cat(frame[DIMENSIONS[1:]], sep="_")
    stamps = pd.to_datetime(frame["Week"], format="ISO8601")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_localize(None)  # keep the wall-clock date written in the row
    first_day = WEEKDAYS.index(week_start)
    frame["Week"] = stamps.dt.normalize().apply(lambda d: d - timedelta(days=(d.weekday() - first_day) % 7))
    weeks = frame.groupby(["key", "Week"], sort=True).agg(RULES).reset_index()
    weeks["Week"] = weeks["Week"].dt.strftime("%Y-%m-%d")
    weeks = weeks.astype(object).where(weeks.notna(), None)
    return {key: part.drop(columns="key").to_dict(orient="records") for key, part in weeks.groupby("key", sort=True)}


def answer(line):
    request = json.loads(gzip.decompress(base64.b64decode(line)))
    if request.get("event") != "rollup":
        return None
    week_start = week_start_name(request.get("week_start"))
    response = {"event": "rollup", "organizationId": request["organizationId"], "week_start": week_start,
                "weekly": rollup(request["weekly"], week_start)}
    return base64.b64encode(gzip.compress(json.dumps(response, separators=(",", ":")).encode()))


def main():
    for line in sys.stdin.buffer:
        line = line.strip()
        if not line:
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        out = answer(line)
        sys.stderr.write(f"{time.perf_counter() - wall:.6f} {time.process_time() - cpu:.6f}\n")
        if out is not None:
            sys.stdout.buffer.write(out + b"\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

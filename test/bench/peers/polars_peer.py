#!/usr/bin/env python3
"""The strongest rewrite a Python team would try, as this project's second peer for the bench: polars.

Same protocol as pandas_peer.py: one base64(gzip(JSON)) request per stdin line, one response per stdout
line in the same encoding, "wall cpu" seconds per request on stderr (start-up and imports excluded).

Everything per row runs in polars' Rust code: the JSON is read by pl.read_json with a fixed schema (no
inference; the rows arrive as a list of structs, exploded and unnested without copying through Python),
the week start is date arithmetic on the whole column, and one group_by on the dimensions and the week
bucket computes the metrics. Rules as the contract's: sums skip nulls (0 when all are null), means skip
nulls (null when all are null). Python only touches the response, a few hundred rows.
"""
import base64
import gzip
import io
import json
import sys
import time

import polars as pl

DIMENSIONS = ["Contact Type", "Staff Type", "Call Center"]
RULES = {  # metric -> rule, in the response's field order
    "Volume": "sum", "Abandons": "sum", "Top Line Agents (FTE)": "sum", "Base AHT": "mean",
    "Handled Threshold": "sum", "Service Level (X Seconds)": "mean", "Acceptable Wait Time": "mean",
    "Total Queue Time": "sum",
}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
ROW = pl.Struct([pl.Field(c, pl.String) for c in DIMENSIONS + ["Week"]] + [pl.Field(m, pl.Float64) for m in RULES])
SCHEMA = {"event": pl.String, "organizationId": pl.String, "week_start": pl.String, "weekly": pl.List(ROW)}


def week_start_name(value):
    """The request's week_start as a full lower-case day name; missing or null means friday."""
    if value is None:
        return "friday"
    v = value.strip().lower()
    for day in WEEKDAYS:
        if v in (day, day[:3]):
            return day
    raise ValueError(f"week_start {value!r}: want one of {', '.join(WEEKDAYS)}")


def rollup(rows, week_start):
    first_day = WEEKDAYS.index(week_start) + 1  # polars: Monday = 1
    date = pl.col("Week").str.slice(0, 10).str.to_date("%Y-%m-%d")  # the date as written; time and offset ignored
    week = date - pl.duration(days=(date.dt.weekday() - first_day + 7) % 7)
    aggs = [pl.col(m).sum() if rule == "sum" else pl.col(m).mean() for m, rule in RULES.items()]
    weeks = (rows.lazy()
             .group_by(DIMENSIONS + [week.alias("Week")]).agg(aggs)
             .with_columns(pl.concat_str(DIMENSIONS, separator="_").alias("key"), pl.col("Week").dt.strftime("%Y-%m-%d"))
             .sort("key", "Week")
             .select(["key", "Week"] + list(RULES))
             .collect())
    out = {}
    for row in weeks.iter_rows(named=True):
        out.setdefault(row.pop("key"), []).append(row)
    return out


def answer(line):
    request = pl.read_json(io.BytesIO(gzip.decompress(base64.b64decode(line))), schema=SCHEMA)
    if request["event"][0] != "rollup":
        return None
    week_start = week_start_name(request["week_start"][0])
    rows = request.select(pl.col("weekly").explode()).unnest("weekly")
    response = {"event": "rollup", "organizationId": request["organizationId"][0], "week_start": week_start,
                "weekly": rollup(rows, week_start)}
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

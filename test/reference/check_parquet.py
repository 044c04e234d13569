#!/usr/bin/env python3
"""Check a Parquet file written by `rollup_parquet` with independent readers (pyarrow, pandas, and DuckDB
when installed), and print it.

    check_parquet.py FILE [--response RESPONSE.json] [--dimensions A,B,C] [--rows N]

Asserts the schema of CONTRACT.md ("Parquet"): the dimension columns (string), `Week` (date32), one
nullable double per metric, `organizationId` (string), in that order. With --response, also asserts that
every row equals the rollup response it was made from (group key split on "_" unless the row carries its
dimensions; metrics in order of first appearance; null stays null). Exit status 1 with a message on any
mismatch.

Needs: pip install pyarrow pandas   (duckdb optional)
"""
import argparse
import datetime as dt
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_DIMENSIONS = ["Contact Type", "Staff Type", "Call Center"]


class Mismatch(Exception):
    pass


def check_schema(schema, dims):
    names = schema.names
    if names[: len(dims)] != dims:
        raise Mismatch(f"first columns are {names[:len(dims)]}, want the dimensions {dims}")
    if len(names) < len(dims) + 2 or names[len(dims)] != "Week" or names[-1] != "organizationId":
        raise Mismatch(f"columns {names}: want dimensions, Week, metrics..., organizationId")
    for name in dims + ["organizationId"]:
        f = schema.field(name)
        if f.type != pa.string() and f.type != pa.large_string():
            raise Mismatch(f"column {name!r} is {f.type}, want string")
    week = schema.field("Week")
    if week.type != pa.date32():
        raise Mismatch(f"column 'Week' is {week.type}, want date32")
    metrics = names[len(dims) + 1 : -1]
    for name in metrics:
        f = schema.field(name)
        if f.type != pa.float64():
            raise Mismatch(f"metric {name!r} is {f.type}, want double")
        if not f.nullable:
            raise Mismatch(f"metric {name!r} is not nullable")
    return metrics


def expected_rows(resp, dims):
    """The rows a response must give, derived from the JSON text alone."""
    metrics = []
    for weeks in resp["weekly"].values():
        for row in weeks:
            for k in row:
                if k != "Week" and k not in dims and k not in metrics:
                    metrics.append(k)
    rows = []
    for key, weeks in resp["weekly"].items():
        for row in weeks:
            if all(d in row for d in dims):
                dv = [row[d] for d in dims]
            else:
                dv = key.split("_", len(dims) - 1)
            rows.append(dv + [dt.date.fromisoformat(row["Week"])]
                        + [None if row.get(m) is None else float(row[m]) for m in metrics]
                        + [resp["organizationId"]])
    return metrics, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--response", help="the response JSON the file was written from; compare every value")
    ap.add_argument("--dimensions", default=",".join(DEFAULT_DIMENSIONS))
    ap.add_argument("--rows", type=int, help="expected number of rows")
    a = ap.parse_args()
    dims = a.dimensions.split(",")

    try:
        table = pq.read_table(a.file)
        metrics = check_schema(table.schema, dims)
        if a.rows is not None and table.num_rows != a.rows:
            raise Mismatch(f"{table.num_rows} rows, want {a.rows}")
        got = [list(r.values()) for r in table.to_pylist()]
        if a.response:
            with open(a.response, encoding="utf-8") as fh:
                resp = json.load(fh)
            want_metrics, want = expected_rows(resp, dims)
            if metrics != want_metrics:
                raise Mismatch(f"metric columns {metrics}, want {want_metrics}")
            if len(got) != len(want):
                raise Mismatch(f"{len(got)} rows, want {len(want)}")
            for i, (g, w) in enumerate(zip(got, want)):
                if g != w:  # exact: both sides parse the same decimal text to the nearest double
                    raise Mismatch(f"row {i}:\n  got  {g}\n  want {w}")
        # pandas must read it without options, and keep the nulls.
        df = pd_read(a.file)
        nulls_arrow = sum(table.column(m).null_count for m in metrics)
        nulls_pandas = int(df[metrics].isna().sum().sum()) if metrics else 0
        if nulls_arrow != nulls_pandas:
            raise Mismatch(f"pandas sees {nulls_pandas} null metrics, pyarrow {nulls_arrow}")
        duck = duckdb_check(a.file, table.num_rows)
    except Mismatch as e:
        print(f"check_parquet: {a.file}: {e}", file=sys.stderr)
        return 1

    print(table.schema)
    print(table.to_pandas().to_string())
    print(f"check_parquet: {a.file}: {table.num_rows} rows, {len(metrics)} metrics, schema ok"
          + (", values match the response" if a.response else "") + duck)
    return 0


def pd_read(path):
    import pandas as pd

    return pd.read_parquet(path)


def duckdb_check(path, nrows):
    try:
        import duckdb
    except ImportError:
        return " (duckdb not installed: skipped)"
    con = duckdb.connect()
    lit = "'" + path.replace("'", "''") + "'"
    n = con.execute(f"select count(*) from read_parquet({lit})").fetchall()[0][0]
    types = {r[0]: r[1] for r in con.execute(f"describe select * from read_parquet({lit})").fetchall()}
    con.close()
    if n != nrows:
        raise Mismatch(f"duckdb counts {n} rows, pyarrow {nrows}")
    if types.get("Week") != "DATE":
        raise Mismatch(f"duckdb reads Week as {types.get('Week')}, want DATE")
    return ", duckdb ok"


if __name__ == "__main__":
    sys.exit(main())

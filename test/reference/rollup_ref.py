#!/usr/bin/env python3
"""An independent reference implementation of the rollup contract (shared/CONTRACT.md), standard library
only, written from the contract's text and not from the Go code. It is slow on purpose: clarity first.

As a library:
    rollup(request_dict) -> response dict, or None when `event` is not "rollup"
    decode_payload(raw_bytes) -> request dict                       (raises BadRequest)
    handle(raw_bytes) -> response dict or None                      (raises BadRequest)

As a command, it behaves like `rollup run pipelines/weekly-rollup-stdio.yaml`, so diffcheck.py can be
pointed at it to test the checker itself:
    python3 rollup_ref.py < requests.txt > responses.txt
one request per line (empty lines skipped); one response per line on stdout in OUTPUT_ENCODING (json or
gzip_base64, the default); each failed request as one JSON line {"error", "error_stage", "payload"} to the
file named by DLQ_FILE (default stderr).

Readings of the contract where its text leaves a choice (the differential checker avoids relying on them):
- a metric missing from a row counts as null; a request without `event` is not a rollup (ignored);
- `organizationId` must be a string, `weekly` a list of objects, each dimension a string;
- a number too large for a float64 (1e400) is a bad request, as are NaN and Infinity (not JSON);
- rule `count` counts the non-null values; `weighted_mean` is sum(v*w)/sum(w) over the rows where both
  are numbers, null when there are none or the weights sum to 0; `min`/`max` skip nulls (null if none).
"""
import base64
import binascii
import datetime as dt
import gzip
import json
import math
import os
import re
import sys
import zlib

DIMENSIONS = ["Contact Type", "Staff Type", "Call Center"]
TIME_FIELD = "Week"
ROWS_FIELD = "weekly"
KEY_SEPARATOR = "_"
DEFAULT_WEEK_START = "friday"
MAX_DECODED_BYTES = 256 << 20

# (metric, rule, weight column or None), in response order.
DEFAULT_RULES = [
    ("Volume", "sum", None),
    ("Abandons", "sum", None),
    ("Top Line Agents (FTE)", "sum", None),
    ("Base AHT", "mean", None),
    ("Handled Threshold", "sum", None),
    ("Service Level (X Seconds)", "mean", None),
    ("Acceptable Wait Time", "mean", None),
    ("Total Queue Time", "sum", None),
]

DAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]  # date.weekday()


class BadRequest(Exception):
    """A request that must be dead-lettered; stage is decode or validate."""

    def __init__(self, stage, message):
        super().__init__(message)
        self.stage = stage


# ---------------------------------------------------------------------------------------------- decoding

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _gunzip(data, limit):
    """Inflate a gzip stream (several members allowed), refusing more than limit bytes of output without
    inflating past it."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while not d.eof:
                # At most 1 MiB out per call, so a bomb stops at the limit instead of filling memory.
                chunk = d.decompress(data, 1 << 20)
                data = d.unconsumed_tail
                out += chunk
                if len(out) > limit:
                    raise BadRequest("decode", f"decoded payload larger than {limit} bytes")
                if not chunk and not data:
                    break  # input exhausted before the end of the stream
        except zlib.error as e:
            raise BadRequest("decode", f"corrupt gzip: {e}") from None
        if not d.eof:
            raise BadRequest("decode", "truncated gzip")
        data = d.unused_data
    return bytes(out)


def _decompress(data, limit):
    if data.startswith(GZIP_MAGIC):
        return _gunzip(data, limit)
    if data.startswith(ZSTD_MAGIC):
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            raise NotImplementedError("zstd needs Python 3.14's compression.zstd") from None
        try:
            out = zstd.decompress(data)
        except zstd.ZstdError as e:
            raise BadRequest("decode", f"corrupt zstd: {e}") from None
        if len(out) > limit:
            raise BadRequest("decode", f"decoded payload larger than {limit} bytes")
        return out
    return None


def decode_bytes(raw, limit=MAX_DECODED_BYTES):
    """The contract's accepted encodings, detected from the bytes: raw JSON, gzip(JSON), zstd(JSON),
    base64(gzip(JSON)) and base64(zstd(JSON)). Returns the JSON bytes."""
    stripped = raw.strip(b" \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return raw
    out = _decompress(raw, limit)
    if out is not None:
        return out
    try:
        inner = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest("decode", f"not JSON, gzip, zstd or base64 of gzip or zstd: {e}") from None
    out = _decompress(inner, limit)
    if out is None:
        raise BadRequest("decode", "base64 payload is neither gzip nor zstd")
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text):
    v = float(text)
    if math.isinf(v):
        raise ValueError(f"number {text} does not fit a float64")
    return v


def parse_json(data):
    """Strict JSON: UTF-8 only, no NaN/Infinity, numbers within float64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("decode", f"payload is not UTF-8: {e}") from None
    try:
        # Integers become floats too: metrics are float64, and 10**400 must fail like 1e400.
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_finite_float)
    except (ValueError, OverflowError) as e:
        raise BadRequest("decode", f"invalid JSON: {e}") from None


def decode_payload(raw, limit=MAX_DECODED_BYTES):
    return parse_json(decode_bytes(raw, limit))


# -------------------------------------------------------------------------------------------- validation

def week_start_index(value, default=DEFAULT_WEEK_START):
    """Day names in any case, full or three letters; None (missing or null) means the default."""
    if value is None:
        value = default
    if isinstance(value, str):
        v = value.lower()
        for i, name in enumerate(DAY_NAMES):
            if v == name or v == name[:3]:
                return i
    raise BadRequest("validate", f"week_start {value!r} is not a day: valid are {', '.join(DAY_NAMES)} "
                                 f"(any case) or their first three letters")


_DATE = r"(\d{4})-(\d{2})-(\d{2})"
_TIME = r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?"
WEEK_FORMS = [  # re.ASCII: \d is 0-9 only, not every Unicode digit
    re.compile(rf"{_DATE}", re.ASCII),
    re.compile(rf"{_DATE} {_TIME}", re.ASCII),
    re.compile(rf"{_DATE}T{_TIME}(Z|[+-]\d{{2}}:\d{{2}})?", re.ASCII),
]


def row_date(value):
    """The calendar date written in a timestamp; offset not applied, time of day ignored. Raises
    ValueError when the text is none of the contract's forms or names an impossible date or time."""
    if not isinstance(value, str):
        raise ValueError(f"want a timestamp string, got {type(value).__name__}")
    for form in WEEK_FORMS:
        m = form.fullmatch(value)
        if not m:
            continue
        g = m.groups()
        date = dt.date(int(g[0]), int(g[1]), int(g[2]))  # ValueError on an impossible date
        if len(g) > 3:
            hh, mm, ss = int(g[3]), int(g[4]), int(g[5])
            if hh > 23 or mm > 59 or ss > 59:
                raise ValueError(f"impossible time in {value!r}")
            if len(g) > 7 and g[7] not in (None, "Z"):
                oh, om = int(g[7][1:3]), int(g[7][4:6])
                if oh > 23 or om > 59:
                    raise ValueError(f"impossible offset in {value!r}")
        return date
    raise ValueError(f"{value!r} is not YYYY-MM-DD, YYYY-MM-DD HH:MM:SS[.f] or RFC 3339")


def week_of(date, start_index):
    """The latest date on or before date whose weekday is the week start."""
    return date - dt.timedelta(days=(date.weekday() - start_index) % 7)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------------- rollup

def _reduce(rule, values, weights):
    nums = [v for v in values if v is not None]
    if rule == "sum":
        return math.fsum(nums)  # 0.0 when all are null
    if rule == "mean":
        return math.fsum(nums) / len(nums) if nums else None
    if rule == "min":
        return min(nums) if nums else None
    if rule == "max":
        return max(nums) if nums else None
    if rule == "count":
        return float(len(nums))
    if rule == "weighted_mean":
        pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w is not None]
        wsum = math.fsum(w for _, w in pairs)
        if not pairs or wsum == 0:
            return None
        return math.fsum(v * w for v, w in pairs) / wsum
    raise ValueError(f"unknown rule {rule!r}")


def rollup(req, rules=DEFAULT_RULES, default_week_start=DEFAULT_WEEK_START):
    """The contract's weekly rollup of one decoded request. Returns None when event is not "rollup"."""
    if not isinstance(req, dict):
        raise BadRequest("validate", f"request is a JSON {type(req).__name__}, want an object")
    if req.get("event") != "rollup":
        return None
    org = req.get("organizationId")
    if not isinstance(org, str):
        raise BadRequest("validate", "field \"organizationId\": want a string")
    start = week_start_index(req.get("week_start"), default_week_start)
    rows = req.get(ROWS_FIELD)
    if not isinstance(rows, list):
        raise BadRequest("validate", f"field {ROWS_FIELD!r}: want a list of rows")

    # Columns each row contributes: the metrics and any weight columns.
    columns = []
    for name, _, by in rules:
        for c in (name, by):
            if c is not None and c not in columns:
                columns.append(c)

    cells = {}  # (group key, week) -> {column: [value or None per row]}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRequest("validate", f"row {i}: want an object")
        dims = []
        for d in DIMENSIONS:
            if d not in row:
                raise BadRequest("validate", f"row {i} field {d!r}: missing")
            if not isinstance(row[d], str):
                raise BadRequest("validate", f"row {i} field {d!r}: want a string")
            dims.append(row[d])
        try:
            date = row_date(row.get(TIME_FIELD))
        except ValueError as e:
            raise BadRequest("validate", f"row {i} field {TIME_FIELD!r}: {e}") from None
        values = {}
        for c in columns:
            v = row.get(c)
            if v is not None and not _is_number(v):
                raise BadRequest("validate", f"row {i} field {c!r}: want a number or null")
            values[c] = None if v is None else float(v)
        acc = cells.setdefault((KEY_SEPARATOR.join(dims), week_of(date, start)), {c: [] for c in columns})
        for c in columns:
            acc[c].append(values[c])

    weekly = {}
    for key, week in sorted(cells):  # groups sorted; weeks oldest first
        acc = cells[(key, week)]
        out = {"Week": week.isoformat()}
        for name, rule, by in rules:
            out[name] = _reduce(rule, acc[name], acc[by] if by else None)
        weekly.setdefault(key, []).append(out)
    return {"event": "rollup", "organizationId": org, "week_start": DAY_NAMES[start], "weekly": weekly}


def handle(raw, rules=DEFAULT_RULES):
    return rollup(decode_payload(raw), rules)


# ---------------------------------------------------------------------------------------------- command

def _encode(resp, encoding):
    body = json.dumps(resp, separators=(",", ":")).encode()
    if encoding == "json":
        return body
    if encoding == "gzip_base64":
        return base64.b64encode(gzip.compress(body))
    raise SystemExit(f"rollup_ref: OUTPUT_ENCODING {encoding!r} not supported (json, gzip_base64)")


def main():
    encoding = os.environ.get("OUTPUT_ENCODING", "gzip_base64")
    dlq_path = os.environ.get("DLQ_FILE")
    dlq = open(dlq_path, "a", encoding="utf-8") if dlq_path else sys.stderr
    out = sys.stdout.buffer
    try:
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                resp = handle(line)
            except BadRequest as e:
                dlq.write(json.dumps({"error": str(e), "error_stage": e.stage,
                                      "payload": line.decode("utf-8", "replace")}) + "\n")
                continue
            if resp is not None:
                out.write(_encode(resp, encoding) + b"\n")
    finally:
        out.flush()
        if dlq is not sys.stderr:
            dlq.close()


if __name__ == "__main__":
    main()

"""Tests of the reference implementation against hand-computed answers (python3 -m pytest test/reference,
or python3 -m unittest discover test/reference)."""
import base64
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rollup_ref as ref  # noqa: E402

METRICS = [m for m, _, _ in ref.DEFAULT_RULES]


def row(ct, st, cc, week, **metrics):
    r = {"Contact Type": ct, "Staff Type": st, "Call Center": cc, "Week": week}
    for m in METRICS:
        r[m] = metrics.get(m.split()[0].lower().replace("(", ""), None)
    return r


def request(rows, **extra):
    req = {"event": "rollup", "organizationId": "org-1", "weekly": rows}
    req.update(extra)
    return req


def b64gz(obj):
    return base64.b64encode(gzip.compress(json.dumps(obj).encode()))


class HandComputed(unittest.TestCase):
    """Metric keyword names: volume, abandons, top, base, handled, service, acceptable, total."""

    def test_example(self):
        en = ("Medical", "Medical - English", "Default Center")
        es = ("Dental", "Dental - Spanish", "North_East")  # "_" inside a value: the key is only joined
        rows = [
            # Friday 2023-07-28: week 2023-07-28.
            row(*en, "2023-07-28 13:00:00", volume=10, abandons=1, top=1.5, base=300, handled=8, service=0.8,
                acceptable=30, total=100),
            # Thursday 2023-08-03 (offset not applied): still week 2023-07-28.
            row(*en, "2023-08-03T23:59:59+05:30", volume=20, top=2.5, handled=12, service=0.9, acceptable=30,
                total=200),
            # Friday 2023-08-04: next week; only Base AHT has a value.
            row(*en, "2023-08-04", base=400),
            # Thursday 2023-07-27: week 2023-07-21; all null.
            row(*es, "2023-07-27T10:00:00Z"),
        ]
        got = ref.rollup(request(rows, week_start="Friday"))
        want = {
            "event": "rollup", "organizationId": "org-1", "week_start": "friday",
            "weekly": {
                "Dental_Dental - Spanish_North_East": [
                    {"Week": "2023-07-21", "Volume": 0.0, "Abandons": 0.0, "Top Line Agents (FTE)": 0.0,
                     "Base AHT": None, "Handled Threshold": 0.0, "Service Level (X Seconds)": None,
                     "Acceptable Wait Time": None, "Total Queue Time": 0.0}],
                "Medical_Medical - English_Default Center": [
                    {"Week": "2023-07-28", "Volume": 30.0, "Abandons": 1.0, "Top Line Agents (FTE)": 4.0,
                     "Base AHT": 300.0, "Handled Threshold": 20.0, "Service Level (X Seconds)": 0.85,
                     "Acceptable Wait Time": 30.0, "Total Queue Time": 300.0},
                    {"Week": "2023-08-04", "Volume": 0.0, "Abandons": 0.0, "Top Line Agents (FTE)": 0.0,
                     "Base AHT": 400.0, "Handled Threshold": 0.0, "Service Level (X Seconds)": None,
                     "Acceptable Wait Time": None, "Total Queue Time": 0.0}],
            },
        }
        self.assertEqual(list(got["weekly"]), list(want["weekly"]), "groups sorted")
        self.assertEqual({k: v for k, v in got.items() if k != "weekly"},
                         {k: v for k, v in want.items() if k != "weekly"})
        for key, weeks in want["weekly"].items():
            self.assertEqual(len(got["weekly"][key]), len(weeks), key)
            for g, w in zip(got["weekly"][key], weeks):
                self.assertEqual(list(g), list(w), "metric order")
                for k, v in w.items():
                    if isinstance(v, float):
                        self.assertAlmostEqual(g[k], v, delta=1e-12 * abs(v), msg=f"{key} {w['Week']} {k}")
                    else:
                        self.assertEqual(g[k], v, f"{key} {w['Week']} {k}")

    def test_shuffled_rows_same_answer(self):
        rows = [row("a", "b", "c", f"2024-01-{d:02d} 0{h}:00:00", volume=d * h, base=h)
                for d in range(1, 20) for h in range(5)]
        want = ref.rollup(request(rows))
        self.assertEqual(ref.rollup(request(list(reversed(rows)))), want)
        weeks = [w["Week"] for w in want["weekly"]["a_b_c"]]
        self.assertEqual(weeks, sorted(weeks), "weeks oldest first")
        # Friday weeks covering 2024-01-01 (a Monday) to 2024-01-19 (a Friday).
        self.assertEqual(weeks, ["2023-12-29", "2024-01-05", "2024-01-12", "2024-01-19"])


class WeekStart(unittest.TestCase):
    def test_every_day(self):
        friday = dt.date(2023, 7, 28)
        want = {"monday": "2023-07-24", "tuesday": "2023-07-25", "wednesday": "2023-07-26",
                "thursday": "2023-07-27", "friday": "2023-07-28", "saturday": "2023-07-22",
                "sunday": "2023-07-23"}
        for name, week in want.items():
            for spelling in (name, name.upper(), name.capitalize(), name[:3], name[:3].upper()):
                got = ref.rollup(request([row("a", "b", "c", friday.isoformat(), volume=1)], week_start=spelling))
                self.assertEqual(got["week_start"], name, spelling)
                self.assertEqual(got["weekly"]["a_b_c"][0]["Week"], week, spelling)

    def test_default(self):
        for extra in ({}, {"week_start": None}):
            got = ref.rollup(request([row("a", "b", "c", "2023-07-27", volume=1)], **extra))
            self.assertEqual(got["week_start"], "friday")
            self.assertEqual(got["weekly"]["a_b_c"][0]["Week"], "2023-07-21")

    def test_invalid(self):
        for bad in ("fr", "someday", "", "friday ", "Fri.", 5, True, ["friday"]):
            with self.assertRaises(ref.BadRequest, msg=repr(bad)) as cm:
                ref.rollup(request([row("a", "b", "c", "2023-07-27", volume=1)], week_start=bad))
            self.assertEqual(cm.exception.stage, "validate")
            self.assertIn("monday", str(cm.exception), "the error names the valid values")


class Timestamps(unittest.TestCase):
    def test_forms(self):
        for ts in ("2023-07-28", "2023-07-28 00:00:00", "2023-07-28 23:59:59.999999", "2023-07-28T23:30:00",
                   "2023-07-28T23:30:00Z", "2023-07-28T23:30:00.5-08:00", "2023-07-28T00:30:00+14:00"):
            self.assertEqual(ref.row_date(ts), dt.date(2023, 7, 28), ts)

    def test_invalid(self):
        for ts in ("2023-7-28", "2023-02-30", "2023-07-28 24:00:00", "2023-07-28T10:00", "28/07/2023",
                   "2023-07-28 10:00:00Z", "2023-07-28T10:00:00+5:30", "", " 2023-07-28", "2023-07-28\n",
                   "２０２３-07-28", 20230728, None):
            with self.assertRaises(ValueError, msg=repr(ts)):
                ref.row_date(ts)

    def test_bad_week_names_row_and_field(self):
        rows = [row("a", "b", "c", "2023-07-28"), row("a", "b", "c", "2023/07/28")]
        with self.assertRaises(ref.BadRequest) as cm:
            ref.rollup(request(rows))
        self.assertIn("row 1", str(cm.exception))
        self.assertIn("'Week'", str(cm.exception))


class Validation(unittest.TestCase):
    def bad(self, req, *fragments, stage="validate"):
        with self.assertRaises(ref.BadRequest) as cm:
            ref.rollup(req)
        self.assertEqual(cm.exception.stage, stage)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    def test_row_errors_name_row_and_field(self):
        ok = row("a", "b", "c", "2023-07-28", volume=1)
        missing = dict(ok)
        del missing["Staff Type"]
        self.bad(request([ok, ok, missing]), "row 2", "'Staff Type'", "missing")
        self.bad(request([ok, dict(ok, **{"Call Center": 3.0})]), "row 1", "'Call Center'")
        self.bad(request([ok, dict(ok, **{"Contact Type": None})]), "row 1", "'Contact Type'")
        self.bad(request([dict(ok, Volume="12")]), "row 0", "'Volume'")
        self.bad(request([dict(ok, Abandons=True)]), "row 0", "'Abandons'")
        self.bad(request([dict(ok, **{"Base AHT": [1]})]), "row 0", "'Base AHT'")
        self.bad(request([ok, 7]), "row 1")

    def test_request_errors(self):
        self.bad(request({"a": 1}), "'weekly'")
        self.bad(request("rows"), "'weekly'")
        self.bad({"event": "rollup", "weekly": []}, "organizationId")
        self.bad([1, 2], "want an object")

    def test_extra_fields_ignored_and_missing_metric_null(self):
        r = row("a", "b", "c", "2023-07-28", volume=2)
        r.update({"Interval": 3, "Forecast Version": "v3", "Nested": {"x": [1]}})
        del r["Base AHT"]
        got = ref.rollup(request([r]))["weekly"]["a_b_c"][0]
        self.assertEqual(got["Volume"], 2.0)
        self.assertIsNone(got["Base AHT"])
        self.assertNotIn("Interval", got)

    def test_other_events_ignored(self):
        self.assertIsNone(ref.rollup({"event": "ping", "organizationId": 1, "weekly": "nonsense"}))

    def test_empty_weekly(self):
        self.assertEqual(ref.rollup(request([]))["weekly"], {})


class Rules(unittest.TestCase):
    def test_configurable_rules(self):
        rules = [("Volume", "min", None), ("Abandons", "max", None), ("Base AHT", "count", None),
                 ("Handled Threshold", "weighted_mean", "Volume"), ("Total Queue Time", "min", None)]
        rows = [row("a", "b", "c", "2023-07-28", volume=1, abandons=5, base=1, handled=10),
                row("a", "b", "c", "2023-07-29", volume=3, abandons=None, base=None, handled=20),
                row("a", "b", "c", "2023-07-30", volume=None, abandons=2, base=4, handled=1000)]
        got = ref.rollup(request(rows), rules)["weekly"]["a_b_c"][0]
        self.assertEqual(got, {"Week": "2023-07-28", "Volume": 1.0, "Abandons": 5.0, "Base AHT": 2.0,
                               # (10*1 + 20*3) / (1 + 3); the row without a weight is skipped
                               "Handled Threshold": 17.5, "Total Queue Time": None})


class Decoding(unittest.TestCase):
    REQ = request([row("a", "b", "c", "2023-07-28", volume=1)])

    def test_accepted_forms(self):
        raw = json.dumps(self.REQ).encode()
        for payload in (raw, b"  " + raw, gzip.compress(raw), b64gz(self.REQ),
                        base64.b64encode(gzip.compress(raw[:10]) + gzip.compress(raw[10:]))):
            self.assertEqual(ref.decode_payload(payload), json.loads(raw))

    def test_refused_forms(self):
        raw = json.dumps(self.REQ).encode()
        gz = gzip.compress(raw)
        corrupt = bytearray(gz)
        corrupt[len(corrupt) // 2] ^= 0xFF
        cases = {
            "bad base64": b"H4sI!!notbase64",
            "base64 of JSON": base64.b64encode(raw),
            "base64 of garbage": base64.b64encode(b"\x00\x01garbage"),
            "truncated gzip": base64.b64encode(gz[: len(gz) // 2]),
            "corrupt gzip": base64.b64encode(bytes(corrupt)),
            "gzip of nothing": base64.b64encode(gzip.compress(b"")),
            "invalid JSON": raw[:-1],
            "NaN": b'{"event":"rollup","x":NaN}',
            "huge number": b'{"event":"rollup","x":1e400}',
            "non-UTF-8": raw.replace(b'"a"', b'"\xff"'),
            "UTF-16": json.dumps(self.REQ).encode("utf-16"),
        }
        for name, payload in cases.items():
            with self.assertRaises(ref.BadRequest, msg=name) as cm:
                ref.decode_payload(payload)
            self.assertEqual(cm.exception.stage, "decode", name)

    def test_bomb_stops_at_limit(self):
        bomb = base64.b64encode(gzip.compress(b"{" + b" " * 100_000))
        with self.assertRaises(ref.BadRequest) as cm:
            ref.decode_payload(bomb, limit=10_000)
        self.assertIn("larger than 10000 bytes", str(cm.exception))


class Command(unittest.TestCase):
    def test_stdio(self):
        good = b64gz(request([row("a", "b", "c", "2023-07-28", volume=1)]))
        bad = b'{"event":"rollup","organizationId":"x","weekly":{}}'
        other = b'{"event":"other"}'
        with tempfile.TemporaryDirectory() as d:
            dlq = os.path.join(d, "dlq.jsonl")
            p = subprocess.run([sys.executable, ref.__file__], input=b"\n".join([good, b"", bad, other]) + b"\n",
                               capture_output=True, env=dict(os.environ, OUTPUT_ENCODING="json", DLQ_FILE=dlq),
                               check=True)
            with open(dlq, encoding="utf-8") as fh:
                letters = [json.loads(line) for line in fh]
        responses = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len(responses), 1)
        self.assertEqual(responses[0]["weekly"]["a_b_c"][0]["Volume"], 1.0)
        self.assertEqual(len(letters), 1)
        self.assertEqual(letters[0]["payload"], bad.decode())
        self.assertEqual(letters[0]["error_stage"], "validate")


if __name__ == "__main__":
    unittest.main()

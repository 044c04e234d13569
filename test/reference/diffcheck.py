#!/usr/bin/env python3
"""Differential check of a rollup command against the reference implementation (rollup_ref.py).

    diffcheck.py [options] [-- COMMAND ARGS...]

Generates varied requests with shared/tools/gen_requests.py (every week start and spelling, missing and
null week_start, each timestamp form, nulls, shuffled rows, extra fields, several groups, raw JSON and
gzip+base64, number and key-order variants), mixes in bad requests (bad base64, corrupt and truncated
gzip, a gzip bomb, invalid JSON, non-UTF-8, wrong types, a missing dimension, unknown week_start, `weekly`
not a list, ...), a non-rollup event and empty lines, and feeds them one per line to COMMAND's stdin with
OUTPUT_ENCODING=json and DLQ_FILE=<file>. Then it checks:
  - every good request has exactly one response (matched by organizationId, any order) equal to the
    reference's: same groups (sorted), weeks (oldest first), metric keys, every number to 1e-9 relative,
    null exactly where the reference has null;
  - every bad request has exactly one dead letter {"error", "error_stage", "payload"} with the line as
    received, a plausible stage and, for row errors, the row index and field named in the error;
    and no response;
  - the non-rollup event and empty lines produce nothing; the command exits 0.
Exit status 0 and a summary line when all agree, 1 with the differences otherwise, 2 on a setup error.

COMMAND defaults to `$ROLLUP_BIN run pipelines/weekly-rollup-stdio.yaml`, run from the repository root.
`diffcheck.py -- python3 test/reference/rollup_ref.py` checks the checker against the reference itself.
shared/ is found from --shared, else $ROLLUP_SHARED, else ../shared beside the repository.
"""
import argparse
import base64
import gzip
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import rollup_ref as ref  # noqa: E402

REL_TOL = 1e-9
DAYS = ref.DAY_NAMES
SPELLINGS = [str.lower, str.capitalize, str.upper, lambda d: d[:3], lambda d: d[:3].capitalize(),
             lambda d: d[:3].upper(), lambda d: "".join(c.upper() if i % 2 else c for i, c in enumerate(d))]
TS_FORMATS = ["space", "iso", "isoz", "offset", "date"]
NULLS = [0.0, 0.05, 0.3, 1.0]
CONTACT_TYPES = ["Medical", "Medical,Dental", "Médical,Zürich_Care", "Sales,Support,Billing"]
LANGS = ["English", "English,Spanish", "English,Spanish,Français"]
CENTERS = ["Default Center", "Default Center,North_East", "Zentrale München,Default Center"]
STARTS = ["2023-07-28", "2024-02-26", "2019-12-30", "2020-02-29", "2023-01-01T05:00:00", "1999-12-31"]


# --------------------------------------------------------------------------------------- serialisation

def dumps(obj, numfmt="repr", ascii_only=True, spaced=False):
    """JSON on one line, with a choice of number spelling (repr, int where whole, exponent), escaping and
    spacing, so the command meets the forms a producer may send."""
    item_sep, key_sep = (", ", ": ") if spaced else (",", ":")
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, (int, float)):
        v = float(obj)
        if numfmt == "int" and v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        if numfmt == "exp":
            return format(v, ".16e")  # 17 significant digits: the same float64 back
        return json.dumps(v)
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=ascii_only)
    if isinstance(obj, list):
        return "[" + item_sep.join(dumps(x, numfmt, ascii_only, spaced) for x in obj) + "]"
    if isinstance(obj, dict):
        return "{" + item_sep.join(json.dumps(k, ensure_ascii=ascii_only) + key_sep +
                                   dumps(v, numfmt, ascii_only, spaced) for k, v in obj.items()) + "}"
    raise TypeError(type(obj))


def b64gz(data):
    return base64.b64encode(gzip.compress(data))


# ------------------------------------------------------------------------------------------ generation

def generate(gen, args):
    p = subprocess.run([sys.executable, gen] + args, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"diffcheck: {gen} {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout.strip()


FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})")


def good_requests(gen, n, rng):
    """n varied valid requests: (label, line bytes). Choices rotate on co-prime periods so that every week
    start, spelling, timestamp form and null rate appears, in changing combinations."""
    out = []
    for i in range(n):
        day = DAYS[i % 7]
        spell = SPELLINGS[(i // 7 + i) % len(SPELLINGS)]
        ts = TS_FORMATS[i % 5]
        nulls = NULLS[i % 4]
        seed_sized = i % 10 == 9
        args = ["--seed", str(rng.randrange(1 << 30)), "--ts-format", ts, "--nulls", str(nulls),
                "--start", STARTS[i % len(STARTS)]]
        if seed_sized:  # the seed's shape: one contact type, two languages, 58 weeks of hourly rows
            args += ["--weeks", "58"]
        else:
            args += ["--weeks", str(rng.randint(1, 6)), "--contact-types", CONTACT_TYPES[i % 4],
                     "--langs", LANGS[i % 3], "--centers", CENTERS[(i // 3) % 3]]
        ws_mode = "missing" if i % 8 == 5 else "null" if i % 9 == 4 else "name"
        if ws_mode == "missing":
            args.append("--no-week-start")
        else:
            args += ["--week-start", spell(day)]
        if i % 2:
            args.append("--shuffle")
        if i % 3 == 0:
            args.append("--extra")
        variant = i % 6
        encode = (i // 2) % 2 == 1
        label = (f"#{i} week_start={'<missing>' if ws_mode == 'missing' else '<null>' if ws_mode == 'null' else spell(day)}"
                 f" ts={ts} nulls={nulls} shuffle={bool(i % 2)} extra={i % 3 == 0} variant={variant}"
                 f" {'gzip_base64' if encode else 'json'}")
        if variant == 0 and ws_mode != "null":
            out.append((label, generate(gen, args + (["--encode"] if encode else []))))
            continue
        req = json.loads(generate(gen, args))
        if ws_mode == "null":
            req["week_start"] = None
        numfmt, ascii_only, spaced = "repr", True, False
        if variant == 1 and ts != "date":  # fractional seconds
            for r in req["weekly"]:
                r["Week"] = FRACTION.sub(r"\1." + str(rng.randint(0, 999999)).zfill(6), r["Week"], count=1)
        elif variant == 2:
            numfmt = "int"
        elif variant == 3:
            numfmt = "exp"
        elif variant == 4:  # raw UTF-8, keys in another order
            ascii_only = False
            req["weekly"] = [dict(reversed(list(r.items()))) for r in req["weekly"]]
            req = {k: req[k] for k in reversed(list(req))}
        elif variant == 5:
            spaced = True
        body = dumps(req, numfmt, ascii_only, spaced).encode("utf-8")
        out.append((label, b64gz(body) if encode else body))
    return out


class Bad:
    def __init__(self, name, line, stages, mentions=()):
        self.name, self.line, self.stages, self.mentions = name, line, stages, mentions


def bad_requests(gen, rng, bomb=True):
    """Requests that must each give exactly one dead letter and no response."""
    base = json.loads(generate(gen, ["--seed", "7", "--weeks", "1", "--langs", "English"]))
    assert len(base["weekly"]) > 140

    def variant(name, mutate):
        req = json.loads(json.dumps(base))
        req["organizationId"] = f"bad-{name}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        mutate(req)
        return json.dumps(req, separators=(",", ":")).encode()

    def set_row(k, field, value):
        def m(req):
            if value is DELETE:
                del req["weekly"][k][field]
            else:
                req["weekly"][k][field] = value
        return m

    DELETE = object()
    dec, either, val = {"decode"}, {"decode", "validate"}, {"validate"}
    good = variant("ok", lambda r: None)
    gz = gzip.compress(good)
    corrupt = bytearray(gz)
    for j in range(len(corrupt) // 2, len(corrupt) // 2 + 8):
        corrupt[j] ^= 0x5A
    k = 137  # a row index that cannot be confused with other numbers in the error
    bads = [
        Bad("bad base64", b"H4sI!!not*base64**", dec),
        Bad("base64 of garbage", base64.b64encode(b"\x00\x01\x02 not gzip, not zstd"), dec),
        Bad("base64 of plain JSON (not an accepted form)", base64.b64encode(variant("b64json", lambda r: None)), dec),
        Bad("truncated gzip", base64.b64encode(gz[: len(gz) // 2]), dec),
        Bad("corrupt gzip", base64.b64encode(bytes(corrupt)), dec),
        Bad("gzip of an empty payload", b64gz(b""), either),
        Bad("invalid JSON", variant("trunc", lambda r: None)[:-7], either),
        Bad("invalid JSON in gzip", b64gz(variant("trunc-gz", lambda r: None)[:-7]), either),
        Bad("NaN literal", variant("nan", set_row(3, "Volume", 0.25)).replace(b'"Volume":0.25', b'"Volume":NaN', 1), either),
        Bad("non-UTF-8 in raw JSON", variant("utf8", set_row(5, "Contact Type", "MED")).replace(b'"MED"', b'"M\xffD"'), either),
        Bad("non-UTF-8 in gzip", b64gz(variant("utf8gz", set_row(5, "Call Center", "CC")).replace(b'"CC"', b'"C\xc3\x28"')), either),
        Bad("JSON list, not an object", b"[1,2,3]", either),
        Bad("metric is a string", variant("metric-str", set_row(k, "Volume", "12")), val, (str(k), "Volume")),
        Bad("metric is a boolean", variant("metric-bool", set_row(k, "Abandons", True)), val, (str(k), "Abandons")),
        Bad("metric is an object", variant("metric-obj", set_row(k, "Base AHT", {"v": 1})), val, (str(k), "Base AHT")),
        Bad("missing dimension", variant("no-dim", set_row(k, "Staff Type", DELETE)), val, (str(k), "Staff Type")),
        Bad("dimension is a number", variant("dim-num", set_row(k, "Call Center", 4)), val, (str(k), "Call Center")),
        Bad("Week impossible date", variant("week-bad", set_row(k, "Week", "2023-13-45 10:00:00")), val, (str(k), "Week")),
        Bad("Week in another format", variant("week-fmt", set_row(k, "Week", "28/07/2023")), val, (str(k), "Week")),
        Bad("Week is a number", variant("week-num", set_row(k, "Week", 1690502400)), val, (str(k), "Week")),
        Bad("Week missing", variant("week-missing", set_row(k, "Week", DELETE)), val, (str(k), "Week")),
        Bad("unknown week_start", variant("ws", lambda r: r.update(week_start="someday")), val, ("mon",)),
        Bad("week_start of two letters", variant("ws2", lambda r: r.update(week_start="fr")), val, ("mon",)),
        Bad("week_start is a number", variant("ws-num", lambda r: r.update(week_start=5)), val),
        Bad("weekly is an object", variant("weekly-obj", lambda r: r.update(weekly={})), val),
        Bad("weekly is a string", variant("weekly-str", lambda r: r.update(weekly="rows")), val),
        Bad("a row is not an object", variant("row-num", lambda r: r["weekly"].insert(2, 42)), val, ("2",)),
    ]
    if bomb:
        # 300 MiB of JSON whitespace: over the default 256 MiB decode cap, about 400 KB on the wire.
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [c.compress(b'{"event":"rollup","organizationId":"bomb","weekly":[')]
        chunk = b" " * (1 << 20)
        parts += [c.compress(chunk) for _ in range(300)]
        parts.append(c.compress(b"]}") + c.flush())
        bads.append(Bad("gzip bomb (300 MiB)", base64.b64encode(b"".join(parts)), dec))
    for b in bads:  # the generator of the bad cases must itself agree that they are bad
        try:
            ref.handle(b.line)
        except ref.BadRequest:
            continue
        raise SystemExit(f"diffcheck: internal error: the reference accepts bad case {b.name!r}")
    return bads


# ---------------------------------------------------------------------------------------------- checks

def close(a, b):
    return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def compare(want, got, check_order=True, limit=8):
    """Differences between the reference's response and the command's, as text lines."""
    diffs = []
    for k in ("event", "organizationId", "week_start"):
        if got.get(k) != want[k]:
            diffs.append(f"{k}: got {got.get(k)!r}, want {want[k]!r}")
    extra = sorted(set(got) - set(want))
    if extra:
        diffs.append(f"unexpected top-level fields {extra}")
    gw = got.get("weekly")
    if not isinstance(gw, dict):
        return diffs + [f"weekly: got {type(gw).__name__}, want an object of groups"]
    ww = want["weekly"]
    missing, unexpected = [g for g in ww if g not in gw], [g for g in gw if g not in ww]
    if missing:
        diffs.append(f"missing groups {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        diffs.append(f"unexpected groups {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if check_order and not missing and not unexpected and list(gw) != list(ww):
        diffs.append(f"groups not sorted: got {list(gw)[:5]}")
    for g in ww:
        if g not in gw:
            continue
        gweeks, wweeks = gw[g], ww[g]
        if not isinstance(gweeks, list):
            diffs.append(f"group {g!r}: got {type(gweeks).__name__}, want a list")
            continue
        gdates = [r.get("Week") if isinstance(r, dict) else r for r in gweeks]
        wdates = [r["Week"] for r in wweeks]
        if gdates != wdates:
            diffs.append(f"group {g!r} weeks: got {gdates[:6]}{'...' if len(gdates) > 6 else ''}, "
                         f"want {wdates[:6]}{'...' if len(wdates) > 6 else ''}")
            continue
        for gr, wr in zip(gweeks, wweeks):
            where = f"group {g!r} week {wr['Week']}"
            if set(gr) != set(wr):
                diffs.append(f"{where}: keys {sorted(gr)}, want {sorted(wr)}")
            for m, wv in wr.items():
                if m == "Week" or m not in gr:
                    continue
                gv = gr[m]
                if wv is None or gv is None:
                    if not (wv is None and gv is None):
                        diffs.append(f"{where} {m!r}: got {gv!r}, want {wv!r}")
                elif not is_num(gv) or not close(float(gv), wv):
                    diffs.append(f"{where} {m!r}: got {gv!r}, want {wv!r}"
                                 + (f" (relative error {abs(gv - wv) / max(abs(wv), 1e-300):.3g})" if is_num(gv) else ""))
            if len(diffs) >= limit:
                return diffs[:limit] + ["..."]
    return diffs


def mentions(text, word):
    """word in text, ignoring case; a number only as a whole number (row 13 is not row 137)."""
    pattern = rf"(?<![0-9]){re.escape(word)}(?![0-9])" if word.isdigit() else re.escape(word)
    return re.search(pattern, text, re.IGNORECASE) is not None


def parse_response(line):
    s = line.strip()
    if not s.startswith(b"{"):  # tolerate gzip_base64 if OUTPUT_ENCODING was not honoured
        s = gzip.decompress(base64.b64decode(s))
    return json.loads(s)


def payload_matches(line, payload):
    if not isinstance(payload, str):
        return False
    try:
        return payload == line.decode("utf-8")
    except UnicodeDecodeError:  # a non-UTF-8 line cannot be a JSON string as is: accept common renderings
        return payload in (line.decode("utf-8", "replace"), base64.b64encode(line).decode(), line.decode("latin-1"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=40, help="good requests to generate (default 40)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the variations (default 1)")
    ap.add_argument("--shared", help="the shared/ directory (default $ROLLUP_SHARED or ../shared)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds the command may run (default 900)")
    ap.add_argument("--keep", help="write the input, output and DLQ files to this directory and keep them")
    ap.add_argument("--no-bomb", action="store_true", help="leave out the 300 MiB gzip bomb")
    ap.add_argument("--ignore-order", action="store_true", help="do not require groups in sorted order")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS... (default: $ROLLUP_BIN run ...)")
    a = ap.parse_args()

    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        binary = os.environ.get("ROLLUP_BIN")
        if not binary:
            print("diffcheck: no command given and ROLLUP_BIN is not set", file=sys.stderr)
            return 2
        cmd = [binary, "run", "pipelines/weekly-rollup-stdio.yaml"]
    shared = a.shared or os.environ.get("ROLLUP_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
    gen = os.path.join(shared, "tools", "gen_requests.py")
    if not os.path.isfile(gen):
        print(f"diffcheck: {gen} not found (set --shared or ROLLUP_SHARED)", file=sys.stderr)
        return 2

    rng = random.Random(a.seed)
    goods = good_requests(gen, a.count, rng)
    bads = bad_requests(gen, rng, bomb=not a.no_bomb)
    expected = {}  # organizationId -> (label, line, reference response)
    for label, line in goods:
        want = ref.handle(line)
        if want["organizationId"] in expected:
            print(f"diffcheck: two generated requests share organizationId {want['organizationId']}", file=sys.stderr)
            return 2
        expected[want["organizationId"]] = (label, line, want)
    ignored_org = f"ignored-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    ignored = json.dumps({"event": "heartbeat", "organizationId": ignored_org, "weekly": []}).encode()
    bad_orgs = {}
    for b in bads:
        m = re.search(rb'"organizationId":"(bad-[^"]+)"', b.line)
        if m:
            bad_orgs[m.group(1).decode()] = b

    lines = [line for _, line in goods] + [b.line for b in bads] + [ignored] + [b""] * 3
    rng.shuffle(lines)

    workdir = a.keep or tempfile.mkdtemp(prefix="diffcheck-")
    os.makedirs(workdir, exist_ok=True)
    paths = {n: os.path.join(workdir, n) for n in ("input.txt", "stdout.txt", "stderr.txt", "dlq.jsonl")}
    with open(paths["input.txt"], "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    if os.path.exists(paths["dlq.jsonl"]):
        os.remove(paths["dlq.jsonl"])
    env = dict(os.environ, OUTPUT_ENCODING="json", DLQ_FILE=paths["dlq.jsonl"])
    try:
        with open(paths["input.txt"], "rb") as i, open(paths["stdout.txt"], "wb") as o, \
                open(paths["stderr.txt"], "wb") as e:
            rc = subprocess.run(cmd, stdin=i, stdout=o, stderr=e, env=env, cwd=REPO, timeout=a.timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"diffcheck: {' '.join(cmd)} did not finish within {a.timeout:.0f} s (files in {workdir})", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"diffcheck: cannot run {' '.join(cmd)}: {err}", file=sys.stderr)
        return 2

    problems = []
    if rc != 0:
        with open(paths["stderr.txt"], "rb") as fh:
            tail = fh.read()[-2000:].decode(errors="replace")
        problems.append(f"command exited {rc}; stderr ends:\n{tail}")

    # Responses, matched by organizationId.
    got = {}
    with open(paths["stdout.txt"], "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                resp = parse_response(line)
                org = resp["organizationId"]
            except Exception as err:  # noqa: BLE001 - any unreadable line is a finding
                problems.append(f"stdout line {n} is not a response: {err}: {line[:200]!r}")
                continue
            got.setdefault(org, []).append(resp)
    agree = 0
    for org, (label, _, want) in expected.items():
        answers = got.pop(org, [])
        if len(answers) != 1:
            problems.append(f"request {label} (organizationId {org}): {len(answers)} responses, want 1")
            if not answers:
                continue
        diffs = compare(want, answers[0], check_order=not a.ignore_order)
        if diffs:
            problems.append(f"request {label} (organizationId {org}) differs from the reference:\n    "
                            + "\n    ".join(diffs))
        else:
            agree += 1
    for org, answers in got.items():
        if org in bad_orgs:
            problems.append(f"bad request {bad_orgs[org].name!r} was answered instead of dead-lettered")
        elif org == ignored_org:
            problems.append("the non-rollup event was answered; it must be acknowledged without a response")
        else:
            problems.append(f"{len(answers)} response(s) for unknown organizationId {org!r}")

    # Dead letters, matched by payload.
    letters = []
    if os.path.exists(paths["dlq.jsonl"]):
        with open(paths["dlq.jsonl"], "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    assert isinstance(d, dict)
                except Exception:  # noqa: BLE001
                    problems.append(f"DLQ line {n} is not a JSON object: {line[:200]!r}")
                    continue
                letters.append(d)
    for d in letters:
        missing = [f for f in ("error", "error_stage", "payload") if f not in d]
        if missing:
            problems.append(f"dead letter without {missing}: {json.dumps(d)[:300]}")
    unmatched = list(letters)
    dead_lettered = 0
    for b in bads:
        mine = [d for d in unmatched if payload_matches(b.line, d.get("payload"))]
        for d in mine:
            unmatched.remove(d)
        if len(mine) != 1:
            problems.append(f"bad request {b.name!r}: {len(mine)} dead letters, want 1")
            continue
        d, issues = mine[0], []
        err, stage = d.get("error"), d.get("error_stage")
        if not isinstance(err, str) or not err.strip():
            issues.append("empty error")
        elif not all(mentions(err, m) for m in b.mentions):
            issues.append(f"error {err!r} should name {list(b.mentions)}")
        if stage not in b.stages:
            issues.append(f"error_stage {stage!r}, want one of {sorted(b.stages)}")
        problems += [f"bad request {b.name!r}: {i}" for i in issues]
        dead_lettered += not issues
    for d in unmatched:
        p = d.get("payload")
        who = next((label for label, line, _ in expected.values() if payload_matches(line, p)), None)
        if who:
            problems.append(f"good request {who} was dead-lettered: {d.get('error_stage')}: {d.get('error')}")
        elif payload_matches(ignored, p):
            problems.append("the non-rollup event was dead-lettered; it must be acknowledged silently")
        elif p == "":
            problems.append("an empty line was dead-lettered; empty lines are not requests")
        else:
            problems.append(f"unexpected dead letter: {json.dumps(d)[:300]}")

    if problems:
        print("\n".join(f"MISMATCH {p}" for p in problems), file=sys.stderr)
        print(f"diffcheck: FAILED: {len(problems)} problem(s); {agree}/{len(expected)} requests agree; "
              f"files kept in {workdir}", file=sys.stderr)
        return 1
    if not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"diffcheck: {agree} requests agree, {dead_lettered} bad requests dead-lettered, "
          f"1 non-rollup event and 3 empty lines ignored")
    return 0


if __name__ == "__main__":
    sys.exit(main())

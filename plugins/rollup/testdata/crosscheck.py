#!/usr/bin/env python3
"""Opt-in cross-check of weekly_rollup against the seed's pandas path (seed_peer.py), to 1e-9 relative.

Generates requests with gen_requests.py over week starts, timestamp forms, nulls, extra fields, shuffled
rows and group counts; rolls each up with pandas (seed_peer.aggregate, NaN read as null) and with this
package (testdata/rollupcli, fast path and exact path); compares group keys, weeks and every value.
Needs python3 with pandas and Go. Run from anywhere:

    python3 plugins/rollup/testdata/crosscheck.py            # the matrix, prints one line per case
    python3 plugins/rollup/testdata/crosscheck.py --fixtures # also rewrites testdata/fixtures/*

SEED_TOOLS overrides where gen_requests.py and seed_peer.py are (default: <repo>/../shared/tools).
"""
import argparse, json, math, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
TOOLS = os.environ.get("SEED_TOOLS", os.path.join(REPO, "..", "shared", "tools"))
sys.path.insert(0, TOOLS)
import seed_peer  # noqa: E402  (pandas)

FULL = {d[:3]: d for d in seed_peer.DAYS}

# name, gen_requests.py arguments
CASES = [
    ("default", []),
    ("monday-iso", ["--week-start", "Monday", "--ts-format", "iso"]),
    ("tuesday-isoz", ["--week-start", "TUESDAY", "--ts-format", "isoz", "--seed", "2"]),
    ("wednesday-offset", ["--week-start", "wednesday", "--ts-format", "offset", "--seed", "3"]),
    ("thursday-date", ["--week-start", "thu", "--ts-format", "date", "--seed", "4"]),
    ("saturday-nulls", ["--week-start", "Sat", "--nulls", "0.2", "--seed", "5"]),
    ("sunday-extra-shuffle", ["--week-start", "sunday", "--extra", "--shuffle", "--seed", "6"]),
    ("no-week-start", ["--no-week-start", "--start", "2024-02-26", "--seed", "7"]),
    ("many-groups", ["--contact-types", "Medical,Billing,Pharmacy", "--langs", "English,Spanish,French",
                     "--centers", "Default Center,Überlingen,東京", "--weeks", "3", "--seed", "8", "--shuffle"]),
    ("heavy-nulls", ["--nulls", "0.9", "--ts-format", "iso", "--seed", "9", "--week-start", "friday"]),
]

FIXTURES = {  # small ones committed under testdata/fixtures (one week, one group)
    "space-friday": ["--weeks", "1", "--langs", "English", "--seed", "11"],
    "offset-monday-nulls-extra-shuffle": ["--weeks", "1", "--langs", "Spanish", "--seed", "12",
                                          "--ts-format", "offset", "--week-start", "Monday", "--nulls", "0.1",
                                          "--extra", "--shuffle", "--start", "2024-02-27"],
}


def gen(args):
    out = subprocess.run([sys.executable, os.path.join(TOOLS, "gen_requests.py"), "--weeks", "4"] + args,
                         check=True, capture_output=True).stdout
    return out.strip()


def pandas_answer(req):
    ws = req.get("week_start") or "friday"
    ws = FULL.get(ws.lower(), ws.lower())
    weekly = seed_peer.aggregate(req["weekly"], ws)
    for weeks in weekly.values():
        for w in weeks:
            for k, v in w.items():
                if isinstance(v, float) and math.isnan(v):
                    w[k] = None
    return {"organizationId": req["organizationId"], "week_start": ws, "weekly": weekly}


def compare(want, got):
    """Returns a list of differences (empty when they agree to 1e-9 relative)."""
    diffs = []
    if got.get("organizationId") != want["organizationId"]:
        diffs.append("organizationId")
    if got.get("week_start") != want["week_start"]:
        diffs.append(f"week_start {got.get('week_start')!r} != {want['week_start']!r}")
    if list(got["weekly"]) != sorted(want["weekly"]):
        diffs.append(f"group keys {list(got['weekly'])} != {sorted(want['weekly'])}")
        return diffs
    for g, weeks in want["weekly"].items():
        gw = got["weekly"][g]
        if [w["Week"] for w in gw] != [w["Week"] for w in weeks]:
            diffs.append(f"{g}: weeks differ")
            continue
        for a, b in zip(weeks, gw):
            if list(b) != ["Week"] + list(seed_peer.RULES):
                diffs.append(f"{g} {a['Week']}: keys {list(b)}")
            for m in seed_peer.RULES:
                x, y = a[m], b.get(m)
                if x is None or y is None:
                    if x is not y:
                        diffs.append(f"{g} {a['Week']} {m}: {y!r} != {x!r}")
                elif abs(x - y) > 1e-9 * max(abs(x), abs(y)) and abs(x - y) > 1e-12:
                    diffs.append(f"{g} {a['Week']} {m}: {y!r} != {x!r}")
    return diffs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", action="store_true", help="rewrite testdata/fixtures from gen_requests + pandas")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cli = os.path.join(tmp, "rollupcli")
        subprocess.run(["go", "build", "-o", cli, "./plugins/rollup/testdata/rollupcli"], cwd=REPO, check=True)
        cases = [(n, gen(args)) for n, args in CASES]
        if a.fixtures:
            fx = os.path.join(HERE, "fixtures")
            os.makedirs(fx, exist_ok=True)
            for name, args in FIXTURES.items():
                body = gen(args)
                with open(os.path.join(fx, name + ".json"), "wb") as f:
                    f.write(body + b"\n")
                want = pandas_answer(json.loads(body))
                with open(os.path.join(fx, name + ".pandas.json"), "w") as f:
                    json.dump(want, f, indent=1, sort_keys=True)
                    f.write("\n")
                cases.append(("fixture " + name, body))
        paths = []
        for i, (_, body) in enumerate(cases):
            p = os.path.join(tmp, f"{i}.json")
            with open(p, "wb") as f:
                f.write(body)
            paths.append(p)
        failed = 0
        for mode in ([], ["-exact"]):
            out = subprocess.run([cli] + mode + paths, check=True, capture_output=True).stdout.splitlines()
            for (name, body), line in zip(cases, out):
                req = json.loads(body)
                got = json.loads(line)
                diffs = ["error: " + got["error"]] if "error" in got else compare(pandas_answer(req), got)
                rows = len(req["weekly"])
                label = f"{name} ({'exact' if mode else 'fast'}, {rows} rows, {len(got.get('weekly', {}))} groups)"
                if diffs:
                    failed += 1
                    print(f"FAIL {label}: " + "; ".join(diffs[:5]))
                else:
                    print(f"ok   {label}")
        print(f"{len(cases) * 2 - failed} agree, {failed} differ")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

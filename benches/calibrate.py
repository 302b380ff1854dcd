#!/usr/bin/env python3
"""The forecasts' calibration on the real traces: `allocwatch replay --forecast-calibration`.

For each trace of ../shared (CEA Curie 2012, RIKEN RICC 2010) it imports the SWF file into a
fresh store, sets one allocation per group of at least 1,000 core-hours, granted its actual
consumption over the trace times a spread of factors (0.6 ... 1.5: those under 1.0 run out
before the end, as in the Curie replay test), and runs the calibration over the whole period.
Prints the table of each trace (allocwatch's own output) and, with --json FILE, writes both.

    python3 benches/calibrate.py --bin target/release/allocwatch --shared ../shared --tmp DIR
"""
import argparse
import json
import pathlib
import subprocess
import sys
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
FACTORS = [0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5]

# (name, file, timezone, period start, period end (exclusive), replay end, billing partitions)
TRACES = [
    ("CEA Curie", "CEA-Curie-2011-2.1-cln.swf.gz", "Europe/Paris", "2012-02-01", "2012-10-18", "2012-10-19",
     ["parallel", "test", "batch", "standard", "test,batch"]),
    ("RIKEN RICC", "RICC-2010-2.swf.gz", "Asia/Tokyo", "2010-05-01", "2010-10-01", "2010-10-02", None),
]


def aw(binary, cfg, *args):
    out = subprocess.run([str(binary), "--config", str(cfg), *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"allocwatch {' '.join(map(str, args))}: exit {out.returncode}\n{out.stderr}")
    return out.stdout


def partitions_of(binary, cfg, start, end):
    rows = json.loads(aw(binary, cfg, "usage", "--from", start, "--to", end, "--format", "json"))
    return sorted({r["partition"] for r in rows})


def one(binary, shared, tmp, name, file, tz, start, end, replay_end, parts, forecast=""):
    d = tmp / file.split(".")[0]
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "allocwatch.toml"
    base = f'[store]\npath = "store.sqlite"\n\n[[centre]]\nid = "c"\ntimezone = "{tz}"\nclusters = ["c"]\n'
    trace = shared / "data" / "traces" / file
    if parts is None:
        # Map every partition the trace names (RICC has one, unnamed) to one resource.
        cfg.write_text(base + '[[centre.billing]]\nresource = "cpu"\npartitions = ["*"]\nunit = "cpu"\n')
        aw(binary, cfg, "import", "--centre", "c", "--format", "swf", trace)
        parts = partitions_of(binary, cfg, start, end)
    billing = '[[centre.billing]]\nresource = "cpu"\npartitions = [' + ", ".join(json.dumps(p) for p in parts) + ']\nunit = "cpu"\n'
    cfg.write_text(base + billing)
    aw(binary, cfg, "import", "--centre", "c", "--format", "swf", trace)
    rows = json.loads(aw(binary, cfg, "usage", "--from", start, "--to", end, "--format", "json"))
    per = defaultdict(float)
    for r in rows:
        if r.get("resource") == "cpu":
            per[r["account"]] += r["charged_hours"]
    big = sorted((a, h) for a, h in per.items() if h >= 1000.0)
    lines = ["project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile"]
    for i, (acc, h) in enumerate(big):
        lines.append(f"G{acc},c,cpu,{start},{end},{h * FACTORS[i % len(FACTORS)]:.0f},{acc},pi-{acc}@example.org,,CT{i % 5},")
    (d / "alloc.csv").write_text("\n".join(lines) + "\n")
    cfg.write_text(base + billing + '\n[allocations]\nfiles = ["alloc.csv"]\n[alerts.email]\nhost = "127.0.0.1"\nport = 1\n'
                   'tls = "none"\nfrom = "allocwatch@example.org"\n' + forecast)
    args = ["replay", "--forecast-calibration", "--from", start, "--to", replay_end]
    table = aw(binary, cfg, *args)
    js = json.loads(aw(binary, cfg, *args, "--format", "json"))
    return table, js


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=ROOT / "target" / "release" / "allocwatch", type=pathlib.Path)
    p.add_argument("--shared", default=ROOT.parent / "shared", type=pathlib.Path)
    p.add_argument("--tmp", required=True, type=pathlib.Path)
    p.add_argument("--json", type=pathlib.Path)
    p.add_argument("--only", help="run this trace only (CEA Curie or RIKEN RICC)")
    p.add_argument("--forecast", action="append", default=[], metavar="KEY=VALUE",
                   help="a [forecast] setting to try instead of the default (repeatable)")
    a = p.parse_args()
    results = {}
    for name, file, tz, start, end, replay_end, parts in TRACES:
        if a.only and a.only != name:
            continue
        if not (a.shared / "data" / "traces" / file).exists():
            print(f"{name}: {file} not found under {a.shared}: skipped")
            continue
        forecast = ("[forecast]\n" + "".join(f"{kv}\n" for kv in a.forecast)) if a.forecast else ""
        table, js = one(a.bin, a.shared, a.tmp, name, file, tz, start, end, replay_end, parts, forecast)
        print(f"## {name}\n\n{table}")
        results[name] = js
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

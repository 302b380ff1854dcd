#!/usr/bin/env python3
"""Run allocwatch's benchmarks side by side with their references, in the same run, and print
one table: each figure is the median of several runs (with min–max) and a ratio to its
reference. Called by benches/run.sh, which installs the references and builds the binaries.

Environment: BENCH_RUNS (runs per figure, default 5), BENCH_JOBS (records of the import
benches, default 1,000,000), BENCH_BIG_JOBS (records of the large ledger, default 10,000,000;
0 skips it), ALLOCWATCH_SHARED (where `data/traces/CEA-Curie-2011-2.1-cln.swf.gz` is; default
../shared).
"""
import argparse
import re
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
AW, BENCH = str(RELEASE / "allocwatch"), str(RELEASE / "allocwatch-bench")
PY = sys.executable


def run(cmd, tmp, **kw):
    """Run `cmd` under GNU time; return (wall seconds, peak RSS in MB, stdout)."""
    rss = Path(tmp) / "rss.txt"
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss)] + [str(c) for c in cmd],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}")
    return wall, int(rss.read_text().split()[-1]) / 1024, p.stdout


def rm_store(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Series:
    def __init__(self):
        self.secs, self.mb = [], []

    def add(self, secs, mb):
        self.secs.append(secs)
        self.mb.append(mb)

    def med(self):
        return statistics.median(self.secs)

    def mb_med(self):
        return statistics.median(self.mb)

    def show(self, unit="s"):
        if len(self.secs) == 1:
            return fmt(self.secs[0], unit)
        return f"{fmt(self.med(), unit)} ({fmt(min(self.secs), unit)}–{fmt(max(self.secs), unit)})"


def fmt(x, unit="s"):
    if unit == "ms":
        return f"{x * 1000:.0f} ms" if x >= 0.01 else f"{x * 1000:.1f} ms"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def check_rejections(import_stdout, notes):
    m = re.search(r"(\d+) rejected lines", import_stdout)
    if not m or m.group(1) != "0":
        notes.append(f"WARNING: the import rejected lines: {import_stdout.strip()}")


def gen(tmp, name, jobs, extra=()):
    out = Path(tmp) / name
    _, _, stdout = run([BENCH, "gen", "--jobs", jobs, "--seed", 1, "--out", out, *extra], tmp)
    dump_at = int(stdout.strip().split("dump_at=")[-1])
    return out, dump_at


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    tmp = Path(args.tmp)
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    jobs = int(os.environ.get("BENCH_JOBS", "1000000"))
    big = int(os.environ.get("BENCH_BIG_JOBS", "10000000"))
    shared = Path(os.environ.get("ALLOCWATCH_SHARED", ROOT.parent / "shared"))
    curie = shared / "data" / "traces" / "CEA-Curie-2011-2.1-cln.swf.gz"
    rows, notes = [], []
    started = dt.datetime.now(dt.timezone.utc)
    load = os.getloadavg()[0]

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # ---- data
    log(f"generating {jobs:,} records")
    dump, _ = gen(tmp, "dump.sacct", jobs, ["--config", tmp / "bench.toml"])
    size_mb = dump.stat().st_size / 1e6
    records = sum(1 for _ in open(dump, "rb"))

    # ---- 1. parse vs wc -l
    log("1. parse")
    wc, parse = Series(), Series()
    for _ in range(runs):
        wc.add(*run(["wc", "-l", dump], tmp)[:2])
        parse.add(*run([BENCH, "parse", "--fields", "xdmod", dump], tmp)[:2])
    r = parse.med() / wc.med()
    rows.append(("1", f"parse {records:,} sacct records ({size_mb:.0f} MB, no store)",
                 f"{parse.show()} · {records / parse.med() / 1e6:.2f} M records/s", f"`wc -l` {wc.show()}",
                 f"{r:.1f}×", "≤ 5×", r <= 5))

    # ---- 2. import vs sqlite3 .import; 3. vs pandas
    log("2-3. import, sqlite3 .import, pandas")
    sqlite, imp, pandas = Series(), Series(), Series()
    cols = ",".join(f"c{i} TEXT" for i in range(26))
    ref_db, store = tmp / "ref.db", tmp / "store.sqlite"
    store_bytes = 0
    for _ in range(runs):
        rm_store(ref_db)
        sqlite.add(*run(["sqlite3", ref_db, f"CREATE TABLE jobs({cols});", ".separator |", f".import {dump} jobs"], tmp)[:2])
        rm_store(store)
        secs, mb, out = run([AW, "--config", tmp / "bench.toml", "--store", store, "import", "--centre", "bench",
                             "--format", "sacct", "--fields", "xdmod", dump], tmp)
        imp.add(secs, mb)
        check_rejections(out, notes)
        store_bytes = store.stat().st_size
        pandas.add(*run([PY, ROOT / "benches" / "pandas_usage.py", dump], tmp)[:2])
    rm_store(ref_db)
    r = imp.med() / sqlite.med()
    rows.append(("2", f"import {records:,} records into the store",
                 f"{imp.show()} · {records / imp.med() / 1e3:.0f} k records/s",
                 f"sqlite3 `.import` (26-column table) {sqlite.show()}", f"{r:.2f}×", "≤ 1.0×", r <= 1.0))
    rt, rm = imp.med() / pandas.med(), imp.mb_med() / pandas.mb_med()
    rows.append(("3", "import vs the operators' pandas script (time, peak memory)",
                 f"{imp.show()}, {imp.mb_med():.0f} MB", f"pandas {pandas.show()}, {pandas.mb_med():.0f} MB",
                 f"{rt:.2f}× time, {rm:.2f}× memory", "≤ 1.0× time, < 0.5× memory", rt <= 1.0 and rm < 0.5))
    jobs_stored = records  # every record is a job run or never started; see the import summary
    rows.append(("6a", f"store size, {records:,}-record import", f"{store_bytes / jobs_stored:.0f} bytes/job",
                 "Open XDMoD ≈ 300 bytes/job", f"{store_bytes / jobs_stored / 300:.2f}×", "≤ 100 bytes/job",
                 store_bytes / jobs_stored <= 100))
    rm_store(store)
    dump.unlink()

    # ---- 4-6. the large ledger
    if big > 0:
        incr = 10_000
        log(f"generating {big:,} + {runs} × {incr:,} records")
        every, dump_at = gen(tmp, "big.sacct", big + runs * incr,
                             ["--accounts", 1500, "--jobs-per-day", 18300, "--config", tmp / "big.toml",
                              "--allocations", tmp / "allocations.csv", "--max-allocations", 5000])
        head = tmp / "big-head.sacct"
        with open(every, "rb") as src, open(head, "wb") as dst:
            for i, line in enumerate(src):
                if i < big:
                    dst.write(line)
                else:
                    k = (i - big) // incr
                    if (i - big) % incr == 0:
                        part = open(tmp / f"new-{k}.sacct", "wb")
                    part.write(line)
        part.close()
        every.unlink()
        log(f"5. import {big:,} records")
        store = tmp / "big.sqlite"
        rm_store(store)
        secs, mb, out = run([AW, "--config", tmp / "big.toml", "--store", store, "import", "--centre", "bench",
                             "--format", "sacct", "--fields", "xdmod", head], tmp)
        head.unlink()
        check_rejections(out, notes)
        rows.append(("5", f"peak memory importing {big:,} records", f"{mb:.0f} MB (in {secs:.0f} s, "
                     f"{big / secs / 1e3:.0f} k records/s)", "—", f"{mb / 100:.2f}× target", "≤ 100 MB", mb <= 100))
        size = store.stat().st_size
        rows.append(("6b", f"store size, {big:,}-record ledger", f"{size / big:.0f} bytes/job ({size / 1e9:.2f} GB)",
                     "Open XDMoD ≈ 300 bytes/job", f"{size / big / 300:.2f}×", "≤ 100 bytes/job", size / big <= 100))
        log("4. reconcile")
        _, _, out = run([BENCH, "reconcile", "--config", tmp / "big.toml", "--store", store, "--at", dump_at,
                         "--runs", runs] + [tmp / f"new-{k}.sacct" for k in range(runs)], tmp)
        full, inc, inc_import = Series(), Series(), Series()
        allocations = 0
        for line in out.splitlines():
            o = json.loads(line)
            if o["bench"] == "reconcile_full":
                allocations = o["allocations"]
                for s in o["seconds"][1:] or o["seconds"]:  # the first run warms the page cache
                    full.add(s, 0)
                notes.append(f"statuses at the reconciliation instant: {o['statuses']}")
            else:
                inc.add(o["reconcile_seconds"], 0)
                inc_import.add(o["import_seconds"], 0)
        rows.append(("4a", f"reconcile {allocations:,} allocations over {big:,} jobs (full)", full.show(), "—",
                     f"{full.med():.2f}× target", "≤ 1 s", full.med() <= 1.0))
        rows.append(("4b", f"reconcile after {incr:,} new jobs (incremental)", inc.show("ms"),
                     f"import of the {incr:,} jobs {inc_import.show('ms')}", f"{inc.med() / 0.1:.2f}× target",
                     "≤ 100 ms", inc.med() <= 0.1))
        rm_store(store)

    # ---- 7. Curie
    if curie.exists():
        log("7. Curie replay and import")
        replay, cimp = Series(), Series()
        detail = None
        for _ in range(min(runs, 3)):
            secs, mb, out = run([BENCH, "replay", curie, "--dir", tmp / "replay"], tmp)
            detail = json.loads(out.strip().splitlines()[-1])
            replay.add(detail["total_seconds"], mb)
            store = tmp / "curie.sqlite"
            rm_store(store)
            cimp.add(*run([AW, "--config", ROOT / "tests" / "fixtures" / "curie.toml", "--store", store, "import",
                           "--centre", "tgcc", "--format", "swf", curie], tmp)[:2])
            rm_store(store)
        rows.append(("7", f"replay the Curie trace ({detail['jobs']:,} jobs, {detail['days']} days): a pull and a "
                     f"reconciliation of {detail['allocations']} allocations per day",
                     f"{replay.show()} (pulls {detail['import_seconds']:.1f} s, reconciliations "
                     f"{detail['reconcile_seconds']:.1f} s)", "—", f"{replay.med() / 10:.2f}× target", "≤ 10 s",
                     replay.med() <= 10))
        rows.append(("–", "import the Curie trace (SWF, gzip)", f"{cimp.show()} · "
                     f"{detail['jobs'] / cimp.med() / 1e3:.0f} k records/s", "—", "—", "—", None))
    else:
        notes.append(f"Curie trace not found at {curie}: benchmark 7 skipped")

    # ---- table
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    print(f"allocwatch benchmarks — {started:%Y-%m-%d %H:%M} UTC, commit {commit}, {os.cpu_count()} × {cpu}, "
          f"load {load:.1f} at start; medians of {runs} runs (min–max)\n")
    print("| # | benchmark | allocwatch | reference, same run | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for n, what, ours, ref, ratio, target, met in rows:
        print(f"| {n} | {what} | {ours} | {ref} | {ratio} | {target} | {'—' if met is None else 'yes' if met else 'no'} |")
    for n in notes:
        print(f"\n{n}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Run allocwatch's benchmarks side by side with their references, in the same run, and print
one table: each figure is the median of several runs (with min–max) and a ratio to its
reference. Called by benches/run.sh, which installs the references and builds the binaries.

Environment: BENCH_RUNS (runs per figure, default 5), BENCH_JOBS (records of the import
benches, default 1,000,000), BENCH_BIG_JOBS (records of the large ledger, default 10,000,000;
0 skips it), ALLOCWATCH_SHARED (where `data/traces/CEA-Curie-2011-2.1-cln.swf.gz` is; default
../shared), BENCH_ONLY (comma-separated parts to run: import = 1-3 and 6a, ledger = 4, 5 and
6b and 10 (the HTTP side on that ledger, loaded by wrk), curie = 7, tests = 8 and 9, the measurements printed by ignored tests; default all of
them), AW_BENCH_POINTS (points per write_throughput configuration, default 200,000). Part
`tests` needs the servers of tests/infra/servers/start.sh in the environment (run.sh starts
them) and runs the release test binaries through `cargo test --release`.
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


PARTS = ("import", "ledger", "curie", "tests")


def selected_parts():
    only = os.environ.get("BENCH_ONLY", "").strip()
    if not only:
        return set(PARTS)
    want = {p.strip() for p in only.split(",") if p.strip()}
    unknown = want - set(PARTS) - {"calibration"}   # calibration: run.sh's, after this script
    if unknown:
        sys.exit(f"BENCH_ONLY: unknown part(s) {', '.join(sorted(unknown))} (known: {', '.join(PARTS)}, calibration)")
    return want


def cargo_test(test, name, extra_env=None):
    """Run one ignored measurement test of the release build; return its stdout (what it printed)."""
    cmd = ["cargo", "test", "--release", "--locked", "--quiet", "--test", test, "--", "--ignored", "--nocapture", "--exact", name]
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, **(extra_env or {})))
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout, p.stderr


class Rate:
    """Points per second over several runs: median (min–max)."""
    def __init__(self):
        self.v = []

    def show(self):
        k = lambda x: f"{x / 1000:,.0f}k"
        m = statistics.median(self.v)
        return f"{m:,.0f} points/s" if len(self.v) == 1 else f"{m:,.0f} points/s ({k(min(self.v))}–{k(max(self.v))})"


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
    parts = selected_parts()
    started = dt.datetime.now(dt.timezone.utc)
    load = os.getloadavg()[0]

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # ---- data
    if "import" in parts:
        import_benches(tmp, runs, jobs, rows, notes, log)

    # ---- 4-6. the large ledger
    if big > 0 and "ledger" in parts:
        ledger_benches(tmp, runs, big, rows, notes, log)

    # ---- 7. Curie
    if "curie" in parts and curie.exists():
        curie_benches(tmp, runs, curie, rows, log)
    elif "curie" in parts:
        notes.append(f"Curie trace not found at {curie}: benchmark 7 skipped")

    # ---- 8-9. measurements printed by ignored tests (README cites them)
    if "tests" in parts:
        test_measurements(runs, rows, notes, log)

    # ---- table
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    print(f"allocwatch benchmarks — {started:%Y-%m-%d %H:%M} UTC, commit {commit}, {os.cpu_count()} × {cpu}, "
          f"load {load:.1f} at start; medians of {runs} runs (min–max)"
          f"{'; parts: ' + ', '.join(p for p in PARTS if p in parts) if parts != set(PARTS) else ''}\n")
    print("| # | benchmark | allocwatch | reference, same run | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    for n, what, ours, ref, ratio, target, met in rows:
        print(f"| {n} | {what} | {ours} | {ref} | {ratio} | {target} | {'—' if met is None else 'yes' if met else 'no'} |")
    for n in notes:
        print(f"\n{n}")


def import_benches(tmp, runs, jobs, rows, notes, log):
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


def ledger_benches(tmp, runs, big, rows, notes, log):
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
                 f"{full.med() / 0.5:.2f}× target", "≤ 0.5 s", full.med() <= 0.5))
    rows.append(("4b", f"reconcile after {incr:,} new jobs (incremental)", inc.show("ms"),
                 f"import of the {incr:,} jobs {inc_import.show('ms')}", f"{inc.med() / 0.1:.2f}× target",
                 "≤ 100 ms", inc.med() <= 0.1))
    http_bench(tmp, store, dump_at, big, allocations, rows, log)
    rm_store(store)


WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def http_bench(tmp, store, at, big, allocations, rows, log):
    """10. The daemon's HTTP side on the large ledger: `allocwatch run` (its start-up cycle
    only) serving the status page and the API, loaded by wrk on loopback (2 threads, 8
    connections, 10 s per endpoint); wrk's p50 and p99 latency and requests/s."""
    import socket
    import urllib.request
    log("10. HTTP under load")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-token-0123456789abcdef"
    cfg = tmp / "http.toml"
    cfg.write_text((tmp / "big.toml").read_text() + f"""
[reconcile]
at = "{dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"
[daemon]
schedule = "0 0 0 1 1 *"
jitter_seconds = 0
quality_report = ""
[http]
listen = "127.0.0.1:{port}"
token_env = "AW_BENCH_TOKEN"
""")
    url = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen([AW, "--config", cfg, "--store", store, "run"], env=dict(os.environ, AW_BENCH_TOKEN=token,
                              ALLOCWATCH_LOG="warn"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while True:
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=5).status == 200:
                    break
            except Exception:
                pass
            if daemon.poll() is not None:
                sys.exit(f"the daemon exited ({daemon.returncode}): {daemon.stderr.read()}")
            if time.time() > deadline:
                sys.exit("the daemon was not ready within 600 s")
            time.sleep(0.5)
        req = urllib.request.Request(f"{url}/api/v1/allocations", headers={"Authorization": f"Bearer {token}"})
        first = json.loads(urllib.request.urlopen(req, timeout=60).read())[0]
        one = f"{url}/api/v1/allocations/{first['centre']}/{first['project']}/{first['resource']}"
        for key, name, target in [("a", "status page `/`", f"{url}/"), ("b", "`GET /api/v1/allocations` (all)", f"{url}/api/v1/allocations"),
                                  ("c", "`GET /api/v1/allocations/…` (one)", one), ("d", "`/metrics`", f"{url}/metrics")]:
            p = subprocess.run(["wrk", "-t2", "-c8", "-d10s", "--timeout", "30s", "--latency", "-H",
                                f"Authorization: Bearer {token}", target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode != 0 or "Non-2xx" in p.stdout or "Socket errors" in p.stdout:
                sys.exit(f"wrk {target}: errors under load:\n{p.stdout}\n{p.stderr}")
            lat = {q: float(v) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[u] for q, v, u in WRK_LATENCY.findall(p.stdout)}
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", p.stdout).group(1))
            rows.append((f"10{key}", f"{name}, {allocations:,} allocations, {big:,}-job ledger (wrk -t2 -c8 -d10s, loopback)",
                         f"p50 {fmt(lat['50'], 'ms')}, p99 {fmt(lat['99'], 'ms')}; {rps:,.0f} req/s", "—", "—", "—", None))
        hwm = next(int(l.split()[1]) for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmHWM:"))
        rows.append(("10e", "daemon peak RSS over the HTTP runs (its start-up cycle included)", f"{hwm / 1024:.0f} MB", "—", "—", "—", None))
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def curie_benches(tmp, runs, curie, rows, log):
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


THROUGHPUT = re.compile(r"^(?P<target>.+?)\s+gzip=(?P<gzip>true|false)\s+batch=(?P<batch>\d+): (?P<n>\d+) points sent in "
                        r"[\d.]+ s = (?P<rate>\d+) points/s \(enqueue (?P<enqueue>\d+) points/s\)$", re.M)
REPORT = re.compile(r"^report quality --period (?P<period>\S+): best of 3 (?P<secs>[\d.]+) s \(process start included\); "
                    r"(?P<allocations>\d+) allocations, (?P<alerts>\d+) alerts, (?P<notifications>\d+) notifications", re.M)


def test_measurements(runs, rows, notes, log):
    """8. tests/influx.rs `write_throughput` (BENCH_RUNS runs of its 4 configurations) and
    9. tests/quality.rs `report_speed_on_the_curie_trace` (once: it times 3 reports of each
    period itself and keeps the best), parsed from what they print."""
    servers = [k for k in ("AW_SERVERS_DIR", "AW_VM_URL", "AW_INFLUX1_URL", "AW_INFLUX_PROXY_URL", "AW_INFLUX_TOKEN",
                           "AW_INFLUX_BUCKET") if not os.environ.get(k)]   # what write_throughput needs
    if servers:
        sys.exit(f"part tests: {', '.join(servers)} not set (run.sh starts the servers with tests/infra/servers/start.sh)")
    log(f"8. write_throughput ({runs} runs)")
    rates, enqueue, shape = {}, [], None
    for _ in range(runs):
        out, err = cargo_test("influx", "write_throughput")
        found = list(THROUGHPUT.finditer(out))
        if len(found) != 4:
            sys.exit(f"write_throughput printed {len(found)} of its 4 figures:\n{out}\n{err}")
        for m in found:
            key = (m["target"].strip(), m["gzip"] == "true")
            rates.setdefault(key, Rate()).v.append(int(m["rate"]))
            enqueue.append(int(m["enqueue"]))
            shape = (int(m["n"]), int(m["batch"]))
    n, batch = shape
    for i, ((target, gz), r) in enumerate(rates.items()):
        rows.append((f"8{'abcd'[i]}", f"write {n:,} points to {target} (gzip {'on' if gz else 'off'}, batches of {batch:,}, "
                     f"drained from the outbox)", r.show(), "—", "—", "—", None))
    e = Rate()
    e.v = enqueue
    rows.append(("8e", f"queue {n:,} points in the outbox (render + insert, one transaction; all runs above)", e.show(), "—", "—", "—", None))
    log("9. report_speed on the Curie trace")
    out, err = cargo_test("quality", "report_speed_on_the_curie_trace")
    found = {m["period"]: m for m in REPORT.finditer(out)}
    if "SKIPPED" in err and not found:
        notes.append("report_speed: " + next(l for l in err.splitlines() if "SKIPPED" in l).strip() + ": benchmark 9 skipped")
        return
    if set(found) != {"2012-Q2", "2012"}:
        sys.exit(f"report_speed printed {sorted(found)}, not 2012-Q2 and 2012:\n{out}\n{err}")
    q = found["2012"]
    rows.append(("9", f"`report quality` on the Curie trace ({q['allocations']} allocations, 37 weekly cycles: "
                 f"{int(q['alerts']):,} alerts, {int(q['notifications']):,} messages; process start included, best of 3)",
                 f"year 2012 {float(q['secs']):.2f} s, quarter 2012-Q2 {float(found['2012-Q2']['secs']):.2f} s",
                 "—", "—", "—", None))


if __name__ == "__main__":
    main()

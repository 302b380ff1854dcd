#!/usr/bin/env python3
"""Generate allocwatch's bundled demo data (deterministic: same seed, same bytes).

A national allocation like GENCI's: 3 centres, ~30 projects, CPU and GPU resources, one-year
periods from 2026-05-01, and accounting up to the demo's pinned instant (2026-11-15T12:00Z,
set in config/demo.toml as `reconcile.at`), so `check` shows the same picture whatever day it
is run. Each allocation is given a consumption pattern (on track, over pace, under pace,
exhausted, back-loaded...) and jobs are drawn to follow it, as sacct -P dumps with a header in
the centres' local time (sacct's default time format).

Run from the repository root:  python3 config/demo/generate.py
"""
import csv
import datetime as dt
import os
import random
from zoneinfo import ZoneInfo

OUT = os.path.dirname(os.path.abspath(__file__))
AT = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.timezone.utc)
P_START, P_END = dt.date(2026, 5, 1), dt.date(2027, 5, 1)
rng = random.Random(20261115)

# centre -> (cluster, tz, {resource: (partition, unit, units per job choices)})
CENTRES = {
    "idris": ("jeanzay", "Europe/Paris", {
        "cpu-cascadelake": ("cpu_p1", "cpu", [40, 80, 160, 400]),
        "gpu-v100": ("gpu_p13", "gpu", [1, 4, 8, 16]),
        "gpu-a100": ("gpu_p5", "gpu", [8, 16, 32]),
    }),
    "tgcc": ("irene", "Europe/Paris", {
        "cpu-skylake": ("skylake", "cpu", [48, 96, 192, 480]),
        "cpu-rome": ("rome", "node", [1, 2, 4, 8]),
    }),
    "cines": ("adastra", "Europe/Paris", {
        "cpu-genoa": ("genoa", "billing", [192, 384, 768]),
        "gpu-mi250": ("mi250", "gpu", [8, 16, 32]),
    }),
}
COMMITTEES = ["CT1-environment", "CT2-fluids", "CT4-astrophysics", "CT5-physics", "CT7-biology", "CT8-chemistry", "CT10-ai"]
FIRST = ["alice", "bruno", "chloe", "david", "emma", "farid", "gael", "hana", "ines", "jules", "karim", "lea",
         "marc", "nora", "omar", "paula", "quentin", "rose", "sami", "theo", "ugo", "vera", "willy", "yasmine", "zoe"]

# pattern -> multiplier on the linear pace at the demo instant, with a shape
PATTERNS = ["on_track"] * 12 + ["over"] * 5 + ["under"] * 5 + ["exhausted"] * 3 + ["burst"] * 2 + ["late_start"] * 2


def hours_per_unit_hour(unit):
    return 1.0  # charged hours = units x hours (multipliers are 1 in the demo config)


def shape(pattern, f):
    """Cumulative share of the at-instant consumption reached at fraction f (0..1) of the elapsed part."""
    if pattern == "burst":
        return 0.3 * f if f < 0.8 else 0.3 * f + (f - 0.8) * 3.5  # quiet then a recent burst
    if pattern == "late_start":
        return 0.0 if f < 0.6 else (f - 0.6) / 0.4
    return f


def main():
    allocations, adjustments = [], []
    jobs = {c: [] for c in CENTRES}
    elapsed_days = (AT.date() - P_START).days + 0.5
    period_days = (P_END - P_START).days
    n = 0
    patterns = PATTERNS[:]
    rng.shuffle(patterns)
    for i, pattern in enumerate(patterns):
        centre = list(CENTRES)[i % 3]
        cluster, tzname, resources = CENTRES[centre]
        resource = rng.choice(sorted(resources))
        partition, unit, sizes = resources[resource]
        project = f"A0{17 + i % 3}0{6 + i % 4}{10000 + rng.randrange(90000):05d}"
        account = project.lower() if i % 4 else f"{FIRST[i % len(FIRST)][:3]}{i:02d}"  # some centres use their own names
        pi = f"{FIRST[i % len(FIRST)]}.pi{i}@lab{i % 7}.example.fr"
        members = [f"{FIRST[(i + k) % len(FIRST)]}{i}@lab{i % 7}.example.fr" for k in (3, 7)]
        users = [m.split("@")[0] for m in members] + [pi.split("@")[0].split(".")[0]]
        base = rng.choice([150_000, 300_000, 600_000, 1_000_000, 2_000_000]) if unit != "gpu" else rng.choice([10_000, 25_000, 50_000, 80_000])
        granted = float(base)
        linear_now = granted * elapsed_days / period_days
        target = {
            "on_track": linear_now * rng.uniform(0.95, 1.05),
            "over": linear_now * rng.uniform(1.3, 1.5),
            "under": linear_now * rng.uniform(0.3, 0.5),
            "exhausted": granted * rng.uniform(1.01, 1.06),
            "burst": linear_now * 1.0,
            "late_start": linear_now * 0.9,
        }[pattern]
        profile = ""
        if pattern == "late_start":
            profile = "backloaded"
        allocations.append(dict(project=project, centre=centre, resource=resource, period_start=P_START, period_end=P_END,
                                granted_hours=int(granted), accounts=account, pi=pi, members=";".join(members),
                                committee=COMMITTEES[i % len(COMMITTEES)], profile=profile))
        # Jobs following the pattern: walk days, emit jobs whose hours track the cumulative shape.
        tz = ZoneInfo(tzname)
        start = dt.datetime.combine(P_START, dt.time(), tz).astimezone(dt.timezone.utc)
        jobs[centre] += draw_jobs(rng, start, elapsed_days, lambda f: target * min(shape(pattern, f), 1.0 * (target > 0) * 10),
                                  account, partition, unit, sizes, users)
        # A top-up for one over-pace project and a withdrawal for one under-pace project.
        if pattern == "over" and not any(a["kind"] == "topup" for a in adjustments):
            adjustments.append(dict(date=dt.date(2026, 9, 15), project=project, centre=centre, resource=resource,
                                    hours=int(granted * 0.1), kind="topup", reason="CT top-up after mid-term review"))
        if pattern == "under" and not any(a["kind"] == "withdrawal" for a in adjustments):
            adjustments.append(dict(date=dt.date(2026, 11, 1), project=project, centre=centre, resource=resource,
                                    hours=-int(granted * 0.1), kind="withdrawal", reason="take-back checkpoint 2026-11-01"))
        n += 1
    # A project not started yet and one whose previous period has ended.
    allocations.append(dict(project="A0190712345", centre="idris", resource="gpu-a100", period_start=dt.date(2027, 1, 1),
                            period_end=dt.date(2027, 7, 1), granted_hours=40000, accounts="a0190712345",
                            pi="nora.pi@lab3.example.fr", members="", committee="CT10-ai", profile=""))
    allocations.append(dict(project="A0160612345", centre="tgcc", resource="cpu-skylake", period_start=dt.date(2025, 5, 1),
                            period_end=dt.date(2026, 5, 1), granted_hours=500000, accounts="a0160612345",
                            pi="omar.pi@lab1.example.fr", members="", committee="CT5-physics", profile=""))
    tz = ZoneInfo("Europe/Paris")
    for d in range(0, 360, 2):
        s = dt.datetime(2025, 5, 2, 8, tzinfo=tz) + dt.timedelta(days=d)
        jobs["tgcc"].append((s, s + dt.timedelta(hours=10), "a0160612345", "skylake", "omar", "cpu", 96, "COMPLETED"))
    # Orphan usage (an account with no allocation) and an unmapped partition, in the last weeks.
    for d in range(1, 25, 3):
        s = AT - dt.timedelta(days=d, hours=5)
        jobs["idris"].append((s, s + dt.timedelta(hours=3), "xyz99", "cpu_p1", "intruder", "cpu", 80, "COMPLETED"))
        jobs["cines"].append((s, s + dt.timedelta(hours=2), allocations[2]["accounts"], "visu", "viz", "cpu", 16, "COMPLETED"))
    # A job still running at the demo instant (End Unknown), and a requeued one (two runs).
    s = AT - dt.timedelta(hours=6)
    jobs["idris"].append((s, None, allocations[0]["accounts"], CENTRES["idris"][2][allocations[0]["resource"]][0]
                          if allocations[0]["centre"] == "idris" else "cpu_p1", "alice", "cpu", 40, "RUNNING"))
    s = AT - dt.timedelta(days=3)
    jobs["idris"].append((s, s + dt.timedelta(hours=1), allocations[3]["accounts"], "cpu_p1", "bruno", "cpu", 40, "REQUEUED"))
    jobs["idris"].append((s + dt.timedelta(hours=2), s + dt.timedelta(hours=5), allocations[3]["accounts"], "cpu_p1", "bruno", "cpu", 40, "COMPLETED"))

    multi = multi_centre(allocations)

    with open(os.path.join(OUT, "allocations.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(allocations[0]))
        w.writeheader()
        w.writerows(allocations)
    with open(os.path.join(OUT, "adjustments.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["date", "project", "centre", "resource", "hours", "kind", "reason"])
        w.writeheader()
        w.writerows(adjustments)
    os.makedirs(os.path.join(OUT, "accounting"), exist_ok=True)
    for centre, (cluster, tzname, _) in CENTRES.items():
        tz = ZoneInfo(tzname)
        rows = sorted(jobs[centre], key=lambda j: j[0])
        path = os.path.join(OUT, "accounting", f"{centre}.sacct")
        with open(path, "w") as fh:
            fh.write("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|Elapsed|AllocCPUS|AllocNodes|AllocTRES|State\n")
            jid = 100000
            requeued = None
            for (s, e, acc, part, user, unit, size, state) in rows:
                jid += rng.randrange(1, 7)
                # sacct -D shows each run of a requeued job under the same JobIDRaw.
                if state == "REQUEUED":
                    requeued = jid
                elif requeued and acc == allocations[3]["accounts"] and user == "bruno":
                    jid, requeued = requeued, None
                fh.write(sacct_row(jid, cluster, tz, (s, e, acc, part, user, unit, size, state)))
    write_multi(multi)
    print("wrote", sum(len(v) for v in jobs.values()) + sum(len(v) for v in multi.values()), "jobs,", len(allocations), "allocations,",
          len(adjustments), "adjustments")


def draw_jobs(r, start, elapsed_days, cumulative, account, partition, unit, sizes, users):
    """Completed jobs, day after day from `start`, whose charged hours follow `cumulative(f)` (the
    hours wanted by fraction f of the elapsed days), drawn from the random stream `r`."""
    out, done, day = [], 0.0, 0
    while day < elapsed_days - 1:
        want = cumulative((day + 1) / elapsed_days) - done
        while want > 0:
            size = r.choice(sizes)
            per_hour = size * 128 if unit == "node" else size  # node unit: rome has 128 cores/node
            dur_h = min(r.uniform(0.5, 20.0), max(want / per_hour, 0.05))
            s = start + dt.timedelta(days=day, seconds=r.randrange(0, 86400))
            e = s + dt.timedelta(seconds=int(dur_h * 3600))
            if e >= AT:
                break
            out.append((s, e, account, partition, r.choice(users), unit, size, "COMPLETED"))
            done += per_hour * (e - s).total_seconds() / 3600
            want -= per_hour * (e - s).total_seconds() / 3600
        day += 1
    return out


def sacct_row(jid, cluster, tz, job):
    """One sacct -P line (local times, a running job's End `Unknown`) with the TRES of its unit."""
    s, e, acc, part, user, unit, size, state = job
    loc = lambda t: t.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    end = loc(e) if e else "Unknown"
    el = int(((e or AT) - s).total_seconds())
    elapsed = f"{el // 86400}-{el % 86400 // 3600:02d}:{el % 3600 // 60:02d}:{el % 60:02d}" if el >= 86400 else f"{el // 3600:02d}:{el % 3600 // 60:02d}:{el % 60:02d}"
    if unit == "gpu":
        cpus, nodes = size * 10, max(1, size // 8)
        tres = f"billing={size * 4},cpu={cpus},gres/gpu={size},mem={cpus * 4}G,node={nodes}"
    elif unit == "node":
        cpus, nodes = size * 128, size
        tres = f"billing={cpus},cpu={cpus},mem={size * 256}G,node={nodes}"
    elif unit == "billing":
        cpus, nodes = size, max(1, size // 192)
        tres = f"billing={size * 2},cpu={cpus},mem={cpus * 2}G,node={nodes}"
    else:
        cpus, nodes = size, max(1, size // 40)
        tres = f"billing={cpus},cpu={cpus},mem={cpus * 4}G,node={nodes}"
    return f"{jid}|{jid}|{cluster}|{part}|{acc}|{user}|{loc(s)}|{end}|{elapsed}|{cpus}|{nodes}|{tres}|{state}\n"


# Projects holding hours on several centres and resources (CPU on one machine, GPUs on
# another), as national calls grant them. Their own random stream and their own accounting
# files (accounting/<centre>-multicentre.sacct), so the rest of the demo keeps its bytes.
MULTI = [
    ("A0180612001", "CT2-fluids", "ines.pi@lab2.example.fr", ["karim.m@lab2.example.fr", "lea.m@lab2.example.fr"],
     [("idris", "cpu-cascadelake", 1_000_000, 1.0), ("cines", "gpu-mi250", 50_000, 1.4)]),
    ("A0190711002", "CT7-biology", "marc.pi@lab4.example.fr", ["nora.m@lab4.example.fr"],
     [("tgcc", "cpu-skylake", 600_000, 0.45), ("idris", "gpu-a100", 80_000, 1.0)]),
    ("A0170513003", "CT4-astrophysics", "paula.pi@lab5.example.fr", ["quentin.m@lab5.example.fr", "rose.m@lab5.example.fr"],
     [("cines", "cpu-genoa", 300_000, 1.0), ("tgcc", "cpu-rome", 2_000_000, 0.98), ("idris", "gpu-v100", 25_000, 1.3)]),
]


def multi_centre(allocations):
    r = random.Random(20261201)
    jobs = {c: [] for c in CENTRES}
    elapsed_days = (AT.date() - P_START).days + 0.5
    period_days = (P_END - P_START).days
    for project, committee, pi, members, grants in MULTI:
        users = [pi.split("@")[0].split(".")[0]] + [m.split("@")[0].split(".")[0] for m in members]
        for centre, resource, granted, pace in grants:
            cluster, tzname, resources = CENTRES[centre]
            partition, unit, sizes = resources[resource]
            account = project.lower() if centre != "tgcc" else f"{users[0][:3]}{project[-3:]}"  # TGCC names its own
            allocations.append(dict(project=project, centre=centre, resource=resource, period_start=P_START, period_end=P_END,
                                    granted_hours=granted, accounts=account, pi=pi, members=";".join(members),
                                    committee=committee, profile=""))
            target = granted * elapsed_days / period_days * pace
            start = dt.datetime.combine(P_START, dt.time(), ZoneInfo(tzname)).astimezone(dt.timezone.utc)
            jobs[centre] += draw_jobs(r, start, elapsed_days, lambda f: target * f, account, partition, unit, sizes, users)
    return jobs


def write_multi(jobs):
    r = random.Random(20261202)
    for centre, (cluster, tzname, _) in CENTRES.items():
        tz = ZoneInfo(tzname)
        with open(os.path.join(OUT, "accounting", f"{centre}-multicentre.sacct"), "w") as fh:
            fh.write("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|Elapsed|AllocCPUS|AllocNodes|AllocTRES|State\n")
            jid = 900000
            for (s, e, acc, part, user, unit, size, state) in sorted(jobs[centre], key=lambda j: j[0]):
                jid += r.randrange(1, 7)
                fh.write(sacct_row(jid, cluster, tz, (s, e, acc, part, user, unit, size, state)))


if __name__ == "__main__":
    main()

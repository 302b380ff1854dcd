#!/usr/bin/env python3
"""Fit the synthetic workload's distributions to the CEA Curie trace (Parallel Workloads Archive,
CEA-Curie-2011-2.1-cln.swf.gz) and write them as integer histograms to benches/curie-fit.json.

Only the fitted parameters are committed, never the trace. Everything is an integer count
(empirical histograms with log-spaced bins), so the generator samples with integer arithmetic
only and the same seed gives the same bytes on any machine.

Run from the repository root:
    python3 benches/fit_curie.py ../shared/data/traces/CEA-Curie-2011-2.1-cln.swf.gz
"""
import collections
import datetime as dt
import gzip
import json
import sys
from zoneinfo import ZoneInfo

TRACE = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/traces/CEA-Curie-2011-2.1-cln.swf.gz"
OUT = "benches/curie-fit.json"
PARIS = ZoneInfo("Europe/Paris")

# Curie partitions by kind: hybrid nodes carried the GPUs, large/xlarge the fat nodes.
KIND = {"hybrid": "gpu", "large": "large", "xlarge": "large"}


def log_edges(top, per_octave=4):
    """Integer bin edges 0, 1, 2, … growing by 2^(1/per_octave), deduplicated, up to `top`."""
    edges, k = [0, 1], 0
    while edges[-1] <= top:
        k += 1
        e = int(round(2 ** (k / per_octave)))
        if e > edges[-1]:
            edges.append(e)
    return edges


def histogram(values, edges):
    counts = [0] * (len(edges) - 1)
    for v in values:
        lo, hi = 0, len(edges) - 1
        while hi - lo > 1:  # edges[lo] <= v < edges[hi]
            mid = (lo + hi) // 2
            if edges[mid] <= v:
                lo = mid
            else:
                hi = mid
        counts[lo] += 1
    # Trim empty tail bins.
    while counts and counts[-1] == 0:
        counts.pop()
    return {"edges": edges[: len(counts) + 1], "counts": counts}


def main():
    origin, partitions, jobs = None, {}, []
    with gzip.open(TRACE, "rt") as f:
        for line in f:
            if line.startswith(";"):
                body = line[1:].strip()
                if body.startswith("UnixStartTime:"):
                    origin = int(body.split(":", 1)[1])
                elif body.startswith("Partition:"):
                    n, _, name = body.split(":", 1)[1].strip().partition(" ")
                    partitions[int(n)] = name.strip()
                continue
            v = line.split()
            if len(v) == 18:
                jobs.append([int(float(x)) for x in v])
    ok = [j for j in jobs if j[4] > 0 and j[3] >= 0 and j[2] >= 0]
    by_kind = collections.defaultdict(list)
    for j in ok:
        by_kind[KIND.get(partitions.get(j[15], ""), "thin")].append(j)

    submits = [origin + j[1] for j in jobs]
    local = [dt.datetime.fromtimestamp(s, PARIS) for s in submits]
    days = collections.Counter(t.date() for t in local)
    first, last = min(days), max(days)
    span = (last - first).days + 1
    mean = round(len(jobs) / span)
    # Daily volume relative to the mean, in percent (busy and quiet days).
    ratio = collections.Counter(min(400, round(100 * days.get(first + dt.timedelta(d), 0) / mean)) for d in range(span))

    max_procs = max(j[4] for j in ok)
    max_run = max(j[3] for j in ok)
    kinds = {}
    for kind, js in sorted(by_kind.items()):
        procs = collections.Counter(j[4] for j in js)
        top = procs.most_common(48)
        top_values = {p for p, _ in top}
        tail = [j[4] for j in js if j[4] not in top_values]
        kinds[kind] = {
            "jobs": len(js),
            "size_top": [[p, c] for p, c in top],
            "size_tail": histogram(tail, log_edges(max_procs + 1, 2)),
            "runtime_s": histogram([j[3] for j in js], log_edges(max_run + 1)),
        }
    groups = collections.Counter(j[12] for j in jobs)
    users_per_group = collections.Counter(len({j[11] for j in jobs if j[12] == g}) for g in groups)
    reqtime = collections.Counter(j[8] for j in jobs if j[8] > 0)
    fit = {
        "source": "CEA-Curie-2011-2.1-cln.swf (Parallel Workloads Archive), fitted by benches/fit_curie.py",
        "jobs": len(jobs),
        "days": span,
        "jobs_per_day": mean,
        "daily_volume_pct": sorted([[k, c] for k, c in ratio.items()]),
        "submit_hour": [sum(1 for t in local if t.hour == h) for h in range(24)],
        "submit_weekday": [sum(1 for t in local if t.weekday() == d) for d in range(7)],
        "wait_s": histogram([j[2] for j in ok], log_edges(max(j[2] for j in ok) + 1)),
        "status": {  # SWF: 1 completed, 0 failed, 5 cancelled
            "completed": sum(1 for j in jobs if j[10] == 1),
            "failed": sum(1 for j in jobs if j[10] == 0),
            "cancelled": sum(1 for j in jobs if j[10] == 5),
        },
        "kinds": kinds,
        "group_jobs_by_rank": sorted(groups.values(), reverse=True),
        "users_per_group": sorted([[k, c] for k, c in users_per_group.items()]),
        "timelimit_top": [[t, c] for t, c in reqtime.most_common(24)],
    }
    with open(OUT, "w") as f:
        json.dump(fit, f, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(jobs)} jobs over {span} days ({mean}/day), {len(groups)} groups, "
          + ", ".join(f"{k}: {v['jobs']}" for k, v in kinds.items()))


if __name__ == "__main__":
    main()

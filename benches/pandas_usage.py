#!/usr/bin/env python3
"""The reference of benchmark 3: what operators write today to get core-hours per account and
day out of an Open XDMoD-format sacct dump (26 `|`-separated fields, no header).

    python3 benches/pandas_usage.py DUMP
"""
import sys

import pandas as pd

XDMOD = ("jobid jobidraw cluster partition qos account group gid user uid submit eligible start end "
         "elapsed exitcode state nnodes ncpus reqcpus reqmem reqtres alloctres timelimit nodelist jobname").split()

df = pd.read_csv(sys.argv[1], sep="|", header=None, names=XDMOD, usecols=["account", "start", "end", "ncpus"],
                 dtype={"account": "string", "ncpus": "int64", "start": "string", "end": "string"})
start = pd.to_datetime(df["start"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
end = pd.to_datetime(df["end"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
df["core_seconds"] = df["ncpus"] * (end - start).dt.total_seconds()
df["day"] = start.dt.floor("D")
usage = df.groupby(["account", "day"])["core_seconds"].sum()
print(f"{len(df)} records, {len(usage)} account-days, {usage.sum() / 3600:.0f} core-hours")

#!/usr/bin/env bash
# allocwatch's benchmark suite: one command, one table (see benches/README.md).
#
#   bash benches/run.sh            # every benchmark, 5 runs each (the 10M-record ones once)
#   BENCH_RUNS=3 BENCH_BIG_JOBS=0 bash benches/run.sh   # quicker: skip the 10M-record ledger
#
# Installs what the references need (sqlite3 and GNU time from Debian, pandas from PyPI in a
# venv under target/), builds the release binaries, generates the data in a temporary
# directory (deleted on exit) and prints the table. Never part of tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
[ -x /usr/bin/time ] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi
venv=target/bench/venv
if ! "$venv/bin/python" -c 'import pandas' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check pandas
fi

cargo build --release --locked --workspace --bins

tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/allocwatch-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" benches/run.py --tmp "$tmp" "$@"
# The forecasts' calibration on the real traces (README, Forecasts).
mkdir -p "$tmp/calibration"
python3 benches/calibrate.py --tmp "$tmp/calibration" --shared "${ALLOCWATCH_SHARED:-../shared}"

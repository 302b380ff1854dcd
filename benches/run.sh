#!/usr/bin/env bash
# allocwatch's benchmark suite: one command, one table (see benches/README.md).
#
#   bash benches/run.sh            # every benchmark, 5 runs each (the 10M-record ones once)
#   BENCH_RUNS=3 BENCH_BIG_JOBS=0 bash benches/run.sh   # quicker: skip the 10M-record ledger
#   BENCH_ONLY=tests bash benches/run.sh   # only some parts: import, ledger, curie, tests, calibration
#
# Installs what the references need (sqlite3 and GNU time from Debian, pandas from PyPI in a
# venv under target/), builds the release binaries, generates the data in a temporary
# directory (deleted on exit) and prints the table. Part `tests` (figures the README cites
# from ignored tests: tests/influx.rs write_throughput, tests/quality.rs report_speed_on_the_
# curie_trace) also builds the release test binaries and starts VictoriaMetrics, influxd and
# the v2 proxy with tests/infra/servers/start.sh in the temporary directory, stopped on exit.
# Never part of tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

only=",${BENCH_ONLY:-import,ledger,curie,tests,calibration},"
part() { [[ "$only" == *",$1,"* ]]; }
for p in ${BENCH_ONLY//,/ }; do
    case "$p" in
        import|ledger|curie|tests|calibration) ;;
        *) echo "BENCH_ONLY: unknown part '$p' (known: import, ledger, curie, tests, calibration)" >&2; exit 2 ;;
    esac
done

missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
[ -x /usr/bin/time ] || missing+=(time)
if part ledger; then command -v wrk >/dev/null || missing+=(wrk); fi
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi
venv=target/bench/venv
py=python3   # run.py itself needs only the standard library; pandas is benchmark 3's reference
if part import; then
    if ! "$venv/bin/python" -c 'import pandas' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check pandas
    fi
    py=$venv/bin/python
fi

cargo build --release --locked --workspace --bins
if part tests; then
    cargo test --release --locked --no-run --test influx --test quality
fi

tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/allocwatch-bench.XXXXXX")
cleanup() {
    if [[ -d "$tmp/servers" ]]; then bash tests/infra/servers/stop.sh "$tmp/servers" || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
if part tests; then
    bash tests/infra/servers/start.sh "$tmp/servers" --only vm,influx1
    set -a
    # shellcheck disable=SC1091
    . "$tmp/servers/env.sh"
    set +a
fi
if part import || part ledger || part curie || part tests; then
    "$py" benches/run.py --tmp "$tmp" "$@"
fi
# The forecasts' calibration on the real traces (README, Forecasts).
if part calibration; then
    mkdir -p "$tmp/calibration"
    python3 benches/calibrate.py --tmp "$tmp/calibration" --shared "${ALLOCWATCH_SHARED:-../shared}"
fi

#!/usr/bin/env bash
# The whole test suite, set-up included: this is the README's test command and what CI runs.
# The real servers the integration tests talk to (SMTP, Alertmanager, InfluxDB-protocol
# servers) are installed if missing and started here, on loopback and free ports, in a
# temporary directory, and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
root=$(pwd)
state=$(mktemp -d -t allocwatch-tests.XXXXXX)

cleanup() {
  if [[ -n ${fuzz_build:-} ]]; then kill -- "-$fuzz_build" 2>/dev/null || true; fi
  bash "$root/tests/infra/servers/stop.sh" "$state/servers" >/dev/null 2>&1 || true
  if [[ -n ${SLURM_LAB_STATE:-} ]]; then
    bash "$root/tests/infra/slurm/stop.sh" "$SLURM_LAB_STATE" --purge >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}
trap cleanup EXIT

# The fuzz targets build in the background (their own session, so that cleanup stops all of
# it) at the lowest CPU priority: they take the cores that set-up and tests leave idle, and
# the fuzz step waits for them.
fuzz_build_log="$state/fuzz-build.log"
setsid nice -n 19 bash tests/infra/fuzz-build.sh >"$fuzz_build_log" 2>&1 &
fuzz_build=$!

echo "== build"
cargo build --locked --workspace --all-targets

echo "== servers (SMTP, Alertmanager, VictoriaMetrics, InfluxDB 1.6 + v2 proxy)"
t0=$(date +%s)
bash tests/infra/servers/start.sh "$state/servers"
set -a
. "$state/servers/env.sh"
set +a
echo "servers up in $(( $(date +%s) - t0 )) s"

# A real single-node Slurm 22.05 (slurmdbd, slurmrestd) for tests/slurm_live.rs; it stops
# itself if this script dies (watchdog on our PID), and is stopped and purged on exit.
echo "== slurm lab"
SLURM_LAB_STATE=$(mktemp -d /tmp/aw-slurm.XXXXXX)
lab_t0=$(date +%s%N)
if SLURM_LAB_WATCH_PID=$$ bash tests/infra/slurm/start.sh "$SLURM_LAB_STATE" 2>"$SLURM_LAB_STATE.log"; then
  source "$SLURM_LAB_STATE/env.sh"   # exports SLURM_LAB_DIR, SLURM_CONF, SLURMRESTD_URL, …
  echo "slurm lab up in $(awk -v a="$lab_t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s ($SLURM_LAB_STATE)"
  rm -f "$SLURM_LAB_STATE.log"
else
  cat "$SLURM_LAB_STATE.log" >&2; rm -f "$SLURM_LAB_STATE.log"
  if [[ ${CI:-} == true ]]; then echo "the Slurm lab did not start" >&2; exit 1; fi
  echo "WARNING: the Slurm lab did not start; live Slurm tests will be skipped" >&2
fi

echo "== tools (faketime: tests on a simulated calendar; wrk: the HTTP load test; g++: the fuzzers; promtool: /metrics)"
if ! command -v faketime >/dev/null || ! command -v wrk >/dev/null || ! command -v g++ >/dev/null || ! command -v promtool >/dev/null; then
  apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends faketime wrk g++ prometheus)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}"
  }
fi

echo "== packages (.deb and .rpm of a release build, revisions 1 and 2, for tests/package.rs)"
t0=$(date +%s)
if ! command -v rpm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends rpm >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends rpm >/dev/null
  }
fi
bash packaging/build.sh --revision 1 >/dev/null
bash packaging/build.sh --revision 2 >/dev/null
export AW_PACKAGE_DIR="$root/target/package"
ls -1 "$AW_PACKAGE_DIR"/*.deb "$AW_PACKAGE_DIR"/*.rpm
# The Debian root the .deb is installed into (debootstrap once, then unpacked from a cache).
bash tests/infra/debian/root.sh bookworm "$state/debian-root" >/dev/null && rm -rf "$state/debian-root"
echo "packages and Debian root ready in $(( $(date +%s) - t0 )) s"

echo "== the README's demo command (debug build, scratch store)"
cargo run --locked --quiet -- --config config/demo.toml --store "$state/demo.sqlite" check >"$state/demo.txt"
grep -q "By status: ended 1, exhausted 3, not_started 1, on_track 16, over_pace 11, under_pace 6" "$state/demo.txt" || {
  cat "$state/demo.txt" >&2; echo "the demo no longer shows its documented picture" >&2; exit 1
}
echo "demo OK: $(grep 'By status' "$state/demo.txt")"

echo "== chromium (status page test)"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >/dev/null \
    || { apt-get -o DPkg::Lock::Timeout=600 update >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >/dev/null; }
fi
chromium --version 2>/dev/null

echo "== the test servers' own self-test"
/usr/bin/python3 tests/infra/servers/selftest.py "$state/servers-selftest" | tail -1

echo "== tests"
# Every test binary runs under a timeout (cargo's runner): a hang fails its binary in 15
# minutes, not the whole run at CI's limit.
host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
env "CARGO_TARGET_${host}_RUNNER=timeout --kill-after=30 900" \
  cargo test --locked --workspace --no-fail-fast 2>&1 | tee target/test-output.txt

# Fuzz every parser of outside input for a bounded time (fuzz/README.md). A crash or a
# failed assertion fails the run; new inputs go to a scratch copy of the corpus.
echo "== fuzz (${AW_FUZZ_SECONDS:-30} s per target)"
t0=$(date +%s)
if ! wait "$fuzz_build"; then
  tail -40 "$fuzz_build_log" >&2; echo "the fuzz targets did not build" >&2; exit 1
fi
fuzz_build=
echo "fuzz targets built (waited $(( $(date +%s) - t0 )) s for the background build)"
(
  cd fuzz
  for target in sacct_text swf slurm_json allocations config; do
    mkdir -p "$state/corpus/$target"
    log="$state/fuzz-$target.log"
    if ! cargo fuzz run -s none -O "$target" "$state/corpus/$target" "corpus/$target" -- \
      -max_total_time="${AW_FUZZ_SECONDS:-30}" -max_len=4096 -rss_limit_mb=512 -print_final_stats=1 >"$log" 2>&1; then
      tail -60 "$log" >&2
      echo "fuzz target $target FAILED (input kept under fuzz/artifacts/$target/)" >&2
      exit 1
    fi
    echo "$target: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions, no failure"
  done
)

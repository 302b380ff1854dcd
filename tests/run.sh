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
  for lab in ${SLURM_LAB_STATE:-} "${newer_labs[@]}"; do
    bash "$root/tests/infra/slurm/stop.sh" "$lab" --purge >/dev/null 2>&1 || true
  done
  for job in "${root_job[@]}"; do kill "$job" 2>/dev/null || true; done
  rm -rf "$state"
}
newer_labs=()
declare -A root_job=() live_job=()
trap cleanup EXIT

# The fuzz targets build in the background (their own session, so that cleanup stops all of
# it) at the lowest CPU priority: they take the cores that set-up and tests leave idle, and
# the fuzz step waits for them.
fuzz_build_log="$state/fuzz-build.log"
setsid nice -n 19 bash tests/infra/fuzz-build.sh >"$fuzz_build_log" 2>&1 &
fuzz_build=$!

# The newer Slurm releases the live suite also runs on (tests/infra/slurm/README.md): a
# Debian root each, built in the background from the start (about 85 s cold; reused from
# /var/cache/allocwatch-slurm-roots when there). AW_SLURM_RELEASES="" keeps to 22.05.
releases=${AW_SLURM_RELEASES-trixie forky}
for rel in $releases; do
  nice -n 10 bash tests/infra/slurm/root.sh "$rel" >"$state/root-$rel.log" 2>&1 &
  root_job[$rel]=$!
done

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

# The live Slurm suite again on each newer release (Slurm 24.11 in trixie's root, 26.05 in
# forky's), both at once and while the fuzzers run: they mostly wait for jobs.
echo "== slurm ${releases:-(no newer release)} labs: tests/slurm_live.rs on each, in the background"
live_bin=$(cargo test --locked --test slurm_live --no-run 2>&1 | sed -n 's|.*Executable tests/slurm_live.rs (\(.*\))|\1|p')
[[ -x $live_bin ]] || { echo "tests/slurm_live.rs did not build" >&2; exit 1; }
for rel in $releases; do
  t0=$(date +%s)
  wait "${root_job[$rel]}" || { tail -n 30 "$state/root-$rel.log" >&2; echo "the $rel root did not build" >&2; exit 1; }
  unset "root_job[$rel]"
  waited=$(( $(date +%s) - t0 ))
  lab=$(mktemp -d "/tmp/aw-slurm-$rel.XXXXXX"); newer_labs+=("$lab")
  lab_t0=$(date +%s%N)
  SLURM_LAB_WATCH_PID=$$ bash tests/infra/slurm/start.sh --release "$rel" "$lab" 2>"$state/lab-$rel.log" \
    || { cat "$state/lab-$rel.log" >&2; echo "the Slurm lab in the $rel root did not start" >&2; exit 1; }
  ( source "$lab/env.sh"
    echo "$rel lab: Slurm $SLURM_LAB_SLURM_VERSION, REST $SLURM_LAB_REST_VERSIONS"
    exec timeout --kill-after=30 900 "$live_bin" ) >"$state/live-$rel.txt" 2>&1 &
  live_job[$rel]=$!
  echo "$rel: root ready (waited $waited s for its build: $(grep -q 'debootstrap --variant' "$state/root-$rel.log" && grep -o 'total .* s' "$state/root-$rel.log" | sed 's/total/built cold in/' || echo cached)), lab up in $(awk -v a="$lab_t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s"
done

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

failed=0
for rel in $releases; do
  if wait "${live_job[$rel]}"; then
    echo "$(head -n 1 "$state/live-$rel.txt"): $(grep 'test result' "$state/live-$rel.txt")"
  else
    cat "$state/live-$rel.txt" >&2; echo "tests/slurm_live.rs FAILED on the $rel lab" >&2; failed=1
  fi
done
exit "$failed"

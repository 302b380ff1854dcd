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
  bash "$root/tests/infra/servers/stop.sh" "$state/servers" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

echo "== build"
cargo build --locked --all-targets

echo "== servers (SMTP, Alertmanager, VictoriaMetrics, InfluxDB 1.6 + v2 proxy)"
t0=$(date +%s)
bash tests/infra/servers/start.sh "$state/servers"
set -a
. "$state/servers/env.sh"
set +a
echo "servers up in $(( $(date +%s) - t0 )) s"

echo "== tools (faketime: tests that stamp pulls and deliveries on a simulated calendar)"
if ! command -v faketime >/dev/null; then
  apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends faketime)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}"
  }
fi

echo "== tests"
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt

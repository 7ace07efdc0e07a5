#!/usr/bin/env bash
# CPU per sample of the inbound-connection counter (DEPS §11 measured the sock_diag dump
# alone at 0.29 ms for 20 connections). Opens 20 accepted loopback connections in the test
# process (which plays the tree), takes 200 `ConnectionCounter::count` samples, and prints
# the getrusage(RUSAGE_THREAD) user+sys delta per sample (the dump's kernel work runs in
# the calling thread's syscalls); see `count_cost` in
# src/monitor/connections/tests.rs. Like sample_cost.sh, an ignored unit test run in release.
#
# usage: bench/connections_cost.sh [--debug] [N connections, default 20; 500 = 1,000 sockets]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
[ "${1:-}" = "--debug" ] && { profile=(); shift; }
export GSUP_BENCH_CONNECTIONS=${1:-20}
ulimit -n 4096 2>/dev/null || true
cargo test "${profile[@]}" --bin gsup -- --ignored --nocapture --exact \
    monitor::connections::tests::count_cost 2>&1 | grep '^connections_cost:'

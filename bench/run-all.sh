#!/usr/bin/env bash
# Runs every benchmark for bare, tini, dumb-init, catatonit and gsup and prints one table
# with ratios against tini, headed by the date, the machine and its load.
#   bench/setup.sh && bench/run-all.sh            (as root)
# Without GSUP, both gsup builds are made and measured side by side: `gsup-glibc`
# (`cargo build --release`) and `gsup-musl` (`--target x86_64-unknown-linux-musl
# --no-default-features`, the release artefact; left out with a note when that target is
# not installed). GSUP=path measures that binary instead (GSUP_EXTRA=more paths, each
# with a distinct file name: the file name labels the column).
# A gsup that fails `gsup run -- true` is left out with a TODO line. Run from the
# repository root; the fixture and example server are built (release) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
FIXTURE=${FIXTURE:-$target/release/gsup-test-child}
SERVER=${SERVER:-$target/release/examples/drain_server}
MUSL=x86_64-unknown-linux-musl
if [ ! -x "$FIXTURE" ]; then
    cargo build --release --features test-fixture --bin gsup-test-child
fi
if [ ! -x "$SERVER" ]; then
    cargo build --release --example drain_server
fi

builds=()
build_notes=()
if [ -n "${GSUP:-}" ]; then
    builds+=("$GSUP")
else
    # Hard links under distinct names (the label); a link keeps the page cache the build
    # left, as running target/release/gsup would.
    bin=$target/bench-bin
    mkdir -p "$bin"
    cargo build --release --bin gsup >&2
    ln -f "$target/release/gsup" "$bin/gsup-glibc"
    builds+=("$bin/gsup-glibc")
    if rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
        cargo build --release --target "$MUSL" --no-default-features --bin gsup >&2
        ln -f "$target/$MUSL/release/gsup" "$bin/gsup-musl"
        builds+=("$bin/gsup-musl")
    else
        build_notes+=("gsup-musl: not built, target $MUSL not installed (rustup target add $MUSL)")
    fi
fi
for extra in ${GSUP_EXTRA:-}; do builds+=("$extra"); done

prefixes=("" "tini --" "dumb-init" "catatonit --")
gsups=()
for gsup in "${builds[@]}"; do
    if [ -x "$gsup" ] && timeout 10 "$gsup" run -- true >/dev/null 2>&1; then
        prefixes+=("$gsup run --")
        gsups+=("$gsup")
        build_notes+=("$(basename "$gsup"): included ($gsup)")
    else
        build_notes+=("$(basename "$gsup"): TODO, not measured: \`$gsup run -- true\` does not exit 0 (or it is missing)")
    fi
done

out=$(mktemp)
trap 'rm -f "$out"' EXIT
export BENCH_OUT=$out

echo "# gsup bench, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# host: $(uname -srm), $(nproc) cores; load before: $(uptime)"
echo "# peers: tini $(dpkg-query -W -f='${Version}' tini 2>/dev/null || echo '?')," \
    "dumb-init $(dpkg-query -W -f='${Version}' dumb-init 2>/dev/null || echo '?')," \
    "catatonit $(dpkg-query -W -f='${Version}' catatonit 2>/dev/null || echo '?')"
for note in "${build_notes[@]}"; do echo "# $note"; done
# What this machine charges for a cpuid, a page fault and a system call (bench/vmcost.c):
# on a VM these move with the host's load, and start-up and exit are made of them.
vmcost=$(mktemp)
if cc -O2 -o "$vmcost" bench/vmcost.c 2>/dev/null; then
    echo "# machine: $("$vmcost")"
else
    echo "# machine: bench/vmcost.c did not build (no C compiler)"
fi
rm -f "$vmcost"
echo
echo "## startup"; bench/startup.sh "${prefixes[@]}" || echo "# startup: FAILED (see above)"; echo
echo "## signal latency"; bench/signal_latency.py --fixture "$FIXTURE" "${prefixes[@]}" || echo "# signal latency: FAILED (see above)"; echo
echo "## orphans"; bench/orphans.sh "$FIXTURE" "${prefixes[@]}" || echo "# orphans: FAILED (see above)"; echo
# Bare has no supervisor to measure while idle.
echo "## idle"; bench/idle.sh "${prefixes[@]:1}" || echo "# idle: FAILED (see above)"; echo
# The rest is gsup's alone: monitoring cost (next to supervisord), /metrics under load,
# /status while the child restarts, and reloads (against a plain stop + start). A failed
# step is reported and the run goes on.
if [ ${#gsups[@]} -gt 0 ]; then
    echo "## monitor cpu"
    DURATION=${MONITOR_SECONDS:-60} bench/monitor_cpu.sh "${gsups[@]}" || echo "# monitor cpu: FAILED (see above)"
    echo
    echo "## /metrics at 32 connections"
    bench/metrics_latency.sh "${gsups[@]}" || echo "# /metrics: FAILED (see above)"
    echo
    echo "## /status while the child restarts"
    bench/status_restarts.py "${gsups[@]}" || echo "# /status: FAILED (see above)"
    echo
    echo "## reload"
    bench/reload.py --gsup "${gsups[0]}" --server "$SERVER" || echo "# reload: FAILED (see above)"
else
    echo "# monitor cpu, /metrics, /status, reload: TODO, not measured (no gsup included)"
fi
echo
echo "## summary"
python3 bench/table.py "$out"
echo
echo "# load after: $(uptime)"

#!/usr/bin/env bash
# Runs every benchmark for bare, tini, dumb-init, catatonit and gsup and prints one table
# with ratios against tini, headed by the date, the machine and its load.
#   bench/setup.sh && bench/run-all.sh            (as root; GSUP=path/to/gsup to choose)
# gsup is left out, with a TODO line, when `$GSUP run -- true` does not exit 0.
# The fixture is built (release) if missing. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
GSUP=${GSUP:-$target/release/gsup}
FIXTURE=${FIXTURE:-$target/release/gsup-test-child}
SERVER=${SERVER:-$target/release/examples/drain_server}
if [ ! -x "$FIXTURE" ]; then
    cargo build --release --features test-fixture --bin gsup-test-child
fi
if [ ! -x "$SERVER" ]; then
    cargo build --release --example drain_server
fi

prefixes=("" "tini --" "dumb-init" "catatonit --")
gsup_note="gsup: included ($GSUP)"
gsup_ok=0
if [ -x "$GSUP" ] && timeout 10 "$GSUP" run -- true >/dev/null 2>&1; then
    prefixes+=("$GSUP run --")
    gsup_ok=1
else
    gsup_note="gsup: TODO, not measured: \`$GSUP run -- true\` does not exit 0 (or $GSUP is missing)"
fi
# More gsup builds side by side (e.g. GSUP_EXTRA=/tmp/gsup-glibc): each is labelled by
# its file name, so give each a distinct one.
for extra in ${GSUP_EXTRA:-}; do
    if [ -x "$extra" ] && timeout 10 "$extra" run -- true >/dev/null 2>&1; then
        prefixes+=("$extra run --")
        gsup_note="$gsup_note; also $extra"
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
echo "# $gsup_note"
echo
echo "## startup"; bench/startup.sh "${prefixes[@]}"; echo
echo "## signal latency"; bench/signal_latency.py --fixture "$FIXTURE" "${prefixes[@]}"; echo
echo "## orphans"; bench/orphans.sh "$FIXTURE" "${prefixes[@]}"; echo
# Bare has no supervisor to measure while idle.
echo "## idle"; bench/idle.sh "${prefixes[@]:1}"; echo
# Reloads are gsup's alone (against a plain stop + start); a failed reload is reported,
# and the rest of the run goes on.
echo "## reload"
if [ "$gsup_ok" = 1 ]; then
    bench/reload.py --gsup "$GSUP" --server "$SERVER" || echo "# reload: FAILED (see above)"
else
    echo "# reload: TODO, not measured (gsup not included)"
fi
echo
echo "## summary"
python3 bench/table.py "$out"
echo
echo "# load after: $(uptime)"

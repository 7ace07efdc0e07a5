#!/usr/bin/env bash
# Idle cost of a supervisor: for each prefix, `PREFIX sleep 1000`, then
#   - VmRSS of the supervisor process itself (not the child), in KiB;
#   - wake-ups/s over 10 s: the change in voluntary_ctxt_switches +
#     nonvoluntary_ctxt_switches summed over all its threads (/proc/PID/task/*/status).
#   bench/idle.sh "tini --" "dumb-init" "catatonit --" "target/release/gsup run --"
# "" would measure `sleep` itself; run-all.sh leaves it out. IDLE_SECONDS (default 10)
# sets the window. With BENCH_OUT set, appends JSON lines.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 PREFIX..." >&2; exit 2; }
WINDOW=${IDLE_SECONDS:-10}

label() { if [ -z "$1" ]; then echo bare; else basename "${1%% *}"; fi; }

switches() { # PID -> total context switches of all its threads
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { sum += $2 } END { print sum + 0 }'
}

printf '%-11s %10s %12s\n' prefix 'RSS KiB' 'wake-ups/s'
for prefix in "$@"; do
    # shellcheck disable=SC2086  # the prefix is a list of words by design
    $prefix sleep 1000 2>/dev/null &
    pid=$!
    # Settled = the child exists (supervisor done starting). Deadline 5 s, 10 ms polls.
    # (/proc files have size 0, so read them instead of testing -s.)
    for _ in $(seq 500); do
        [ -n "$(cat /proc/$pid/task/*/children 2>/dev/null)" ] && break
        sleep 0.01
    done
    [ -n "$(cat /proc/$pid/task/*/children 2>/dev/null)" ] || { echo "$0: '$prefix' started no child" >&2; kill -9 $pid; exit 1; }
    sleep 1 # let lazy start-up work (threads, timers) finish before counting
    rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)
    before=$(switches $pid)
    sleep "$WINDOW"
    after=$(switches $pid)
    rate=$(awk -v a="$after" -v b="$before" -v w="$WINDOW" 'BEGIN { printf "%.1f", (a - b) / w }')
    printf '%-11s %10s %12s\n' "$(label "$prefix")" "$rss" "$rate"
    if [ -n "${BENCH_OUT:-}" ]; then
        printf '{"metric": "idle RSS KiB", "prefix": "%s", "value": %s}\n' "$(label "$prefix")" "$rss" >>"$BENCH_OUT"
        printf '{"metric": "idle wake-ups/s", "prefix": "%s", "value": %s}\n' "$(label "$prefix")" "$rate" >>"$BENCH_OUT"
    fi
    # Kill the child too: a supervisor killed by SIGKILL cannot pass anything on.
    for child in $(cat /proc/$pid/task/*/children 2>/dev/null); do kill -9 "$child" 2>/dev/null || true; done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
done

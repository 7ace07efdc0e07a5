#!/usr/bin/env bash
# gsup's own CPU while it supervises a 50-process tree with the defaults a user gets
# (monitor every 1 s, HTTP on, nothing scraping it), as a percent of one core over
# DURATION seconds (default 60), next to supervisord supervising the same kind of tree
# over the same window; plus each supervisor's RSS. Several gsup builds run side by side
# (each with its own tree), so they share one machine state.
#
# CPU is the first field of /proc/PID/schedstat (ns on a CPU, all threads of the process
# summed over /proc/PID/task/*), not the 10 ms ticks of /proc/PID/stat: 0.1 % of a core
# over 60 s is only 6 ticks.
#
# usage: bench/setup.sh; bench/monitor_cpu.sh [GSUP...]   (default: target/release/gsup)
# Needs supervisord (Debian package supervisor) for the comparison row. Local processes
# only; bounded in time. With BENCH_OUT set, appends JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- "${GSUP:-target/release/gsup}"
DURATION=${DURATION:-60}
work=$(mktemp -d)
cleanup() {
    # Each supervisor is asked to stop first (gsup stops its tree; supervisord would
    # restart a child killed under it), then whatever is left of each child's group
    # (both put the child in a group of its own) is killed: killing only supervisord's
    # child used to leave its 49 sleeps to init.
    local groups=()
    for f in "$work"/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        groups+=($(cat /proc/"$pid"/task/*/children 2>/dev/null))
        kill "$pid" 2>/dev/null || true
    done
    for f in "$work"/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    for group in "${groups[@]}"; do kill -9 -- -"$group" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
tree='for i in $(seq 49); do sleep 100000 & done; wait'
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

names=()
for gsup in "$@"; do
    name=$(basename "$gsup")
    GSUP_LOG=warn "$gsup" run --http "127.0.0.1:$(free_port)" -- sh -c "$tree" >/dev/null 2>&1 &
    echo $! >"$work/$name.pid"
    names+=("$name")
done

if command -v supervisord >/dev/null; then
    cat >"$work/supervisord.conf" <<CONF
[supervisord]
nodaemon=true
logfile=$work/supervisord.log
pidfile=$work/supervisord.pidfile
[program:tree]
command=sh -c '$tree'
stopasgroup=true
killasgroup=true
CONF
    supervisord -c "$work/supervisord.conf" >/dev/null 2>&1 &
    echo $! >"$work/supervisord.pid"
    names+=(supervisord)
fi

# Until every tree has its 50 processes (sh + 49 sleep), at most 20 s.
tree_size() { # supervisor pid -> processes below its child, the child included
    local child
    child=$(cat /proc/"$1"/task/*/children 2>/dev/null | awk 'NF { print $1; exit }')
    [ -n "$child" ] || { echo 0; return; }
    echo $(($(cat /proc/"$child"/task/*/children 2>/dev/null | wc -w) + 1))
}
for _ in $(seq 200); do
    settled=1
    for name in "${names[@]}"; do
        [ "$(tree_size "$(cat "$work/$name.pid")")" -ge 50 ] || settled=0
    done
    [ "$settled" = 1 ] && break
    sleep 0.1
done
sleep 2

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ sum += $1 } END { print sum + 0 }'; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

declare -A before
for name in "${names[@]}"; do before[$name]=$(cpu_ns "$(cat "$work/$name.pid")"); done
sleep "$DURATION"
printf '%-14s %22s %9s %15s\n' supervisor "CPU % of a core, ${DURATION}s" 'RSS KiB' 'tree processes'
for name in "${names[@]}"; do
    pid=$(cat "$work/$name.pid")
    after=$(cpu_ns "$pid")
    pct=$(awk -v a="$after" -v b="${before[$name]}" -v d="$DURATION" 'BEGIN { printf "%.3f", (a - b) / 1e9 * 100 / d }')
    printf '%-14s %22s %9s %15s\n' "$name" "$pct" "$(rss "$pid")" "$(tree_size "$pid")"
    if [ -n "${BENCH_OUT:-}" ]; then
        printf '{"metric": "monitor CPU %%, 50 procs, 1 s", "prefix": "%s", "value": %s}\n' "$name" "$pct" >>"$BENCH_OUT"
    fi
done
echo "# $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"

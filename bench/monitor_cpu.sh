#!/usr/bin/env bash
# gsup's own CPU while it supervises a 50-process tree with monitoring on (1 s samples),
# as a percent of one core over DURATION seconds (default 60), next to supervisord
# supervising the same tree over the same window; plus both supervisors' RSS.
#
# usage: bench/setup.sh; GSUP=target/release/gsup bench/monitor_cpu.sh
# Needs supervisord (Debian package supervisor). Local processes only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
GSUP=${GSUP:-target/release/gsup}
DURATION=${DURATION:-60}
CLK=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null; rm -rf "$work"' EXIT
tree='for i in $(seq 49); do sleep 100000 & done; wait'

# gsup, monitoring every second, the HTTP port off (nothing scrapes it).
GSUP_LOG=warn "$GSUP" run --http off -- sh -c "$tree" &
echo $! > "$work/gsup.pid"

if command -v supervisord >/dev/null; then
    cat > "$work/supervisord.conf" <<CONF
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
    echo $! > "$work/supervisord.pid"
fi

# Let both start their trees (50 processes) before measuring.
for _ in $(seq 100); do
    n=$(pgrep -c -f 'sleep 100000' || true)
    [ "$n" -ge 49 ] && break
    sleep 0.1
done
sleep 2

ticks() { awk '{ split($0, a, ") "); split(a[2], f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

declare -A before
for name in gsup supervisord; do
    [ -f "$work/$name.pid" ] && before[$name]=$(ticks "$(cat "$work/$name.pid")")
done
sleep "$DURATION"
echo "supervisor     CPU % of one core over ${DURATION}s   RSS KiB   tree processes"
for name in gsup supervisord; do
    [ -f "$work/$name.pid" ] || { echo "$name          (not installed)"; continue; }
    pid=$(cat "$work/$name.pid")
    after=$(ticks "$pid")
    pct=$(awk -v a="$after" -v b="${before[$name]}" -v c="$CLK" -v d="$DURATION" 'BEGIN { printf "%.3f", (a - b) * 100 / c / d }')
    printf "%-14s %-33s %-9s %s\n" "$name" "$pct" "$(rss "$pid")" "$(pgrep -c -P "$(pgrep -P "$pid" | head -1)" || true)"
done
echo "# $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg), CLK_TCK $CLK (CPU resolution $((1000 / CLK)) ms)"

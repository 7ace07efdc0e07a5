#!/usr/bin/env bash
# `GET /metrics` latency at 32 keep-alive connections (issue 14: p99 <= 2 ms), for each
# gsup binary given: `GSUP run --http 127.0.0.1:PORT -- sleep 1000` (defaults otherwise:
# monitor on), then `wrk -t2 -c32 -d${METRICS_SECONDS:-10}s --latency` on loopback, after
# a 2 s warm-up. Prints wrk's p50/p99/max and requests/s; with BENCH_OUT set, appends JSON
# lines.
#   bench/metrics_latency.sh target/release/gsup [/tmp/gsup-musl ...]
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 GSUP..." >&2; exit 2; }
SECONDS_RUN=${METRICS_SECONDS:-10}
command -v wrk >/dev/null || { echo "$0: wrk missing (bench/setup.sh)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wrk prints "50%  1.23ms" / "99%  850.00us" / "Latency  avg stdev max +/-": to ms.
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f", v }'; }

printf '%-12s %10s %10s %10s %12s\n' build 'p50 ms' 'p99 ms' 'max ms' 'requests/s'
for gsup in "$@"; do
    port=$(free_port)
    GSUP_LOG=warn "$gsup" run --http "127.0.0.1:$port" -- sleep 1000 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 500); do # until it answers; 5 s
        curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" 2>/dev/null && break
        sleep 0.01
    done
    url="http://127.0.0.1:$port/metrics"
    wrk -t2 -c32 -d2s "$url" >/dev/null # warm-up
    out=$(wrk -t2 -c32 -d"${SECONDS_RUN}s" --latency "$url")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out" | to_ms)
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_ms)
    max=$(awk '$1 == "Latency" && $2 ~ /^[0-9]/ { print $4 }' <<<"$out" | to_ms)
    rps=$(awk '$1 == "Requests/sec:" { printf "%.0f", $2 }' <<<"$out")
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" || true)
    label=$(basename "$gsup")
    printf '%-12s %10s %10s %10s %12s\n' "$label" "$p50" "$p99" "$max" "$rps"
    [ -z "$errors" ] || echo "# $label: $errors"
    if [ -n "${BENCH_OUT:-}" ]; then
        printf '{"metric": "/metrics p99 ms, 32 conns", "prefix": "%s", "value": %s}\n' "$label" "$p99" >>"$BENCH_OUT"
    fi
    for child in $(cat /proc/$pid/task/*/children 2>/dev/null); do kill -9 "$child" 2>/dev/null || true; done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
done

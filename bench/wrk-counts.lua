-- wrk's done hook: one machine-readable line with the totals (used by bench/reload.py).
-- errors.status counts responses that are not 2xx/3xx ("Non-2xx or 3xx responses").
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK_COUNTS requests=%d connect=%d read=%d write=%d timeout=%d status=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d\n",
        summary.requests, e.connect, e.read, e.write, e.timeout, e.status, summary.duration,
        latency:percentile(50), latency:percentile(99), latency.max))
end

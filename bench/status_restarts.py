#!/usr/bin/env python3
"""`GET /status` latency while gsup restarts its child N times (default 100).

    bench/status_restarts.py [--restarts N] GSUP...

Each GSUP (a gsup binary) runs `sleep 0.05` with `[restart] policy = "always"` and a 10 ms
backoff, so the child exits and is spawned again about every 60 ms. One keep-alive client
sends `GET /status` back to back (loopback) until `restarts` in the answer reaches N, and
records each request's latency (send to full body). Prints median, p99 (nearest rank) and
max in ms; the goal (issue 14) is max <= 20 ms: the event loop must never wait on a spawn.
Bounded: 120 s per binary, 5 s per request. With BENCH_OUT set, appends JSON lines.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

CONFIG = """
[restart]
policy = "always"
backoff_initial = "10ms"
backoff_max = "10ms"
max_restarts = 100000
window = "60s"
"""


# `/status` lives under `[http] prefix` (DESIGN §5), default /api/v1/shutdown.
STATUS = "/api/v1/shutdown/status"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(gsup, restarts_wanted):
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "gsup.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        env = dict(os.environ, GSUP_LOG="warn")
        proc = subprocess.Popen(
            [gsup, "run", "--config", config, "--http", f"127.0.0.1:{port}", "--", "sleep", "0.05"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return run_client(port, restarts_wanted)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_client(port, restarts_wanted):
    deadline = time.monotonic() + 120
    conn = None
    while conn is None:  # until gsup listens
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.connect()
        except OSError:
            conn = None
            if time.monotonic() > deadline:
                raise SystemExit(f"status_restarts: port {port} never answered")
            time.sleep(0.01)
    latencies, restarts = [], 0
    while restarts < restarts_wanted:
        if time.monotonic() > deadline:
            print(f"# status_restarts: only {restarts} restarts in 120 s", file=sys.stderr)
            break
        started = time.perf_counter()
        conn.request("GET", STATUS)
        response = conn.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"status_restarts: GET {STATUS} answered {response.status}: {body[:200]!r}")
        restarts = json.loads(body).get("restarts", 0)
    conn.close()
    return latencies, restarts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=100)
    parser.add_argument("gsup", nargs="+")
    args = parser.parse_args()
    print(f"{'build':<12} {'restarts':>8} {'requests':>9} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for gsup in args.gsup:
        latencies, restarts = measure(gsup, args.restarts)
        ordered = sorted(latencies)
        median = ordered[len(ordered) // 2]
        p99 = ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]
        label = os.path.basename(gsup)
        print(f"{label:<12} {restarts:>8} {len(ordered):>9} {median:>10.2f} {p99:>8.2f} {ordered[-1]:>8.2f}")
        if os.environ.get("BENCH_OUT"):
            with open(os.environ["BENCH_OUT"], "a") as out:
                for metric, value in (
                    (f"/status p99 ms, {args.restarts} restarts", p99),
                    (f"/status max ms, {args.restarts} restarts", ordered[-1]),
                ):
                    out.write(json.dumps({"metric": metric, "prefix": label, "value": round(value, 2)}) + "\n")


if __name__ == "__main__":
    main()

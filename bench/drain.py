#!/usr/bin/env python3
"""Requests lost at shutdown: a load of keep-alive HTTP clients against examples/drain_server
under a supervisor; SIGTERM to the supervisor in the middle.

The clients play a load balancer that stops routing when the shutdown starts (readiness
turns 503 at that instant under gsup): from the SIGTERM on they start no new request,
but every request already started must be answered. The figure is the number of
requests started before the SIGTERM that failed (goal 0).

usage: bench/drain.py --server target/release/examples/drain_server [--runs 3]
It measures, each in fresh processes:
  graceful  gsup (drain_delay 1s)          server drains on TERM
  die       gsup (connection_draining on)  server dies at once on TERM
  die       tini                           server dies at once on TERM (tini forwards at once)
Loopback only; every loop is bounded in count and time. Standard library only.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLIENTS = 16
REQUEST_MS = 200          # each request takes this long on the server
MAX_REQUESTS = 200        # per client
LOAD_BEFORE_TERM = 1.5    # seconds of load before the SIGTERM


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def client(port, stop_at, results):
    """Keep-alive requests until stop_at (monotonic); (start, ok) per request."""
    conn = None
    for _ in range(MAX_REQUESTS):
        if time.monotonic() >= stop_at[0]:
            break
        started = time.monotonic()
        ok = False
        try:
            if conn is None:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(f"GET /slow?ms={REQUEST_MS} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
                if data.count(b"\n") >= 6 and data.endswith(b"\n"):
                    break
            ok = data.startswith(b"HTTP/1.1 200")
            if b"Connection: close" in data:
                conn.close()
                conn = None
        except OSError:
            ok = False
        if not ok and conn is not None:
            conn.close()
            conn = None
        results.append((started, ok))
    if conn is not None:
        conn.close()


def run(prefix, server, env_extra, config_text):
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="gsup-bench-")
    env = dict(os.environ, LISTEN_ADDR=f"127.0.0.1:{port}", GSUP_LOG="warn", **env_extra)
    argv = list(prefix)
    if config_text is not None:
        path = os.path.join(workdir, "supervisor.toml")
        with open(path, "w") as f:
            f.write(config_text)
        argv += ["--config", path, "--http", "off", "--"]
    argv.append(server)
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port, time.monotonic() + 10):
            raise RuntimeError(f"{argv}: server did not come up")
        stop_at = [time.monotonic() + 60]
        results = []
        threads = [threading.Thread(target=client, args=(port, stop_at, results)) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(LOAD_BEFORE_TERM)  # load duration, not synchronisation
        term_at = time.monotonic()
        stop_at[0] = term_at           # the "load balancer" routes nothing new from now on
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
        proc.wait(timeout=60)
        before = [ok for started, ok in results if started < term_at]
        return len(before), before.count(False), time.monotonic() - term_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gsup", default="target/release/gsup")
    parser.add_argument("--server", default="target/release/examples/drain_server")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # The supervisors run in a scratch directory: make the paths absolute first.
    args.gsup, args.server = os.path.abspath(args.gsup), os.path.abspath(args.server)
    cases = [
        ("graceful", "gsup drain_delay=1s", [args.gsup, "run"], {}, '[shutdown]\ndrain_delay = "1s"\n'),
        ("die", "gsup connection_draining", [args.gsup, "run"], {"DIE_ON_TERM": "1"},
         '[shutdown]\nconnection_draining = true\nmax_drain_time = "10s"\n'),
        ("die", "tini", ["tini", "--"], {"DIE_ON_TERM": "1"}, None),
    ]
    print(f"{'server':<9} {'supervisor':<26} {'run':>3} {'started':>8} {'failed':>7} {'exit after TERM s':>18}")
    for server_mode, label, prefix, env, config in cases:
        if shutil.which(prefix[0]) is None and not os.path.exists(prefix[0]):
            print(f"{server_mode:<9} {label:<26}  skipped: {prefix[0]} not found")
            continue
        for i in range(args.runs):
            started, failed, took = run(prefix, args.server, env, config)
            print(f"{server_mode:<9} {label:<26} {i + 1:>3} {started:>8} {failed:>7} {took:>18.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()

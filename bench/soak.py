#!/usr/bin/env python3
"""Soak run (issue 12 item 8): does gsup hold its resources over a long, busy life?

Two gsup instances, each measured right after it became ready ("start") and once its
work is done ("end"): its open fds (/proc/PID/fd), threads, VmRSS, and the zombies on the
whole machine.

  restarts  `gsup run --restart always -- sh -c 'exit 3'` with a 1 ms backoff and no
            crash-loop limit, until /status counts RESTARTS restarts (default 1,000).
  reloads   `gsup run --listen web=... -- drain_server` (readiness `notify`), RELOADS
            `gsup ctl reload` one after the other (default 200) under `wrk -t2 -c32`
            keep-alive load on the served socket, while REQUESTS requests (default
            100,000) go to gsup's own endpoints (/ready, /alive, /status, /metrics,
            /health, /process) from 4 keep-alive client threads.

Goals: fds and threads equal at start and end, RSS grown by at most 10 %, 0 failed
requests (wrk's socket errors + non-2xx, and every failed or non-200 answer of gsup's
endpoints), 0 zombies. The script prints each figure and exits 1 when a goal is missed.

usage: bench/soak.py [--gsup target/release/gsup] [--server target/release/examples/drain_server]
                     [--restarts 1000] [--reloads 200] [--requests 100000]
Needs wrk (bench/setup.sh). Loopback only; every loop is bounded in count and time; every
process started is stopped on exit, also on failure.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reload import (BenchError, Procs, answers, free_port, get_json, parse_wrk,  # noqa: E402
                    wait_until, LUA, THREADS, CONNECTIONS, WRK_TIMEOUT)

PHASE_BOUND = 600.0   # s: bound of each phase
ENDPOINTS = ["/ready", "/alive", "/api/v1/shutdown/status", "/metrics", "/health", "/api/v1/shutdown/process"]
CLIENTS = 4


def resources(pid):
    """fds, threads and RSS (KiB) of one process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {"fds": fds, "threads": int(fields["Threads"]), "rss_kib": int(fields["VmRSS"].split()[0])}


def zombies(parent):
    """Processes in state Z: on the whole machine, and those whose parent is `parent`
    (gsup's own; on a shared machine other programs' zombies come and go)."""
    machine = mine = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            machine += 1
            mine += int(fields[1]) == parent
    return machine, mine


def settle(pid, bound=15.0):
    """Waits until gsup's fd count has held still for 2.5 s (at most `bound`): the monitor
    opens its kept /proc files for a new child at its next sample (one interval after the
    start), and clients that just finished close their connections a moment later."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        fds = resources(pid)["fds"]
        if fds != last:
            last, since = fds, time.monotonic()
        elif time.monotonic() - since >= 2.5:
            return
        time.sleep(0.25)


def snapshot(pid):
    """The figures of gsup `pid`, once its fds have settled."""
    settle(pid)
    figures = resources(pid)
    figures["zombies_machine"], figures["zombies"] = zombies(pid)
    return figures


def start_gsup(procs, workdir, name, argv, env):
    hport = free_port()
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    full = [argv[0], "run", "--http", f"127.0.0.1:{hport}"] + argv[1:]
    gsup = procs.add(subprocess.Popen(full, env=env, cwd=workdir, stdout=log, stderr=log))

    def ready():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", hport, timeout=2)
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False

    if not wait_until(lambda: gsup.poll() is None and ready(), 30, 0.02):
        raise BenchError(f"{name}: gsup did not become ready (rc {gsup.poll()}); see {log.name}")
    return gsup, hport, log


def stop_gsup(gsup, name):
    gsup.send_signal(signal.SIGTERM)
    try:
        gsup.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{name}: gsup did not exit within 60 s of SIGTERM")


def soak_restarts(args, procs, workdir):
    cfg = os.path.join(workdir, "restarts.toml")
    with open(cfg, "w") as f:
        # No crash-loop limit that 1,000 quick exits could reach within the window.
        f.write('[restart]\npolicy = "always"\nbackoff_initial = "1ms"\nbackoff_max = "1ms"\n'
                'max_restarts = 4000000000\nwindow = "1s"\n')
    env = dict(os.environ, GSUP_LOG="warn")
    # The child exits at once while the file `crash` exists, else it stays: so the start
    # and the end are measured with one long-lived child, as in the reload phase.
    crash = os.path.join(workdir, "crash")
    script = f"if [ -e {crash} ]; then exit 3; fi; exec sleep 1000"
    gsup, hport, _ = start_gsup(procs, workdir, "restarts",
                                [args.gsup, "--config", cfg, "--", "/bin/sh", "-c", script], env)
    status_url = f"http://127.0.0.1:{hport}/api/v1/shutdown/status"
    start = snapshot(gsup.pid)
    open(crash, "w").close()
    os.kill(get_json(status_url, "first child")["child"]["pid"], signal.SIGTERM)
    t0 = time.monotonic()
    restarts = 0

    def enough():
        nonlocal restarts
        restarts = get_json(status_url, "restarts")["restarts"]
        return restarts >= args.restarts

    if not wait_until(enough, PHASE_BOUND, 0.2):
        raise BenchError(f"restarts: only {restarts} restarts within {PHASE_BOUND} s")
    took = time.monotonic() - t0
    os.unlink(crash)
    if not wait_until(lambda: (get_json(status_url, "settled child").get("child") or {}).get("uptime_seconds", 0) > 1,
                      30, 0.2):
        raise BenchError("restarts: no long-lived child after the crash loop")
    end = snapshot(gsup.pid)
    stop_gsup(gsup, "restarts")
    return {"restarts": restarts, "seconds": round(took, 1), "start": start, "end": end}


class Hammer:
    """CLIENTS keep-alive threads sending `total` GETs to gsup's endpoints, round robin."""

    def __init__(self, port, total):
        self.port, self.left, self.lock = port, total, threading.Lock()
        self.sent = self.failed = 0
        self.failures = []
        self.deadline = time.monotonic() + PHASE_BOUND
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]

    def take(self):
        with self.lock:
            if self.left <= 0 or time.monotonic() > self.deadline:
                return None
            self.left -= 1
            self.sent += 1
            return ENDPOINTS[self.sent % len(ENDPOINTS)]

    def fail(self, what):
        with self.lock:
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append(what)

    def client(self):
        conn = None
        while (path := self.take()) is not None:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path)
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    self.fail(f"{path}: {reply.status}")
            except (OSError, http.client.HTTPException) as error:
                self.fail(f"{path}: {error!r}")
                conn = None

    def start(self):
        for thread in self.threads:
            thread.start()

    def join(self):
        for thread in self.threads:
            thread.join(timeout=PHASE_BOUND + 30)


def soak_reloads(args, procs, workdir):
    port = free_port()
    sock = os.path.join(workdir, "ctl.sock")
    cfg = os.path.join(workdir, "reloads.toml")
    with open(cfg, "w") as f:
        f.write('[readiness]\nprobe = { notify = true }\n[restart]\nstartup_timeout = "30s"\n')
    env = dict(os.environ, STARTUP_DELAY_MS="0", GSUP_LOG="warn")
    env.pop("LISTEN_ADDR", None)
    gsup, hport, log = start_gsup(procs, workdir, "reloads",
                                  [args.gsup, "--listen", f"web=127.0.0.1:{port}", "--control-socket", sock,
                                   "--config", cfg, "--", args.server], env)
    if not wait_until(lambda: answers(port), 30, 0.02):
        raise BenchError("reloads: drain_server does not answer")
    start = snapshot(gsup.pid)

    wrk = procs.add(subprocess.Popen(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{int(PHASE_BOUND)}s", "--timeout", WRK_TIMEOUT,
         "-s", LUA, f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    hammer = Hammer(hport, args.requests)
    hammer.start()
    t0 = time.monotonic()
    status_url = f"http://127.0.0.1:{hport}/api/v1/shutdown/status"
    for i in range(args.reloads):
        old_pid = get_json(status_url, f"reload {i + 1}: status before")["child"]["pid"]
        procs.server_pids.add(old_pid)
        ctl = subprocess.run([args.gsup, "ctl", "--socket", sock, "reload"], capture_output=True,
                             text=True, timeout=60)
        if ctl.returncode != 0:
            raise BenchError(f"reload {i + 1}: `gsup ctl reload` exited {ctl.returncode}: "
                             f"{ctl.stdout.strip()} {ctl.stderr.strip()}; see {log.name}")
        if not wait_until(lambda: not os.path.exists(f"/proc/{old_pid}"), 30, 0.002):
            raise BenchError(f"reload {i + 1}: old child {old_pid} still there after 30 s")
        if time.monotonic() - t0 > PHASE_BOUND - 10:
            raise BenchError(f"reloads: {i + 1} reloads took longer than the phase bound")
    reload_seconds = time.monotonic() - t0
    wrk.send_signal(signal.SIGINT)  # wrk stops and prints its summary
    out, _ = wrk.communicate(timeout=60)
    counts = parse_wrk(out)
    hammer.join()
    if hammer.sent < args.requests:
        raise BenchError(f"requests: only {hammer.sent} of {args.requests} sent within {PHASE_BOUND} s")
    http_seconds = time.monotonic() - t0
    procs.server_pids.add(get_json(status_url, "status at the end")["child"]["pid"])
    end = snapshot(gsup.pid)
    stop_gsup(gsup, "reloads")
    return {
        "reloads": args.reloads, "reload_seconds": round(reload_seconds, 1),
        "wrk_requests": counts["requests"], "wrk_failed": counts["failed"],
        "gsup_requests": hammer.sent, "gsup_failed": hammer.failed, "gsup_failures": hammer.failures,
        "http_seconds": round(http_seconds, 1), "start": start, "end": end,
    }


def verdict(name, result):
    start, end = result["start"], result["end"]
    growth = (end["rss_kib"] - start["rss_kib"]) / start["rss_kib"] * 100
    misses = []
    if end["fds"] != start["fds"]:
        misses.append(f"fds {start['fds']} -> {end['fds']}")
    if end["threads"] != start["threads"]:
        misses.append(f"threads {start['threads']} -> {end['threads']}")
    if growth > 10:
        misses.append(f"RSS grew {growth:.1f} %")
    if end["zombies"] > 0:
        misses.append(f"{end['zombies']} zombies of gsup")
    for key in ("wrk_failed", "gsup_failed"):
        if result.get(key):
            misses.append(f"{key} {result[key]}")
    print(f"{name:9} start: fds {start['fds']:3}  threads {start['threads']}  RSS {start['rss_kib']:6} KiB"
          f"  zombies {start['zombies']} (machine {start['zombies_machine']})")
    print(f"{name:9} end:   fds {end['fds']:3}  threads {end['threads']}  RSS {end['rss_kib']:6} KiB"
          f"  zombies {end['zombies']} (machine {end['zombies_machine']})  (RSS {growth:+.1f} %)")
    print(f"{name:9} {json.dumps({k: v for k, v in result.items() if k not in ('start', 'end')})}")
    print(f"{name:9} goals: {'met' if not misses else 'MISSED: ' + '; '.join(misses)}")
    return not misses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsup", default="target/release/gsup")
    parser.add_argument("--server", default="target/release/examples/drain_server")
    parser.add_argument("--restarts", type=int, default=1000)
    parser.add_argument("--reloads", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    args.gsup, args.server = os.path.abspath(args.gsup), os.path.abspath(args.server)
    procs = Procs(args.server)
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="gsup-soak-") as workdir:
            print(f"# soak: {args.restarts} restarts, {args.reloads} reloads under wrk, "
                  f"{args.requests} requests to gsup; load {os.getloadavg()[0]:.2f}", flush=True)
            ok &= verdict("restarts", soak_restarts(args, procs, workdir))
            ok &= verdict("reloads", soak_reloads(args, procs, workdir))
            print(f"# load at the end {os.getloadavg()[0]:.2f}")
    except BenchError as error:
        print(f"soak: {error}", file=sys.stderr)
        ok = False
    finally:
        procs.stop_all()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Requests failed during 10 reloads under wrk load (issue 7, DESIGN §8).

Scenarios, each in fresh processes, each under the same wrk load against
examples/drain_server (STARTUP_DELAY_MS=200: the new generation is slow to start):

  gsup      `gsup run --listen web=127.0.0.1:PORT` hands the socket over (LISTEN_FDS);
            readiness `notify`; N x `gsup ctl --socket SOCK reload`, one after the other
            (each blocks until the new child is ready; exit 0 ok, 1 failed: this script
            then stops with the ctl output).
  restart   the baseline: drain_server binds LISTEN_ADDR itself; N x (SIGTERM, wait for
            its exit, start a new one, wait until it answers 200).

Per reload: "ready" = command issued -> new generation ready (`ctl` returned; for the
baseline: the new server answered GET /), "old gone" = command issued -> the old pid no
longer exists (/proc/PID polled every ms; for the baseline: waitpid returned). Failed
requests = wrk's socket errors (connect, read, write, timeout) + non-2xx/3xx responses,
taken from bench/wrk-counts.lua's `done` hook and checked against wrk's text summary.

usage: bench/reload.py [--gsup target/release/gsup] [--server target/release/examples/drain_server]
                       [--reloads 10] [--runs 1] [--startup-delay-ms 200] [--only gsup|restart]
Needs wrk (bench/setup.sh). Loopback only; every loop is bounded in count and time; every
process started is stopped on exit, also on failure or SIGINT/SIGTERM.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk-counts.lua")
THREADS, CONNECTIONS, WRK_TIMEOUT = 2, 32, "5s"
WARMUP = 2.0          # s of load before the first reload
GAP = 0.5             # s of steady load between reloads
TAIL = 1.0            # s of load after the last reload (at least)
STEP_BOUND = 30.0     # s: bound of any single wait (ready, old gone, exit)


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port, timeout=0.5):
    """One GET / on a fresh connection; True on a 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.settimeout(timeout)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_until(predicate, bound, step=0.005):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def alive(pid):
    return os.path.exists(f"/proc/{pid}")


def get_json(url, what="GET"):
    """GET url as JSON; slow (> 1 s) or failed answers are reported, with how long they took."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except (OSError, ValueError) as error:
        raise BenchError(f"{what}: {url} failed after {time.monotonic() - t0:.2f} s: {error!r}")
    took = time.monotonic() - t0
    if took > 1:
        print(f"# slow: {what}: {url} took {took:.2f} s", flush=True)
    return body


def parse_wrk(text):
    """Counts from the lua line, cross-checked against wrk's own summary lines (a line wrk
    omits means 0)."""
    m = re.search(r"WRK_COUNTS (.*)", text)
    if not m:
        raise BenchError(f"wrk printed no WRK_COUNTS line:\n{text}")
    counts = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    total = re.search(r"(\d+) requests in", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    text_counts = {
        "requests": int(total.group(1)) if total else -1,
        "connect": int(sock.group(1)) if sock else 0,
        "read": int(sock.group(2)) if sock else 0,
        "write": int(sock.group(3)) if sock else 0,
        "timeout": int(sock.group(4)) if sock else 0,
        "status": int(non2xx.group(1)) if non2xx else 0,
    }
    for key, value in text_counts.items():
        if counts[key] != value:
            raise BenchError(f"wrk's summary and its done hook disagree on {key}: {value} vs {counts[key]}\n{text}")
    counts["failed"] = sum(counts[k] for k in ("connect", "read", "write", "timeout", "status"))
    return counts


class Procs:
    """Every process this script started (or learned of), stopped on exit."""

    def __init__(self, server):
        self.popen = []
        self.server_pids = set()
        self.server = server

    def add(self, proc):
        self.popen.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.popen):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        # Servers gsup started: only if the pid still runs our server binary.
        for pid in self.server_pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.server.encode() in f.read():
                        os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.popen.clear()
        self.server_pids.clear()


def start_wrk(procs, port, duration):
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--timeout", WRK_TIMEOUT,
            "-s", LUA, f"http://127.0.0.1:{port}/"]
    return procs.add(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))


def finish_wrk(wrk, duration, loop_end):
    out, _ = wrk.communicate(timeout=duration + 30)
    if wrk.returncode != 0:
        raise BenchError(f"wrk exited {wrk.returncode}:\n{out}")
    if loop_end > wrk.end_at:
        raise BenchError("the reloads outlasted wrk's load: raise the wrk duration")
    return parse_wrk(out), out


def run_gsup(args, procs, workdir, duration):
    port, hport = free_port(), free_port()
    sock = os.path.join(workdir, "ctl.sock")
    cfg = os.path.join(workdir, "gsup.toml")
    with open(cfg, "w") as f:
        f.write('[readiness]\nprobe = { notify = true }\n[restart]\nstartup_timeout = "30s"\n')
    log = open(os.path.join(workdir, "gsup.log"), "w")
    env = dict(os.environ, STARTUP_DELAY_MS=str(args.startup_delay_ms), GSUP_LOG="warn")
    env.pop("LISTEN_ADDR", None)
    argv = [args.gsup, "run", "--listen", f"web=127.0.0.1:{port}", "--control-socket", sock,
            "--http", f"127.0.0.1:{hport}", "--config", cfg, "--", args.server]
    gsup = procs.add(subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=log))
    status_url = f"http://127.0.0.1:{hport}/api/v1/shutdown/status"

    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{hport}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail():
        log.flush()
        with open(log.name) as f:
            return "".join(f.readlines()[-20:])

    if not wait_until(lambda: gsup.poll() is None and ready() and answers(port), STEP_BOUND, 0.05):
        raise BenchError(f"gsup did not come up (rc {gsup.poll()}):\n{log_tail()}")

    wrk = start_wrk(procs, port, duration)
    wrk.end_at = time.monotonic() + duration
    time.sleep(WARMUP)  # load before the first reload, not synchronisation
    samples = []
    for i in range(args.reloads):
        old_pid = get_json(status_url, f"reload {i + 1}: status before")["child"]["pid"]
        procs.server_pids.add(old_pid)
        t0 = time.monotonic()
        ctl = subprocess.run([args.gsup, "ctl", "--socket", sock, "reload"], capture_output=True,
                             text=True, timeout=STEP_BOUND + 10)
        t_ready = time.monotonic() - t0
        if ctl.returncode != 0:
            raise BenchError(
                f"reload {i + 1}: `gsup ctl reload` exited {ctl.returncode} (1 = failed or refused; "
                f"before reload is implemented it answers 409):\n  stdout: {ctl.stdout.strip()}\n"
                f"  stderr: {ctl.stderr.strip()}\n  gsup log:\n{log_tail()}")
        if not wait_until(lambda: not alive(old_pid), STEP_BOUND, 0.001):
            raise BenchError(f"reload {i + 1}: old child {old_pid} still there after {STEP_BOUND} s")
        t_gone = time.monotonic() - t0
        reply = json.loads(ctl.stdout).get("reload", {})
        status = get_json(status_url, f"reload {i + 1}: status after")
        new_pid = status["child"]["pid"]
        procs.server_pids.add(new_pid)
        if new_pid == old_pid or reply.get("old_pid") != old_pid or reply.get("new_pid") != new_pid:
            raise BenchError(f"reload {i + 1}: pids do not add up: before {old_pid}, after {new_pid}, ctl {reply}")
        last = status.get("last_reload") or {}
        samples.append((t_ready, t_gone, last.get("duration_seconds"), (last.get("old_exit") or {}).get("at")))
        time.sleep(GAP)
    loop_end = time.monotonic()
    counts, out = finish_wrk(wrk, duration, loop_end)
    if gsup.poll() is not None:
        raise BenchError(f"gsup exited ({gsup.returncode}) during the benchmark:\n{log_tail()}")
    return counts, samples, out


def run_restart(args, procs, workdir, duration):
    port = free_port()
    env = dict(os.environ, STARTUP_DELAY_MS=str(args.startup_delay_ms), LISTEN_ADDR=f"127.0.0.1:{port}")
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(key, None)

    def start():
        return procs.add(subprocess.Popen([args.server], env=env, cwd=workdir,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    server = start()
    if not wait_until(lambda: answers(port), STEP_BOUND, 0.05):
        raise BenchError("drain_server did not come up")
    wrk = start_wrk(procs, port, duration)
    wrk.end_at = time.monotonic() + duration
    time.sleep(WARMUP)
    samples = []
    for i in range(args.reloads):
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=STEP_BOUND)
        except subprocess.TimeoutExpired:
            raise BenchError(f"restart {i + 1}: drain_server did not exit within {STEP_BOUND} s")
        t_gone = time.monotonic() - t0
        if server.returncode != 0:
            raise BenchError(f"restart {i + 1}: drain_server exited {server.returncode}")
        procs.popen.remove(server)
        server = start()
        if not wait_until(lambda: answers(port, timeout=1), STEP_BOUND, 0.001):
            raise BenchError(f"restart {i + 1}: the new drain_server does not answer")
        t_ready = time.monotonic() - t0
        samples.append((t_ready, t_gone, None, None))
        time.sleep(GAP)
    loop_end = time.monotonic()
    counts, out = finish_wrk(wrk, duration, loop_end)
    return counts, samples, out


def ms(values, f):
    return f"{f(values) * 1000:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gsup", default="target/release/gsup")
    parser.add_argument("--server", default="target/release/examples/drain_server")
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--startup-delay-ms", type=int, default=200)
    parser.add_argument("--only", choices=["gsup", "restart"])
    parser.add_argument("-v", "--verbose", action="store_true", help="per-reload lines and wrk's output")
    args = parser.parse_args()
    args.gsup, args.server = os.path.abspath(args.gsup), os.path.abspath(args.server)
    if not (1 <= args.reloads <= 100 and 1 <= args.runs <= 20):
        parser.error("--reloads 1..100, --runs 1..20")
    if shutil.which("wrk") is None:
        sys.exit("reload.py: wrk not found (bench/setup.sh installs it)")
    for path in (args.gsup, args.server):
        if not os.access(path, os.X_OK):
            sys.exit(f"reload.py: {path} missing (cargo build --release --examples --bins)")

    # SIGTERM/SIGHUP end the script like ^C does, through the finally below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    per_reload = WARMUP / args.reloads + GAP + args.startup_delay_ms / 1000 + 1.0
    duration = int(WARMUP + args.reloads * per_reload + TAIL) + 1
    scenarios = [("gsup", "gsup reload (socket hand-off)", run_gsup),
                 ("restart", "stop + start (no supervisor)", run_restart)]
    print(f"# reload bench, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
          f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} cores; load {os.getloadavg()}")
    print(f"# wrk -t{THREADS} -c{CONNECTIONS} -d{duration}s --timeout {WRK_TIMEOUT}; {args.reloads} reloads "
          f"after {WARMUP:.0f} s, {GAP} s apart; STARTUP_DELAY_MS={args.startup_delay_ms}")
    rows = []
    procs = Procs(args.server)
    workdir = tempfile.mkdtemp(prefix="gsup-bench-reload-")
    failed = False
    try:
        for key, label, fn in scenarios:
            if args.only and args.only != key:
                continue
            for run in range(args.runs):
                try:
                    counts, samples, out = fn(args, procs, workdir, duration)
                finally:
                    procs.stop_all()
                ready = [s[0] for s in samples]
                gone = [s[1] for s in samples]
                if args.verbose:
                    for i, (r, g, d, at) in enumerate(samples):
                        print(f"  {key} run {run + 1} reload {i + 1}: ready {r * 1000:.1f} ms, old gone "
                              f"{g * 1000:.1f} ms" + (f", gsup duration_seconds {d:.3f}, old_exit.at {at}" if d else ""))
                    print("  " + out.strip().replace("\n", "\n  "))
                errors = "/".join(str(counts[k]) for k in ("connect", "read", "write", "timeout", "status"))
                rows.append(f"| {label} | {run + 1} | {counts['requests']} | **{counts['failed']}** ({errors}) | "
                            f"{ms(ready, statistics.median)} / {ms(ready, max)} | "
                            f"{ms(gone, statistics.median)} / {ms(gone, max)} | {counts['max_us'] / 1000:.0f} |")
                print(rows[-1])
                sys.stdout.flush()
    except BenchError as error:
        # Both streams: the results file (stdout, tee'd) must show it too.
        print(f"reload.py: FAILED: {error}", file=sys.stderr)
        print(f"# FAILED: {str(error).splitlines()[0]}")
        failed = True
    except Exception as error:  # anything unforeseen: still a clean stop and a table
        import traceback
        traceback.print_exc()
        print(f"# FAILED: {error!r}")
        failed = True
    except KeyboardInterrupt:
        print("reload.py: interrupted", file=sys.stderr)
        failed = True
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("| scenario | run | requests | failed (connect/read/write/timeout/non-2xx) | "
          "ready ms median / max | old gone ms median / max | wrk max latency ms |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for row in rows:
        print(row)
    print(f"# load after: {os.getloadavg()}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

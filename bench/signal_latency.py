#!/usr/bin/env python3
"""Signal forwarding latency through each supervisor prefix (python3 stdlib only).

    bench/signal_latency.py --fixture target/release/gsup-test-child "" "tini --" "dumb-init"

For each prefix (a string of words; "" runs the fixture bare, the baseline), in
round-robin rounds (--rounds, default 5) so machine noise spreads over all prefixes:

  usr1       a long-lived `PREFIX fixture stamp-on USR1 echo ready forever` per round;
             after 10 unrecorded warm-up deliveries, N/rounds times:
             take CLOCK_REALTIME, kill(supervisor, SIGUSR1), read the fixture's
             `stamp SIGUSR1 <ns>` line (stamped inside its signal handler). The difference.
  term       M fresh runs of `stamp-on TERM exit-on TERM 0`: the same, once per run.
  term-exit  M fresh runs of `exit-on TERM 0`: from kill(supervisor, SIGTERM) to waitpid
             returning the supervisor's exit (CLOCK_MONOTONIC).

Prints median and p99 in µs, and ratios against tini when tini is among the prefixes.
With BENCH_OUT=FILE, appends one JSON line per figure. Each read has a deadline; a lost
signal is counted and reported, never waited for forever.
"""

import argparse
import json
import math
import os
import select
import signal
import subprocess
import sys
import time

READ_DEADLINE_S = 5.0
WARMUP = 10


def label(prefix):
    return "bare" if not prefix else os.path.basename(prefix.split()[0])


class Lines:
    """Lines of a pipe, each read with a deadline (no thread, no blocking read)."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buffer = b""

    def next(self, deadline_s=READ_DEADLINE_S):
        until = time.monotonic() + deadline_s
        while b"\n" not in self.buffer:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def wait_for(self, predicate, deadline_s=READ_DEADLINE_S):
        until = time.monotonic() + deadline_s
        while True:
            line = self.next(max(0.0, until - time.monotonic()))
            if line is None or predicate(line):
                return line


def start(prefix, fixture, actions):
    argv = prefix.split() + [fixture] + actions
    # stderr to /dev/null: tini warns that it is not PID 1 on every start.
    # A session of its own, so stop() can kill what a supervisor leaves behind when it is
    # SIGKILLed (tini's child survives that; gsup's dies with it by PDEATHSIG).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    lines = Lines(proc.stdout)
    if lines.wait_for(lambda l: l == "ready") is None:
        stop(proc)
        sys.exit(f"signal_latency: `{' '.join(argv)}` never printed ready")
    return proc, lines


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    kill_session(proc.pid)
    proc.stdout.close()


def kill_session(sid):
    """SIGKILL every process left in session `sid` (tini moves its child to a group of its
    own, so a group kill would miss it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6, session
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def stamp_of(line, name):
    parts = (line or "").split()
    if len(parts) == 3 and parts[0] == "stamp" and parts[1] == name:
        return int(parts[2])
    return None


def bench_usr1(prefix, fixture, n):
    proc, lines = start(prefix, fixture, ["stamp-on", "USR1", "echo", "ready", "forever"])
    samples, lost = [], 0
    try:
        # Warm-up deliveries, not recorded: the first ones pay for cold caches and lazy
        # set-up in the supervisor.
        for _ in range(WARMUP):
            os.kill(proc.pid, signal.SIGUSR1)
            lines.wait_for(lambda l: l.startswith("stamp "))
        for _ in range(n):
            sent = time.clock_gettime_ns(time.CLOCK_REALTIME)
            os.kill(proc.pid, signal.SIGUSR1)
            stamp = stamp_of(lines.wait_for(lambda l: l.startswith("stamp ")), "SIGUSR1")
            if stamp is None:
                lost += 1
                continue
            samples.append((stamp - sent) / 1000)
    finally:
        stop(proc)
    return samples, lost


def bench_term(prefix, fixture, m):
    samples, lost = [], 0
    for _ in range(m):
        proc, lines = start(prefix, fixture, ["stamp-on", "TERM", "exit-on", "TERM", "0", "echo", "ready", "forever"])
        try:
            sent = time.clock_gettime_ns(time.CLOCK_REALTIME)
            os.kill(proc.pid, signal.SIGTERM)
            stamp = stamp_of(lines.wait_for(lambda l: l.startswith("stamp ")), "SIGTERM")
            if stamp is None:
                lost += 1
            else:
                samples.append((stamp - sent) / 1000)
        finally:
            stop(proc)
    return samples, lost


def bench_term_exit(prefix, fixture, m):
    samples, lost = [], 0
    for _ in range(m):
        proc, _ = start(prefix, fixture, ["exit-on", "TERM", "0", "echo", "ready", "forever"])
        sent = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGTERM)
        # Blocking waitpid, bounded by an alarm so a supervisor that ignores TERM
        # cannot hang the benchmark.
        signal.setitimer(signal.ITIMER_REAL, READ_DEADLINE_S)
        try:
            os.waitpid(proc.pid, 0)
            samples.append((time.monotonic_ns() - sent) / 1000)
            proc.returncode = 0  # reaped by hand; stop() must not wait again
        except InterruptedError:
            lost += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        stop(proc)
    return samples, lost


def percentile(sorted_samples, q):
    if not sorted_samples:
        return float("nan")
    # Nearest rank: the smallest sample with at least q of all samples at or below it.
    rank = max(1, math.ceil(q * len(sorted_samples)))
    return sorted_samples[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixture", required=True, help="path to gsup-test-child")
    parser.add_argument("-n", type=int, default=200, help="USR1 deliveries (default 200)")
    parser.add_argument("-m", type=int, default=50, help="fresh runs for the TERM figures (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("prefixes", nargs="+")
    args = parser.parse_args()

    def alarm(_signum, _frame):
        raise InterruptedError

    signal.signal(signal.SIGALRM, alarm)

    # Round-robin: each round measures every prefix a little, so a slow spell of the
    # machine (other builds on 2 cores) spreads over all prefixes instead of one.
    collected = {}  # (bench, label) -> ([samples], lost)
    for round_ in range(args.rounds):
        share = lambda total: total // args.rounds + (1 if round_ < total % args.rounds else 0)
        for prefix in args.prefixes:
            for bench, run in (
                ("usr1", lambda: bench_usr1(prefix, args.fixture, share(args.n))),
                ("term", lambda: bench_term(prefix, args.fixture, share(args.m))),
                ("term-exit", lambda: bench_term_exit(prefix, args.fixture, share(args.m))),
            ):
                samples, lost = run()
                entry = collected.setdefault((bench, label(prefix)), ([], 0))
                collected[(bench, label(prefix))] = (entry[0] + samples, entry[1] + lost)
    results = {}  # (bench, label) -> (median, p99, lost, count)
    for key, (samples, lost) in collected.items():
        samples.sort()
        results[key] = (percentile(samples, 0.5), percentile(samples, 0.99), lost, len(samples))

    labels = [label(p) for p in args.prefixes]
    print(f"{'bench':<10} {'prefix':<11} {'median µs':>10} {'p99 µs':>9} {'med/tini':>9} {'p99/tini':>9} {'lost':>5}")
    out = os.environ.get("BENCH_OUT")
    for bench in ("usr1", "term", "term-exit"):
        tini = results.get((bench, "tini"))
        for name in labels:
            median, p99, lost, count = results[(bench, name)]
            ratio_med = median / tini[0] if tini and tini[0] else float("nan")
            ratio_p99 = p99 / tini[1] if tini and tini[1] else float("nan")
            print(f"{bench:<10} {name:<11} {median:>10.1f} {p99:>9.1f} {ratio_med:>9.2f} {ratio_p99:>9.2f} {lost:>5}")
            if out:
                with open(out, "a") as f:
                    for metric, value in ((f"{bench} median µs", median), (f"{bench} p99 µs", p99)):
                        f.write(json.dumps({"metric": metric, "prefix": name, "value": value}) + "\n")
                    if lost:
                        f.write(json.dumps({"metric": f"{bench} lost", "prefix": name, "value": lost}) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Orphan reaping as PID 1: for each prefix, in a fresh pid namespace,
#   unshare --pid --fork --mount-proc PREFIX gsup-test-child orphans 1000 echo done forever
# The fixture leaves 1000 exited or exiting orphans to PID 1 (the supervisor; for "" the
# fixture itself, which never reaps: the negative control). After `done`, the namespace's
# processes are found from the host by their pid-namespace inode and counted in state Z:
# after 1 s, and the time until none is left (polled every 5 ms, at most 5 s).
#   bench/orphans.sh target/release/gsup-test-child "" "tini --" "dumb-init" "catatonit --"
# Needs root (unshare --pid). With BENCH_OUT set, appends JSON lines.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 FIXTURE PREFIX..." >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root for unshare --pid" >&2; exit 1; }
fixture=$1
shift
N=${ORPHANS:-1000}

python3 - "$fixture" "$N" "$@" <<'PY'
import json, os, select, signal, subprocess, sys, time

fixture, n, prefixes = sys.argv[1], sys.argv[2], sys.argv[3:]

def label(p):
    return "bare" if not p else os.path.basename(p.split()[0])

def ns_processes(ns):
    """Host pids whose pid namespace is `ns`, with their state letter."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/stat") as f:
                found.append((int(entry), f.read().rsplit(") ", 1)[1][0]))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited while we looked
        except PermissionError:
            continue  # not ours to inspect (e.g. the host's PID 1 in a container)
    return found

def zombies(ns):
    return sum(1 for _, state in ns_processes(ns) if state == "Z")

def wait_line(pipe, wanted, deadline_s):
    until, buffer = time.monotonic() + deadline_s, b""
    while time.monotonic() < until:
        ready, _, _ = select.select([pipe], [], [], until - time.monotonic())
        if not ready:
            break
        chunk = os.read(pipe.fileno(), 4096)
        if not chunk:
            break
        buffer += chunk
        if wanted.encode() + b"\n" in buffer:
            return True
    return False

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []

rows = []
for prefix in prefixes:
    argv = ["unshare", "--pid", "--fork", "--mount-proc"] + prefix.split() + [fixture, "orphans", n, "echo", "done", "forever"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if not wait_line(proc.stdout, "done", 30):
            sys.exit(f"orphans: `{' '.join(argv)}` never printed done")
        seen_done = time.monotonic()
        # unshare --fork: its only child is PID 1 of the new namespace.
        init = children(proc.pid)
        if not init:
            sys.exit("orphans: cannot find the namespace's PID 1")
        ns = os.readlink(f"/proc/{init[0]}/ns/pid")
        to_zero = None
        while time.monotonic() - seen_done < 5.0:
            now = time.monotonic()
            if zombies(ns) == 0:
                to_zero = (now - seen_done) * 1000
                break
            time.sleep(0.005)
        # The 1 s figure is read at 1 s after done, whatever happened before.
        left = 1.0 - (time.monotonic() - seen_done)
        if left > 0:
            time.sleep(left)
        after_1s = zombies(ns)
        rows.append((label(prefix), after_1s, to_zero))
    finally:
        # Killing the namespace's PID 1 kills everything in it.
        for pid in children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()

print(f"{'prefix':<11} {'zombies@1s':>10} {'ms to 0 zombies':>16}")
out = os.environ.get("BENCH_OUT")
for name, after_1s, to_zero in rows:
    shown = f"{to_zero:.1f}" if to_zero is not None else "never (5s)"
    print(f"{name:<11} {after_1s:>10} {shown:>16}")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"metric": "orphans: zombies after 1 s", "prefix": name, "value": after_1s}) + "\n")
            f.write(json.dumps({"metric": "orphans: ms to 0 zombies", "prefix": name,
                                "value": to_zero if to_zero is not None else None}) + "\n")
PY

#!/usr/bin/env python3
"""Drives gsup under a real pseudo-terminal, as a person at a shell would.

usage: job_control.py GSUP FIXTURE SCENARIO

Each scenario prints what it checked and exits 0, or prints the screen so far and exits 1.
Standard library only (pty, os, select): no pexpect on a fresh machine.
"""
import os
import pty
import re
import select
import signal
import sys
import tempfile
import time

PATIENCE = 20.0


class Terminal:
    def __init__(self, argv):
        env = dict(os.environ, PS1="PROMPT$ ", TERM="dumb", HISTFILE="/dev/null")
        env.pop("GSUP_LOG", None)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe(argv[0], argv, env)
        self.screen = ""
        self.mark = 0

    def read_some(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        self.screen += data.decode("utf-8", "replace")
        return True

    def expect(self, pattern):
        """Waits for `pattern` (a regex) after the last match; returns the match."""
        deadline = time.monotonic() + PATIENCE
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.screen, self.mark)
            if found:
                self.mark = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self.read_some(min(left, 0.5)) and left <= 0:
                fail(f"no {pattern!r} on the screen within {PATIENCE}s", self.screen)
            if left <= 0:
                fail(f"no {pattern!r} on the screen within {PATIENCE}s", self.screen)

    def send(self, text):
        os.write(self.fd, text.encode())

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def stat_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    # state, ppid, pgrp, session, tty_nr, tpgid (proc(5) fields 3-8)
    return {"state": fields[0], "ppid": int(fields[1]), "pgrp": int(fields[2]), "tpgid": int(fields[5])}


def comm_of(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def children_of(pid):
    """The pids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if stat_of(entry)["ppid"] == pid:
                    found.append(int(entry))
            except (OSError, ValueError):
                continue
    return found


def only_child(pid, comm, screen):
    """The one child of `pid` named `comm` (fails unless there is exactly one)."""
    named = []
    for child in children_of(pid):
        try:
            if comm_of(child) == comm:
                named.append(child)
        except OSError:
            continue
    if len(named) != 1:
        fail(f"expected one `{comm}` under pid {pid}, found {named}", screen)
    return named[0]


def wait_stopped(pid, what, screen_of):
    """Waits until `pid` is stopped (state T), or fails naming `what`."""
    deadline = time.monotonic() + PATIENCE
    state = "?"
    while time.monotonic() < deadline:
        state = stat_of(pid)["state"]
        if state == "T":
            return
        time.sleep(0.01)
    fail(f"{what} (pid {pid}) is not stopped: state {state}", screen_of())


def wait_in_foreground(comm, screen_of):
    """Waits until a process named `comm` whose parent is gsup runs (not stopped) and its
    group is the terminal's foreground group: then typed input reaches it."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if comm_of(entry) != comm:
                    continue
                info = stat_of(entry)
                if comm_of(info["ppid"]) != "gsup":
                    continue
                if info["state"] != "T" and info["tpgid"] == info["pgrp"]:
                    return
            except (OSError, ValueError):
                continue
        time.sleep(0.01)
    fail(f"no running `{comm}` under gsup in the terminal's foreground", screen_of())


def kill_processes_using(argument):
    """SIGKILLs every process whose command line has `argument`: a gsup left running by a
    failed scenario (the shell's SIGKILL does not reach it) must not outlive the test."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if argument.encode() in f.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


def fail(message, screen):
    print(f"FAIL: {message}\n--- screen ---\n{screen}\n--------------")
    sys.exit(1)


def ok(message):
    print(f"ok: {message}")


def shell():
    return Terminal(["bash", "--norc", "--noprofile", "-i"])


def scenario_outer_shell(gsup, fixture):
    """`gsup run -- cat` under an interactive shell: Ctrl+Z stops the job, fg resumes it."""
    term = shell()
    try:
        term.expect(r"PROMPT\$ ")
        term.send(f"{gsup} run --http off -- {fixture} handle CONT tty echo started forever\n")
        term.expect(r"tty fg true")
        ok("the child's group is the terminal's foreground group")
        term.expect(r"started")
        term.send("\x1a")  # Ctrl+Z
        term.expect(r"\[1\]\+\s+Stopped\s")
        term.expect(r"PROMPT\$ ")
        ok("Ctrl+Z: the shell shows the job stopped and gives the prompt back")
        # The job is gsup (the shell's child); the supervised child is gsup's child.
        gsup_pid = only_child(term.pid, "gsup", term.screen)
        child_pid = only_child(gsup_pid, os.path.basename(fixture)[:15], term.screen)
        wait_stopped(gsup_pid, "gsup", lambda: term.screen)
        wait_stopped(child_pid, "the supervised child", lambda: term.screen)
        ok("gsup and its child are both stopped")
        term.send("fg\n")
        # gsup hands the terminal back to the child's group before it forwards SIGCONT:
        # once the child reports SIGCONT, Ctrl+C goes to the child.
        term.expect(r"got SIGCONT")
        term.send("\x03")  # Ctrl+C: the kernel sends SIGINT to the child's group
        term.expect(r"PROMPT\$ ")
        term.send("echo rc=$?\n")
        term.expect(r"rc=130")
        ok("fg resumed the job; Ctrl+C ended it with 130 as without gsup")

        term.send(f"{gsup} run --http off -- sh -c 'echo cat-ready-$((40+2)); exec cat'\n")
        term.expect(r"cat-ready-42")
        term.send("hello-cat\n")
        term.expect(r"hello-cat\r?\n.*hello-cat")
        term.send("\x1a")
        term.expect(r"\[1\]\+\s+Stopped\s")
        term.expect(r"PROMPT\$ ")
        term.send("fg\n")
        wait_in_foreground("cat", lambda: term.screen)
        term.send("again\n")
        term.expect(r"again\r?\n(.*\r?\n)?again")
        term.send("\x04")  # Ctrl+D: cat sees EOF and exits 0
        term.expect(r"PROMPT\$ ")
        term.send("echo rc=$?\n")
        term.expect(r"rc=0")
        ok("gsup run -- cat: Ctrl+Z, fg, input reaches cat, Ctrl+D exits 0")
    finally:
        term.close()


def scenario_inner_shell(gsup, fixture):
    """An interactive `bash -m` under gsup has working job control."""
    term = Terminal([gsup, "run", "--http", "off", "--", "bash", "--norc", "--noprofile", "-i", "-m"])
    try:
        term.expect(r"PROMPT\$ ")
        term.send("echo jc=$-\n")
        term.expect(r"jc=\S*m")
        ok("bash under gsup has job control on")
        term.send(f"{fixture} handle CONT tty echo started forever\n")
        term.expect(r"tty fg true")
        term.expect(r"started")
        term.send("\x1a")
        term.expect(r"\[1\]\+\s+Stopped\s")
        term.expect(r"PROMPT\$ ")
        ok("Ctrl+Z stops the inner job and the inner bash reports it")
        term.send("fg\n")
        term.expect(r"got SIGCONT")
        term.send("\x03")
        term.expect(r"PROMPT\$ ")
        term.send("echo rc=$?\n")
        term.expect(r"rc=130")
        ok("fg and Ctrl+C inside the supervised shell")
        term.send("exit 7\n")
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            pid, status = os.waitpid(term.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                if code != 7:
                    fail(f"gsup exited {code}, expected the shell's 7", term.screen)
                ok("exit 7 in the shell: gsup exits 7")
                term.pid = -1
                return
            term.read_some(0.1)
        fail("gsup did not exit after the shell did", term.screen)
    finally:
        if term.pid > 0:
            term.close()


def scenario_gsup_holds_the_terminal(gsup, fixture):
    """Ctrl+C while gsup's own group holds the terminal (restart backoff, post-stop hooks):
    INT starts the shutdown, or forces the one that runs (DESIGN §4 Signals)."""
    config = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gsup-tty-{os.getpid()}.toml")
    with open(config, "w") as f:
        f.write('[restart]\npolicy = "on-failure"\nbackoff_initial = "60s"\nbackoff_max = "60s"\n'
                '[shutdown]\ntimeout = "60s"\n[phases.cleanup]\ntimeout = "60s"\n'
                '[[hooks]]\nphase = "cleanup"\nname = "slow"\n'
                'exec = ["sh", "-c", "echo hook-$((40+2)); exec sleep 60"]\n')
    term = shell()
    try:
        term.expect(r"PROMPT\$ ")
        term.send(f"GSUP_LOG=info {gsup} run --http off --config {config} -- sh -c 'echo started-$((40+2)); exit 3'\n")
        term.expect(r"started-42")
        term.expect(r"child will be restarted")
        term.send("\x03")  # Ctrl+C during the 60 s backoff: gsup's, it starts the shutdown
        term.expect(r"hook-42")
        ok("Ctrl+C during a restart backoff starts the shutdown: the cleanup hook runs")
        term.send("\x03")  # Ctrl+C during the 60 s hook: forces, the hook is killed
        term.expect(r"PROMPT\$ ")
        term.send("echo rc=$?\n")
        term.expect(r"rc=3\b")
        ok("Ctrl+C during a post-stop hook forces: gsup exits with the child's 3 at once")
    finally:
        term.close()
        kill_processes_using(config)
        os.unlink(config)


def scenario_implicit_config(gsup, fixture):
    """On a terminal (default level warn) a config file found implicitly is shown; one
    named with --config is not."""
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "supervisor.toml"), "w") as f:
            f.write('[shutdown]\ntimeout = "5s"\n')
        os.chdir(work)
        for named in (False, True):
            flags = ["--config", "supervisor.toml"] if named else []
            term = Terminal([gsup, "run", "--http", "off", *flags, "--", fixture, "echo", "child-ran", "exit", "0"])
            try:
                term.expect(r"child-ran")
                shown = re.search(r"found implicitly.*supervisor\.toml", term.screen)
                if named and shown:
                    fail("a config file named with --config is announced on the terminal", term.screen)
                if not named and not shown:
                    fail("no word on the terminal of the implicitly found supervisor.toml", term.screen)
            finally:
                term.close()
        ok("an implicitly found supervisor.toml is shown on the terminal; a named one is not")


if __name__ == "__main__":
    gsup_path, fixture_path, which = sys.argv[1], sys.argv[2], sys.argv[3]
    {
        "outer": scenario_outer_shell,
        "inner": scenario_inner_shell,
        "gsup-holds-terminal": scenario_gsup_holds_the_terminal,
        "implicit": scenario_implicit_config,
    }[which](gsup_path, fixture_path)

#!/usr/bin/env python3
"""Runs a command on a fresh pseudo-terminal, as a person at a terminal would, and
copies what it printed there to stdout (CRLF as LF); exits with the command's code.

usage: pty_run.py PROGRAM [ARGS...]

Standard library only (pty, os): no pexpect on a fresh machine.
"""
import os
import pty
import sys


def main():
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    screen = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the command closed the terminal's last fd
            break
        if not data:
            break
        screen += data
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(screen.decode("utf-8", "replace").replace("\r\n", "\n"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()

//! DESIGN §2 exit codes and §4 lifecycle: the child's code, 128+N, gsup's own failures,
//! stragglers, PDEATHSIG, reaping as subreaper, inherited signal dispositions.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn exit_codes_pass_through() {
    for code in [0, 1, 42, 255] {
        let mut gsup = gsup_run(&["--", CHILD, "exit", &code.to_string()], &[]);
        assert_eq!(gsup.wait_code(PATIENCE), code, "child exit {code}\n{}", gsup.stderr());
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    for (name, number) in [("TERM", 15), ("KILL", 9), ("SEGV", 11)] {
        let mut gsup = gsup_run(&["--", CHILD, "die", name], &[]);
        assert_eq!(
            gsup.wait_code(PATIENCE),
            128 + number,
            "child died of SIG{name}\n{}",
            gsup.stderr()
        );
    }
}

#[test]
fn gsup_itself_is_never_killed_by_the_childs_signal() {
    let mut gsup = gsup_run(&["--", CHILD, "die", "SEGV"], &[]);
    let status = gsup.wait_exit(PATIENCE);
    assert_eq!(
        status.code(),
        Some(139),
        "gsup exits with 139, it does not die of a signal"
    );
}

#[test]
fn missing_program_is_127_and_not_executable_is_126() {
    let mut gsup = gsup_run(&["--", "/nonexistent/program"], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 127);
    assert!(
        gsup.stderr().contains("program not found: /nonexistent/program"),
        "{}",
        gsup.stderr()
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    let path = script.to_str().expect("utf-8 path");
    let mut gsup = gsup_run(&["--", path], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 126);
    assert!(gsup.stderr().contains("not executable"), "{}", gsup.stderr());
}

#[test]
fn no_program_is_a_usage_error() {
    let mut gsup = gsup_run(&[], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 2);
    assert!(gsup.stderr().contains("no program to run"), "{}", gsup.stderr());
}

#[test]
fn unknown_subcommand_and_flag_are_usage_errors() {
    let mut bogus = start(cmd(GSUP, &["frobnicate"]), &[]);
    assert_eq!(bogus.wait_code(PATIENCE), 2);
    let mut flag = gsup_run(&["--no-such-flag", "--", "true"], &[]);
    assert_eq!(flag.wait_code(PATIENCE), 2);
}

/// A worker left behind by a child that exits on its own gets the stop signal; one that
/// ignores it gets SIGKILL after `SHUTDOWN_TIMEOUT_MS`. gsup exits with the child's code.
#[test]
fn stragglers_are_stopped_then_killed_when_the_child_exits() {
    let mut gsup = gsup_run(
        &[
            "--",
            CHILD,
            "grandchild",
            "handle",
            "TERM",
            "pid",
            "forever",
            ";",
            "grandchild",
            "ignore",
            "TERM",
            "pid",
            "forever",
            ";",
            "sleep",
            "300",
            "echo",
            "leaving",
            "exit",
            "3",
        ],
        &[("SHUTDOWN_TIMEOUT_MS", "500")],
    );
    gsup.expect_line("leaving");
    let code = gsup.wait_code(PATIENCE);
    assert_eq!(code, 3, "{}", gsup.stderr());
    let lines = gsup.drain_lines(Duration::from_secs(2));
    let pids: Vec<i32> = lines
        .iter()
        .filter(|l| l.starts_with("grandchild "))
        .map(|l| field(l, "grandchild"))
        .collect();
    assert_eq!(pids.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "got SIGTERM"),
        "the handling worker got the stop signal: {lines:?}"
    );
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived gsup");
    }
    assert!(
        gsup.stderr().contains("SIGKILL"),
        "the TERM-ignoring worker needed SIGKILL\n{}",
        gsup.stderr()
    );
}

/// SIGKILL to gsup (no chance to clean up): PDEATHSIG takes the child down.
#[test]
fn child_dies_with_gsup() {
    let mut gsup = gsup_run(&["--", CHILD, "pid", "echo", "ready", "forever"], &[]);
    let child = field(&gsup.expect_line("pid "), "pid");
    gsup.expect_line("ready");
    assert!(alive(child));
    gsup.signal(libc::SIGKILL);
    gsup.wait_exit(PATIENCE);
    assert!(
        wait_until(PATIENCE, || !alive(child)),
        "child {child} outlived a SIGKILLed gsup"
    );
}

/// Not PID 1: gsup is a child subreaper, so orphans of the child are re-parented to gsup
/// and reaped by it; none stays a zombie.
#[test]
fn subreaper_reaps_orphans_of_the_child() {
    let mut gsup = gsup_run(&["--", CHILD, "orphans", "50", "echo", "done", "forever"], &[]);
    gsup.expect_line("done");
    let gsup_pid = gsup.pid();
    assert!(
        wait_until(PATIENCE, || gsup.stderr().matches("orphan reaped").count() >= 50),
        "gsup reaped {} of 50 orphans (without the subreaper they go to init)\n{}",
        gsup.stderr().matches("orphan reaped").count(),
        gsup.stderr()
    );
    assert!(
        wait_until(PATIENCE, || zombie_children(gsup_pid) == 0),
        "zombies left under gsup"
    );
    gsup.signal(libc::SIGKILL);
}

/// `nohup gsup run -- x`: the child still ignores HUP, and has none of gsup's handlers.
#[test]
fn child_inherits_ignored_signals_not_handlers() {
    let script = format!("trap '' HUP USR1; exec {GSUP} run --http off -- {CHILD} dispositions");
    let mut shell = start(cmd("sh", &["-c", &script]), &[]);
    let ignored = shell.expect_line("ignored ");
    let caught = shell.expect_line("caught ");
    assert_eq!(shell.wait_code(PATIENCE), 0, "{}", shell.stderr());
    assert!(ignored.contains("SIGHUP") && ignored.contains("SIGUSR1"), "{ignored}");
    assert!(
        !ignored.contains("SIGTERM") && !ignored.contains("SIGINT"),
        "gsup's handlers must not show as ignored: {ignored}"
    );
    assert!(!caught.contains("SIGTERM") && !caught.contains("SIGUSR2"), "{caught}");
}

/// Negative control for the test above: without the inherited SIG_IGN, HUP is not ignored.
#[test]
fn child_does_not_ignore_what_was_not_ignored() {
    let mut gsup = gsup_run(&["--", CHILD, "dispositions"], &[]);
    let ignored = gsup.expect_line("ignored ");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    assert!(!ignored.contains("SIGHUP"), "{ignored}");
}

/// The child leads its own process group, and is not a session leader.
#[test]
fn child_gets_its_own_process_group() {
    let mut gsup = gsup_run(&["--", CHILD, "pid"], &[]);
    let line = gsup.expect_line("pid ");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    let (pid, pgid, ppid, sid) = (
        field(&line, "pid"),
        field(&line, "pgid"),
        field(&line, "ppid"),
        field(&line, "sid"),
    );
    assert_eq!(pgid, pid, "own group: {line}");
    assert_eq!(ppid, gsup.pid(), "gsup is the parent: {line}");
    assert_ne!(sid, pid, "not a new session: {line}");
}

/// GSUP_CONTROL_TOKEN and systemd's variables are gsup's, never the child's.
#[test]
fn child_environment_is_inherited_minus_gsups_own() {
    let mut gsup = gsup_run(
        &[
            "--",
            "sh",
            "-c",
            "echo keep=$KEEP_ME token=${GSUP_CONTROL_TOKEN:-unset} notify=${NOTIFY_SOCKET:-unset}",
        ],
        &[
            ("KEEP_ME", "yes"),
            ("GSUP_CONTROL_TOKEN", "s3cret"),
            ("NOTIFY_SOCKET", "/nonexistent"),
        ],
    );
    let line = gsup.expect_line("keep=");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    assert_eq!(line, "keep=yes token=unset notify=unset");
}

/// gsup started with SIGUSR1 blocked: the child starts with it blocked too (as if gsup
/// were not there), and a USR1 sent to gsup is still forwarded: it waits, pending, in the
/// child until the child unblocks it, and the child lives on.
#[test]
fn child_inherits_the_signal_mask() {
    let script = format!(
        "import os, signal; signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}}); \
         os.execv('{GSUP}', ['gsup', 'run', '--http', 'off', '--', '{CHILD}', 'pid', 'dispositions', 'echo', 'ready', 'forever'])"
    );
    let mut gsup = start(cmd("python3", &["-c", &script]), &[("GSUP_LOG", "debug")]);
    let child = field(&gsup.expect_line("pid "), "pid");
    let blocked = gsup.expect_line("blocked ");
    assert!(blocked.contains("SIGUSR1"), "{blocked}");
    gsup.expect_line("ready");
    assert!(!pending(child, libc::SIGUSR1), "nothing pending before the signal");
    gsup.signal(libc::SIGUSR1);
    assert!(
        wait_until(PATIENCE, || pending(child, libc::SIGUSR1)),
        "the USR1 sent to gsup waits, pending, in the child\n{}",
        gsup.stderr()
    );
    assert!(
        gsup.stderr().contains("\"signal\":\"SIGUSR1\"") && gsup.stderr().contains("signal forwarded"),
        "{}",
        gsup.stderr()
    );
    assert!(alive(child), "the blocked USR1 does not kill the child");
    gsup.signal(libc::SIGKILL);
}

/// Whether `signal` is pending for the whole process `pid` (`ShdPnd` of /proc/PID/status:
/// where a signal sent with kill(2) waits while every thread blocks it).
fn pending(pid: i32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

//! The fixture child on its own, without gsup: if these fail, gsup's own tests cannot be
//! trusted. Every wait is a line read with a deadline, never a bare sleep.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use common::*;

fn fixture(args: &[&str]) -> Running {
    start(cmd(CHILD, args), &[])
}

fn run(args: &[&str]) -> ExitStatus {
    fixture(args).wait_exit(PATIENCE)
}

#[test]
fn echo_prints_its_text_and_exits_zero() {
    let mut child = fixture(&["echo", "hello world", "echo", "second"]);
    assert_eq!(child.next_line(), "hello world");
    assert_eq!(child.next_line(), "second");
    assert_eq!(child.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn exit_code_is_passed_through() {
    assert_eq!(run(&["exit", "42"]).code(), Some(42));
}

#[test]
fn unknown_action_exits_2_and_bad_argument_exits_3() {
    assert_eq!(run(&["frobnicate"]).code(), Some(2));
    assert_eq!(run(&["sleep", "soon"]).code(), Some(3));
    // Parsed before anything runs: the echo must not happen.
    let mut child = fixture(&["echo", "early", "exit", "999"]);
    assert_eq!(child.wait_exit(PATIENCE).code(), Some(3));
    assert!(child.drain_lines(Duration::from_secs(1)).is_empty(), "nothing printed");
}

#[test]
fn die_term_is_killed_by_signal_15() {
    let status = run(&["handle", "TERM", "die", "TERM"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn handled_usr1_is_reported_and_the_child_lives_on() {
    let mut child = fixture(&["handle", "USR1", "echo", "ready", "forever"]);
    child.expect_line("ready");
    child.signal(libc::SIGUSR1);
    child.expect_count("got SIGUSR1", 1);
    // Still alive and still handling: a second delivery is reported too.
    child.signal(libc::SIGUSR1);
    child.expect_count("got SIGUSR1", 2);
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait_exit(PATIENCE).signal(), Some(libc::SIGKILL));
}

#[test]
fn negative_control_unhandled_usr1_kills() {
    // Proves the line above comes from `handle`, not from some default.
    let mut child = fixture(&["echo", "ready", "forever"]);
    child.expect_line("ready");
    child.signal(libc::SIGUSR1);
    assert_eq!(child.wait_exit(PATIENCE).signal(), Some(libc::SIGUSR1));
}

#[test]
fn exit_on_prints_then_exits_with_the_code() {
    let mut child = fixture(&["exit-on", "TERM", "7", "echo", "ready", "forever"]);
    child.expect_line("ready");
    child.signal(libc::SIGTERM);
    child.expect_line("got SIGTERM");
    assert_eq!(child.wait_exit(PATIENCE).code(), Some(7));
}

#[test]
fn dispositions_show_ignore_and_not_std_sigpipe() {
    // std's Command resets SIGPIPE to default for us, so only HUP may show as ignored:
    // SIGPIPE here would mean the fixture reports std's own SIG_IGN (a lie to gsup's tests).
    let mut child = fixture(&["dispositions", "ignore", "HUP", "dispositions"]);
    for expected in [
        "ignored -",
        "blocked -",
        "caught -",
        "ignored SIGHUP",
        "blocked -",
        "caught -",
    ] {
        assert_eq!(child.next_line(), expected);
    }
    assert_eq!(child.wait_exit(PATIENCE).code(), Some(0));
}

#[test]
fn handle_shows_as_caught() {
    let mut child = fixture(&["handle", "USR2,RTMIN+1", "dispositions"]);
    let caught = child.expect_line("caught ");
    let names: Vec<&str> = caught["caught ".len()..].split(',').collect();
    assert!(names.contains(&"SIGUSR2") && names.contains(&"SIGRTMIN+1"), "{caught}");
}

#[test]
fn grandchild_is_a_direct_child_running_its_own_actions() {
    let mut child = fixture(&[
        "grandchild",
        "pid",
        "echo",
        "grandchild-done",
        ";",
        "echo",
        "parent-continues",
        "forever",
    ]);
    let grandchild = field(&child.expect_line("grandchild "), "grandchild");
    let pid_line = child.expect_line("pid ");
    assert_eq!(field(&pid_line, "pid"), grandchild);
    assert_eq!(field(&pid_line, "ppid"), child.pid(), "not re-parented");
    assert_ne!(grandchild, child.pid());
    child.expect_line("grandchild-done");
}

#[test]
fn zombies_stay_unreaped_children() {
    let mut child = fixture(&["zombies", "3", "echo", "ready", "forever"]);
    child.expect_line("ready");
    let pid = child.pid();
    // Each exits at once, but "at once" is not "before we look": poll for state Z.
    assert!(
        wait_until(PATIENCE, || zombie_children(pid) == 3),
        "{} zombies",
        zombie_children(pid)
    );
}

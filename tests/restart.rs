//! DESIGN §4 Restarts: policies, exponential backoff and the crash-loop limit.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

fn config(policy: &str, max_restarts: u32) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp config");
    write!(
        file,
        "[restart]\npolicy = \"{policy}\"\nbackoff_initial = \"20ms\"\nbackoff_max = \"80ms\"\nmax_restarts = {max_restarts}\nwindow = \"60s\"\n"
    )
    .expect("write config");
    file
}

/// Runs the child under `policy` and returns (gsup's exit code, how many times it started).
fn run_with(policy: &str, max_restarts: u32, child: &[&str]) -> (i32, usize) {
    let file = config(policy, max_restarts);
    let path = file.path().to_str().expect("utf-8 path");
    let mut args = vec!["--config", path, "--", CHILD, "echo", "started"];
    args.extend_from_slice(child);
    let mut gsup = gsup_run(&args, &[]);
    let code = gsup.wait_code(PATIENCE);
    let lines = gsup.drain_lines(Duration::from_secs(1));
    (code, lines.iter().filter(|l| l.as_str() == "started").count())
}

#[test]
fn never_does_not_restart() {
    assert_eq!(run_with("never", 5, &["exit", "3"]), (3, 1));
}

#[test]
fn on_failure_restarts_until_the_crash_loop_limit_then_gives_up_with_the_code() {
    // The first start is not a restart: 1 + 3 starts, then the 4th exit gives up.
    assert_eq!(run_with("on-failure", 3, &["exit", "3"]), (3, 4));
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    assert_eq!(run_with("on-failure", 3, &["exit", "0"]), (0, 1));
}

#[test]
fn on_failure_restarts_a_death_by_signal() {
    assert_eq!(run_with("on-failure", 2, &["die", "TERM"]), (143, 3));
}

#[test]
fn always_restarts_a_clean_exit_and_gives_up_with_1() {
    assert_eq!(run_with("always", 2, &["exit", "0"]), (1, 3));
}

#[test]
fn max_restarts_zero_never_restarts() {
    assert_eq!(run_with("always", 0, &["exit", "4"]), (4, 1));
}

/// The flag overrides the file's policy.
#[test]
fn restart_flag_wins_over_the_file() {
    let file = config("never", 2);
    let path = file.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--restart",
            "always",
            "--",
            CHILD,
            "echo",
            "started",
            "exit",
            "0",
        ],
        &[],
    );
    assert_eq!(gsup.wait_code(PATIENCE), 1);
    assert_eq!(
        gsup.drain_lines(Duration::from_secs(1))
            .iter()
            .filter(|l| l.as_str() == "started")
            .count(),
        3
    );
}

/// Backoff doubles: 20 + 40 + 80 (capped) ms between four starts, so the run takes at
/// least 140 ms; a SIGTERM during the backoff ends gsup at once with the last code.
#[test]
fn backoff_grows_and_a_shutdown_during_backoff_exits_at_once() {
    let started = Instant::now();
    assert_eq!(run_with("on-failure", 3, &["exit", "9"]), (9, 4));
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "{:?}",
        started.elapsed()
    );

    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp config");
    write!(
        file,
        "[restart]\npolicy = \"always\"\nbackoff_initial = \"60s\"\nbackoff_max = \"60s\"\n"
    )
    .expect("write");
    let path = file.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(&["--config", path, "--", CHILD, "echo", "started", "exit", "6"], &[]);
    gsup.expect_line("started");
    assert!(
        wait_until(PATIENCE, || gsup.stderr().contains("child will be restarted")),
        "{}",
        gsup.stderr()
    );
    let signalled = Instant::now();
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 6);
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "no waiting out the 60 s backoff"
    );
}

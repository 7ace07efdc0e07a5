//! DESIGN §4 Signals: forwarding, rewrite, group vs child, shutdown signals, escalation.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Every catchable signal but CHLD and the fault signals reaches the child, once gsup is
/// a pure forwarder (`shutdown_on = []`).
#[test]
fn every_forwardable_signal_reaches_the_child() {
    let config = config_file("[signals]\nshutdown_on = []\n");
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(
        &[
            "--config", path, "--", CHILD, "handle", "all", "echo", "ready", "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let rtmin = libc::SIGRTMIN();
    let excluded = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGSYS,
    ];
    let mut signals: Vec<i32> = (1..=31).filter(|s| !excluded.contains(s)).collect();
    signals.extend([rtmin, rtmin + 3, libc::SIGRTMAX()]);
    for signal in signals {
        gsup.signal(signal);
        let name = signal_name(signal);
        gsup.expect_line(&format!("got {name}"));
        if matches!(signal, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
            // Without a terminal gsup then stops itself (DESIGN §4): continue it once it
            // has (a CONT before the stop would be lost on a gsup not yet stopped).
            assert!(wait_until(PATIENCE, || stopped(gsup.pid())), "gsup stopped itself");
            gsup.signal(libc::SIGCONT);
            gsup.expect_line("got SIGCONT");
        }
    }
    assert!(alive(gsup.pid()), "gsup must survive every forwarded signal");
    gsup.signal(libc::SIGKILL);
}

fn signal_name(signal: i32) -> String {
    let rtmin = libc::SIGRTMIN();
    if signal == rtmin {
        return "SIGRTMIN".into();
    }
    if signal > rtmin {
        return format!("SIGRTMIN+{}", signal - rtmin);
    }
    let names = [
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    format!("SIG{}", names[signal as usize])
}

#[test]
fn rewrite_maps_and_drops_signals() {
    let mut gsup = gsup_run(
        &[
            "--rewrite",
            "USR1=USR2",
            "--rewrite",
            "HUP=none",
            "--",
            CHILD,
            "handle",
            "all",
            "echo",
            "ready",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    gsup.signal(libc::SIGUSR1);
    gsup.expect_line("got SIGUSR2");
    gsup.signal(libc::SIGHUP);
    assert!(
        wait_until(PATIENCE, || gsup.stderr().contains("dropped by the rewrite map")),
        "gsup should log the dropped HUP\n{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGWINCH);
    gsup.expect_line("got SIGWINCH");
    assert!(
        !gsup.seen.iter().any(|l| l.contains("got SIGUSR1")),
        "USR1 must arrive as USR2: {:?}",
        gsup.seen
    );
    assert!(
        !gsup.seen.iter().any(|l| l.contains("got SIGHUP")),
        "HUP must be dropped: {:?}",
        gsup.seen
    );
    gsup.signal(libc::SIGKILL);
}

/// A shell with two background workers: `forward_to = "group"` reaches all three,
/// `"child"` only the shell. Returns the lines seen.
fn shell_with_workers(forward_to: &str) -> Vec<String> {
    let script = format!(
        "trap 'echo sh-got-USR1' USR1; \
         {CHILD} handle USR1,USR2 pid echo a-ready forever & \
         {CHILD} handle USR1,USR2 pid echo b-ready forever & \
         while :; do wait; done"
    );
    let mut gsup = gsup_run(&["--forward-to", forward_to, "--", "sh", "-c", &script], &[]);
    gsup.expect_line("a-ready");
    gsup.expect_line("b-ready");
    let workers: Vec<i32> = gsup
        .seen
        .iter()
        .filter(|l| l.starts_with("pid "))
        .map(|l| field(l, "pid"))
        .collect();
    assert_eq!(workers.len(), 2, "{:?}", gsup.seen);
    gsup.signal(libc::SIGUSR1);
    gsup.expect_line("sh-got-USR1");
    if forward_to == "group" {
        gsup.expect_count("got SIGUSR1", 2);
    }
    // A marker sent to the workers directly: their reports come in signal order, so a
    // USR1 from gsup would have been reported by the time USR2 is.
    for worker in &workers {
        send_signal(*worker, libc::SIGUSR2);
    }
    gsup.expect_count("got SIGUSR2", 2);
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 128 + libc::SIGTERM, "{}", gsup.stderr());
    for worker in workers {
        assert!(wait_until(PATIENCE, || !alive(worker)), "worker {worker} outlived gsup");
    }
    gsup.seen.clone()
}

#[test]
fn forward_to_group_reaches_every_member() {
    let lines = shell_with_workers("group");
    let got = lines.iter().filter(|l| l.as_str() == "got SIGUSR1").count();
    assert_eq!(got, 2, "both workers get USR1: {lines:?}");
}

#[test]
fn forward_to_child_reaches_only_the_child() {
    let lines = shell_with_workers("child");
    let got = lines.iter().filter(|l| l.as_str() == "got SIGUSR1").count();
    assert_eq!(got, 0, "workers must not get USR1: {lines:?}");
}

/// Child and grandchild ignore TERM: at the graceful deadline both are SIGKILLed; gsup
/// exits 137 in about `SHUTDOWN_TIMEOUT_MS` and nothing survives.
#[test]
fn escalates_to_sigkill_at_the_graceful_deadline() {
    let mut gsup = gsup_run(
        &[
            "--",
            CHILD,
            "ignore",
            "TERM",
            "grandchild",
            "ignore",
            "TERM",
            "pid",
            "forever",
            ";",
            "pid",
            "echo",
            "ready",
            "forever",
        ],
        &[("SHUTDOWN_TIMEOUT_MS", "1000")],
    );
    gsup.expect_line("ready");
    let grandchild = field(&gsup.expect_line("grandchild"), "grandchild");
    // The grandchild's own `pid` line comes after its `ignore TERM` took effect.
    gsup.expect_where("the grandchild's pid line", PATIENCE, |l| {
        l.starts_with("pid ") && field(l, "pid") == grandchild
    });
    let child = field(
        &gsup.expect_where("the child's pid line", PATIENCE, |l| {
            l.starts_with("pid ") && field(l, "pid") != grandchild
        }),
        "pid",
    );
    assert!(alive(child) && alive(grandchild));
    let started = Instant::now();
    gsup.signal(libc::SIGTERM);
    let code = gsup.wait_code(PATIENCE);
    let elapsed = started.elapsed();
    assert_eq!(code, 137, "killed child: 128+9\n{}", gsup.stderr());
    assert!(
        elapsed >= Duration::from_millis(900),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "well within timeout + force_timeout: {elapsed:?}"
    );
    assert!(!alive(child), "child {child} survived");
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[test]
fn a_second_shutdown_signal_forces_the_kill() {
    let mut gsup = gsup_run(
        &["--", CHILD, "ignore", "TERM", "echo", "ready", "forever"],
        &[("SHUTDOWN_TIMEOUT_MS", "60000")],
    );
    gsup.expect_line("ready");
    let started = Instant::now();
    gsup.signal(libc::SIGTERM);
    assert!(
        wait_until(PATIENCE, || gsup.stderr().contains("graceful shutdown started")),
        "{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGINT);
    let code = gsup.wait_code(PATIENCE);
    assert_eq!(code, 137, "{}", gsup.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "forced long before the 60 s deadline"
    );
}

#[test]
fn sigterm_reaches_a_cooperative_child_which_exits_with_its_own_code() {
    let mut gsup = gsup_run(&["--", CHILD, "exit-on", "TERM", "7", "echo", "ready", "forever"], &[]);
    gsup.expect_line("ready");
    gsup.signal(libc::SIGTERM);
    gsup.expect_line("got SIGTERM");
    assert_eq!(gsup.wait_code(PATIENCE), 7);
}

#[test]
fn stop_signal_goes_through_the_rewrite_map() {
    let mut gsup = gsup_run(
        &[
            "--rewrite",
            "TERM=QUIT",
            "--",
            CHILD,
            "exit-on",
            "QUIT",
            "0",
            "echo",
            "ready",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    gsup.signal(libc::SIGTERM);
    gsup.expect_line("got SIGQUIT");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

/// `shutdown_on = []`: TERM is forwarded like any other signal and gsup exits when the
/// child does (tini's behaviour).
#[test]
fn pure_forwarder_leaves_the_decision_to_the_child() {
    let config = config_file("[signals]\nshutdown_on = []\n");
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(
        &[
            "--config", path, "--", CHILD, "handle", "TERM", "echo", "ready", "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    gsup.signal(libc::SIGTERM);
    gsup.expect_count("got SIGTERM", 1);
    gsup.signal(libc::SIGTERM);
    gsup.expect_count("got SIGTERM", 2);
    assert!(alive(gsup.pid()), "no shutdown was started");
    assert!(
        !gsup.stderr().contains("graceful shutdown started"),
        "{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGKILL);
}

/// The shutdown's first line comes first, once, whether gsup sends a stop signal (the
/// line then follows the forward, issue 14) or the child had exited on its own (the
/// shutdown then ends in the same step: the line was written after "shutdown complete").
#[test]
fn graceful_shutdown_started_is_logged_once_and_before_the_shutdown_completes() {
    let position = |log: &str, message: &str| {
        let lines: Vec<usize> = log
            .lines()
            .enumerate()
            .filter(|(_, line)| line.contains(&format!("\"message\":\"{message}\"")))
            .map(|(at, _)| at)
            .collect();
        assert_eq!(lines.len(), 1, "`{message}` once:\n{log}");
        lines[0]
    };
    let mut on_its_own = gsup_run(&["--http", "off", "--", CHILD, "exit", "0"], &[]);
    assert_eq!(on_its_own.wait_code(PATIENCE), 0, "{}", on_its_own.stderr());
    let log = on_its_own.stderr();
    assert!(position(&log, "graceful shutdown started") < position(&log, "shutdown complete"));

    let mut stopped = gsup_run(
        &[
            "--http", "off", "--", CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever",
        ],
        &[],
    );
    stopped.expect_line("ready");
    stopped.signal(libc::SIGTERM);
    assert_eq!(stopped.wait_code(PATIENCE), 0, "{}", stopped.stderr());
    let log = stopped.stderr();
    assert!(position(&log, "graceful shutdown started") < position(&log, "shutdown complete"));
}

//! The fixture child on its own, without gsup: if these fail, gsup's own tests cannot be
//! trusted. Every wait is a line read with a deadline, never a bare sleep.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// A running fixture whose stdout lines arrive on a channel, read by a thread.
struct Fixture {
    child: Child,
    lines: Receiver<String>,
}

impl Fixture {
    fn start(args: &[&str]) -> Fixture {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gsup-test-child"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn gsup-test-child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Fixture { child, lines }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next line, failing after `DEADLINE` or at end of output.
    fn next_line(&self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line within {DEADLINE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("stdout closed while waiting for a line"),
        }
    }

    /// Skips lines until one satisfies `wanted`; returns it.
    fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line {what} within {DEADLINE:?}; saw {seen:?}");
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        assert_eq!(
            unsafe { libc::kill(self.pid(), signal) },
            0,
            "kill {signal}"
        );
    }

    /// Waits for the exit with a deadline (polling `try_wait`), killing it on timeout.
    fn wait(mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("fixture did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> ExitStatus {
    Fixture::start(args).wait()
}

#[test]
fn echo_prints_its_text_and_exits_zero() {
    let fixture = Fixture::start(&["echo", "hello world", "echo", "second"]);
    assert_eq!(fixture.next_line(), "hello world");
    assert_eq!(fixture.next_line(), "second");
    assert_eq!(fixture.wait().code(), Some(0));
}

#[test]
fn exit_code_is_passed_through() {
    let status = run(&["exit", "42"]);
    assert_eq!(status.code(), Some(42));
}

#[test]
fn unknown_action_exits_2_and_bad_argument_exits_3() {
    assert_eq!(run(&["frobnicate"]).code(), Some(2));
    assert_eq!(run(&["sleep", "soon"]).code(), Some(3));
    // Parsed before anything runs: the echo must not happen.
    let fixture = Fixture::start(&["echo", "early", "exit", "999"]);
    assert!(
        fixture.lines.recv_timeout(DEADLINE).is_err(),
        "nothing printed"
    );
    assert_eq!(fixture.wait().code(), Some(3));
}

#[test]
fn die_term_is_killed_by_signal_15() {
    let status = run(&["handle", "TERM", "die", "TERM"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn handled_usr1_is_reported_and_the_child_lives_on() {
    let fixture = Fixture::start(&["handle", "USR1", "echo", "ready", "forever"]);
    fixture.wait_for("ready", |l| l == "ready");
    fixture.signal(libc::SIGUSR1);
    fixture.wait_for("got SIGUSR1", |l| l == "got SIGUSR1");
    // Still alive and still handling: a second delivery is reported too.
    fixture.signal(libc::SIGUSR1);
    fixture.wait_for("got SIGUSR1 again", |l| l == "got SIGUSR1");
    fixture.signal(libc::SIGKILL);
    assert_eq!(fixture.wait().signal(), Some(libc::SIGKILL));
}

#[test]
fn negative_control_unhandled_usr1_kills() {
    // Proves the line above comes from `handle`, not from some default.
    let fixture = Fixture::start(&["echo", "ready", "forever"]);
    fixture.wait_for("ready", |l| l == "ready");
    fixture.signal(libc::SIGUSR1);
    assert_eq!(fixture.wait().signal(), Some(libc::SIGUSR1));
}

#[test]
fn exit_on_prints_then_exits_with_the_code() {
    let fixture = Fixture::start(&["exit-on", "TERM", "7", "echo", "ready", "forever"]);
    fixture.wait_for("ready", |l| l == "ready");
    fixture.signal(libc::SIGTERM);
    fixture.wait_for("got SIGTERM", |l| l == "got SIGTERM");
    assert_eq!(fixture.wait().code(), Some(7));
}

#[test]
fn dispositions_show_ignore_and_not_std_sigpipe() {
    // std's Command resets SIGPIPE to default for us, so only HUP may show as ignored:
    // SIGPIPE here would mean the fixture reports std's own SIG_IGN (a lie to gsup's tests).
    let fixture = Fixture::start(&["dispositions", "ignore", "HUP", "dispositions"]);
    assert_eq!(fixture.next_line(), "ignored -");
    assert_eq!(fixture.next_line(), "blocked -");
    assert_eq!(fixture.next_line(), "caught -");
    assert_eq!(fixture.next_line(), "ignored SIGHUP");
    assert_eq!(fixture.next_line(), "blocked -");
    assert_eq!(fixture.next_line(), "caught -");
    assert_eq!(fixture.wait().code(), Some(0));
}

#[test]
fn handle_shows_as_caught() {
    let fixture = Fixture::start(&["handle", "USR2,RTMIN+1", "dispositions"]);
    let caught = fixture.wait_for("caught", |l| l.starts_with("caught "));
    let names: Vec<&str> = caught["caught ".len()..].split(',').collect();
    assert!(
        names.contains(&"SIGUSR2") && names.contains(&"SIGRTMIN+1"),
        "{caught}"
    );
}

fn field(line: &str, key: &str) -> i32 {
    let words: Vec<&str> = line.split(' ').collect();
    let at = words
        .iter()
        .position(|w| *w == key)
        .unwrap_or_else(|| panic!("{key} in {line}"));
    words[at + 1]
        .parse()
        .unwrap_or_else(|_| panic!("number after {key} in {line}"))
}

#[test]
fn grandchild_is_a_direct_child_running_its_own_actions() {
    let fixture = Fixture::start(&[
        "grandchild",
        "pid",
        "echo",
        "grandchild-done",
        ";",
        "echo",
        "parent-continues",
        "forever",
    ]);
    let banner = fixture.wait_for("grandchild <pid>", |l| l.starts_with("grandchild "));
    let grandchild: i32 = banner["grandchild ".len()..]
        .parse()
        .expect("pid in banner");
    let pid_line = fixture.wait_for("the grandchild's pid line", |l| l.starts_with("pid "));
    assert_eq!(field(&pid_line, "pid"), grandchild);
    assert_eq!(field(&pid_line, "ppid"), fixture.pid(), "not re-parented");
    assert_ne!(grandchild, fixture.pid());
    fixture.wait_for("grandchild-done", |l| l == "grandchild-done");
}

#[test]
fn zombies_stay_unreaped_children() {
    let fixture = Fixture::start(&["zombies", "3", "echo", "ready", "forever"]);
    fixture.wait_for("ready", |l| l == "ready");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", fixture.pid()))
        .expect("children");
    let pids: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(pids.len(), 3, "{children}");
    for pid in pids {
        // Each exits at once, but "at once" is not "before we look": poll for state Z.
        let until = Instant::now() + DEADLINE;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            if state == Some('Z') {
                break;
            }
            assert!(Instant::now() < until, "{pid} is not a zombie: {stat}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

//! Test harness: starts the real `gsup` binary with the fixture child, reads its output
//! line by line, and waits for conditions with deadlines — never a bare sleep.
//!
//! The test process owns the gsup processes it starts (no gsup reaper runs here), so it
//! may wait on them; the clippy ban on `Child::wait` is lifted for this module only.
#![allow(clippy::disallowed_methods, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const GSUP: &str = env!("CARGO_BIN_EXE_gsup");
/// The fixture child, built only with `--features test-fixture` (README "Running the
/// tests"); every test file that uses this module requires that feature (Cargo.toml), so
/// a stale fixture left by an earlier build is never used without it.
pub const CHILD: &str = env!("CARGO_BIN_EXE_gsup-test-child");

/// The shutdown phases in their order (DESIGN §4), as `/status` and the report name them.
pub const PHASES: [&str; 11] = [
    "stop_accepting",
    "drain",
    "pre_stop",
    "close_server",
    "wait_exit",
    "force",
    "database",
    "redis",
    "external",
    "cleanup",
    "exit",
];

/// Generous: the machines are shared and noisy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running gsup (or any command) with its stdout as a stream of lines.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    /// How many of `seen` `next_line` has handed out.
    cursor: usize,
    stderr: Arc<Mutex<String>>,
    /// Set when stderr reached EOF: everything the process wrote there is in `stderr`.
    stderr_done: Arc<AtomicBool>,
    pub stdin: Option<ChildStdin>,
}

/// `gsup run [args...]`, with `env` added, no config file in sight, stdout piped. The
/// HTTP port is off unless the test asks for one with `--http` (which also wins over a
/// config file's): tests run in parallel and would all want the default 127.0.0.1:9090.
pub fn gsup_run(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(GSUP);
    command.arg("run");
    if !args.contains(&"--http") {
        command.args(["--http", "off"]);
    }
    command.args(args);
    start(command, env)
}

/// Any command, with `env` added, in the system temp dir (no `supervisor.toml` there).
pub fn start(command: Command, env: &[(&str, &str)]) -> Running {
    start_in(command, env, &std::env::temp_dir())
}

/// Any command, with `env` added, in `dir`.
pub fn start_in(mut command: Command, env: &[(&str, &str)], dir: &std::path::Path) -> Running {
    command
        .current_dir(dir)
        .env_remove("GSUP_CONFIG")
        .env("GSUP_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the command under test");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, lines) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let collected = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&collected);
    let stderr_done = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&stderr_done);
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            if let Ok(mut text) = sink.lock() {
                text.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let stdin = child.stdin.take();
    Running {
        child,
        lines,
        seen: Vec::new(),
        cursor: 0,
        stderr: collected,
        stderr_done,
        stdin,
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stdout line containing `needle`; returns it. Panics with everything
    /// seen so far (stdout and stderr) when the deadline passes.
    pub fn expect_line(&mut self, needle: &str) -> String {
        self.expect_line_within(needle, PATIENCE)
    }

    pub fn expect_line_within(&mut self, needle: &str, patience: Duration) -> String {
        self.expect_where(&format!("a line containing {needle:?}"), patience, |line| {
            line.contains(needle)
        })
    }

    /// The next stdout line in order (for output whose order is the point).
    pub fn next_line(&mut self) -> String {
        if self.cursor == self.seen.len() {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no next line within {PATIENCE:?}; saw {:?}\nstderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
        self.cursor += 1;
        self.seen[self.cursor - 1].clone()
    }

    /// Waits until `n` lines equal to `line` have been seen.
    pub fn expect_count(&mut self, line: &str, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(line) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(next) => self.seen.push(next),
                Err(_) => panic!(
                    "{} of {n} lines {line:?} within {PATIENCE:?}\nstdout: {:#?}\nstderr:\n{}",
                    self.count(line),
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    pub fn count(&self, line: &str) -> usize {
        self.seen.iter().filter(|l| l.as_str() == line).count()
    }

    /// Waits for a stdout line for which `matches` holds (already seen ones count).
    pub fn expect_where(&mut self, what: &str, patience: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + patience;
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "no {what} within {patience:?}\nstdout: {:#?}\nstderr:\n{}",
                        self.seen,
                        self.stderr()
                    );
                }
            }
        }
    }

    /// All stdout lines until the stream closes (gsup and every child gone) or `patience`.
    pub fn drain_lines(&mut self, patience: Duration) -> Vec<String> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return self.seen.clone(),
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the process to exit; panics after `patience`.
    pub fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipe closes when the last writer is gone; nothing should outlive
                // the process, so a short wait collects all of stderr.
                wait_until(Duration::from_secs(5), || self.stderr_done.load(Ordering::SeqCst));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "process {} still running after {patience:?}\nstderr:\n{}",
                    self.pid(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit code, with 128+N for death by signal N (as a shell reports it).
    pub fn wait_code(&mut self, patience: Duration) -> i32 {
        shell_code(self.wait_exit(patience))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn shell_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `kill(pid, signal)` with a raw number (real-time signals have no `nix::Signal`).
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// Polls `condition` until it holds or `patience` passes.
pub fn wait_until(patience: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|state| state != "Z" && state != "X")
}

/// Whether `pid` is stopped (job control: state `T`).
pub fn stopped(pid: i32) -> bool {
    proc_state(pid).as_deref() == Some("T")
}

/// The state letter of `/proc/<pid>/stat`, or `None` when there is no such process.
fn proc_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next().map(str::to_string)
}

/// The number after `key` in a line such as `pid 12 pgid 12 ppid 3 sid 1`.
pub fn field(line: &str, key: &str) -> i32 {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == key {
            if let Some(value) = words.next().and_then(|v| v.parse().ok()) {
                return value;
            }
        }
    }
    panic!("no `{key} N` in {line:?}");
}

/// `program args...` as a `Command`, for `start`.
pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Zombie processes whose parent is `parent` (from the host's /proc).
pub fn zombie_children(parent: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some(i) = stat.rfind(')') else {
                return false;
            };
            let mut rest = stat[i + 1..].split_whitespace();
            rest.next() == Some("Z") && rest.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent)
        })
        .count()
}

/// A raw HTTP/1.1 exchange over loopback (`Connection: close`): (status, head, body).
/// Raw on purpose: the malformed-request tests need the same socket-level control.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_http(addr, request.as_bytes())
}

/// Sends `bytes` and reads the answer until the server closes; (0, "", "") when the
/// server closed without answering.
pub fn raw_http(addr: &str, bytes: &[u8]) -> (u16, String, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to gsup's HTTP port");
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, text, String::new());
    };
    // gsup's answers are whole bodies with Content-Length, never chunked.
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

impl Running {
    /// The address gsup logged as `http listening` (start it with `--http 127.0.0.1:0`).
    pub fn http_addr(&self) -> String {
        let mut found = None;
        let seen = wait_until(PATIENCE, || {
            found = self
                .stderr()
                .lines()
                .find(|l| l.contains("http listening"))
                .and_then(|line| {
                    let start = line.find("\"addr\":\"")? + 8;
                    let end = line[start..].find('"')? + start;
                    Some(line[start..end].to_string())
                });
            found.is_some()
        });
        assert!(seen, "gsup never logged `http listening`\n{}", self.stderr());
        found.unwrap_or_default()
    }
}

/// Whether any process's command line contains `needle` (arguments joined by spaces).
pub fn any_process_running(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|raw| {
            let line: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
            String::from_utf8_lossy(&line).contains(needle)
        })
    })
}

/// A temporary `.toml` config file holding `text` (removed when dropped).
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix("supervisor")
        .suffix(".toml")
        .tempfile()
        .expect("temp config");
    std::fs::write(file.path(), text).expect("write config");
    file
}

/// A loopback address (`127.0.0.1:PORT`) this test holds for as long as the returned
/// socket lives, for the code under test to listen on: bound with `SO_REUSEADDR` and never
/// listening. Linux lets another `SO_REUSEADDR` socket bind and listen on a port whose
/// other sockets do not listen, and gsup's `[[listen]]` sockets, std's `TcpListener` (the
/// fixture, drain_server) and systemd-socket-activate all set it; until one listens,
/// connecting is refused. Meanwhile no `bind(…:0)` and no outgoing connection of another
/// test is given the port, as it could be one picked and released before use.
pub fn reserved_addr() -> (std::os::fd::OwnedFd, String) {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, setsockopt, socket, sockopt,
    };
    let socket = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    setsockopt(&socket, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .expect("bind 127.0.0.1:0");
    let address: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&socket)).expect("getsockname");
    (socket, format!("127.0.0.1:{}", address.port()))
}

/// gsup with a config file holding `config` and its HTTP port on an ephemeral loopback
/// port, running `child` (after `--`), once it logged its HTTP address. The file lives as
/// long as the returned handle.
pub fn gsup_with_api(config: &str, child: &[&str], env: &[(&str, &str)]) -> (Running, String, tempfile::NamedTempFile) {
    let file = config_file(config);
    let path = file.path().to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--config", path.as_str(), "--http", "127.0.0.1:0", "--"];
    args.extend_from_slice(child);
    let gsup = gsup_run(&args, env);
    let addr = gsup.http_addr();
    (gsup, addr, file)
}

/// A loopback port that refuses connections for as long as the returned socket lives:
/// bound but never listening, so no other test (or the kernel's ephemeral allocator) can
/// hand it to a listener meanwhile.
pub fn refused_port() -> (std::os::fd::OwnedFd, u16) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
    let socket = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .expect("bind 127.0.0.1:0");
    let address: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&socket)).expect("getsockname");
    (socket, address.port())
}

/// `target/debug/examples/drain_server`, built by `cargo test` with the other targets.
pub fn drain_server() -> String {
    let dir = std::path::Path::new(CHILD).parent().expect("target dir");
    dir.join("examples")
        .join("drain_server")
        .to_str()
        .expect("utf-8")
        .to_string()
}

/// Runs a gsup subcommand to its end: (exit code, stdout, stderr).
pub fn gsup_cmd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut running = start(cmd(GSUP, args), env);
    let code = running.wait_code(PATIENCE);
    (
        code,
        running.drain_lines(Duration::from_millis(300)).join("\n"),
        running.stderr(),
    )
}

/// One request on a fresh connection: the pid that answered, or what went wrong.
pub fn request(app: &str, path: &str) -> Result<i64, String> {
    let mut stream = TcpStream::connect(app).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {answer:?}"));
    }
    answer
        .rsplit("ok ")
        .next()
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| format!("no pid in {answer:?}"))
}

/// Clients on `threads` threads, each sending requests one after another until `stop`
/// (bounded: at most `MAX_REQUESTS` each and `PATIENCE * 3` in all).
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<thread::JoinHandle<ClientReport>>,
    sent: Arc<AtomicU64>,
}

pub const MAX_REQUESTS: u64 = 20_000;

/// One client's requests sent, its failures, and the pids that answered it.
pub type ClientReport = (u64, Vec<String>, Vec<i64>);

impl Load {
    /// Starts the clients, each requesting `path` on fresh connections.
    pub fn start(app: &str, path: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let handles = (0..threads)
            .map(|_| {
                let (app, path, stop, sent) = (app.to_string(), path.to_string(), Arc::clone(&stop), Arc::clone(&sent));
                thread::spawn(move || {
                    let end = Instant::now() + PATIENCE * 3;
                    let (mut count, mut failures, mut pids) = (0, Vec::new(), Vec::new());
                    while !stop.load(Ordering::SeqCst) && count < MAX_REQUESTS && Instant::now() < end {
                        match request(&app, &path) {
                            Ok(pid) if !pids.contains(&pid) => pids.push(pid),
                            Ok(_) => {}
                            Err(error) => failures.push(error),
                        }
                        count += 1;
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    (count, failures, pids)
                })
            })
            .collect();
        Load { stop, handles, sent }
    }

    /// Until at least `n` more requests went out (the load really runs meanwhile).
    pub fn wait_for(&self, n: u64) {
        let target = self.sent.load(Ordering::SeqCst) + n;
        assert!(
            wait_until(PATIENCE, || self.sent.load(Ordering::SeqCst) >= target),
            "the load stalled"
        );
    }

    /// From now on no client starts a new request (those under way finish).
    pub fn stop_starting(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the clients and asserts that no request failed (naming the first failure);
    /// returns (requests, pids that answered).
    pub fn finish_without_failures(self) -> (u64, Vec<i64>) {
        let (total, failures, pids) = self.finish();
        assert!(
            failures.is_empty(),
            "{} of {total} requests failed, the first: {:?}",
            failures.len(),
            failures.first()
        );
        (total, pids)
    }

    /// (requests, failures, pids that answered).
    pub fn finish(self) -> ClientReport {
        self.stop.store(true, Ordering::SeqCst);
        let (mut total, mut failures, mut pids) = (0, Vec::new(), Vec::new());
        for handle in self.handles {
            let (count, failed, seen) = handle.join().expect("client thread");
            total += count;
            failures.extend(failed);
            for pid in seen {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        (total, failures, pids)
    }
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    start(cmd("sh", &["-c", &format!("command -v {tool}")]), &[]).wait_code(PATIENCE) == 0
}

/// The variable under which a missing prerequisite fails the test (.ci/run sets it).
pub const REQUIRE_ALL: &str = "GSUP_REQUIRE_ALL";

/// Whether a test can run here: `holds` says whether its prerequisite (`what`, with how
/// to get it) is present. Without it the test cannot check anything: under
/// `GSUP_REQUIRE_ALL=1` that is a failure; by hand it prints SKIPPED and the test returns.
/// Use as `if !prerequisite(have("x"), "x (package x)") { return; }`.
#[must_use]
pub fn prerequisite(holds: bool, what: &str) -> bool {
    if holds {
        return true;
    }
    assert!(
        std::env::var_os(REQUIRE_ALL).is_none_or(|value| value.is_empty() || value == "0"),
        "{REQUIRE_ALL} is set and this test cannot run: {what} is missing"
    );
    eprintln!("SKIPPED: {what} is missing (set {REQUIRE_ALL}=1 to make this a failure)");
    false
}

/// `prerequisite` for a tool on the PATH; `package` is where it comes from.
#[must_use]
pub fn tool(name: &str, package: &str) -> bool {
    prerequisite(have(name), &format!("`{name}` (Debian package {package})"))
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`, in a directory of its own.
pub struct FakeSystemd {
    socket: std::os::unix::net::UnixDatagram,
    pub path: String,
    _dir: tempfile::TempDir,
}

impl FakeSystemd {
    pub fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("systemd.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let path = path.to_str().expect("utf-8").to_string();
        FakeSystemd {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next datagram gsup sent, within `PATIENCE`.
    pub fn next(&self) -> String {
        let mut buffer = [0u8; 4096];
        let n = self.socket.recv(&mut buffer).expect("a datagram from gsup");
        String::from_utf8_lossy(&buffer[..n]).to_string()
    }

    /// Datagrams into `seen` until one contains `needle`.
    pub fn until(&self, seen: &mut Vec<String>, needle: &str) {
        while !seen.iter().any(|m| m.contains(needle)) {
            seen.push(self.next());
        }
    }
}

//! DESIGN §4 graceful shutdown phases: order, drain, hooks, the budget, the report line.

mod common;

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Setup {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("utf-8").to_string()
    }

    /// Writes `supervisor.toml` with `text` and a `[shutdown] log` in the same dir.
    fn config(&self, text: &str) -> String {
        let path = self.path("supervisor.toml");
        let log = self.path("shutdown.log");
        let text = if text.contains("[shutdown]") {
            text.replacen("[shutdown]", &format!("[shutdown]\nlog = \"{log}\""), 1)
        } else {
            format!("[shutdown]\nlog = \"{log}\"\n{text}")
        };
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// A hook command that appends `NAME <realtime ns>` to `events`, then runs `then`.
    fn mark(&self, name: &str, then: &str) -> String {
        let events = self.path("events");
        format!("[\"sh\", \"-c\", \"echo {name} $(date +%s%N) >> {events}; {then}\"]")
    }

    fn events(&self) -> Vec<(String, u128)> {
        let text = std::fs::read_to_string(self.path("events")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (name, ns) = line.split_once(' ')?;
                Some((name.to_string(), ns.trim().parse().ok()?))
            })
            .collect()
    }

    fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("shutdown.log")).expect("shutdown.log written");
        let line = text.lines().last().expect("one line per shutdown");
        serde_json::from_str(line).expect("the report is JSON")
    }
}

fn phase<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no phase {name}: {report}"))
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn stamp(line: &str) -> u128 {
    line.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stamp in {line}"))
}

/// Every phase in order in the report; the child gets TERM no earlier than drain_delay;
/// readiness is 503 during the drain; the pre_stop hook runs before the TERM and the
/// post-stop hooks after the exit, in order.
#[test]
fn phases_run_in_order_with_drain_and_hooks() {
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[shutdown]\ndrain_delay = \"600ms\"\n\
         [[hooks]]\nphase = \"cleanup\"\nname = \"tidy\"\nexec = {}\n\
         [[hooks]]\nphase = \"pre_stop\"\nname = \"flush\"\nexec = {}\n\
         [[hooks]]\nphase = \"database\"\nname = \"db\"\nexec = {}\n\
         [[hooks]]\nphase = \"redis\"\nname = \"redis\"\nexec = {}\n\
         [[hooks]]\nphase = \"external\"\nname = \"payments\"\nservice = \"payment\"\nexec = {}\n",
        setup.mark("cleanup", "echo tidy-output"),
        setup.mark("pre_stop", ""),
        setup.mark("database", ""),
        setup.mark("redis", ""),
        setup.mark("external", ""),
    ));
    let mut gsup = gsup_run(
        &[
            "--config",
            &config,
            "--http",
            "127.0.0.1:0",
            "--",
            CHILD,
            "stamp-on",
            "TERM",
            "exit-on",
            "TERM",
            "0",
            "echo",
            "ready",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    let signalled = now_ns();
    gsup.signal(libc::SIGTERM);
    let (status, _, body) = http(&addr, "GET", "/ready", &[]);
    assert_eq!(status, 503, "readiness off during the drain: {body}");
    let term_at = stamp(&gsup.expect_line("stamp SIGTERM"));
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
    assert!(
        term_at - signalled >= 590_000_000,
        "TERM came {} ms after the trigger",
        (term_at - signalled) / 1_000_000
    );

    let events = setup.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["pre_stop", "database", "redis", "external", "cleanup"],
        "hook order"
    );
    assert!(events[0].1 < term_at, "pre_stop before the child's TERM");
    assert!(events[1].1 > term_at, "post-stop after the child's exit");
    assert!(events.windows(2).all(|w| w[0].1 <= w[1].1), "in order: {events:?}");

    let report = setup.report();
    let order: Vec<&str> = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(order, PHASES);
    for name in [
        "stop_accepting",
        "drain",
        "pre_stop",
        "close_server",
        "wait_exit",
        "database",
        "redis",
        "external",
        "cleanup",
        "exit",
    ] {
        assert_eq!(phase(&report, name)["outcome"], "ok", "{name}: {report}");
    }
    assert_eq!(phase(&report, "force")["outcome"], "skipped");
    assert!(
        phase(&report, "drain")["duration_seconds"]
            .as_f64()
            .is_some_and(|d| d >= 0.59),
        "{report}"
    );
    assert_eq!(report["reason"], "signal SIGTERM");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["outcome"], "success");
    let starts: Vec<String> = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["started_at"].as_str().map(String::from))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps in order: {starts:?}"
    );
    assert!(
        gsup.stderr().contains("tidy-output") && gsup.stderr().contains("\"hook\":\"tidy\""),
        "hook output in gsup's log under its name"
    );
    assert!(
        gsup.stderr().contains("shutdown report"),
        "the report line goes to the log too"
    );
}

/// A hanging hook is killed at its own timeout, the phase ends `timeout`, the sequence
/// goes on, and the shutdown counts as a failure (while gsup still runs, then in the report).
#[test]
fn a_hanging_hook_is_killed_at_its_timeout_and_counts_as_failure() {
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[hooks]]\nphase = \"database\"\nname = \"stuck\"\ntimeout = \"500ms\"\nexec = {}\n\
         [[hooks]]\nphase = \"cleanup\"\nname = \"after\"\nexec = {}\n",
        setup.mark("database", "sleep 37"),
        setup.mark("cleanup", ""),
    ));
    let mut gsup = gsup_run(
        &[
            "--config", &config, "--", CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let started = Instant::now();
    gsup.signal(libc::SIGTERM);
    assert_eq!(
        gsup.wait_code(PATIENCE),
        0,
        "a failed hook does not change the exit code"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let report = setup.report();
    assert_eq!(phase(&report, "database")["outcome"], "timeout", "{report}");
    assert_eq!(
        phase(&report, "cleanup")["outcome"],
        "ok",
        "the sequence goes on: {report}"
    );
    assert_eq!(report["outcome"], "failure");
    let names: Vec<String> = setup.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["database", "cleanup"]);
    assert!(
        wait_until(PATIENCE, || !any_process_running("sleep 37")),
        "the stuck hook's group was killed"
    );
}

#[test]
fn db_shutdown_timeout_bounds_the_database_phase_and_toggles_skip_hooks() {
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[hooks]]\nphase = \"database\"\nname = \"db\"\nexec = {}\n\
         [[hooks]]\nphase = \"external\"\nname = \"pay\"\nservice = \"payment\"\nexec = {}\n\
         [[hooks]]\nphase = \"external\"\nname = \"ai\"\nservice = \"ai\"\nexec = {}\n",
        setup.mark("database", "sleep 30"),
        setup.mark("payment", ""),
        setup.mark("ai", ""),
    ));
    let mut gsup = gsup_run(
        &[
            "--config", &config, "--", CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever",
        ],
        &[("DB_SHUTDOWN_TIMEOUT_MS", "400"), ("PAYMENT_GATEWAY_CLOSE", "false")],
    );
    gsup.expect_line("ready");
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    let report = setup.report();
    let database = phase(&report, "database");
    assert_eq!(database["outcome"], "timeout", "{report}");
    assert_eq!(database["timeout_seconds"], 0.4);
    let took = database["duration_seconds"].as_f64().expect("duration");
    assert!((0.35..3.0).contains(&took), "bounded by DB_SHUTDOWN_TIMEOUT_MS: {took}");
    let names: Vec<String> = setup.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["database", "ai"],
        "PAYMENT_GATEWAY_CLOSE=false skips the payment hook"
    );
}

/// The worst case: the child ignores TERM and every hook hangs. gsup still exits within
/// timeout + force_timeout of the trigger, with 137.
#[test]
fn the_worst_case_ends_within_the_budget() {
    let setup = Setup::new();
    let hang = setup.mark("hang", "sleep 61");
    let config = setup.config(&format!(
        "[shutdown]\ntimeout = \"1500ms\"\nforce_timeout = \"1s\"\n\
         [phases]\ndatabase = {{ timeout = \"10s\", force_close = false }}\n\
         [[hooks]]\nphase = \"pre_stop\"\nexec = {hang}\n\
         [[hooks]]\nphase = \"database\"\nexec = {hang}\n\
         [[hooks]]\nphase = \"cleanup\"\nexec = {hang}\n"
    ));
    let mut gsup = gsup_run(
        &[
            "--config", &config, "--", CHILD, "ignore", "TERM", "echo", "ready", "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let started = Instant::now();
    gsup.signal(libc::SIGTERM);
    let code = gsup.wait_code(PATIENCE);
    let took = started.elapsed();
    assert_eq!(code, 137, "{}", gsup.stderr());
    assert!(
        took < Duration::from_millis(2500 + 1500),
        "within timeout + force_timeout (+ margin): {took:?}"
    );
    let report = setup.report();
    assert_eq!(report["outcome"], "failure");
    assert_eq!(phase(&report, "pre_stop")["outcome"], "killed", "{report}");
    assert_eq!(phase(&report, "wait_exit")["outcome"], "skipped", "{report}");
    assert_eq!(phase(&report, "force")["outcome"], "ok", "{report}");
    assert_eq!(phase(&report, "database")["outcome"], "killed", "{report}");
    // No hook outlives gsup.
    assert!(
        wait_until(PATIENCE, || !any_process_running("sleep 61")),
        "a hung hook survived"
    );
}

/// http hooks: the expected status is ok, another one is a failure.
#[test]
fn http_hooks_check_the_status() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in server.incoming().flatten().take(2) {
            let mut stream = stream;
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let status = if line.contains("/drain") { "200 OK" } else { "500 Oops" };
            if let Ok(mut log) = log.lock() {
                log.push(line.trim().to_string());
            }
            let mut rest = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = reader.read(&mut rest);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[hooks]]\nphase = \"pre_stop\"\nname = \"drain\"\nhttp = {{ url = \"http://{addr}/drain\", method = \"POST\" }}\n\
         [[hooks]]\nphase = \"cleanup\"\nname = \"broken\"\nhttp = {{ url = \"http://{addr}/broken\", method = \"GET\", expect = 204 }}\n"
    ));
    let mut gsup = gsup_run(
        &[
            "--config", &config, "--", CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    let report = setup.report();
    assert_eq!(phase(&report, "pre_stop")["outcome"], "ok", "{report}");
    assert_eq!(phase(&report, "cleanup")["outcome"], "failed", "{report}");
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(requests, ["POST /drain HTTP/1.1", "GET /broken HTTP/1.1"]);
}

/// `graceful_shutdown_failure_total` moves while the shutdown still runs (a failed hook
/// in pre_stop), before the child has even been signalled.
#[test]
fn the_failure_counter_moves_while_the_shutdown_runs() {
    let setup = Setup::new();
    let config = setup.config(&format!(
        "[[hooks]]\nphase = \"pre_stop\"\nexec = [\"false\"]\n[[hooks]]\nphase = \"cleanup\"\nexec = {}\n",
        setup.mark("cleanup", "sleep 2")
    ));
    let mut gsup = gsup_run(
        &[
            "--config",
            &config,
            "--http",
            "127.0.0.1:0",
            "--",
            CHILD,
            "exit-on",
            "TERM",
            "0",
            "echo",
            "ready",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    gsup.signal(libc::SIGTERM);
    assert!(
        wait_until(PATIENCE, || http(&addr, "GET", "/metrics", &[])
            .2
            .contains("graceful_shutdown_failure_total 1")),
        "failure counted during the shutdown"
    );
    assert!(alive(gsup.pid()), "still in the cleanup phase");
    let metrics = http(&addr, "GET", "/metrics", &[]).2;
    assert!(
        metrics.contains("graceful_shutdown_success_total 0"),
        "exactly one of the two"
    );
    assert!(
        metrics.contains("graceful_shutdown_duration_seconds_count 1"),
        "observed at the child's exit"
    );
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

/// Negative control for `/alive` (200 in every other test): once the child has exited
/// during a shutdown and no restart is pending, `/alive` answers 503 while a post-stop
/// hook still runs, and it was 200 before.
#[test]
fn alive_answers_503_once_the_child_is_gone() {
    let setup = Setup::new();
    let go = setup.path("go");
    let hook = format!("[\"sh\", \"-c\", \"touch {go}.hook; while [ ! -e {go} ]; do sleep 0.05; done\"]");
    let (mut gsup, addr, _file) = gsup_with_api(
        &format!("[[hooks]]\nphase = \"cleanup\"\nname = \"hold\"\nexec = {hook}\ntimeout = \"60s\"\n"),
        &[CHILD, "pid", "exit-on", "TERM", "0", "echo", "up", "forever"],
        &[],
    );
    let child = field(&gsup.expect_line("pid "), "pid");
    gsup.expect_line("up");
    let (status, _, body) = http(&addr, "GET", "/alive", &[]);
    assert_eq!(status, 200, "{body}");
    gsup.signal(libc::SIGTERM);
    gsup.expect_line("got SIGTERM");
    assert!(
        wait_until(PATIENCE, || std::path::Path::new(&format!("{go}.hook")).exists()),
        "the cleanup hook runs\n{}",
        gsup.stderr()
    );
    assert!(!alive(child), "the child is gone while the hook runs");
    let (status, _, body) = http(&addr, "GET", "/alive", &[]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["status"],
        "dead",
        "{body}"
    );
    std::fs::write(&go, "").expect("release the hook");
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

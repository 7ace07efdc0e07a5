//! DESIGN §5: the HTTP API over real loopback against a real gsup and child — every route
//! and status code, auth refusals that leave the child alive, secrets never served,
//! slow and malformed clients, and the limits.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "t0ken-for-tests-0123456789";

/// gsup on an ephemeral port with a child that exits 0 on TERM.
fn api(extra: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let mut args = vec!["--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever"]);
    let mut gsup = gsup_run(&args, env);
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    (gsup, addr)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

const PREFIX: &str = "/api/v1/shutdown";

#[test]
fn every_get_endpoint_answers_json_with_a_timestamp() {
    let (mut gsup, addr) = api(&[], &[]);
    for path in ["/status", "/health", "/ready", "/alive", "/process", "/overview"] {
        let (status, head, body) = http(&addr, "GET", &format!("{PREFIX}{path}"), &[]);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            head.to_ascii_lowercase().contains("content-type: application/json"),
            "{path}: {head}"
        );
        let value = json(&body);
        let stamp = value["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no timestamp: {body}"));
        assert!(
            stamp.ends_with('Z') && stamp.len() == 24,
            "RFC 3339 with milliseconds: {stamp}"
        );
    }
    for alias in ["/ready", "/alive", "/health"] {
        assert_eq!(http(&addr, "GET", alias, &[]).0, 200, "{alias}");
    }
    let (status, _, body) = http(&addr, "GET", &format!("{PREFIX}/status"), &[]);
    assert_eq!(status, 200);
    let status_json = json(&body);
    assert_eq!(status_json["state"], "running");
    assert_eq!(status_json["ready"], true);
    assert_eq!(status_json["child"]["generation"], 1);
    assert!(
        status_json["shutdown"].is_null() && status_json["last_exit"].is_null(),
        "{body}"
    );
    let child = status_json["child"]["pid"].as_i64().expect("child pid");
    assert!(alive(child as i32));
    let overview = json(&http(&addr, "GET", &format!("{PREFIX}/overview"), &[]).2);
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(overview["health"], "healthy");
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

#[test]
fn unknown_routes_and_methods_are_404() {
    let (_gsup, addr) = api(&[], &[]);
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/api/v1/shutdown/nope"),
        ("POST", "/ready"),
        ("PUT", "/api/v1/shutdown/shutdown"),
        ("GET", "/api/v1/shutdown/shutdown"),
        ("GET", "/api/v1/shutdown/prestop"),
    ] {
        let (status, _, body) = http(&addr, method, path, &[]);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(json(&body)["error"], "not found");
    }
}

#[test]
fn a_custom_prefix_moves_the_routes_but_not_the_aliases() {
    let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp");
    std::fs::write(config.path(), "[http]\nprefix = \"/ops\"\n").expect("write");
    let (_gsup, addr) = api(&["--config", config.path().to_str().expect("utf-8")], &[]);
    assert_eq!(http(&addr, "GET", "/ops/status", &[]).0, 200);
    assert_eq!(http(&addr, "GET", "/api/v1/shutdown/status", &[]).0, 404);
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 200);
}

#[test]
fn disabled_readiness_and_liveness_are_404() {
    let (_gsup, addr) = api(
        &[],
        &[("READINESS_CHECK_ENABLED", "false"), ("LIVENESS_CHECK_ENABLED", "0")],
    );
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 404);
    assert_eq!(http(&addr, "GET", &format!("{PREFIX}/ready"), &[]).0, 404);
    assert_eq!(http(&addr, "GET", "/alive", &[]).0, 404);
    assert_eq!(http(&addr, "GET", "/health", &[]).0, 200);
}

#[test]
fn without_a_token_mutations_are_403_and_the_child_lives() {
    let (mut gsup, addr) = api(&[], &[]);
    let child = field(&pid_line(&mut gsup), "pid");
    for (method, path) in [("POST", "/shutdown"), ("DELETE", "/shutdown"), ("POST", "/reload")] {
        let (status, _, body) = http(
            &addr,
            method,
            &format!("{PREFIX}{path}"),
            &[("Authorization", "Bearer guess")],
        );
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains("GSUP_CONTROL_TOKEN"), "says how to enable: {body}");
    }
    assert!(alive(child), "refused requests must not touch the child");
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 200);
}

fn pid_line(gsup: &mut Running) -> String {
    let addr = gsup.http_addr();
    let body = http(&addr, "GET", &format!("{PREFIX}/status"), &[]).2;
    format!("pid {}", json(&body)["child"]["pid"])
}

#[test]
fn a_wrong_or_missing_token_is_401_and_the_right_one_shuts_down() {
    let (mut gsup, addr) = api(&[], &[("GSUP_CONTROL_TOKEN", TOKEN)]);
    let child = field(&pid_line(&mut gsup), "pid");
    let shutdown = format!("{PREFIX}/shutdown");
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", TOKEN)],
    ] {
        let (status, head, body) = http(&addr, "POST", &shutdown, &headers);
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
        assert!(!body.contains(TOKEN));
    }
    assert!(alive(child), "refused requests must not touch the child");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http(&addr, "POST", &shutdown, &[("Authorization", &bearer)]);
    assert_eq!(status, 202, "{body}");
    assert_eq!(json(&body)["status"], "shutdown_started");
    assert_eq!(json(&body)["reason"], "http POST /shutdown");
    gsup.expect_line("got SIGTERM");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

/// A child that ignores TERM: readiness is 503 from the first instant of the shutdown,
/// `/status` shows the phases, a repeat POST is `in_progress` (never a force), and
/// DELETE forces: SIGKILL, exit 137 long before the 60 s deadline.
#[test]
fn readiness_turns_503_at_once_and_delete_forces() {
    let args = [
        "--http",
        "127.0.0.1:0",
        "--timeout",
        "60s",
        "--",
        CHILD,
        "ignore",
        "TERM",
        "echo",
        "ready",
        "forever",
    ];
    let mut gsup = gsup_run(&args, &[("GSUP_CONTROL_TOKEN", TOKEN)]);
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let shutdown = format!("{PREFIX}/shutdown");
    assert_eq!(http(&addr, "POST", &shutdown, &auth).0, 202);
    let (status, _, body) = http(&addr, "GET", "/ready", &[]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["status"], "not_ready");
    let (_, _, status_body) = http(&addr, "GET", &format!("{PREFIX}/status"), &[]);
    let state = json(&status_body);
    assert_eq!(state["state"], "stopping", "{status_body}");
    let phases = state["shutdown"]["phases"].as_array().expect("phases").clone();
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, PHASES);
    assert_eq!(phases[0]["outcome"], "ok");
    assert_eq!(phases[3]["outcome"], "ok");
    assert!(
        phases[4]["outcome"].is_null() && phases[4]["started_at"].is_string(),
        "wait_exit runs: {status_body}"
    );
    assert_eq!(state["shutdown"]["reason"], "http POST /shutdown");
    let (status, _, body) = http(&addr, "POST", &shutdown, &auth);
    assert_eq!((status, json(&body)["status"].clone()), (202, "in_progress".into()));
    assert!(alive(gsup.pid()), "a repeat POST never forces");
    let forced = Instant::now();
    let (status, _, body) = http(&addr, "DELETE", &shutdown, &auth);
    assert_eq!(status, 202, "{body}");
    assert_eq!(gsup.wait_code(PATIENCE), 137);
    assert!(forced.elapsed() < Duration::from_secs(30));
}

/// The token and a secret-looking env value never appear in any answer; `/config` shows
/// each value with its source and `***` for secrets.
#[test]
fn secrets_are_never_served() {
    let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp");
    std::fs::write(
        config.path(),
        "[process]\nenv = { DB_PASSWORD = \"hunter2-secret\", DATABASE_URL = \"postgres://app:pa55word@db/app\", MODE = \"prod\" }\n",
    )
    .expect("write");
    let (_gsup, addr) = api(
        &["--config", config.path().to_str().expect("utf-8")],
        &[("GSUP_CONTROL_TOKEN", TOKEN)],
    );
    let mut everything = String::new();
    for path in [
        "/status",
        "/health",
        "/ready",
        "/alive",
        "/process",
        "/config",
        "/overview",
        "/metrics",
    ] {
        let (_, head, body) = http(&addr, "GET", &format!("{PREFIX}{path}"), &[]);
        everything.push_str(&head);
        everything.push_str(&body);
    }
    for secret in [TOKEN, "hunter2-secret", "pa55word"] {
        assert!(!everything.contains(secret), "{secret} was served");
    }
    let config_body = json(&http(&addr, "GET", &format!("{PREFIX}/config"), &[]).2);
    let env = &config_body["process"]["env"];
    assert_eq!(env["DB_PASSWORD"]["value"], "***", "{config_body}");
    assert_eq!(env["MODE"]["value"], "prod", "{config_body}");
    assert!(
        env["DATABASE_URL"]["value"]
            .as_str()
            .is_some_and(|u| u.contains("app:***@")),
        "{config_body}"
    );
    assert_eq!(config_body["shutdown"]["timeout"]["source"], "default");
}

/// 200 clients that send half a request head and stall: `/alive` still answers at once,
/// and SIGTERM still ends gsup promptly.
#[test]
fn slow_clients_stall_neither_alive_nor_sigterm() {
    let (mut gsup, addr) = api(&[], &[]);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        let _ = stream.write_all(b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1");
        stalled.push(stream);
    }
    let asked = Instant::now();
    let (status, _, _) = http(&addr, "GET", "/alive", &[]);
    let took = asked.elapsed();
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(1),
        "/alive took {took:?} with 200 stalled clients"
    );
    let signalled = Instant::now();
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        signalled.elapsed()
    );
    drop(stalled);
}

/// Past the limits: 431 (never a hang; the exact limits are in tests/hardening.rs).
#[test]
fn malformed_requests_get_4xx_or_a_closed_connection_and_gsup_lives() {
    let (gsup, addr) = api(&[], &[]);
    let garbage = raw_http(&addr, b"\x00\x01\x02 garbage \xff\xfe\r\n\r\n");
    assert!((400..500).contains(&garbage.0), "garbage: {garbage:?}");
    let huge = format!(
        "GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (status, _, _) = raw_http(&addr, huge.as_bytes());
    assert_eq!(status, 431, "64 KiB header");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _, _) = raw_http(
        &addr,
        format!("GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(status, 431, "150 header fields");
    let body = "x".repeat(70 * 1024);
    let request = format!(
        "POST {PREFIX}/shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Answered before the body is read, so the close may reset the answer away: a 0 is
    // a close, not a hang, as long as it came before the read timeout.
    let sent = Instant::now();
    let (status, _, _) = raw_http(&addr, request.as_bytes());
    assert!(
        status == 403 || (status == 0 && sent.elapsed() < PATIENCE / 2),
        "big body without a token configured: {status} after {:?}",
        sent.elapsed()
    );
    // HTTP/1.0 without Host is answered, then closed.
    let (status, _, _) = raw_http(&addr, b"GET /alive HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(alive(gsup.pid()));
    assert_eq!(http(&addr, "GET", "/alive", &[]).0, 200);
}

#[test]
fn an_oversized_body_is_413() {
    let (_gsup, addr) = api(&[], &[("GSUP_CONTROL_TOKEN", TOKEN)]);
    let body = "x".repeat(65 * 1024);
    let request = format!(
        "POST {PREFIX}/shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = raw_http(&addr, request.as_bytes());
    assert_eq!(status, 413, "{body}");
}

#[test]
fn a_port_in_use_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut gsup = gsup_run(&["--http", &addr, "--", CHILD, "echo", "child-ran"], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 2);
    assert!(
        gsup.stderr().contains("[http] listen") && gsup.stderr().contains(&addr),
        "{}",
        gsup.stderr()
    );
    assert!(
        !gsup
            .drain_lines(Duration::from_millis(200))
            .iter()
            .any(|l| l == "child-ran")
    );
}

#[test]
fn metrics_are_prometheus_text_and_json() {
    let (_gsup, addr) = api(&[], &[]);
    let (status, head, text) = http(&addr, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"), "{head}");
    for name in [
        "graceful_shutdown_duration_seconds_bucket{le=\"120\"}",
        "graceful_shutdown_active_connections",
        "graceful_shutdown_success_total 0",
        "graceful_shutdown_failure_total 0",
        "gsup_child_up 1",
        "gsup_ready 1",
        "gsup_build_info{version=",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let metrics = json(&http(&addr, "GET", "/metrics", &[("Accept", "application/json")]).2);
    assert_eq!(metrics["gsup_child_up"], 1);
    assert!(metrics["graceful_shutdown_duration_seconds"]["buckets"]["+Inf"].is_number());

    if !tool("promtool", "prometheus") {
        return;
    }
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), &text).expect("write");
    let check = format!("promtool check metrics < {}", file.path().display());
    let mut promtool = start(cmd("sh", &["-c", &check]), &[]);
    let code = promtool.wait_code(PATIENCE);
    let said = promtool.drain_lines(Duration::from_millis(200)).join("\n") + &promtool.stderr();
    assert_eq!(code, 0, "promtool: {said}");
    assert!(said.trim().is_empty(), "promtool complained: {said}");
}

#[test]
fn counters_follow_what_happened() {
    let (gsup, addr) = api(&[], &[]);
    gsup.signal(libc::SIGWINCH);
    assert!(
        wait_until(PATIENCE, || http(&addr, "GET", "/metrics", &[])
            .2
            .contains("gsup_signals_forwarded_total{signal=\"SIGWINCH\"} 1")),
        "{}",
        http(&addr, "GET", "/metrics", &[]).2
    );
}

/// A tree of several processes shows up in `/process` with plausible figures; a CPU
/// burner shows CPU once two samples exist.
#[test]
fn process_shows_the_tree_with_rss_and_cpu() {
    let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp");
    std::fs::write(config.path(), "[monitor]\ninterval = \"200ms\"\n").expect("write");
    let script = format!("{CHILD} echo a forever & {CHILD} echo b forever & {CHILD} burn 0 echo c forever & wait");
    let mut gsup = gsup_run(
        &[
            "--config",
            config.path().to_str().expect("utf-8"),
            "--http",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &[],
    );
    for line in ["a", "b", "c"] {
        gsup.expect_line(line);
    }
    let addr = gsup.http_addr();
    let mut last = serde_json::Value::Null;
    let burning = wait_until(PATIENCE, || {
        last = json(&http(&addr, "GET", &format!("{PREFIX}/process"), &[]).2);
        let tree = last["tree"].as_array().cloned().unwrap_or_default();
        tree.len() == 4 && tree.iter().any(|p| p["cpu_percent"].as_f64().is_some_and(|c| c > 20.0))
    });
    assert!(burning, "4 processes, one burning a core: {last:#}");
    let tree = last["tree"].as_array().expect("tree");
    let shell = &tree[0];
    assert_eq!(shell["ppid"], gsup.pid());
    assert_eq!(shell["children"].as_array().map(Vec::len), Some(3), "{shell}");
    assert!(
        shell["children"]
            .as_array()
            .expect("children")
            .iter()
            .all(serde_json::Value::is_i64),
        "children are pids"
    );
    for entry in tree {
        assert!(entry["rss_bytes"].as_u64().is_some_and(|rss| rss > 100_000), "{entry}");
        assert!(
            entry["threads"].as_u64().is_some_and(|t| t >= 1) && entry["fds"].as_u64().is_some_and(|f| f >= 3),
            "{entry}"
        );
        assert_eq!(entry["pgid"], shell["pid"], "one group: {entry}");
        assert!(entry["started_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    }
    assert_eq!(last["gsup"]["pid"], gsup.pid());
    let metrics = http(&addr, "GET", "/metrics", &[]).2;
    assert!(metrics.contains("gsup_child_processes 4"), "{metrics}");
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 128 + libc::SIGTERM);
}

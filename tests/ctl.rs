//! DESIGN §2: `gsup probe` exit codes and `gsup ctl` round trips over the control socket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn probe_exits_0_on_2xx_and_1_otherwise() {
    let mut gsup = gsup_run(
        &[
            "--http",
            "127.0.0.1:0",
            "--",
            CHILD,
            "ignore",
            "TERM",
            "echo",
            "ready",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    let ready = format!("http://{addr}/ready");
    let (code, stdout, _) = gsup_cmd(&["probe", "ready", "--url", &ready], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("ready: 200"), "{stdout}");
    assert_eq!(
        gsup_cmd(&["probe", "alive", "--url", &format!("http://{addr}/alive")], &[]).0,
        0
    );
    assert_eq!(
        gsup_cmd(&["probe", "health", "--url", &format!("http://{addr}/health")], &[]).0,
        0
    );
    // A shutdown turns readiness 503: probe says so and exits 1.
    gsup.signal(libc::SIGTERM);
    assert!(wait_until(PATIENCE, || http(&addr, "GET", "/ready", &[]).0 == 503));
    let (code, stdout, _) = gsup_cmd(&["probe", "ready", "--url", &ready], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("503"), "one-line reason: {stdout}");
    gsup.signal(libc::SIGKILL);
}

#[test]
fn probe_on_a_closed_port_or_a_bad_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let started = Instant::now();
    let (code, stdout, _) = gsup_cmd(
        &[
            "probe",
            "ready",
            "--url",
            &format!("http://{addr}/ready"),
            "--timeout",
            "1s",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("not ready"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(gsup_cmd(&["probe", "ready", "--url", "ftp://x/"], &[]).0, 2);
    assert_eq!(
        gsup_cmd(&["probe", "ready", "--timeout", "2"], &[]).0,
        2,
        "a bare number is a usage error"
    );
    assert_eq!(gsup_cmd(&["probe", "sideways"], &[]).0, 2);
}

/// Without `--url`, probe reads the same config as `run` to find the address.
#[test]
fn probe_finds_the_address_in_the_config() {
    let (_reserved, addr) = reserved_addr();
    let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp");
    std::fs::write(config.path(), format!("[http]\nlisten = \"{addr}\"\n")).expect("write");
    let path = config.path().to_str().expect("utf-8");
    let mut gsup = start(
        cmd(
            GSUP,
            &["run", "--config", path, "--", CHILD, "echo", "ready", "forever"],
        ),
        &[],
    );
    gsup.expect_line("ready");
    gsup.http_addr();
    let (code, stdout, stderr) = gsup_cmd(&["probe", "ready", "--config", path], &[]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(stdout.contains(&format!("{addr}/ready")), "{stdout}");
    let (code, _, _) = gsup_cmd(&["probe", "alive"], &[("GSUP_CONFIG", path)]);
    assert_eq!(code, 0, "GSUP_CONFIG finds it too");
}

fn with_control_socket(dir: &tempfile::TempDir, extra: &[&str]) -> (Running, String) {
    with_control_socket_running(dir, extra, &["exit-on", "TERM", "0"])
}

/// The same with the fixture running `actions` before it says `ready`.
fn with_control_socket_running(dir: &tempfile::TempDir, extra: &[&str], actions: &[&str]) -> (Running, String) {
    let socket = dir.path().join("gsup.sock").to_str().expect("utf-8").to_string();
    let mut args = vec!["--control-socket", socket.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", CHILD]);
    args.extend_from_slice(actions);
    args.extend_from_slice(&["echo", "ready", "forever"]);
    let mut gsup = gsup_run(&args, &[]);
    gsup.expect_line("ready");
    assert!(
        wait_until(PATIENCE, || std::path::Path::new(&socket).exists()),
        "{}",
        gsup.stderr()
    );
    (gsup, socket)
}

#[test]
fn ctl_status_and_shutdown_round_trip_without_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gsup, socket) = with_control_socket(&dir, &[]);
    let mode = std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket's mode guards it");
    let (code, stdout, stderr) = gsup_cmd(&["ctl", "--socket", &socket, "status"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["state"], "running");
    let (code, stdout, _) = gsup_cmd(&["ctl", "status"], &[("GSUP_CONTROL_SOCKET", socket.as_str())]);
    assert_eq!(code, 0, "GSUP_CONTROL_SOCKET names the socket: {stdout}");
    let (code, stdout, stderr) = gsup_cmd(&["ctl", "--socket", &socket, "shutdown"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("shutdown_started") && stdout.contains("ctl shutdown"),
        "{stdout}"
    );
    gsup.expect_line("got SIGTERM");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
    assert!(!std::path::Path::new(&socket).exists(), "the socket is removed at exit");
}

#[test]
fn ctl_kill_forces_and_reload_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gsup, socket) = with_control_socket_running(&dir, &[], &["ignore", "TERM"]);
    let (code, _, stderr) = gsup_cmd(&["ctl", "--socket", &socket, "reload"], &[]);
    assert_eq!(code, 1, "no sockets to hand over: refused");
    assert!(stderr.contains("409"), "{stderr}");
    assert_eq!(gsup_cmd(&["ctl", "--socket", &socket, "kill"], &[]).0, 0);
    assert_eq!(gsup.wait_code(PATIENCE), 137);
}

/// `ctl prestop` turns readiness off at once and returns after `drain_delay`; the
/// SIGTERM that follows does not wait the drain again.
#[test]
fn ctl_prestop_waits_drain_delay_and_readiness_stays_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gsup, socket) = with_control_socket(&dir, &["--http", "127.0.0.1:0", "--drain-delay", "1s"]);
    let addr = gsup.http_addr();
    // The HTTP port may answer before the spawner thread has reported the child.
    assert!(wait_until(PATIENCE, || http(&addr, "GET", "/ready", &[]).0 == 200));
    let asked = Instant::now();
    let (code, stdout, stderr) = gsup_cmd(&["ctl", "--socket", &socket, "prestop"], &[]);
    let waited = asked.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("prestop_done"), "{stdout}");
    assert!(
        waited >= Duration::from_millis(900),
        "returned after drain_delay, not before: {waited:?}"
    );
    assert_eq!(
        http(&addr, "GET", "/ready", &[]).0,
        503,
        "readiness stays off until gsup exits"
    );
    let signalled = Instant::now();
    gsup.signal(libc::SIGTERM);
    gsup.expect_line("got SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_millis(900),
        "the drain already happened: {:?}",
        signalled.elapsed()
    );
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

#[test]
fn ctl_with_no_gsup_listening_says_so_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("nobody.sock");
    let started = Instant::now();
    let (code, _, stderr) = gsup_cmd(&["ctl", "--socket", socket.to_str().expect("utf-8"), "status"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no gsup answers"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        gsup_cmd(&["ctl", "status"], &[]).0,
        2,
        "no socket named anywhere: usage"
    );
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gsup.sock");
    // A socket file nobody listens on, as a crashed gsup leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let (gsup, socket) = with_control_socket(&dir, &[]);
    assert_eq!(
        gsup_cmd(&["ctl", "--socket", &socket, "status"], &[]).0,
        0,
        "the stale file was replaced"
    );
    let mut second = gsup_run(&["--control-socket", &socket, "--", CHILD, "echo", "second-ran"], &[]);
    assert_eq!(second.wait_code(PATIENCE), 2);
    assert!(
        second.stderr().contains("another gsup is listening"),
        "{}",
        second.stderr()
    );
    assert!(alive(gsup.pid()));
}

#[test]
fn http_prestop_is_opt_in_and_needs_the_token() {
    let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp");
    std::fs::write(config.path(), "[http]\nprestop = true\n").expect("write");
    let path = config.path().to_str().expect("utf-8");
    let token = "prestop-token-0123456789";
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--http",
            "127.0.0.1:0",
            "--",
            CHILD,
            "echo",
            "ready",
            "forever",
        ],
        &[("GSUP_CONTROL_TOKEN", token)],
    );
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    assert_eq!(http(&addr, "GET", "/api/v1/shutdown/prestop", &[]).0, 401);
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 200);
    let bearer = format!("Bearer {token}");
    let (status, _, body) = http(&addr, "GET", "/api/v1/shutdown/prestop", &[("Authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&addr, "GET", "/ready", &[]).0, 503);
}

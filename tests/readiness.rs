//! DESIGN §5 readiness sources and §9 sd_notify: probes (http, tcp, exec, notify),
//! startup_timeout, dependency checks, the child's watchdog, gsup's own notifications.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn ready(addr: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http(addr, "GET", "/ready", &[]);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// A child that starts listening only after a while: /ready is 503 until the HTTP probe
/// passes, then 200.
#[test]
fn ready_waits_for_the_http_probe() {
    let (_reserved, app) = reserved_addr();
    let script = format!("sleep 1; exec {CHILD} listen {app} forever");
    let url = format!("http://{app}/");
    let mut gsup = gsup_run(
        &["--http", "127.0.0.1:0", "--ready-http", &url, "--", "sh", "-c", &script],
        &[],
    );
    let addr = gsup.http_addr();
    let (status, body) = ready(&addr);
    assert_eq!(status, 503, "{body}");
    // It names the probe: waiting for it, or its latest answer.
    assert!(
        body["reason"].as_str().is_some_and(
            |r| r == format!("waiting for http probe {url}") || r.starts_with(&format!("http probe {url}: "))
        ),
        "{body}"
    );
    gsup.expect_line("listening");
    assert!(
        wait_until(PATIENCE, || ready(&addr).0 == 200),
        "ready once the port answers"
    );
    assert!(
        gsup.stderr().contains("readiness probe changed"),
        "the change is logged"
    );
}

#[test]
fn tcp_and_exec_probes() {
    let (_reserved, app) = reserved_addr();
    let script = format!("sleep 0.5; exec {CHILD} listen {app} forever");
    let tcp = gsup_run(
        &["--http", "127.0.0.1:0", "--ready-tcp", &app, "--", "sh", "-c", &script],
        &[],
    );
    let addr = tcp.http_addr();
    assert_eq!(ready(&addr).0, 503);
    assert!(
        wait_until(PATIENCE, || ready(&addr).0 == 200),
        "tcp probe passes once the port listens"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("marker").to_str().expect("utf-8").to_string();
    let (exec, addr, _file) = gsup_with_api(
        &format!("[readiness]\nprobe = {{ exec = [\"test\", \"-f\", \"{marker}\"] }}\ninterval = \"100ms\"\n"),
        &[CHILD, "sleep", "700", "ready-file", &marker, "forever"],
        &[],
    );
    assert_eq!(ready(&addr).0, 503, "the exec probe fails until the file exists");
    assert!(wait_until(PATIENCE, || ready(&addr).0 == 200), "{}", exec.stderr());
}

/// `probe = { notify = true }`: the real `systemd-notify --ready` makes the child ready.
#[test]
fn systemd_notify_ready_makes_the_child_ready() {
    if !tool("systemd-notify", "systemd") {
        return;
    }
    let (mut gsup, addr, _file) = gsup_with_api(
        "[readiness]\nprobe = { notify = true }\n",
        &[
            "sh",
            "-c",
            "sleep 0.5; systemd-notify --ready --status=up; echo notified; exec sleep 600",
        ],
        &[],
    );
    assert_eq!(ready(&addr).0, 503, "not ready before READY=1");
    gsup.expect_line("notified");
    assert!(wait_until(PATIENCE, || ready(&addr).0 == 200), "{}", gsup.stderr());
    assert!(gsup.stderr().contains("child sent READY=1"), "{}", gsup.stderr());
}

/// The child's own code sending READY=1 (a python one-liner, as an app would).
#[test]
fn own_code_ready_makes_the_child_ready() {
    let file = config_file("[readiness]\nprobe = { notify = true }\n");
    let path = file.path().to_str().expect("utf-8");
    let script = "import os, socket, time\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                  s.sendto(b'READY=1\\nSTATUS=serving', os.environ['NOTIFY_SOCKET'])\n\
                  print('sent', flush=True)\n\
                  time.sleep(600)\n";
    let mut gsup = gsup_run(
        &["--config", path, "--http", "127.0.0.1:0", "--", "python3", "-c", script],
        &[],
    );
    let addr = gsup.http_addr();
    gsup.expect_line("sent");
    assert!(wait_until(PATIENCE, || ready(&addr).0 == 200), "{}", gsup.stderr());
}

/// gsup under systemd: a test-owned datagram socket as gsup's NOTIFY_SOCKET receives
/// READY=1 once the child is ready and STOPPING=1 at shutdown; the child never sees it.
#[test]
fn gsup_tells_its_own_notify_socket_ready_and_stopping() {
    let systemd = FakeSystemd::new();
    let mut gsup = gsup_run(
        &[
            "--",
            "sh",
            "-c",
            "echo child-notify=${NOTIFY_SOCKET:-unset}; exec sleep 600",
        ],
        &[("NOTIFY_SOCKET", &systemd.path)],
    );
    assert_eq!(
        gsup.expect_line("child-notify="),
        "child-notify=unset",
        "systemd's socket is gsup's, not the child's"
    );
    let mut seen = Vec::new();
    systemd.until(&mut seen, "READY=1");
    gsup.signal(libc::SIGTERM);
    systemd.until(&mut seen, "STOPPING=1");
    assert!(seen.iter().any(|m| m.starts_with("STATUS=")), "{seen:?}");
    gsup.wait_code(PATIENCE);
}

/// With `WATCHDOG_USEC` gsup pings systemd every half period from its loop, also while the
/// loop wakes more often than that (the monitor ticks every second): a 3 s watchdog gets
/// a `WATCHDOG=1` every 1.5 s, not never.
#[test]
fn gsup_pings_the_systemd_watchdog_while_the_monitor_ticks_faster() {
    let systemd = FakeSystemd::new();
    let mut gsup = gsup_run(
        &["--", CHILD, "echo", "up", "forever"],
        &[("NOTIFY_SOCKET", &systemd.path), ("WATCHDOG_USEC", "3000000")],
    );
    gsup.expect_line("up");
    let mut pings = Vec::new();
    let started = Instant::now();
    while pings.len() < 3 {
        if systemd.next() == "WATCHDOG=1" {
            pings.push(started.elapsed());
        }
    }
    // Three pings 1.5 s apart: the last one well before 3 × 3 s; generous for a busy machine.
    assert!(pings[2] < Duration::from_secs(8), "{pings:?}");
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
}

/// `[notify] watchdog`: a child that sent READY=1 and then stays silent gets
/// `watchdog_signal` (ABRT); with `on-failure` it is restarted with a new pid.
#[test]
fn a_silent_watchdog_restarts_the_child() {
    if !tool("systemd-notify", "systemd") {
        return;
    }
    let file =
        config_file("[notify]\nwatchdog = \"500ms\"\n[restart]\npolicy = \"on-failure\"\nbackoff_initial = \"50ms\"\n");
    let path = file.path().to_str().expect("utf-8");
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--",
            "sh",
            "-c",
            "echo pid $$ usec $WATCHDOG_USEC; systemd-notify --ready; exec sleep 600",
        ],
        &[],
    );
    let first = gsup.expect_line("pid ");
    assert!(first.ends_with("usec 500000"), "the child gets WATCHDOG_USEC: {first}");
    let first = field(&first, "pid");
    let second = gsup.expect_where("a restarted child", PATIENCE, |l| {
        l.starts_with("pid ") && field(l, "pid") != first
    });
    assert_ne!(field(&second, "pid"), first);
    assert!(gsup.stderr().contains("child missed its watchdog"), "{}", gsup.stderr());
    gsup.signal(libc::SIGKILL);
}

/// A critical dependency on a closed port: /ready 503 naming it, /health unhealthy.
#[test]
fn a_closed_dependency_port_turns_ready_off_and_health_names_it() {
    let (_closed_socket, closed) = refused_port();
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    let (mut gsup, addr, _file) = gsup_with_api(
        &format!(
            "[[dependencies]]\nname = \"postgres\"\ntcp = \"127.0.0.1:{closed}\"\ninterval = \"200ms\"\n\
         [[dependencies]]\nname = \"cache\"\ntcp = \"127.0.0.1:{open_port}\"\ncritical = false\n"
        ),
        &[CHILD, "echo", "up", "forever"],
        &[],
    );
    gsup.expect_line("up");
    let mut last = (0, serde_json::Value::Null);
    assert!(
        wait_until(PATIENCE, || {
            last = ready(&addr);
            last.0 == 503 && last.1["reason"] == "critical dependency postgres failing"
        }),
        "{last:?}"
    );
    let (status, _, body) = http(&addr, "GET", "/health", &[]);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["checks"]["postgres"]["status"], "failing", "{health}");
    assert!(
        health["checks"]["postgres"]["checked_at"].is_string()
            && health["checks"]["postgres"]["latency_seconds"].is_number()
    );
    assert!(wait_until(PATIENCE, || {
        let body = http(&addr, "GET", "/health", &[]).2;
        body.contains("\"cache\":{\"status\":\"ok\"")
    }));
}

/// Not ready within startup_timeout: a failed start; with policy never, gsup exits with
/// the stopped child's code.
#[test]
fn a_child_not_ready_within_startup_timeout_is_a_failed_start() {
    let file = config_file("[restart]\nstartup_timeout = \"800ms\"\n");
    let path = file.path().to_str().expect("utf-8");
    // Nothing ever listens there.
    let (_closed_socket, port) = refused_port();
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--ready-tcp",
            &format!("127.0.0.1:{port}"),
            "--",
            CHILD,
            "echo",
            "up",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("up");
    let code = gsup.wait_code(PATIENCE);
    assert_eq!(code, 143, "{}", gsup.stderr());
    assert!(
        gsup.stderr().contains("not ready within startup_timeout"),
        "{}",
        gsup.stderr()
    );
}

/// A child (Python, as an app would) that prints `socket <NOTIFY_SOCKET>`, and then sends
/// each datagram in `steps` once the file `<go>.<index>` exists, printing `sent <index>`.
fn notifying_child(go: &str, steps: &[&str]) -> String {
    let steps: Vec<String> = steps.iter().map(|s| format!("b{s:?}")).collect();
    format!(
        "import os, socket, time\n\
         path = os.environ['NOTIFY_SOCKET']\n\
         print('socket', path, flush=True)\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         for index, payload in enumerate([{}]):\n\
         \x20   while not os.path.exists('{go}.%d' % index):\n\
         \x20       time.sleep(0.02)\n\
         \x20   s.sendto(payload, path)\n\
         \x20   print('sent', index, flush=True)\n\
         time.sleep(600)\n",
        steps.join(", ")
    )
}

/// A datagram to `path` from the test process: outside gsup's child tree.
fn send_from_outside(path: &str, payload: &str) {
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    socket
        .send_to(payload.as_bytes(), path)
        .expect("send to the child's NOTIFY_SOCKET");
}

/// Negative control for the notify probe: `READY=1` sent to the child's `NOTIFY_SOCKET`
/// by a process outside the child's tree is ignored. The child's own `STATUS=` sent after
/// it shows gsup has read the outsider's datagram (one socket, in order); only the child's
/// own `READY=1` then makes it ready.
#[test]
fn ready_from_outside_the_childs_tree_is_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let go = dir.path().join("go").to_str().expect("utf-8").to_string();
    let script = notifying_child(&go, &["STATUS=after-the-outsider", "READY=1"]);
    let (mut gsup, addr, _file) = gsup_with_api(
        "[readiness]\nprobe = { notify = true }\n",
        &["python3", "-c", &script],
        &[],
    );
    let line = gsup.expect_line("socket ");
    let socket = line.trim_start_matches("socket ").to_string();
    send_from_outside(&socket, "READY=1\nSTATUS=from-a-stranger");
    std::fs::write(format!("{go}.0"), "").expect("go");
    gsup.expect_line("sent 0");
    assert!(
        wait_until(PATIENCE, || gsup.stderr().contains("after-the-outsider")),
        "{}",
        gsup.stderr()
    );
    let (status, body) = ready(&addr);
    assert_eq!(status, 503, "the outsider's READY=1 made the child ready: {body}");
    assert!(!gsup.stderr().contains("child sent READY=1"), "{}", gsup.stderr());
    assert!(
        !gsup
            .stderr()
            .lines()
            .any(|l| l.contains("child status") && l.contains("from-a-stranger")),
        "the outsider's STATUS= was taken: {}",
        gsup.stderr()
    );
    // The positive control: the same datagram from the child counts.
    std::fs::write(format!("{go}.1"), "").expect("go");
    assert!(wait_until(PATIENCE, || ready(&addr).0 == 200), "{}", gsup.stderr());
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
}

/// Negative control for the child watchdog: `WATCHDOG=1` from outside the child's tree,
/// sent every 100 ms, does not keep a silent child alive: it is caught as usual.
#[test]
fn watchdog_pings_from_outside_the_childs_tree_do_not_feed_the_watchdog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let go = dir.path().join("go").to_str().expect("utf-8").to_string();
    let script = notifying_child(&go, &["READY=1"]);
    let file = config_file("[notify]\nwatchdog = \"1s\"\n");
    let path = file.path().to_str().expect("utf-8");
    let mut gsup = gsup_run(&["--config", path, "--", "python3", "-c", &script], &[]);
    let line = gsup.expect_line("socket ");
    let socket = line.trim_start_matches("socket ").to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (socket, stop) = (socket.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // The socket goes with the child: stop quietly then.
                let outsider = std::os::unix::net::UnixDatagram::unbound().expect("socket");
                if outsider.send_to(b"WATCHDOG=1", &socket).is_ok() {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        })
    };
    std::fs::write(format!("{go}.0"), "").expect("go");
    gsup.expect_line("sent 0");
    let caught = wait_until(PATIENCE, || gsup.stderr().contains("child missed its watchdog"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let pings = pinger.join().expect("pinger");
    assert!(caught, "outsider pings kept a silent child alive\n{}", gsup.stderr());
    assert!(pings >= 5, "the outsider pinged meanwhile: {pings}");
    gsup.signal(libc::SIGKILL);
}

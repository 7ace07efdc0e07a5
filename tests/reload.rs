//! DESIGN §8 zero-downtime reload: a new generation starts on the sockets gsup holds, and
//! the old one is stopped only once the new one said `READY=1` on its own notify socket.
//! Real processes (examples/drain_server), real sockets, real clients on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// gsup around `program` with a `[[listen]]` socket, a control socket, a notify probe and
/// the HTTP API.
struct Reloadable {
    gsup: Running,
    app: String,
    api: String,
    socket: String,
    _dir: Scratch,
    _config: tempfile::NamedTempFile,
}

/// A temporary directory, and the loopback address reserved for the app's `[[listen]]`
/// socket (held until dropped).
struct Scratch {
    dir: tempfile::TempDir,
    _reserved: std::os::fd::OwnedFd,
}

/// A `Scratch`, a control socket path in its directory, and the app's address.
fn scratch() -> (Scratch, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("gsup.sock").to_str().expect("utf-8").to_string();
    let (reserved, app) = reserved_addr();
    (
        Scratch {
            dir,
            _reserved: reserved,
        },
        socket,
        app,
    )
}

fn reloadable(startup_timeout: &str, program: &[&str], env: &[(&str, &str)]) -> Reloadable {
    let (dir, socket, app) = scratch();
    let config = format!(
        "[[listen]]\nname = \"web\"\naddress = \"{app}\"\n\n\
         [readiness]\nprobe = {{ notify = true }}\n\n\
         [restart]\nstartup_timeout = \"{startup_timeout}\"\n\n\
         [control]\nsocket = \"{socket}\"\n\n\
         [http]\ntoken_file = \"{}\"\n",
        token_file(&dir.dir)
    );
    let (mut gsup, api, config) = gsup_with_api(&config, program, env);
    gsup.expect_line("drain_server: listening");
    assert!(
        wait_until(PATIENCE, || status(&api)["ready"] == true),
        "{}",
        gsup.stderr()
    );
    Reloadable {
        gsup,
        app,
        api,
        socket,
        _dir: dir,
        _config: config,
    }
}

/// gsup with only flags: `--listen web=<reserved loopback port>`, a control socket, `extra`,
/// then `program`. Returns (gsup, app address, control socket, its directory).
fn with_listen_flag(extra: &[&str], program: &[&str], env: &[(&str, &str)]) -> (Running, String, String, Scratch) {
    let (dir, socket, app) = scratch();
    let listen = format!("web={app}");
    let mut args = vec!["--listen", listen.as_str(), "--control-socket", socket.as_str()];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(program);
    let gsup = gsup_run(&args, env);
    (gsup, app, socket, dir)
}

/// `gsup ctl reload`: (exit code, stdout, stderr).
fn ctl_reload(socket: &str) -> (i32, String, String) {
    gsup_cmd(&["ctl", "--socket", socket, "reload"], &[])
}

/// A `ctl reload` that must succeed; its outcome, `{"id","outcome","old_pid","new_pid",…}`.
fn reloaded(socket: &str) -> serde_json::Value {
    let (code, stdout, stderr) = ctl_reload(socket);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("ctl prints the outcome as JSON");
    answer["reload"].clone()
}

const TOKEN: &str = "reload-test-token";

fn token_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, TOKEN).expect("write token");
    path.to_str().expect("utf-8").to_string()
}

fn status(api: &str) -> serde_json::Value {
    let body = http(api, "GET", "/api/v1/shutdown/status", &[]).2;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn child_pid(api: &str) -> i64 {
    status(api)["child"]["pid"].as_i64().expect("a child pid")
}

#[test]
fn five_reloads_under_load_lose_no_request_and_change_the_pid_each_time() {
    let server = drain_server();
    // A new generation takes a while to start, as real services do; the kernel queues
    // new connections on the shared socket meanwhile, and the old one answers them.
    let mut r = reloadable("20s", &[server.as_str()], &[("STARTUP_DELAY_MS", "150")]);
    let first = child_pid(&r.api);
    let clients = Load::start(&r.app, "/", 4);
    clients.wait_for(20);
    let mut pids = vec![first];
    for round in 1..=5 {
        let reload = reloaded(&r.socket);
        assert_eq!(reload["outcome"], "ok", "reload {round}: {reload}");
        let (old, new) = (reload["old_pid"].as_i64(), reload["new_pid"].as_i64());
        assert_eq!(old, pids.last().copied(), "{reload}");
        let new = new.expect("new_pid");
        assert!(!pids.contains(&new), "a new pid each time: {pids:?} {new}");
        assert_eq!(child_pid(&r.api), new);
        pids.push(new);
        clients.wait_for(20);
    }
    let (_, answered_by) = clients.finish_without_failures();
    assert!(
        answered_by.len() >= 3,
        "the load ran across the reloads: {answered_by:?} of {pids:?}"
    );

    // Every old generation is gone (stopped, not killed: drain_server exits 0 on TERM),
    // and only the last one is left.
    for old in &pids[..5] {
        assert!(
            wait_until(PATIENCE, || !alive(*old as i32)),
            "old generation {old} still there"
        );
    }
    assert!(alive(pids[5] as i32));
    let last = status(&r.api);
    assert_eq!(last["state"], "running");
    assert_eq!(last["restarts"], 0, "a reload is not a restart");
    let reload = &last["last_reload"];
    assert_eq!(
        (reload["id"].as_i64(), reload["outcome"].as_str()),
        (Some(5), Some("ok")),
        "{last}"
    );
    assert!(
        wait_until(PATIENCE, || status(&r.api)["last_reload"]["old_exit"]["code"] == 0),
        "{}",
        status(&r.api)
    );
    let metrics = http(&r.api, "GET", "/metrics", &[]).2;
    assert!(metrics.contains("gsup_reloads_total{outcome=\"ok\"} 5"), "{metrics}");
    r.gsup.signal(libc::SIGTERM);
    assert_eq!(r.gsup.wait_code(PATIENCE), 0, "{}", r.gsup.stderr());
}

#[test]
fn a_reload_whose_new_child_never_gets_ready_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("broken-release");
    // The "new release" never gets ready: while the marker exists the program is a sleep
    // that neither accepts nor sends READY=1.
    let script = format!(
        "if [ -e {} ]; then echo broken $$; exec sleep 600; fi; exec {}",
        marker.display(),
        drain_server()
    );
    let mut r = reloadable("2s", &["sh", "-c", &script], &[]);
    let old = child_pid(&r.api);
    std::fs::write(&marker, "").expect("marker");
    let clients = Load::start(&r.app, "/", 2);
    let started = Instant::now();
    let (code, stdout, stderr) = ctl_reload(&r.socket);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited startup_timeout");
    assert!(stderr.contains("not ready within startup_timeout"), "{stderr}");
    let broken = field(&r.gsup.expect_line("broken "), "broken");
    assert!(
        wait_until(PATIENCE, || !alive(broken)),
        "the failed generation is stopped"
    );
    clients.wait_for(20);
    let (_, answered_by) = clients.finish_without_failures();
    assert_eq!(answered_by, vec![old], "only the old generation answered");

    let last = status(&r.api);
    assert_eq!(last["child"]["pid"].as_i64(), Some(old), "{last}");
    assert_eq!(last["ready"], true);
    assert_eq!(last["last_reload"]["outcome"], "failed", "{last}");
    assert_eq!(last["last_reload"]["new_pid"].as_i64(), Some(i64::from(broken)));
    assert_eq!(last["last_reload"]["old_exit"], serde_json::Value::Null);
    let metrics = http(&r.api, "GET", "/metrics", &[]).2;
    assert!(
        metrics.contains("gsup_reloads_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    r.gsup.signal(libc::SIGTERM);
    assert_eq!(r.gsup.wait_code(PATIENCE), 0, "{}", r.gsup.stderr());
}

/// POST `/reload` (with the token) answers 202 at once; a second one while it runs is
/// 409; then SIGHUP, `[reload] signal` by default, reloads too.
#[test]
fn post_reload_answers_202_a_concurrent_one_409_and_hup_reloads() {
    let server = drain_server();
    let mut r = reloadable("20s", &[server.as_str()], &[("STARTUP_DELAY_MS", "1500")]);
    let first = child_pid(&r.api);
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    assert_eq!(
        http(&r.api, "POST", "/api/v1/shutdown/reload", &[]).0,
        401,
        "the token is required"
    );
    let (code, _, body) = http(&r.api, "POST", "/api/v1/shutdown/reload", &headers);
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("reload_started"), "{body}");
    assert_eq!(status(&r.api)["state"], "reloading");
    let (code, _, body) = http(&r.api, "POST", "/api/v1/shutdown/reload", &headers);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already running"), "{body}");
    let (code, _, stderr) = ctl_reload(&r.socket);
    assert_eq!(code, 1, "ctl is refused too: {stderr}");
    assert!(
        wait_until(PATIENCE, || status(&r.api)["last_reload"]["outcome"] == "ok"),
        "{}",
        r.gsup.stderr()
    );
    let second = child_pid(&r.api);
    assert_ne!(second, first);
    assert!(wait_until(PATIENCE, || !alive(first as i32)));

    r.gsup.signal(libc::SIGHUP);
    assert!(
        wait_until(PATIENCE, || status(&r.api)["last_reload"]["id"] == 2),
        "{}",
        r.gsup.stderr()
    );
    assert_eq!(status(&r.api)["last_reload"]["outcome"], "ok");
    let third = child_pid(&r.api);
    assert!(third != second && third != first);
    assert!(request(&r.app, "/").is_ok_and(|pid| pid == third || pid == second));
    r.gsup.signal(libc::SIGTERM);
    assert_eq!(r.gsup.wait_code(PATIENCE), 0, "{}", r.gsup.stderr());
}

/// Under systemd socket activation (the real `systemd-socket-activate`): gsup passes the
/// inherited socket on, reloads on it alone, and tells its own NOTIFY_SOCKET
/// `RELOADING=1` and then `READY=1` around the reload (DESIGN §8, §9).
#[test]
fn with_a_socket_from_systemd_a_reload_works_and_systemd_is_told() {
    if !tool("systemd-socket-activate", "systemd") {
        return;
    }
    let systemd = FakeSystemd::new();
    let (_dir, control, app) = scratch();
    let config = config_file("[readiness]\nprobe = { notify = true }\n");
    let notify_env = format!("NOTIFY_SOCKET={}", systemd.path);
    let server = drain_server();
    let args = [
        "-l",
        app.as_str(),
        "--fdname=web",
        "-E",
        notify_env.as_str(),
        GSUP,
        "run",
        "--http",
        "off",
        "--config",
        config.path().to_str().expect("utf-8"),
        "--control-socket",
        control.as_str(),
        "--",
        server.as_str(),
    ];
    let mut gsup = start(cmd("systemd-socket-activate", &args), &[]);
    // systemd-socket-activate starts gsup on the first connection.
    let first_request = {
        let app = app.clone();
        std::thread::spawn(move || {
            wait_until(PATIENCE, || std::net::TcpStream::connect(&app).is_ok());
            request(&app, "/")
        })
    };
    gsup.expect_line("drain_server: listening");
    let first = first_request
        .join()
        .expect("client")
        .expect("the first request is answered");
    let mut seen = Vec::new();
    systemd.until(&mut seen, "READY=1");
    // The inherited socket counts as configured: the reload is not refused.
    let reload = reloaded(&control);
    let mut after = Vec::new();
    systemd.until(&mut after, "READY=1");
    let reloading = after.iter().position(|m| m.starts_with("RELOADING=1"));
    let ready = after.iter().position(|m| m.contains("READY=1"));
    assert!(
        reloading.is_some() && reloading < ready,
        "RELOADING=1, then READY=1: {after:?}"
    );
    let new = reload["new_pid"].as_i64().expect("new_pid");
    assert_ne!(new, first);
    assert!(wait_until(PATIENCE, || !alive(first as i32)), "the old generation went");
    assert_eq!(
        request(&app, "/"),
        Ok(new),
        "the new generation serves the inherited socket"
    );
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

/// The "done when" of issue 7: the example app behind gsup with one `--listen` flag and no
/// config at all. Without a probe the new child counts as ready once it runs, so the old
/// one is stopped while the new one still starts up (150 ms); the kernel queues the
/// connections meanwhile and none is lost.
#[test]
fn one_listen_flag_and_no_config_reload_under_load_without_losing_a_request() {
    let server = drain_server();
    let (mut gsup, app, socket, _dir) = with_listen_flag(&[], &[&server], &[("STARTUP_DELAY_MS", "150")]);
    gsup.expect_line("drain_server: listening");
    let clients = Load::start(&app, "/", 4);
    clients.wait_for(20);
    let mut pids = Vec::new();
    for _ in 0..3 {
        let new = reloaded(&socket)["new_pid"].as_i64().expect("new_pid");
        gsup.expect_line(&format!("listening on {app} (pid {new})"));
        pids.push(new);
        clients.wait_for(20);
    }
    let (_, answered_by) = clients.finish_without_failures();
    assert!(answered_by.contains(&pids[2]), "{answered_by:?} {pids:?}");
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

/// The old generation's group is stopped on its own: a grandchild of the old child that
/// ignores TERM gets SIGKILL `timeout` after the reload, while the new generation's
/// grandchild (same program, another group) is left alone.
#[test]
fn a_retired_generation_group_gets_sigkill_after_timeout_and_the_new_one_is_untouched() {
    let (mut gsup, _app, socket, _dir) = with_listen_flag(
        &["--timeout", "1s"],
        &[
            CHILD,
            "grandchild",
            "ignore",
            "TERM",
            "forever",
            ";",
            "exit-on",
            "TERM",
            "0",
            "forever",
        ],
        &[],
    );
    let old_grandchild = field(&gsup.expect_line("grandchild "), "grandchild");
    reloaded(&socket);
    let reloaded_at = Instant::now();
    let new_grandchild = field(
        &gsup.expect_where("the new generation's grandchild", PATIENCE, |line| {
            line.starts_with("grandchild ") && field(line, "grandchild") != old_grandchild
        }),
        "grandchild",
    );
    assert!(
        wait_until(PATIENCE, || !alive(old_grandchild)),
        "the old group's straggler is killed"
    );
    assert!(
        reloaded_at.elapsed() >= Duration::from_millis(900),
        "not before `timeout`: {:?}",
        reloaded_at.elapsed()
    );
    assert!(
        alive(new_grandchild),
        "the new generation's grandchild is not touched: {}",
        gsup.stderr()
    );
    assert!(
        gsup.stderr().contains("retired generation outlived timeout"),
        "{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_code(PATIENCE);
    assert!(
        wait_until(PATIENCE, || !alive(new_grandchild)),
        "the shutdown takes the rest"
    );
}

/// An `exec` readiness probe follows the new generation: it runs for it at once (not after
/// its 10 s interval) and gets the pid it is about as `GSUP_CHILD_PID`.
#[test]
fn an_exec_probe_is_run_for_the_new_generation_at_once_with_its_pid() {
    let (dir, socket, app) = scratch();
    let log = dir.dir.path().join("probes");
    let config = format!(
        "[[listen]]\naddress = \"{app}\"\n\n\
         [readiness]\nprobe = {{ exec = [\"sh\", \"-c\", \"echo $GSUP_CHILD_PID >> {}\"] }}\ninterval = \"10s\"\n\n\
         [control]\nsocket = \"{socket}\"\n",
        log.display()
    );
    let server = drain_server();
    let (mut gsup, api, _config) = gsup_with_api(&config, &[server.as_str()], &[]);
    assert!(
        wait_until(PATIENCE, || status(&api)["ready"] == true),
        "{}",
        gsup.stderr()
    );
    let started = Instant::now();
    let reload = reloaded(&socket);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "probed at once, not after the 10 s interval: {:?}",
        started.elapsed()
    );
    let (old, new) = (reload["old_pid"].as_i64(), reload["new_pid"].as_i64());
    let probed = std::fs::read_to_string(&log).expect("probe log");
    let pids: Vec<i64> = probed.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(
        pids.first().copied(),
        old,
        "the first probe was the first generation's: {pids:?}"
    );
    assert_eq!(
        pids.last().copied(),
        new,
        "the probe that ended the reload was the new one's: {pids:?}"
    );
    // This probe passes as soon as it runs, maybe before the new server has blocked TERM
    // (it may still be in the exec shim): wait for it to listen before stopping it.
    gsup.expect_line(&format!("(pid {})", new.expect("new_pid")));
    gsup.signal(libc::SIGTERM);
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

/// Negative control for the load generator the reload and drain tests trust: against a
/// server that closes one connection without answering (as a killed generation would),
/// `Load` counts exactly that one request as failed, and every other one as answered.
#[test]
fn negative_control_the_load_counts_a_lost_request() {
    use std::io::{BufRead, BufReader, Write};
    const LOST: usize = 10;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let app = listener.local_addr().expect("addr").to_string();
    // Serves until the test process ends (the thread stays blocked in accept).
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            if index != LOST {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nok 4242\n");
            }
        }
    });
    let clients = Load::start(&app, "/", 2);
    clients.wait_for(3 * LOST as u64);
    clients.stop_starting();
    let (total, failures, pids) = clients.finish();
    assert_eq!(failures.len(), 1, "of {total}: {failures:?}");
    assert!(failures[0].starts_with("answer"), "{failures:?}");
    assert_eq!(pids, vec![4242]);
}

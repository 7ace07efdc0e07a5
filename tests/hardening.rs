//! DESIGN §5 and §9 under hostile input: files and sockets gsup creates are never a way
//! in (control socket, notify directory, shutdown log, the token in /proc), the HTTP port
//! resists DNS rebinding and holds its limits exactly, and secrets are never shown.
//! One test per finding of issue 12, each written to fail before its fix.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "t0ken-for-hardening-0123456789";
const PREFIX: &str = "/api/v1/shutdown";
const NOBODY: &str = "65534";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `setpriv` as `nobody`, for what another user (or a same-uid child without root's
/// CAP_SYS_PTRACE) can do.
fn as_nobody(program: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("setpriv");
    command.args([
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        program,
    ]);
    command.args(args);
    command
}

/// A directory `nobody` may enter (tempdirs are 0700).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// The child of most tests here: ready, then serving until a TERM, on which it exits 0.
const SERVING: [&str; 7] = [CHILD, "exit-on", "TERM", "0", "echo", "ready", "forever"];

/// `gsup run ARGS -- <a serving child>`, once the child is ready.
fn serving(args: &[&str]) -> Running {
    let mut all = args.to_vec();
    all.push("--");
    all.extend_from_slice(&SERVING);
    let mut gsup = gsup_run(&all, &[]);
    gsup.expect_line("ready");
    gsup
}

// ---------------------------------------------------------------------------------------
// The control socket (§9)

/// Finding: `gsup run --control-socket ./important.txt -- true` deleted important.txt.
#[test]
fn a_file_at_the_control_socket_path_is_left_alone_and_run_exits_2_starting_no_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let important = dir.path().join("important.txt");
    std::fs::write(&important, "keep me\n").expect("write");
    let started = dir.path().join("child-started");
    let touch = format!("touch {}", utf8(&started));
    let (code, _, stderr) = gsup_cmd(
        &[
            "run",
            "--http",
            "off",
            "--control-socket",
            utf8(&important),
            "--",
            "sh",
            "-c",
            &touch,
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(utf8(&important)), "the error names the path: {stderr}");
    assert_eq!(std::fs::read_to_string(&important).expect("still there"), "keep me\n");
    assert!(!started.exists(), "the child started despite the bad path");

    // A directory and a symlink are left alone too.
    let directory = dir.path().join("a-dir");
    std::fs::create_dir(&directory).expect("mkdir");
    let link = dir.path().join("link.sock");
    symlink(&important, &link).expect("symlink");
    for path in [&directory, &link] {
        let (code, _, stderr) = gsup_cmd(
            &["run", "--http", "off", "--control-socket", utf8(path), "--", "true"],
            &[],
        );
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        assert!(std::fs::symlink_metadata(path).is_ok(), "{} removed", path.display());
    }
    assert_eq!(std::fs::read_to_string(&important).expect("still there"), "keep me\n");
}

/// A stale socket (a crashed gsup's: nobody answers) is replaced.
#[test]
fn a_stale_control_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("gsup.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a stale socket"));
    let mut gsup = serving(&["--control-socket", utf8(&socket)]);
    let answered = wait_until(PATIENCE, || {
        gsup_cmd(&["ctl", "--socket", utf8(&socket), "status"], &[]).0 == 0
    });
    assert!(answered, "{}", gsup.stderr());
    assert_eq!(
        std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777,
        0o600
    );
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

/// Even with its file opened to everyone, the control socket answers only root and
/// gsup's own uid (SO_PEERCRED).
#[test]
fn the_control_socket_answers_no_other_uid() {
    let dir = open_dir();
    let socket = dir.path().join("gsup.sock");
    let mut gsup = serving(&["--control-socket", utf8(&socket)]);
    assert!(wait_until(PATIENCE, || socket.exists()), "{}", gsup.stderr());
    assert_eq!(gsup_cmd(&["ctl", "--socket", utf8(&socket), "status"], &[]).0, 0);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let mut other = start(as_nobody(GSUP, &["ctl", "--socket", utf8(&socket), "status"]), &[]);
    let code = other.wait_code(PATIENCE);
    let said = other.drain_lines(Duration::from_millis(200)).join("\n");
    assert_eq!(code, 1, "nobody got an answer: {said}\n{}", other.stderr());
    assert!(!said.contains("\"state\""), "{said}");
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

// ---------------------------------------------------------------------------------------
// The notify directory (§9)

/// Finding: another user who pre-creates gsup's predictable notify directory leaves the
/// child with no NOTIFY_SOCKET. The wrapper shell plants it under gsup's own pid, then
/// becomes gsup.
#[test]
fn a_planted_notify_directory_neither_blocks_nor_redirects_the_socket() {
    let runtime = open_dir();
    let config = config_file("[notify]\nsocket = true\n");
    let script = format!(
        "for g in 1 2; do mkdir -p \"$RUNTIME_DIRECTORY/gsup-notify-$$-$g\"; done; \
         chown -R {NOBODY} \"$RUNTIME_DIRECTORY\"/gsup-notify-*; \
         exec \"$0\" run --http off --config {} -- sh -c 'echo \"notify=[$NOTIFY_SOCKET]\"; exec sleep 30'",
        utf8(config.path())
    );
    let mut gsup = start(
        cmd("sh", &["-c", &script, GSUP]),
        &[("RUNTIME_DIRECTORY", utf8(runtime.path()))],
    );
    let line = gsup.expect_line("notify=");
    let path = line
        .strip_prefix("notify=[")
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_default()
        .to_string();
    assert!(!path.is_empty(), "the child got no NOTIFY_SOCKET\n{}", gsup.stderr());
    let socket = Path::new(&path);
    assert!(socket.starts_with(runtime.path()), "{path}");
    let dir = socket.parent().expect("its directory");
    let meta = std::fs::symlink_metadata(dir).expect("dir");
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), 0, "a planted directory was used: {path}");
    assert_eq!(meta.mode() & 0o777, 0o711);
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
    // gsup leaves its memory to the kernel at exit, but not its files (issue 14).
    assert!(!dir.exists(), "the notify directory outlived gsup: {path}");
}

/// A notify directory that cannot be made is exit 2 before any child starts, not a
/// child without NOTIFY_SOCKET.
#[test]
fn an_unusable_notify_directory_exits_2_starting_no_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let started = dir.path().join("child-started");
    let config = config_file("[notify]\nsocket = true\n");
    let touch = format!("touch {}", utf8(&started));
    let (code, _, stderr) = gsup_cmd(
        &[
            "run",
            "--http",
            "off",
            "--config",
            utf8(config.path()),
            "--",
            "sh",
            "-c",
            &touch,
        ],
        &[("RUNTIME_DIRECTORY", utf8(&missing))],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(utf8(&missing)), "the error names the path: {stderr}");
    assert!(!started.exists(), "the child started");
}

// ---------------------------------------------------------------------------------------
// The shutdown log (§9)

fn run_to_shutdown(config: &str) -> (i32, String) {
    let file = config_file(config);
    let mut gsup = serving(&["--config", utf8(file.path())]);
    gsup.signal(libc::SIGTERM);
    let code = gsup.wait_code(PATIENCE);
    (code, gsup.stderr())
}

/// Finding: a `shutdown.log` symlink planted by another user made root gsup append to its
/// target. Now it is never written through, with a warning at start-up, in `check` and at
/// shutdown, and the exit code is what it would have been.
#[test]
fn a_planted_shutdown_log_symlink_is_never_written_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("passwd-like");
    std::fs::write(&target, "root:x:0:0\n").expect("write");
    let log = dir.path().join("shutdown.log");
    symlink(&target, &log).expect("symlink");
    let config = format!("[shutdown]\nlog = \"{}\"\n", utf8(&log));
    let (code, stderr) = run_to_shutdown(&config);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "root:x:0:0\n");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("symlink") && l.contains("shutdown.log"))
        .count();
    assert!(warnings >= 2, "a warning at start-up and at shutdown:\n{stderr}");
    let file = config_file(&config);
    let (code, _, stderr) = gsup_cmd(&["check", "--config", utf8(file.path())], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("symlink"), "check warns: {stderr}");

    // A directory is never written either.
    let (code, stderr) = run_to_shutdown(&format!("[shutdown]\nlog = \"{}\"\n", utf8(dir.path())));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
}

#[test]
fn a_new_shutdown_log_is_0640_and_a_full_device_is_only_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("shutdown.log");
    let (code, stderr) = run_to_shutdown(&format!("[shutdown]\nlog = \"{}\"\n", utf8(&log)));
    assert_eq!(code, 0, "{stderr}");
    let meta = std::fs::metadata(&log).expect("the log was written");
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("\"event\":\"shutdown\"")
    );

    let (code, stderr) = run_to_shutdown("[shutdown]\nlog = \"/dev/full\"\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("/dev/full"), "a warning names it: {stderr}");
}

// ---------------------------------------------------------------------------------------
// The token (§9)

/// Finding: the child could read GSUP_CONTROL_TOKEN from /proc/$PPID/environ. gsup and
/// its child both run as `nobody` here (root would read it anyway, with CAP_SYS_PTRACE);
/// the token is only in gsup's environment.
#[test]
fn a_child_of_the_same_uid_cannot_read_the_token() {
    let probe = "if cat /proc/$PPID/environ > /dev/null 2>&1; then \
                   if tr '\\000' '\\n' < /proc/$PPID/environ | grep -q '^GSUP_CONTROL_TOKEN='; \
                   then echo 'environ: token visible'; else echo 'environ: readable, no token'; fi; \
                 else echo 'environ: denied'; fi; \
                 echo \"env token=[$GSUP_CONTROL_TOKEN]\"; exec sleep 30";
    let mut gsup = start(
        as_nobody(GSUP, &["run", "--http", "off", "--", "sh", "-c", probe]),
        &[("GSUP_CONTROL_TOKEN", TOKEN)],
    );
    let environ = gsup.expect_line("environ: ");
    let env = gsup.expect_line("env token=");
    assert_eq!(environ, "environ: denied", "{}", gsup.stderr());
    assert_eq!(env, "env token=[]");
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

// ---------------------------------------------------------------------------------------
// HTTP (§5)

/// gsup on an ephemeral loopback port with a token, a config of `extra` lines and a
/// child that exits 0 on TERM.
fn api(config: &str) -> (Running, String, tempfile::NamedTempFile) {
    let (mut gsup, addr, file) = gsup_with_api(config, &SERVING, &[("GSUP_CONTROL_TOKEN", TOKEN)]);
    gsup.expect_line("ready");
    (gsup, addr, file)
}

fn with_host(addr: &str, method: &str, path: &str, host: Option<&str>, extra: &str) -> (u16, String, String) {
    let host = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    let request = format!("{method} {path} HTTP/1.1\r\n{host}Connection: close\r\n{extra}\r\n");
    raw_http(addr, request.as_bytes())
}

/// DNS rebinding: a web page whose name now resolves to 127.0.0.1 must not read
/// `/config` or act: 421 on every route (before 404), IPs and localhost pass.
#[test]
fn a_rebound_host_name_gets_421_on_every_route() {
    let (gsup, addr, _file) = api("[http]\nallowed_hosts = [\"gsup.internal\"]\n");
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    for (method, path) in [
        ("GET", "/alive"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/no-such-route"),
        ("GET", &*format!("{PREFIX}/config")),
        ("HEAD", &*format!("{PREFIX}/status")),
        ("POST", &*format!("{PREFIX}/shutdown")),
        ("DELETE", &*format!("{PREFIX}/shutdown")),
    ] {
        for host in ["evil.example", "evil.example:80", "gsup.internal.evil.example"] {
            let (status, _, body) = with_host(&addr, method, path, Some(host), &auth);
            assert_eq!(status, 421, "{method} {path} Host: {host}: {body}");
        }
    }
    assert!(alive(gsup.pid()), "a refused request acted");
    let port = addr.rsplit(':').next().expect("port");
    for host in [
        None,
        Some("127.0.0.1"),
        Some(&*addr),
        Some("10.1.2.3:8080"),
        Some("[::1]:9090"),
        Some("localhost"),
        Some(&*format!("LOCALHOST:{port}")),
        Some("gsup.internal"),
        Some("GSUP.Internal:1234"),
    ] {
        let (status, _, body) = with_host(&addr, "GET", "/alive", host, "");
        assert_eq!(status, 200, "Host: {host:?}: {body}");
    }
}

/// On a non-loopback listen `Host` is checked only when `allowed_hosts` is set (a proxy
/// in front may send any name).
#[test]
fn on_other_addresses_host_is_checked_only_with_allowed_hosts() {
    for (config, evil, listed) in [
        ("", 200, 200),
        ("[http]\nallowed_hosts = [\"gsup.internal\"]\n", 421, 200),
    ] {
        let file = config_file(config);
        let mut args = vec!["--config", utf8(file.path()), "--http", "0.0.0.0:0", "--"];
        args.extend_from_slice(&SERVING);
        let mut gsup = gsup_run(&args, &[]);
        gsup.expect_line("ready");
        let port = gsup.http_addr().rsplit(':').next().expect("port").to_string();
        let addr = format!("127.0.0.1:{port}");
        assert_eq!(
            with_host(&addr, "GET", "/alive", Some("evil.example"), "").0,
            evil,
            "{config}"
        );
        assert_eq!(
            with_host(&addr, "GET", "/alive", Some("gsup.internal:80"), "").0,
            listed,
            "{config}"
        );
        assert_eq!(
            with_host(&addr, "GET", "/alive", Some("10.0.0.7:9090"), "").0,
            200,
            "{config}"
        );
        gsup.signal(libc::SIGTERM);
        gsup.wait_exit(PATIENCE);
    }
}

/// Finding: `Authorization: bearer x` was refused (RFC 9110: the scheme has no case).
#[test]
fn the_bearer_scheme_is_matched_in_any_case() {
    let (mut gsup, addr, _file) = api("");
    let (status, _, body) = http(
        &addr,
        "POST",
        &format!("{PREFIX}/shutdown"),
        &[("Authorization", &format!("bearer   {TOKEN}"))],
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(gsup.wait_code(PATIENCE), 0);
}

/// Finding: `HEAD /ready` was 404. HEAD answers every GET route that only reads, with
/// the GET's status and headers and no body; HEAD `/prestop` acts on nothing: 405.
#[test]
fn head_answers_every_reading_route_without_a_body() {
    let (_gsup, addr, _file) = api("[http]\nprestop = true\n[shutdown]\ndrain_delay = \"30s\"\n");
    for path in [
        "/ready".to_string(),
        "/alive".to_string(),
        "/health".to_string(),
        "/metrics".to_string(),
        format!("{PREFIX}/status"),
        format!("{PREFIX}/process"),
        format!("{PREFIX}/config"),
        format!("{PREFIX}/overview"),
    ] {
        let (get_status, get_head, get_body) = http(&addr, "GET", &path, &[]);
        let (status, head, body) = http(&addr, "HEAD", &path, &[]);
        assert_eq!(status, get_status, "HEAD {path}: {head}");
        assert!(body.is_empty(), "HEAD {path} sent a body: {body}");
        let content_type = |head: &str| {
            head.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
                .map(str::to_string)
        };
        assert_eq!(content_type(&head), content_type(&get_head), "HEAD {path}");
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("HEAD {path} without Content-Length: {head}"));
        let length: usize = length.parse().expect("a number");
        // /metrics and /process change between two requests; their size is close.
        assert!(
            length.abs_diff(get_body.len()) < 512,
            "HEAD {path}: {length} vs {}",
            get_body.len()
        );
    }
    let auth = format!("Bearer {TOKEN}");
    let (status, head, _) = http(&addr, "HEAD", &format!("{PREFIX}/prestop"), &[("Authorization", &auth)]);
    assert_eq!(status, 405, "{head}");
    assert_eq!(
        http(&addr, "GET", "/ready", &[]).0,
        200,
        "HEAD /prestop turned readiness off"
    );
}

/// Issue 13 item 11: `/config` is the config's own tables at the top level, as `check`.
#[test]
fn config_is_served_at_the_top_level() {
    let (_gsup, addr, _file) = api("");
    let (status, _, body) = http(&addr, "GET", &format!("{PREFIX}/config"), &[]);
    assert_eq!(status, 200);
    let config = json(&body);
    assert!(config.get("config").is_none(), "wrapped: {body}");
    assert_eq!(config["shutdown"]["timeout"]["value"], 30.0, "{body}");
    assert_eq!(
        config["http"]["allowed_hosts"]["value"],
        serde_json::json!([]),
        "{body}"
    );
}

/// Finding: `/config` served DB_PASS, MYSQL_PWD, a DSN's password, a URL's token and a
/// hook's `-pSECRET`; `/health` and the log printed a dependency URL's password.
#[test]
fn secrets_are_hidden_in_config_health_the_log_and_the_report() {
    let (_refused, port) = refused_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("shutdown.log");
    let log = utf8(&log);
    let config = format!(
        "[process]\nenv = {{ DB_PASS = \"hunter2\", MYSQL_PWD = \"pwd-secret-1\", DSN = \"host=db password=dsn-secret-2\", \
         REPO = \"https://ghp_tokensecret3@github.com/o/r.git\", SESSION_COOKIE = \"cookie-secret-4\", MODE = \"prod\" }}\n\
         [[hooks]]\nphase = \"cleanup\"\nexec = [\"mysql\", \"-pHOOKSECRET\", \"--password\", \"flag-secret-5\"]\n\
         [[hooks]]\nphase = \"cleanup\"\nexec = [\"sh\", \"-c\", \"echo connecting to postgres://app:hook-out-7@db; exit 3\"]\n\
         [shutdown]\nlog = \"{log}\"\n\
         [[dependencies]]\nname = \"api\"\nhttp = \"http://user:dep-secret-6@127.0.0.1:{port}/health\"\ncritical = false\ninterval = \"1s\"\n"
    );
    let (mut gsup, addr, _file) = api(&config);
    let secrets = [
        "hook-out-7",
        "hunter2",
        "pwd-secret-1",
        "dsn-secret-2",
        "ghp_tokensecret3",
        "cookie-secret-4",
        "HOOKSECRET",
        "flag-secret-5",
        "dep-secret-6",
        TOKEN,
    ];
    // Wait for the dependency's failure to show, so its detail is in /health and the log.
    let mut health = String::new();
    let failed = wait_until(PATIENCE, || {
        health = http(&addr, "GET", "/health", &[]).2;
        health.contains("failing")
    });
    assert!(failed, "{health}");
    assert!(
        health.contains("user:***@127.0.0.1"),
        "the detail names the URL redacted: {health}"
    );
    let mut everything = health.clone();
    for path in ["/status", "/process", "/config", "/overview"] {
        everything.push_str(&http(&addr, "GET", &format!("{PREFIX}{path}"), &[]).2);
    }
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} was served:\n{everything}");
    }
    let config = json(&http(&addr, "GET", &format!("{PREFIX}/config"), &[]).2);
    assert_eq!(config["process"]["env"]["MODE"]["value"], "prod");
    assert_eq!(config["process"]["env"]["MYSQL_PWD"]["value"], "***");
    assert_eq!(
        config["process"]["env"]["REPO"]["value"],
        "https://***@github.com/o/r.git"
    );
    assert_eq!(
        config["hooks"][0]["exec"]["value"],
        serde_json::json!(["mysql", "-p***", "--password", "***"])
    );
    // The shutdown runs the hooks: their output, the report, the log file.
    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
    let stderr = gsup.stderr();
    assert!(stderr.contains("shutdown report"), "{stderr}");
    assert!(
        stderr.contains("app:***@db"),
        "the hook's output is logged redacted: {stderr}"
    );
    let report = std::fs::read_to_string(log).expect("the shutdown log");
    for secret in secrets {
        assert!(!stderr.contains(secret), "{secret} was logged:\n{stderr}");
        assert!(!report.contains(secret), "{secret} is in the report:\n{report}");
    }
}

/// Issue 15 item 5: a port in use says how to choose another.
#[test]
fn a_port_in_use_says_how_to_choose_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, _, stderr) = gsup_cmd(&["run", "--http", &addr, "--", "true"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--http 127.0.0.1:PORT") && stderr.contains("--http off"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Limits (§5)

/// One exchange that tells a close from a hang: the status (0 when closed without an
/// answer), or a panic when nothing at all happened within PATIENCE.
fn exchange(addr: &str, bytes: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no answer and no close within {PATIENCE:?}: a hang")
            }
            // A reset after an answer or instead of one: closed.
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A request head of exactly `size` bytes (request line to the blank line).
fn head_of(size: usize) -> Vec<u8> {
    let start = "GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

/// Fields: `n` header fields in all (Host and Connection included).
fn fields(n: usize) -> Vec<u8> {
    let extra: String = (0..n - 2).map(|i| format!("X-F{i}: v\r\n")).collect();
    format!("GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

#[test]
fn the_head_limits_hold_exactly_at_16_kib_and_100_fields() {
    let (gsup, addr, _file) = api("");
    assert_eq!(exchange(&addr, &head_of(16 * 1024)), 200, "a head of exactly 16 KiB");
    assert_eq!(exchange(&addr, &head_of(16 * 1024 + 1)), 431, "a head of 16 KiB + 1");
    assert_eq!(exchange(&addr, &fields(100)), 200, "exactly 100 header fields");
    assert_eq!(exchange(&addr, &fields(101)), 431, "101 header fields");
    let garbage = exchange(&addr, b"\x00\x01\x02 garbage \xff\xfe\r\n\r\n");
    assert!(garbage == 0 || (400..500).contains(&garbage), "garbage: {garbage}");
    assert!(alive(gsup.pid()));
}

/// A head still incomplete after 5 s is closed (not before, and not never).
#[test]
fn an_incomplete_head_is_closed_after_5_seconds() {
    let (gsup, addr, _file) = api("");
    let asked = Instant::now();
    let status = exchange(&addr, b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let took = asked.elapsed();
    assert!(status == 0 || status == 408, "{status}");
    // Closed early once in a full CI run (1.1 s, not reproduced in 11 reruns): say
    // whether gsup was still there, and what it logged.
    assert!(
        took >= Duration::from_millis(4500),
        "closed after {took:?}, before the 5 s; gsup alive: {}; its stderr:\n{}",
        alive(gsup.pid()),
        gsup.stderr()
    );
    // And closed by the head timeout, not by the test's own patience (found in review:
    // any close within 20 s passed). Generous for a loaded machine.
    assert!(took < Duration::from_secs(12), "still open after {took:?}");
}

/// A config under which each GET /prestop holds its connection for 120 s.
const HOLDING: &str = "[http]\nprestop = true\n[shutdown]\ndrain_delay = \"120s\"\n";

/// Opens `n` connections that each block in GET /prestop, and waits until gsup holds
/// them all (its fd count).
fn hold(gsup: &Running, addr: &str, n: usize) -> Vec<TcpStream> {
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", gsup.pid())).map_or(0, |d| d.count());
    let before = fds();
    let request = format!("GET {PREFIX}/prestop HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let held: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.write_all(request.as_bytes()).expect("send");
            stream
        })
        .collect();
    let all_in = wait_until(PATIENCE, || fds() >= before + n);
    assert!(all_in, "gsup holds {} of {n} connections", fds() - before);
    held
}

/// gsup with `HOLDING` under a soft and hard fd limit of 256 (a cap of 64), ready; `extra`
/// flags go after `--http`.
fn under_256_fds(extra: &[&str]) -> (Running, String, tempfile::NamedTempFile) {
    let config = config_file(HOLDING);
    let mut args = vec!["--nofile=256:256", "--", GSUP, "run", "--config", utf8(config.path())];
    args.extend_from_slice(&["--http", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(&SERVING);
    let mut gsup = start(cmd("prlimit", &args), &[("GSUP_CONTROL_TOKEN", TOKEN)]);
    gsup.expect_line("ready");
    let addr = gsup.http_addr();
    (gsup, addr, config)
}

/// Holds `n` connections open inside gsup (each blocked in GET /prestop, which waits
/// `drain_delay`), then checks that the next one is closed at once without an answer and
/// that a freed slot serves again.
fn the_cap_is(gsup: &Running, addr: &str, cap: usize) {
    let mut held = hold(gsup, addr, cap);
    // One more is closed at once: no answer.
    assert_eq!(
        exchange(addr, b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        0,
        "over the cap of {cap}"
    );
    for stream in &held {
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(
            (&*stream).read(&mut byte).is_err(),
            "a held connection was closed or answered"
        );
    }
    drop(held.pop());
    let served = wait_until(PATIENCE, || http(addr, "GET", "/alive", &[]).0 == 200);
    assert!(served, "a freed slot does not serve");
}

/// Exactly 1024 connections, the cap with a high fd limit.
#[test]
fn connections_beyond_1024_are_closed_at_once() {
    let (gsup, addr, _file) = api(HOLDING);
    the_cap_is(&gsup, &addr, 1024);
}

/// Finding: under `ulimit -n 1024`, idle connections exhausted gsup's descriptors. The
/// cap is a quarter of the soft limit: with 256, 64 connections.
#[test]
fn the_cap_is_a_quarter_of_a_low_fd_limit() {
    let (gsup, addr, _config) = under_256_fds(&[]);
    the_cap_is(&gsup, &addr, 64);
    assert!(!gsup.stderr().contains("accept failed"), "{}", gsup.stderr());
}

/// Whoever reaches the HTTP port (its GETs are open) must not lock out the control
/// socket, which only root and gsup's own uid may use: `gsup ctl prestop` is the
/// Kubernetes preStop, `gsup ctl kill` the way out. With the HTTP port at its cap (64
/// under a limit of 256), `ctl status` still answers.
#[test]
fn a_full_http_port_leaves_the_control_socket_answering() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("gsup.sock");
    let (gsup, addr, _config) = under_256_fds(&["--control-socket", utf8(&socket)]);
    assert_eq!(gsup_cmd(&["ctl", "--socket", utf8(&socket), "status"], &[]).0, 0);
    let held = hold(&gsup, &addr, 64);
    assert_eq!(
        exchange(&addr, b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        0,
        "the HTTP port is at its cap"
    );
    let (code, stdout, stderr) = gsup_cmd(&["ctl", "--socket", utf8(&socket), "status"], &[]);
    assert_eq!(
        code,
        0,
        "HTTP clients locked out the control socket: {stdout}{stderr}\n{}",
        gsup.stderr()
    );
    assert!(stdout.contains("\"state\""), "{stdout}");
    drop(held);
}

/// Finding: out of descriptors, gsup logged `accept failed` 55 times. Lowering gsup's fd
/// limit under it (prlimit --pid) makes `accept` fail with EMFILE: gsup pauses, warns
/// once, lives, and serves again once descriptors are back.
#[test]
fn accept_failures_pause_warn_once_and_never_end_gsup() {
    let (gsup, addr, _file) = api("");
    let pid = gsup.pid().to_string();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds").count();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .expect("Max open files")
        .to_string();
    // The soft limit only: raising a hard one back needs CAP_SYS_RESOURCE.
    let lowered = format!("--nofile={}:", open_fds + 2);
    let (code, stderr) = run_tool("prlimit", &["--pid", &pid, &lowered]);
    assert_eq!(code, 0, "{stderr}");
    let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
    let failing = wait_until(PATIENCE, || gsup.stderr().contains("accept failed"));
    assert!(failing, "accept never failed:\n{}", gsup.stderr());
    // The observation window: failures go on (every 100 ms) while it lasts.
    std::thread::sleep(Duration::from_secs(1));
    let warnings = gsup.stderr().matches("accept failed").count();
    assert_eq!(warnings, 1, "{}", gsup.stderr());
    let (code, stderr) = run_tool("prlimit", &["--pid", &pid, &format!("--nofile={soft}:")]);
    assert_eq!(code, 0, "{stderr}");
    drop(idle);
    assert!(
        wait_until(PATIENCE, || http(&addr, "GET", "/alive", &[]).0 == 200),
        "{}",
        gsup.stderr()
    );
    assert!(alive(gsup.pid()));
}

/// A helper tool run to its end: (exit code, stderr).
fn run_tool(program: &str, args: &[&str]) -> (i32, String) {
    let mut tool = start(cmd(program, args), &[]);
    let code = tool.wait_code(PATIENCE);
    (code, tool.stderr())
}

// ---------------------------------------------------------------------------------------
// ctl (issue 13 item 13)

/// A config found implicitly that fails to load (an unreadable token_file) is an error,
/// not silently the defaults.
#[test]
fn ctl_says_when_its_implicit_config_fails_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("supervisor.toml"),
        "[http]\ntoken_file = \"missing-token\"\n",
    )
    .expect("write");
    let mut ctl = start_in(
        cmd(
            GSUP,
            &["ctl", "--socket", utf8(&dir.path().join("none.sock")), "status"],
        ),
        &[],
        dir.path(),
    );
    let code = ctl.wait_code(PATIENCE);
    assert_eq!(code, 2, "{}", ctl.stderr());
    assert!(ctl.stderr().contains("missing-token"), "{}", ctl.stderr());
}

/// A shutdown that ends gsup at once (during a restart backoff) still answers `ctl`.
#[test]
fn ctl_shutdown_during_a_restart_backoff_gets_its_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("gsup.sock");
    let config = config_file("[restart]\npolicy = \"always\"\nbackoff_initial = \"60s\"\nbackoff_max = \"60s\"\n");
    let mut gsup = gsup_run(
        &[
            "--config",
            utf8(config.path()),
            "--control-socket",
            utf8(&socket),
            "--",
            CHILD,
            "echo",
            "started",
            "exit",
            "1",
        ],
        &[],
    );
    gsup.expect_line("started");
    let backing_off = wait_until(PATIENCE, || {
        let (code, stdout, _) = gsup_cmd(&["ctl", "--socket", utf8(&socket), "status"], &[]);
        code == 0 && stdout.contains("\"restarting\"")
    });
    assert!(backing_off, "{}", gsup.stderr());
    let (code, stdout, stderr) = gsup_cmd(&["ctl", "--socket", utf8(&socket), "shutdown"], &[]);
    assert_eq!(code, 0, "ctl got no answer: {stdout}\n{stderr}");
    assert!(stdout.contains("shutdown"), "{stdout}");
    gsup.wait_exit(PATIENCE);
}

//! Values nobody expected, through the binary (issue 12 item 3, issue 15 item 5): a
//! duration past 365 days, an environment value that is not UTF-8, a config path that is
//! not UTF-8, and the wording of the errors `check` and `run` print for them.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::*;

/// u64::MAX seconds: humantime takes it, and `now + it` overflows an `Instant`.
const HUGE: &str = "18446744073709551615s";

/// `gsup ARGS` with `env` set by env(1), so the harness's own settings (`GSUP_LOG`, no
/// `GSUP_CONFIG`) do not cover the values under test: (exit code, stdout, stderr).
fn gsup_with_env(env: &[(&str, &[u8])], args: &[&OsStr]) -> (i32, String, String) {
    let mut command = Command::new("env");
    for (name, value) in env {
        let mut pair = format!("{name}=").into_bytes();
        pair.extend_from_slice(value);
        command.arg(OsStr::from_bytes(&pair));
    }
    command.arg(GSUP).args(args);
    let mut running = start(command, &[]);
    let code = running.wait_code(PATIENCE);
    let stdout = running.drain_lines(std::time::Duration::from_millis(300)).join("\n");
    (code, stdout, running.stderr())
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|arg| OsStr::new(*arg)).collect()
}

fn assert_refused(what: &str, (code, stdout, stderr): (i32, String, String), needle: &str) {
    assert_eq!(code, 2, "{what}: exit code; stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "{what}: stderr should name {needle:?}: {stderr}"
    );
    assert!(
        stderr.contains("365 days"),
        "{what}: stderr should say the bound: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stdout.contains("child-ran"), "{what}: no child may start: {stdout}");
}

/// `timeout = "18446744073709551615s"` passed `check`, and `run` panicked on SIGTERM;
/// `check --grace-period`, `generate` and `ctl reload` panicked on it too.
#[test]
fn a_duration_past_365_days_is_a_config_error_everywhere() {
    let config = config_file(&format!(
        "[shutdown]\ntimeout = \"{HUGE}\"\n[restart]\nstartup_timeout = \"{HUGE}\"\n"
    ));
    let path = config.path().to_str().expect("utf-8 path");
    assert_refused(
        "check",
        gsup_cmd(&["check", "--config", path], &[]),
        "`shutdown.timeout`",
    );
    assert_refused(
        "check --grace-period",
        gsup_cmd(&["check", "--grace-period", HUGE], &[]),
        "--grace-period",
    );
    for kind in ["systemd", "kubernetes", "docker"] {
        assert_refused(
            &format!("generate {kind}"),
            gsup_cmd(&["generate", kind, "--config", path], &[]),
            "`restart.startup_timeout`",
        );
    }
    assert_refused(
        "ctl reload",
        gsup_cmd(
            &["ctl", "--config", path, "--socket", "/nonexistent/gsup.sock", "reload"],
            &[],
        ),
        "`restart.startup_timeout`",
    );
    assert_refused(
        "probe --timeout",
        gsup_cmd(&["probe", "--timeout", HUGE, "--url", "http://127.0.0.1:1/ready"], &[]),
        "--timeout",
    );
    let child = ["--", CHILD, "echo", "child-ran"];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["run", "--http", "off"];
        all.extend_from_slice(args);
        all.extend_from_slice(&child);
        gsup_cmd(&all, env)
    };
    assert_refused("run --config", run(&["--config", path], &[]), "`shutdown.timeout`");
    assert_refused("run --timeout", run(&["--timeout", HUGE], &[]), "--timeout");
    assert_refused(
        "run --force-timeout",
        run(&["--force-timeout", "366d"], &[]),
        "--force-timeout",
    );
    assert_refused(
        "run SHUTDOWN_TIMEOUT_MS",
        run(&[], &[("SHUTDOWN_TIMEOUT_MS", "18446744073709551615")]),
        "SHUTDOWN_TIMEOUT_MS",
    );
}

/// `SHUTDOWN_TIMEOUT_MS=$'12\xff'` was silently the default 30 s.
#[test]
fn a_non_utf8_environment_value_is_exit_2_naming_the_variable() {
    for name in [
        "SHUTDOWN_TIMEOUT_MS",
        "READINESS_CHECK_ENABLED",
        "GSUP_LOG",
        "GSUP_CONTROL_TOKEN",
    ] {
        let env = [(name, &b"12\xff"[..])];
        let (code, _, stderr) = gsup_with_env(&env, &os(&["check"]));
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(stderr.contains("not valid UTF-8"), "{name}: {stderr}");

        let run = ["run", "--http", "off", "--", CHILD, "echo", "child-ran"];
        let (code, stdout, stderr) = gsup_with_env(&env, &os(&run));
        assert_eq!(code, 2, "run with {name}: {stderr}");
        assert!(!stdout.contains("child-ran"), "{stdout}");
    }
}

/// `GSUP_CONFIG` and `--config` are paths: bytes, not UTF-8 text.
#[test]
fn a_config_path_that_is_not_utf8_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = OsStr::from_bytes(b"gsup-\xff.toml");
    std::fs::write(dir.path().join(name), "[shutdown]\ntimeout = \"7s\"\n").expect("write");
    let path = dir.path().join(name);

    let (code, stdout, stderr) = gsup_with_env(&[("GSUP_CONFIG", path.as_os_str().as_bytes())], &os(&["check"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("timeout = \"7s\""), "{stdout}");

    let (code, stdout, stderr) = gsup_with_env(&[], &[OsStr::new("check"), OsStr::new("--config"), path.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("timeout = \"7s\""), "{stdout}");
}

/// `check` lists the errors of a file in the order of its lines, whatever the section.
#[test]
fn check_lists_errors_in_line_order() {
    let config = config_file(
        "[restart]\npolicy = \"sometimes\"\n\n[zzz]\n\n[shutdown]\ntimeout = 30\ntimeot = \"1s\"\n\n[process]\nuser = \"\"\n",
    );
    let path = config.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = gsup_cmd(&["check", "--config", path], &[]);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<usize> = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split(", line ").nth(1)?;
            rest.split(':').next()?.parse().ok()
        })
        .collect();
    assert_eq!(lines, [2, 4, 7, 8, 11], "{stderr}");
}

/// `--timeout 0s` spoke of "its enabled/off switch", which `timeout` has not; humantime's
/// "(expected number at 11)" leaked through.
#[test]
fn duration_errors_are_worded_per_key() {
    let (code, _, stderr) = gsup_cmd(&["run", "--http", "off", "--timeout", "0s", "--", "true"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--timeout 0s: must be longer than zero"), "{stderr}");
    assert!(!stderr.contains("switch"), "{stderr}");
    let (code, _, stderr) = gsup_cmd(
        &["run", "--http", "off", "--timeout", "30 seconds x", "--", "true"],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains(" at "), "no byte offsets: {stderr}");
    assert!(stderr.contains("`x`"), "names the culprit: {stderr}");
}

/// `--http localhost:PORT` (DESIGN §2).
#[test]
fn http_accepts_localhost() {
    let mut gsup = gsup_run(&["--http", "localhost:0", "--", CHILD, "echo", "child-ran"], &[]);
    assert_eq!(gsup.wait_code(PATIENCE), 0, "{}", gsup.stderr());
}

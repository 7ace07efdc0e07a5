//! DESIGN §2/§3 through the binary: `gsup check`, and every kind of config error ending
//! `run` with exit 2 and a message that names what is wrong.

mod common;

use common::*;

fn gsup(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut running = start(cmd(GSUP, args), env);
    let code = running.wait_code(PATIENCE);
    let stdout = running.drain_lines(std::time::Duration::from_secs(1)).join("\n");
    (code, stdout, running.stderr())
}

#[test]
fn the_example_config_checks_clean() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/supervisor.example.toml");
    let (code, stdout, stderr) = gsup(&["check", "--config", example], &[("GSUP_CONTROL_TOKEN", "t0ken")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("timeout = \"30s\""), "{stdout}");
    assert!(
        !stdout.contains("t0ken") && !stderr.contains("t0ken"),
        "the token is never printed"
    );
}

#[test]
fn check_names_each_values_source() {
    let config = config_file("[shutdown]\ntimeout = \"12s\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = gsup(&["check", "--config", path], &[("FORCE_SHUTDOWN_TIMEOUT_MS", "2500")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("timeout = \"12s\"  # file {path}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("force_timeout = \"2s 500ms\"  # env FORCE_SHUTDOWN_TIMEOUT_MS"),
        "{stdout}"
    );
    assert!(stdout.contains("drain_delay = \"0s\"  # default"), "{stdout}");
}

#[test]
fn check_lists_every_error_at_once() {
    let config = config_file("[shutdown]\ntimeot = \"1s\"\nforce_timeout = 5\n[restart]\npolicy = \"sometimes\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = gsup(&["check", "--config", path], &[("SHUTDOWN_TIMEOUT_MS", "abc")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown key `timeot`")
            && stderr.contains("line 2")
            && stderr.contains("did you mean `timeout`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("write 5s") || stderr.contains("\"5s\""),
        "bare number: {stderr}"
    );
    assert!(stderr.contains("sometimes"), "bad policy: {stderr}");
    assert!(stderr.contains("SHUTDOWN_TIMEOUT_MS"), "bad env: {stderr}");
}

#[test]
fn check_grace_period_fits_or_not() {
    let (code, stdout, _) = gsup(&["check", "--grace-period", "40s"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("timeout + force_timeout") && stdout.contains("fits within"),
        "{stdout}"
    );
    let (code, stdout, _) = gsup(&["check", "--grace-period", "10s"], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("does not fit within"), "{stdout}");
}

/// Every bad value stops `run` before anything starts: exit 2, naming the culprit.
#[test]
fn run_refuses_bad_values_with_exit_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--timeout", "0s"], &[], "--timeout"),
        (&["--timeout", "30"], &[], "30s"),
        (&["--forward-to", "parent"], &[], "--forward-to"),
        (&["--rewrite", "TERM=BOGUS"], &[], "BOGUS"),
        (&["--rewrite", "TERM=none"], &[], "stop"),
        (&["--restart", "sometimes"], &[], "--restart"),
        (&["--exit-map", "143=x"], &[], "--exit-map"),
        (&[], &[("SHUTDOWN_TIMEOUT_MS", "abc")], "SHUTDOWN_TIMEOUT_MS"),
        (&[], &[("SHUTDOWN_TIMEOUT_MS", "-5")], "SHUTDOWN_TIMEOUT_MS"),
        (&[], &[("SHUTDOWN_TIMEOUT_MS", "0")], "SHUTDOWN_TIMEOUT_MS"),
        (
            &[],
            &[("ENABLE_CONNECTION_DRAINING", "maybe")],
            "ENABLE_CONNECTION_DRAINING",
        ),
        (&[], &[("MEMORY_THRESHOLD_MB", "lots")], "MEMORY_THRESHOLD_MB"),
        (&["--config", "/nonexistent/gsup.toml"], &[], "/nonexistent/gsup.toml"),
        (&["--token-file", "/nonexistent/token"], &[], "/nonexistent/token"),
    ];
    for (flags, env, needle) in cases {
        // Never the default 127.0.0.1:9090, should a case get as far as binding it.
        let mut args = vec!["run", "--http", "off"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", CHILD, "echo", "child-ran"]);
        let (code, stdout, stderr) = gsup(&args, env);
        assert_eq!(code, 2, "{flags:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{flags:?} {env:?}: message should name {needle:?}: {stderr}"
        );
        assert!(
            !stdout.contains("child-ran"),
            "the child must not start on a config error"
        );
    }
}

#[test]
fn run_refuses_a_broken_file_naming_it() {
    let config = config_file("[shutdown\ntimeout = \"1s\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = gsup(&["run", "--http", "off", "--config", path, "--", "true"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains(path), "{stderr}");
}

#[test]
fn supervisor_toml_is_found_in_the_cwd_and_gsup_config_names_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("supervisor.toml"), "[shutdown]\ntimeout = \"7s\"\n").expect("write");
    let mut running = start_in(cmd(GSUP, &["check"]), &[], dir.path());
    assert_eq!(running.wait_code(PATIENCE), 0, "{}", running.stderr());
    let stdout = running.drain_lines(std::time::Duration::from_secs(1)).join("\n");
    assert!(stdout.contains("timeout = \"7s\"  # file supervisor.toml"), "{stdout}");

    let other = config_file("[shutdown]\ntimeout = \"9s\"\n");
    let path = other.path().to_str().expect("utf-8 path");
    let mut running = start_in(cmd(GSUP, &["check"]), &[("GSUP_CONFIG", path)], dir.path());
    assert_eq!(running.wait_code(PATIENCE), 0, "{}", running.stderr());
    let stdout = running.drain_lines(std::time::Duration::from_secs(1)).join("\n");
    assert!(
        stdout.contains("timeout = \"9s\""),
        "$GSUP_CONFIG wins over ./supervisor.toml: {stdout}"
    );
}

/// The file's `[process] command` runs when the command line has none; the command line
/// wins when both are given; exit_code_map remaps the final code.
#[test]
fn process_command_from_the_file_and_exit_code_map() {
    let config = config_file(&format!(
        "[process]\ncommand = [\"{CHILD}\", \"echo\", \"from-file\", \"exit\", \"143\"]\n[shutdown]\nexit_code_map = {{ 143 = 0 }}\n"
    ));
    let path = config.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = gsup(&["run", "--http", "off", "--config", path], &[]);
    assert_eq!(code, 0, "143 mapped to 0: {stderr}");
    assert!(stdout.contains("from-file"), "{stdout}");
    let (code, stdout, _) = gsup(
        &[
            "run",
            "--http",
            "off",
            "--config",
            path,
            "--exit-map",
            "143=3",
            "--",
            CHILD,
            "echo",
            "from-cli",
            "exit",
            "143",
        ],
        &[],
    );
    assert_eq!(code, 3, "the flag wins per key");
    assert!(stdout.contains("from-cli") && !stdout.contains("from-file"), "{stdout}");
}

/// DESIGN §2: `run` logs one start-up line naming the config file it loaded (or "no
/// config file: defaults") and the HTTP address.
#[test]
fn run_logs_one_start_up_line_with_the_config_file_and_the_http_address() {
    let config = config_file("[shutdown]\ntimeout = \"5s\"\n");
    let path = config.path().to_str().expect("utf-8 path");
    let mut gsup = gsup_run(
        &[
            "--config",
            path,
            "--http",
            "127.0.0.1:0",
            "--",
            CHILD,
            "echo",
            "up",
            "forever",
        ],
        &[],
    );
    gsup.expect_line("up");
    // The bound address (port 0 here) follows in `http listening`.
    gsup.http_addr();
    let stderr = gsup.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("gsup starting")).collect();
    assert_eq!(lines.len(), 1, "one start-up line: {stderr}");
    assert!(lines[0].contains(path), "names the config file: {}", lines[0]);
    assert!(lines[0].contains("127.0.0.1:0"), "names the HTTP address: {}", lines[0]);
    gsup.signal(libc::SIGKILL);

    let mut gsup = gsup_run(&["--", CHILD, "echo", "up", "forever"], &[]);
    gsup.expect_line("up");
    assert!(
        wait_until(PATIENCE, || gsup.stderr().lines().any(|l| l.contains("gsup starting")
            && l.contains("no config file: defaults")
            && l.contains("off"))),
        "{}",
        gsup.stderr()
    );
    gsup.signal(libc::SIGKILL);
}

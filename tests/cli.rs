//! DESIGN §2 for people: `ctl status` as a summary on a terminal (driven on a real pty by
//! tests/tty/pty_run.py) and JSON elsewhere; `gsup completions` loaded by a real bash;
//! `gsup man` rendered by `man -l`. bash, python3 and man are required (`.ci/run`
//! installs man-db): without them these tests fail.

mod common;

use common::*;

const PTY_RUN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tty/pty_run.py");

fn require(tool: &str, package: &str) {
    assert!(
        have(tool),
        "this test needs {tool} (Debian package {package}; .ci/run installs it)"
    );
}

/// gsup with a control socket, its HTTP off, and a child with a worker.
fn with_control_socket(dir: &tempfile::TempDir) -> (Running, String, i32) {
    let socket = dir.path().join("gsup.sock").to_str().expect("utf-8").to_string();
    let mut gsup = gsup_run(
        &[
            "--control-socket",
            &socket,
            "--",
            CHILD,
            "pid",
            "grandchild",
            "alloc",
            "4",
            "forever",
            ";",
            "forever",
        ],
        &[],
    );
    let pid = field(&gsup.expect_line("pid "), "pid");
    gsup.expect_line("grandchild ");
    assert!(
        wait_until(PATIENCE, || std::path::Path::new(&socket).exists()),
        "no control socket at {socket}"
    );
    (gsup, socket, pid)
}

/// `gsup ARGS` on a pseudo-terminal: (exit code, what it printed there).
fn on_a_terminal(args: &[&str]) -> (i32, String) {
    require("python3", "python3");
    let mut argv = vec![PTY_RUN, GSUP];
    argv.extend_from_slice(args);
    let (code, stdout, stderr) = run(cmd("python3", &argv));
    assert!(stderr.is_empty() || code == 0, "{stderr}");
    (code, stdout)
}

/// Any command to its end: (exit code, stdout, stderr).
fn run(command: std::process::Command) -> (i32, String, String) {
    let mut running = start(command, &[]);
    let code = running.wait_code(PATIENCE);
    (
        code,
        running.drain_lines(std::time::Duration::from_millis(300)).join("\n"),
        running.stderr(),
    )
}

#[test]
fn ctl_status_is_a_summary_on_a_terminal_and_json_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut gsup, socket, pid) = with_control_socket(&dir);
    // Once the monitor has sampled the child and its worker.
    let mut last = (0, String::new());
    let sampled = wait_until(PATIENCE, || {
        last = on_a_terminal(&["ctl", "--socket", &socket, "status"]);
        last.1.contains("  tree        2 processes, ")
    });
    let (code, screen) = last;
    assert!(sampled, "the tree was never sampled: {screen}");
    assert_eq!(code, 0, "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines.first(), Some(&"running, ready"), "{screen}");
    assert!(
        screen.contains(&format!("  pid         {pid} (generation 1), up ")),
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  tree        2 processes, ") && l.contains("MiB RSS") && l.ends_with("% CPU")),
        "{screen}"
    );
    for line in ["  restarts    0", "  last exit   none", "  last reload none"] {
        assert!(lines.contains(&line), "{line:?}: {screen}");
    }
    assert!(!screen.contains('{'), "no JSON on a terminal: {screen}");
    assert!(lines.len() <= 8, "short: {screen}");

    // `--json` on a terminal, and a pipe without it: the /status JSON.
    let (code, screen) = on_a_terminal(&["ctl", "--socket", &socket, "status", "--json"]);
    assert_eq!(code, 0, "{screen}");
    let status: serde_json::Value = serde_json::from_str(screen.trim()).expect("JSON on a terminal with --json");
    assert_eq!(status["child"]["pid"], pid);
    let (code, stdout, _) = gsup_cmd(&["ctl", "--socket", &socket, "status"], &[]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON on a pipe");
    assert_eq!(status["state"], "running");

    gsup.signal(libc::SIGTERM);
    gsup.wait_exit(PATIENCE);
}

#[test]
fn bash_loads_the_completion_and_completes_subcommands() {
    require("bash", "bash");
    let (code, script, stderr) = gsup_cmd(&["completions", "bash"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), format!("{script}\n")).expect("write the completion");
    let check = format!(
        "source '{}' && complete -p gsup && COMP_WORDS=(gsup ct) COMP_CWORD=1 && _gsup gsup ct gsup && echo \"reply: ${{COMPREPLY[*]}}\" \
         && COMP_WORDS=(gsup ctl st) COMP_CWORD=2 && _gsup gsup st ctl && echo \"reply: ${{COMPREPLY[*]}}\"",
        file.path().display()
    );
    let (code, stdout, stderr) = run(cmd("bash", &["--norc", "--noprofile", "-c", &check]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("complete ") && l.contains(" -F _gsup ") && l.ends_with(" gsup")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reply: ctl"),
        "`gsup ct<TAB>` completes to ctl: {stdout}"
    );
    assert!(
        stdout.contains("reply: status"),
        "`gsup ctl st<TAB>` completes to status: {stdout}"
    );
}

#[test]
fn zsh_and_fish_completions_are_printed() {
    for (shell, marker) in [("zsh", "#compdef gsup"), ("fish", "complete -c gsup")] {
        let (code, script, stderr) = gsup_cmd(&["completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("grace-period"), "{shell} knows check's flags");
    }
    let (code, _, stderr) = gsup_cmd(&["completions", "tcsh"], &[]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");
}

#[test]
fn man_renders_the_page_with_every_subcommand() {
    require("man", "man-db");
    let (code, page, stderr) = gsup_cmd(&["man"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let file = tempfile::Builder::new().suffix(".1").tempfile().expect("temp file");
    std::fs::write(file.path(), format!("{page}\n")).expect("write the page");
    let path = file.path().to_str().expect("utf-8").to_string();
    let mut man = cmd("man", &["-l", &path]);
    man.env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "")
        .env("PAGER", "cat");
    let (code, text, stderr) = run(man);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "NAME",
        "A small, correct process supervisor",
        "GSUP RUN",
        "GSUP CHECK",
        "GSUP CTL",
        "GSUP COMPLETIONS",
        "GSUP MAN",
        "--grace-period",
        "--json",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the rendered page:\n{text}"
        );
    }
    assert!(stderr.trim().is_empty(), "man had warnings: {stderr}");
}

/// The glibc build links GCC's unwinder statically (build.rs, issue 14): loading
/// `libgcc_s.so.1` ran `cpuid` a dozen times at every start, each an exit to the
/// hypervisor on a virtual machine. The binary the tests run must not need it.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn gsup_does_not_load_libgcc_s() {
    require("ldd", "libc-bin");
    let (code, out, err) = run(cmd("ldd", &[GSUP]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("libc.so"), "ldd lists the C library: {out}");
    assert!(!out.contains("libgcc_s"), "gsup needs libgcc_s: {out}");
}

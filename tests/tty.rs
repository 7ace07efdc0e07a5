//! DESIGN §4 Interactive use: gsup under a real pseudo-terminal, driven the way a person
//! types (tests/tty/job_control.py, standard-library Python: pty + select).

mod common;

use common::*;

fn scenario(name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tty/job_control.py");
    if !(tool("python3", "python3") && tool("bash", "bash")) {
        return;
    }
    let mut driver = start(cmd("python3", &[script, GSUP, CHILD, name]), &[]);
    let code = driver.wait_code(std::time::Duration::from_secs(120));
    let output = driver.drain_lines(std::time::Duration::from_secs(1)).join("\n");
    assert_eq!(code, 0, "{output}\n{}", driver.stderr());
    assert!(output.contains("ok: "), "the driver checked nothing: {output}");
}

/// `gsup run -- cat` (and the fixture) under an interactive bash: Ctrl+Z stops the job,
/// the shell says so, `fg` resumes it, Ctrl+C ends it with 130, Ctrl+D ends cat with 0.
#[test]
fn job_control_from_the_users_shell() {
    scenario("outer");
}

/// `gsup run -- bash -i -m`: the supervised shell has working job control.
#[test]
fn job_control_inside_a_supervised_shell() {
    scenario("inner");
}

/// Ctrl+C while gsup's own group holds the terminal (a restart backoff, then a post-stop
/// hook): the first starts the shutdown, the second forces it (DESIGN §4 Signals).
#[test]
fn ctrl_c_while_gsup_holds_the_terminal_shuts_down_then_forces() {
    scenario("gsup-holds-terminal");
}

/// DESIGN §2: on a terminal, whose default log level is warn, the start-up line shows a
/// config file found implicitly (./supervisor.toml), and stays quiet for one named.
#[test]
fn an_implicit_config_file_is_shown_on_the_terminal() {
    scenario("implicit");
}

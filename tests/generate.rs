//! DESIGN §2 `gsup generate`: the deployment snippets agree with gsup's own budget.

mod common;

use std::time::Duration;

use common::*;

fn generate(kind: &str, config: &str) -> (i32, String, String) {
    let file = config_file(config);
    let path = file.path().to_str().expect("utf-8");
    let mut running = start(cmd(GSUP, &["generate", kind, "--config", path]), &[]);
    let code = running.wait_code(PATIENCE);
    (
        code,
        running.drain_lines(Duration::from_millis(300)).join("\n"),
        running.stderr(),
    )
}

const CONFIG: &str = "[process]\ncommand = [\"/usr/bin/sleep\", \"600\"]\n\
                      [shutdown]\ntimeout = \"20s\"\nforce_timeout = \"5s\"\ndrain_delay = \"3s\"\n";

#[test]
fn systemd_stop_timeout_is_the_budget_and_the_unit_verifies() {
    let (code, unit, stderr) = generate("systemd", CONFIG);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        unit.contains("\nTimeoutStopSec=25\n"),
        "timeout + force_timeout: {unit}"
    );
    assert!(
        unit.contains("Type=notify") && unit.contains("KillMode=mixed"),
        "{unit}"
    );
    assert!(unit.contains(&format!("ExecStart={GSUP} run --config ")), "{unit}");
    let have = start(cmd("sh", &["-c", "command -v systemd-analyze"]), &[]).wait_code(PATIENCE) == 0;
    if !have {
        eprintln!("SKIPPED: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gsup-app.service");
    std::fs::write(&path, &unit).expect("write unit");
    let mut verify = start(cmd("systemd-analyze", &["verify", path.to_str().expect("utf-8")]), &[]);
    assert_eq!(verify.wait_code(PATIENCE), 0, "{}", verify.stderr());
    let complaints = verify.stderr();
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify complained (it exits 0 on unknown keys): {complaints}"
    );
}

#[test]
fn kubernetes_grace_period_and_probes_follow_the_config() {
    let (code, yaml, _) = generate("kubernetes", CONFIG);
    assert_eq!(code, 0);
    assert!(
        yaml.contains("terminationGracePeriodSeconds: 33"),
        "drain_delay + timeout + force_timeout + 5 s: {yaml}"
    );
    assert!(
        yaml.contains(r#"command: ["gsup", "probe", "--url", "http://127.0.0.1:9090/ready"]"#),
        "{yaml}"
    );
    assert!(yaml.contains(r#"command: ["gsup", "ctl", "prestop"]"#), "{yaml}");
    assert!(
        yaml.contains("GSUP_CONTROL_SOCKET"),
        "no [control] socket configured: set it by env: {yaml}"
    );

    let (_, yaml, _) = generate(
        "kubernetes",
        &format!("{CONFIG}[http]\nlisten = \"0.0.0.0:9090\"\n[control]\nsocket = \"/run/gsup.sock\"\n"),
    );
    assert!(
        yaml.contains("httpGet: { path: /ready, port: 9090 }")
            && yaml.contains("httpGet: { path: /alive, port: 9090 }"),
        "{yaml}"
    );
    assert!(!yaml.contains("GSUP_CONTROL_SOCKET"), "{yaml}");

    let (_, yaml, _) = generate("kubernetes", &format!("{CONFIG}[http]\nlisten = \"off\"\n"));
    assert!(
        yaml.contains("# warning:") && !yaml.contains("readinessProbe"),
        "{yaml}"
    );
}

#[test]
fn docker_names_the_budget_and_works_without_a_command() {
    let (code, dockerfile, _) = generate("docker", CONFIG);
    assert_eq!(code, 0);
    assert!(dockerfile.contains("docker stop --time 25"), "{dockerfile}");
    assert!(
        dockerfile.contains("STOPSIGNAL SIGTERM")
            && dockerfile.contains(r#"HEALTHCHECK CMD ["gsup", "probe", "ready"]"#)
    );
    assert!(dockerfile.contains(r#"CMD ["/usr/bin/sleep", "600"]"#), "{dockerfile}");
    let (code, dockerfile, _) = generate("docker", "");
    assert_eq!(code, 0, "no command is fine: a placeholder");
    assert!(dockerfile.contains("/path/to/your/program"), "{dockerfile}");
}

/// The probe command the Kubernetes snippet writes works against a running gsup.
#[test]
fn the_generated_exec_probe_works() {
    let port = free_port();
    let mut gsup = gsup_run(
        &[
            "--http",
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
    gsup.http_addr();
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut probe = start(cmd(GSUP, &["probe", "--url", &url]), &[]);
    assert_eq!(probe.wait_code(PATIENCE), 0, "{}", probe.stderr());
}

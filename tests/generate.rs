//! DESIGN §2 `gsup generate`: the deployment snippets agree with gsup's own budget.

mod common;

use std::time::Duration;

use common::*;

fn generate(kind: &str, config: &str) -> (i32, String, String) {
    let file = config_file(config);
    generate_from(kind, file.path().to_str().expect("utf-8"))
}

fn generate_from(kind: &str, path: &str) -> (i32, String, String) {
    let mut running = start(cmd(GSUP, &["generate", kind, "--config", path]), &[]);
    let code = running.wait_code(PATIENCE);
    (
        code,
        running.drain_lines(Duration::from_millis(300)).join("\n"),
        running.stderr(),
    )
}

const CONFIG: &str = "[process]\ncommand = [\"/usr/bin/sleep\", \"600\"]\n\
                      [shutdown]\ntimeout = \"20s\"\nforce_timeout = \"5s\"\ndrain_delay = \"3s\"\n\
                      [restart]\nstartup_timeout = \"10s\"\n\
                      [readiness]\nprobe = { notify = true }\n\
                      [[listen]]\naddress = \"127.0.0.1:3000\"\n";

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
    // The config by environment, so ExecReload's `ctl` reads it as `run` does.
    assert!(unit.contains("\nEnvironment=GSUP_CONFIG=/"), "{unit}");
    assert!(
        unit.contains(&format!("ExecStart={GSUP} run -- /usr/bin/sleep 600")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("\nExecReload={GSUP} ctl reload\n")),
        "with sockets: {unit}"
    );
    assert!(
        unit.contains("\nTimeoutStartSec=15\n"),
        "startup_timeout + 5 s bounds the reload: {unit}"
    );
    if !tool("systemd-analyze", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gsup-app.service");
    std::fs::write(&path, &unit).expect("write unit");
    assert_verifies(&path);
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
        yaml.contains("- name: GSUP_CONFIG\n              value: /etc/gsup/supervisor.toml"),
        "ctl prestop reads the config (its wait is drain_delay + 5 s): {yaml}"
    );
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
    let mut gsup = gsup_run(&["--http", "127.0.0.1:0", "--", CHILD, "echo", "up", "forever"], &[]);
    gsup.expect_line("up");
    let url = format!("http://{}/ready", gsup.http_addr());
    let mut probe = start(cmd(GSUP, &["probe", "--url", &url]), &[]);
    assert_eq!(probe.wait_code(PATIENCE), 0, "{}", probe.stderr());
}

// The committed examples in deploy/ use deploy/supervisor.toml; their timeouts must be the
// ones `gsup generate` writes for it (DESIGN §4 "The budget").

const DEPLOY_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/supervisor.toml");

fn deploy_file(path: &str) -> String {
    let path = format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The committed unit, `systemd/gsup@.service` (top level, beside `deploy/`).
fn systemd_unit() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/gsup@.service");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// `gsup generate KIND --config deploy/supervisor.toml`.
fn generated(kind: &str) -> String {
    let (code, text, stderr) = generate_from(kind, DEPLOY_CONFIG);
    assert_eq!(code, 0, "gsup generate {kind} for deploy/supervisor.toml: {stderr}");
    text
}

/// `gsup check --config deploy/supervisor.toml [extra...]`: exit code and stdout.
fn check_deploy_config(extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["check", "--config", DEPLOY_CONFIG];
    args.extend_from_slice(extra);
    let mut running = start(cmd(GSUP, &args), &[]);
    let code = running.wait_code(PATIENCE);
    (
        code,
        running.drain_lines(Duration::from_millis(300)).join("\n"),
        running.stderr(),
    )
}

/// The effective value of `key` as `gsup check` prints it (`key = VALUE  # source`),
/// without its quotes.
fn effective(check: &str, key: &str) -> String {
    let prefix = format!("{key} = ");
    let line = check
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in `gsup check`:\n{check}"));
    let value = line[prefix.len()..].split("  #").next().unwrap_or_default();
    value.trim().trim_matches('"').to_string()
}

/// The values of `key` on the lines of `text` that are not comments: `Key=value`
/// (systemd, `separator` "=") or `key: value` (YAML, ":").
fn settings<'a>(text: &'a str, key: &str, separator: &str) -> Vec<&'a str> {
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix(separator))
        .map(|value| value.split(" #").next().unwrap_or_default().trim())
        .collect()
}

fn setting<'a>(text: &'a str, key: &str, separator: &str) -> &'a str {
    match settings(text, key, separator)[..] {
        [value] => value,
        ref values => panic!("expected one {key}{separator}, found {values:?} in:\n{text}"),
    }
}

/// Every number right after `before` anywhere in `text`, comments included.
fn numbers_after(text: &str, before: &str) -> Vec<u64> {
    text.match_indices(before)
        .filter_map(|(at, _)| {
            let digits: String = text[at + before.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn the_deploy_config_passes_check_without_warnings() {
    let (code, _, stderr) = check_deploy_config(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "warnings for deploy/supervisor.toml: {stderr}"
    );
}

#[test]
fn the_systemd_unit_agrees_with_generate() {
    let unit = systemd_unit();
    let want = generated("systemd");
    for key in ["Type", "NotifyAccess", "KillMode", "TimeoutStopSec"] {
        assert_eq!(
            setting(&unit, key, "="),
            setting(&want, key, "="),
            "{key}= of systemd/gsup@.service and of `gsup generate systemd`:\n{want}"
        );
    }

    // Both the start (READY=1) and ExecReload are bounded by TimeoutStartSec, and
    // `gsup ctl reload` waits up to startup_timeout + 5 s (DESIGN §2).
    let (code, check, stderr) = check_deploy_config(&[]);
    assert_eq!(code, 0, "{stderr}");
    let startup = humantime::parse_duration(&effective(&check, "startup_timeout")).expect("a duration");
    let start_timeout: u64 = setting(&unit, "TimeoutStartSec", "=").parse().expect("seconds");
    assert!(
        Duration::from_secs(start_timeout) >= startup + Duration::from_secs(5),
        "TimeoutStartSec={start_timeout} is shorter than startup_timeout {startup:?} + 5 s"
    );

    // run and ExecReload's `gsup ctl` find the same config and control socket, and the
    // socket's directory is the one systemd creates.
    assert_eq!(setting(&unit, "ExecStart", "="), "/usr/local/bin/gsup run");
    assert_eq!(setting(&unit, "ExecReload", "="), "/usr/local/bin/gsup ctl reload");
    let env = settings(&unit, "Environment", "=");
    assert!(env.contains(&"GSUP_CONFIG=/etc/gsup/%i.toml"), "{env:?}");
    let socket = env
        .iter()
        .find_map(|e| e.strip_prefix("GSUP_CONTROL_SOCKET="))
        .expect("GSUP_CONTROL_SOCKET in Environment=");
    let runtime = setting(&unit, "RuntimeDirectory", "=");
    assert!(
        socket.starts_with(&format!("%t/{runtime}/")),
        "control socket {socket} outside RuntimeDirectory={runtime}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    if !tool("systemd-analyze", "systemd") {
        return;
    }
    // verify wants every Exec* binary to exist: point them at the gsup under test.
    let unit = systemd_unit();
    assert!(unit.contains("/usr/local/bin/gsup "), "{unit}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("gsup@.service"),
        unit.replace("/usr/local/bin/gsup", GSUP),
    )
    .expect("write unit");
    // An instance of the template, as `systemctl enable gsup@api` makes it.
    let instance = dir.path().join("gsup@api.service");
    assert_verifies(&instance);
}

#[test]
fn the_dockerfile_agrees_with_generate() {
    let dockerfile = deploy_file("docker/Dockerfile");
    let want = generated("docker");
    for phrase in ["docker stop --time ", "--stop-timeout ", "stop_grace_period: "] {
        let budget = numbers_after(&want, phrase);
        assert!(!budget.is_empty(), "`gsup generate docker` names no {phrase:?}: {want}");
        let have = numbers_after(&dockerfile, phrase);
        assert!(!have.is_empty(), "deploy/docker/Dockerfile names no {phrase:?}");
        assert!(
            have.iter().all(|n| *n == budget[0]),
            "{phrase:?}: {have:?} in deploy/docker/Dockerfile, {} from `gsup generate docker`",
            budget[0]
        );
    }
    assert_eq!(setting(&dockerfile, "STOPSIGNAL", " "), "SIGTERM");
    assert_eq!(
        setting(&dockerfile, "ENTRYPOINT", " "),
        r#"["/usr/local/bin/gsup", "run", "--"]"#
    );
    assert!(
        setting(&dockerfile, "HEALTHCHECK", " ").ends_with(r#"CMD ["/usr/local/bin/gsup", "probe", "ready"]"#),
        "{dockerfile}"
    );
    // The image holds the config gsup reads and the program that config names.
    assert!(
        dockerfile.contains("cp deploy/supervisor.toml /rootfs/etc/gsup/supervisor.toml")
            && dockerfile.contains("GSUP_CONFIG=/etc/gsup/supervisor.toml"),
        "{dockerfile}"
    );
    let program = setting(&want, "CMD", " ")
        .trim_start_matches("[\"")
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        dockerfile
            .split_whitespace()
            .any(|word| word == format!("/rootfs{program}")),
        "the image does not install {program}, the config's [process] command"
    );
}

/// The ConfigMap's `supervisor.toml: |` block, de-indented.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|line| line.trim() != "supervisor.toml: |")
        .skip(1);
    let mut toml = String::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            toml.push('\n');
        } else if let Some(line) = line.strip_prefix("    ") {
            toml.push_str(line);
            toml.push('\n');
        } else {
            break;
        }
    }
    toml
}

#[test]
fn the_kubernetes_deployment_agrees_with_generate_and_its_configmap_is_the_deploy_config() {
    let yaml = deploy_file("kubernetes/deployment.yaml");
    assert_eq!(
        configmap_toml(&yaml).trim_end(),
        deploy_file("supervisor.toml").trim_end(),
        "the ConfigMap in deploy/kubernetes/deployment.yaml is not deploy/supervisor.toml"
    );
    let want = generated("kubernetes");
    let grace = setting(&yaml, "terminationGracePeriodSeconds", ":");
    assert_eq!(
        grace,
        setting(&want, "terminationGracePeriodSeconds", ":"),
        "terminationGracePeriodSeconds: `gsup generate kubernetes` says:\n{want}"
    );
    // Probes and preStop as generated: httpGet on [http] listen's port, `gsup ctl prestop`.
    for line in want
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("httpGet:") || line.starts_with("command: [\"gsup\", \"ctl\""))
    {
        assert!(yaml.contains(line), "deploy/kubernetes/deployment.yaml lacks `{line}`");
    }
    assert_eq!(settings(&yaml, "httpGet", ":").len(), 2, "{yaml}");

    // gsup's own check agrees that the grace period covers the worst case.
    let (code, stdout, stderr) = check_deploy_config(&["--grace-period", &format!("{grace}s")]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("drain_delay + timeout + force_timeout"), "{stdout}");

    // The container finds the mounted config, and the control socket is writable.
    assert!(yaml.contains("value: /etc/gsup/supervisor.toml") && yaml.contains("mountPath: /etc/gsup,"));
    let (_, check, _) = check_deploy_config(&[]);
    let socket = effective(&check, "socket");
    let dir = std::path::Path::new(&socket).parent().expect("a directory");
    assert!(
        yaml.contains(&format!("mountPath: {} }}", dir.display())),
        "no writable volume at {} for the control socket {socket}",
        dir.display()
    );
}

/// `systemd-analyze verify UNIT` exits 0 and prints nothing (it exits 0 on unknown keys,
/// so its complaints are the real verdict).
fn assert_verifies(unit: &std::path::Path) {
    let mut verify = start(cmd("systemd-analyze", &["verify", unit.to_str().expect("utf-8")]), &[]);
    assert_eq!(verify.wait_code(PATIENCE), 0, "{}", verify.stderr());
    let complaints = verify.stderr();
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify complained (it exits 0 on unknown keys): {complaints}"
    );
}

//! DESIGN §2 `gsup generate`: the deployment snippets agree with gsup's own budget.

mod common;

use std::time::Duration;

use common::*;

fn generate(kind: &str, config: &str) -> (i32, String, String) {
    let file = config_file(config);
    generate_from(kind, file.path().to_str().expect("utf-8"))
}

fn generate_from(kind: &str, path: &str) -> (i32, String, String) {
    generate_with(GSUP, kind, Some(std::path::Path::new(path)))
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
    assert_unit_verifies(&unit);
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
        yaml.contains("- name: GSUP_CONFIG\n              value: \"/etc/gsup/supervisor.toml\""),
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
    for key in ["Type", "NotifyAccess", "KillMode", "TimeoutStopSec", "LimitNOFILE"] {
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
    assert_eq!(setting(&unit, "ExecStart", "="), "/usr/bin/gsup run");
    assert_eq!(setting(&unit, "ExecReload", "="), "/usr/bin/gsup ctl reload");
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
    // verify wants every Exec* binary to exist: point them at the gsup under test.
    let unit = systemd_unit();
    assert!(unit.contains("/usr/bin/gsup "), "{unit}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("gsup@.service"), unit.replace("/usr/bin/gsup", GSUP)).expect("write unit");
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

/// `unit`, written as `gsup-app.service`, passes [`assert_verifies`].
fn assert_unit_verifies(unit: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gsup-app.service");
    std::fs::write(&path, unit).expect("write unit");
    assert_verifies(&path);
}

/// `systemd-analyze verify UNIT` exits 0 and prints nothing (it exits 0 on unknown keys,
/// so its complaints are the real verdict).
fn assert_verifies(unit: &std::path::Path) {
    if !tool("systemd-analyze", "systemd") {
        return;
    }
    let mut verify = start(cmd("systemd-analyze", &["verify", unit.to_str().expect("utf-8")]), &[]);
    assert_eq!(verify.wait_code(PATIENCE), 0, "{}", verify.stderr());
    let complaints = verify.stderr();
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify complained (it exits 0 on unknown keys): {complaints}"
    );
}

// DESIGN §2: whatever `generate` prints works as printed.

/// A program whose words need systemd's quoting and escaping, not the shell's.
const AWKWARD: &[&str] = &[
    "/bin/echo",
    "100%",
    "$HOME",
    "it's",
    "a b",
    "say \"hi\"",
    r"back\slash",
    "ü",
];

fn awkward_config() -> String {
    let words: Vec<String> = AWKWARD
        .iter()
        .map(|w| serde_json::Value::from(*w).to_string())
        .collect();
    format!("[process]\ncommand = [{}]\n", words.join(", "))
}

/// `gsup generate KIND [--config PATH]` run by `gsup` at `exe`, in an empty directory.
fn generate_with(exe: &str, kind: &str, config: Option<&std::path::Path>) -> (i32, String, String) {
    let mut args = vec!["generate", kind];
    if let Some(config) = config {
        args.extend(["--config", config.to_str().expect("utf-8")]);
    }
    let empty = tempfile::tempdir().expect("temp dir");
    let mut running = start_in(cmd(exe, &args), &[], empty.path());
    let code = running.wait_code(PATIENCE);
    let mut out = running.drain_lines(Duration::from_millis(300)).join("\n");
    out.push('\n');
    (code, out, running.stderr())
}

/// systemd reads the unit as written: `%` and `$` escaped, words quoted by
/// systemd.syntax(7). gsup itself runs from a directory whose name holds a space, a `$`
/// and a `%` (so `systemd-analyze verify` finds ExecStart's binary only if the path is
/// quoted and escaped right: the executable is never variable-expanded, and systemd
/// refuses quotes in it), and the config file too (a bad `%` in Environment= is a verify
/// warning).
#[test]
fn the_systemd_unit_quotes_by_systemd_rules_and_verifies() {
    let bin = std::path::Path::new(GSUP).parent().expect("target dir");
    let odd = tempfile::Builder::new()
        .prefix("gsup 100% $x ")
        .tempdir_in(bin)
        .expect("temp dir in the target dir");
    let exe = odd.path().join("gsup");
    std::fs::hard_link(GSUP, &exe)
        .or_else(|_| std::fs::copy(GSUP, &exe).map(drop))
        .expect("gsup in an awkward directory");
    let config = odd.path().join("app 100%.toml");
    std::fs::write(&config, awkward_config()).expect("write config");
    let exe = exe.to_str().expect("utf-8");

    let (code, unit, stderr) = generate_with(exe, "systemd", Some(&config));
    assert_eq!(code, 0, "{stderr}");
    let escaped_exe = format!("\"{}\"", exe.replace('%', "%%"));
    assert_eq!(
        setting(&unit, "ExecStart", "="),
        format!(r#"{escaped_exe} run -- /bin/echo 100%% $$HOME "it's" "a b" "say \"hi\"" "back\\slash" ü"#),
        "{unit}"
    );
    let config = config.canonicalize().expect("canonical");
    assert_eq!(
        settings(&unit, "Environment", "=")[0],
        format!("\"GSUP_CONFIG={}\"", config.display().to_string().replace('%', "%%")),
        "{unit}"
    );
    assert_eq!(
        setting(&unit, "Description", "="),
        r#"gsup: /bin/echo 100%% $HOME it's a b say "hi" back\slash ü"#
    );
    // DESIGN §9: the notify socket's directory, and gsup's own fd limit.
    assert_eq!(setting(&unit, "RuntimeDirectory", "="), "%N", "{unit}");
    assert_eq!(setting(&unit, "LimitNOFILE", "="), "1024:524288", "{unit}");
    assert!(
        stderr.contains("inside a build tree"),
        "ExecStart points into target/: say so: {stderr}"
    );

    assert_unit_verifies(&unit);
}

/// `generate` without a command prints a placeholder and says so; without a build-tree
/// path in it (the installed gsup) nothing else is said.
#[test]
fn a_placeholder_program_is_named_on_stderr() {
    for kind in ["systemd", "kubernetes", "docker"] {
        let (code, out, stderr) = generate_with(GSUP, kind, None);
        assert_eq!(code, 0, "{stderr}");
        assert!(out.contains("/path/to/your/program"), "{out}");
        assert!(
            stderr.contains("warning: the config has no [process] command"),
            "{kind}: {stderr}"
        );
    }
    let file = config_file("[process]\ncommand = [\"/usr/bin/sleep\", \"600\"]\n");
    let (_, _, stderr) = generate_with(GSUP, "docker", Some(file.path()));
    assert!(stderr.trim().is_empty(), "nothing to say: {stderr}");
}

fn yaml_documents(text: &str) -> Vec<serde_norway::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|document| serde_norway::Value::deserialize(document).unwrap_or_else(|e| panic!("{e}:\n{text}")))
        .collect()
}

fn kind_of<'a>(documents: &'a [serde_norway::Value], kind: &str) -> Option<&'a serde_norway::Value> {
    documents.iter().find(|d| d["kind"].as_str() == Some(kind))
}

fn container(deployment: &serde_norway::Value) -> &serde_norway::Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn env_of(container: &serde_norway::Value, name: &str) -> Option<String> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

/// The volume mounted at `path` in the container, from the pod's volumes.
fn volume_at<'a>(deployment: &'a serde_norway::Value, path: &str) -> Option<&'a serde_norway::Value> {
    let mount = container(deployment)["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))?;
    deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}

/// Kubernetes, read as the API server would: GSUP_CONFIG only with the ConfigMap (the
/// config's own text) and the volume that mounts it there; the control socket's
/// directory is writable; args are the program's words; probes only for enabled
/// endpoints.
#[test]
fn the_kubernetes_manifests_parse_and_hold_what_they_name() {
    let text = format!(
        "{}[http]\nlisten = \"0.0.0.0:9090\"\nreadiness = false\n",
        awkward_config()
    );
    let file = config_file(&text);
    let (code, yaml, stderr) = generate_with(GSUP, "kubernetes", Some(file.path()));
    assert_eq!(code, 0, "{stderr}");
    let documents = yaml_documents(&yaml);
    let deployment = kind_of(&documents, "Deployment").expect("a Deployment");
    let container = container(deployment);
    let config = env_of(container, "GSUP_CONFIG").expect("GSUP_CONFIG");
    let (dir, name) = config.rsplit_once('/').expect("a path");
    let volume = volume_at(deployment, dir).unwrap_or_else(|| panic!("nothing mounted at {dir}: {yaml}"));
    let map_name = volume["configMap"]["name"].as_str().expect("a configMap volume");
    let map = documents
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap") && d["metadata"]["name"].as_str() == Some(map_name))
        .unwrap_or_else(|| panic!("no ConfigMap {map_name}: {yaml}"));
    assert_eq!(map["data"][name].as_str(), Some(text.as_str()), "the config's own text");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string"))
        .collect();
    assert_eq!(args, AWKWARD);
    let socket = env_of(container, "GSUP_CONTROL_SOCKET").expect("GSUP_CONTROL_SOCKET");
    let socket_dir = socket.rsplit_once('/').expect("a path").0;
    assert!(
        volume_at(deployment, socket_dir).is_some_and(|v| v.get("emptyDir").is_some()),
        "the control socket's directory is an emptyDir: {yaml}"
    );
    assert!(container.get("readinessProbe").is_none(), "readiness = false: {yaml}");
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/alive"),
        "{yaml}"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["port"].as_u64(),
        Some(9090),
        "{yaml}"
    );

    // Without a config file: no GSUP_CONFIG, no ConfigMap.
    let (code, yaml, stderr) = generate_with(GSUP, "kubernetes", None);
    assert_eq!(code, 0, "{stderr}");
    let documents = yaml_documents(&yaml);
    assert!(kind_of(&documents, "ConfigMap").is_none(), "{yaml}");
    let deployment = kind_of(&documents, "Deployment").expect("a Deployment");
    assert_eq!(env_of(self::container(deployment), "GSUP_CONFIG"), None, "{yaml}");
    let probes = &self::container(deployment)["readinessProbe"]["exec"]["command"];
    assert_eq!(
        probes[3].as_str(),
        Some("http://127.0.0.1:9090/ready"),
        "loopback: exec probes: {yaml}"
    );
}

/// Docker: a config file is copied only when one was given, from where it was given.
#[test]
fn the_dockerfile_copies_a_config_only_when_one_was_given() {
    let (code, dockerfile, stderr) = generate_with(GSUP, "docker", None);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dockerfile.contains("supervisor.toml"), "no config given: {dockerfile}");
    assert!(!dockerfile.contains("GSUP_CONFIG"), "{dockerfile}");

    let file = config_file(&format!("{}[http]\nlisten = \"off\"\n", awkward_config()));
    let (code, dockerfile, stderr) = generate_with(GSUP, "docker", Some(file.path()));
    assert_eq!(code, 0, "{stderr}");
    let name = file.path().file_name().expect("a name").to_str().expect("utf-8");
    assert_eq!(
        settings(&dockerfile, "COPY", " ").len(),
        2,
        "gsup and the config: {dockerfile}"
    );
    assert!(
        dockerfile.contains(&format!(
            "COPY \"{name}\" /etc/gsup/supervisor.toml\nENV GSUP_CONFIG=/etc/gsup/supervisor.toml\n"
        )),
        "{dockerfile}"
    );
    let cmd: Vec<String> = serde_json::from_str(setting(&dockerfile, "CMD", " ")).expect("CMD in exec form is JSON");
    assert_eq!(cmd, AWKWARD);
    assert!(
        !dockerfile.contains("HEALTHCHECK CMD"),
        "[http] listen = \"off\": no /ready to probe: {dockerfile}"
    );
}

/// A `token_file` is not in the ConfigMap or the image: the container needs it mounted
/// at the same path (gsup exits 2 without it), so `generate` says so.
#[test]
fn a_token_file_the_container_needs_is_named_on_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("write token");
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "[process]\ncommand = [\"/bin/true\"]\n[http]\ntoken_file = {:?}\n",
            token.to_str().expect("utf-8")
        ),
    )
    .expect("write config");
    for kind in ["kubernetes", "docker"] {
        let (code, _, stderr) = generate_with(GSUP, kind, Some(&config));
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains(&format!("token_file {}", token.display())),
            "{kind}: {stderr}"
        );
    }
}

//! `gsup generate systemd|kubernetes|docker`: deployment snippets written from the
//! effective config, so the orchestrator's stop timeout always agrees with gsup's own
//! shutdown budget (DESIGN §2, §4 "The budget").

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ConfigFlags, GenerateArgs, GenerateKind};
use crate::config::{self, Loaded};

/// Extra time Kubernetes gets on top of gsup's worst case (DESIGN §2).
const KUBERNETES_MARGIN: Duration = Duration::from_secs(5);

pub fn run(args: &GenerateArgs, env: &config::Env, cwd: &Path) -> i32 {
    let flags = ConfigFlags {
        config: args.config.clone(),
        ..ConfigFlags::default()
    };
    let loaded = match config::load(&flags, env, cwd) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("gsup: error: {error}");
            }
            return 2;
        }
    };
    // The file as the user named it (for the Dockerfile's COPY) and its text (for the
    // ConfigMap): what `run` in the container must read is exactly what was checked here.
    let given = args.config.clone().or_else(|| loaded.file.clone());
    let config_file = match &loaded.file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(ConfigFile {
                given: given.unwrap_or_else(|| path.clone()),
                text,
            }),
            Err(error) => {
                eprintln!("gsup: error: {}: {error}", path.display());
                return 2;
            }
        },
    };
    let gsup = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "gsup".into());
    let program = program(&loaded);
    let container = !matches!(args.kind, GenerateKind::Systemd);
    for warning in warnings(&program, (!container).then_some(&gsup)) {
        eprintln!("gsup: warning: {warning}");
    }
    if let Some(token) = loaded.config.http.token_file.as_ref().filter(|_| container) {
        eprintln!(
            "gsup: warning: the config reads [http] token_file {}: the container needs it at that \
             path (a Kubernetes Secret, a Docker secret), or gsup exits 2",
            token.display()
        );
    }
    let text = match args.kind {
        GenerateKind::Systemd => systemd(&loaded, &gsup, &program.words),
        GenerateKind::Kubernetes => kubernetes(&loaded, config_file.as_ref(), &program.words),
        GenerateKind::Docker => docker(&loaded, config_file.as_ref(), &program.words),
    };
    print!("{text}");
    0
}

/// The config file `generate` read: the name the user gave and its text.
struct ConfigFile {
    given: PathBuf,
    text: String,
}

/// What the config says to run, or a placeholder that the user must replace.
struct Program {
    words: Vec<String>,
    placeholder: bool,
}

const PLACEHOLDER: &str = "/path/to/your/program";

fn program(loaded: &Loaded) -> Program {
    match &loaded.config.process.command {
        Some(words) => Program {
            words: words.clone(),
            placeholder: false,
        },
        None => Program {
            words: vec![PLACEHOLDER.into()],
            placeholder: true,
        },
    }
}

/// What the user must fix before the output works as printed (DESIGN §2): a placeholder
/// program, or a path (the program's, or `gsup`'s own in a unit's `ExecStart=`) that lies
/// in a cargo build tree, which a `cargo clean` removes and a server does not have.
fn warnings(program: &Program, gsup: Option<&String>) -> Vec<String> {
    let mut warnings = Vec::new();
    if program.placeholder {
        warnings.push(format!(
            "the config has no [process] command: the output runs the placeholder {PLACEHOLDER}; \
             set [process] command or replace it"
        ));
    }
    if let Some(gsup) = gsup.filter(|gsup| !systemd_executable_ok(gsup)) {
        warnings.push(format!(
            "systemd refuses an executable path with quotes, backslashes or control characters \
             ({gsup}): install gsup elsewhere, or edit ExecStart="
        ));
    }
    if let Some(gsup) = gsup.filter(|gsup| in_build_tree(gsup)) {
        warnings.push(format!(
            "ExecStart= runs {gsup}, inside a build tree: install gsup (`cargo install --path .`, \
             the .deb) and run `generate` from there, or edit the path"
        ));
    }
    for word in program.words.iter().filter(|word| in_build_tree(word)) {
        warnings.push(format!(
            "the program path {word} is inside a build tree: install the program and point \
             [process] command at it"
        ));
    }
    warnings
}

/// A path under a cargo `target/debug` or `target/release` (or `target/<triple>/…`).
fn in_build_tree(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.iter().enumerate().any(|(i, part)| {
        *part == "target"
            && parts[i + 1..]
                .iter()
                .take(2)
                .any(|next| *next == "debug" || *next == "release")
    })
}

/// `timeout + force_timeout`: what systemd and Docker must wait before SIGKILL.
fn stop_budget(loaded: &Loaded) -> Duration {
    loaded
        .config
        .shutdown
        .timeout
        .saturating_add(loaded.config.shutdown.force_timeout)
}

fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Where a setting's value goes in a unit file, for [`systemd_word`].
#[derive(Clone, Copy, PartialEq)]
enum UnitContext {
    /// The executable of `ExecStart=` and friends: never variable-expanded, so `$` stays.
    Executable,
    /// Its arguments: `$VAR` and `${VAR}` expand, so `$` is written `$$`.
    Command,
    /// `Environment=`: no variable expansion.
    Environment,
}

/// One word of a unit setting by systemd.syntax(7) and systemd.service(5) "Command
/// lines", not by shell rules: specifiers make `%` `%%` (everywhere), `$` is `$$` in a
/// command line, and a word with whitespace, quotes, backslashes or control characters
/// (or empty, or a lone `;`) goes in double quotes with C-style escapes.
fn systemd_word(word: &str, context: UnitContext) -> String {
    let plain = !word.is_empty()
        && word != ";"
        && !word
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
    let mut out = String::with_capacity(word.len() + 2);
    if !plain {
        out.push('"');
    }
    for c in word.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if context == UnitContext::Command => out.push_str("$$"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    if !plain {
        out.push('"');
    }
    out
}

/// Whether systemd accepts `path` as an executable name (its `string_is_safe`).
fn systemd_executable_ok(path: &str) -> bool {
    !path.chars().any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
}

/// Free text for `Description=`: specifiers escaped, no control characters.
fn systemd_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('%', "%%")
}

fn systemd(loaded: &Loaded, gsup: &str, program: &[String]) -> String {
    let budget = seconds_up(stop_budget(loaded));
    let gsup = systemd_word(gsup, UnitContext::Executable);
    let mut environment = String::new();
    // GSUP_CONFIG rather than --config: `gsup ctl` (ExecReload) and `gsup probe` then
    // read the same file as `run`, so they know its socket, prefix and waits.
    if let Some(file) = &loaded.file {
        let path = file.canonicalize().unwrap_or_else(|_| file.clone());
        let setting = format!("GSUP_CONFIG={}", path.display());
        environment.push_str(&format!(
            "Environment={}\n",
            systemd_word(&setting, UnitContext::Environment)
        ));
    }
    if loaded.config.control.socket.is_none() {
        // `systemctl reload` and an operator's `gsup ctl` need the control socket; in the
        // unit's own RuntimeDirectory (%t/%N = /run/<unit name>).
        environment.push_str("Environment=GSUP_CONTROL_SOCKET=%t/%N/control.sock\n");
    }
    // With sockets, `systemctl reload` is a zero-downtime reload; systemd bounds it (like
    // the start) by TimeoutStartSec, and `ctl reload` waits up to startup_timeout + 5 s.
    let reload = if loaded.config.listen.is_empty() {
        String::new()
    } else {
        let start = seconds_up(loaded.config.restart.startup_timeout + crate::ctl::ANSWER_TIMEOUT);
        format!("ExecReload={gsup} ctl reload\nTimeoutStartSec={start}\n")
    };
    let words: Vec<String> = program.iter().map(|w| systemd_word(w, UnitContext::Command)).collect();
    format!(
        "# Generated by `gsup generate systemd`: TimeoutStopSec is gsup's own budget\n\
         # (timeout + force_timeout = {budget}s), so systemd never SIGKILLs a shutdown gsup still runs.\n\
         [Unit]\n\
         Description=gsup: {description}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         # gsup sends READY=1 once the child is ready, STOPPING=1, STATUS= and WATCHDOG=1.\n\
         Type=notify\n\
         NotifyAccess=main\n\
         # /run/<unit name>: gsup's notify socket for the child (and the control socket).\n\
         RuntimeDirectory=%N\n\
         # gsup raises its own soft limit to the hard one; the child keeps 1024 (select()).\n\
         LimitNOFILE=1024:524288\n\
         {environment}\
         ExecStart={gsup} run -- {program}\n\
         {reload}\
         # mixed: SIGTERM to gsup alone (it runs the ordered shutdown and signals the child\n\
         # itself); SIGKILL to the whole cgroup only if TimeoutStopSec runs out.\n\
         KillMode=mixed\n\
         TimeoutStopSec={budget}\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        description = systemd_text(&program.join(" ")),
        program = words.join(" "),
    )
}

/// A YAML (and Dockerfile exec-form) string: JSON's double-quoted form is valid in both.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `[a, b]` of quoted strings.
fn quoted_list(words: &[String]) -> String {
    let words: Vec<String> = words.iter().map(|w| quoted(w)).collect();
    format!("[{}]", words.join(", "))
}

/// Where the Kubernetes and Docker snippets put the config, and where `GSUP_CONFIG` points.
const CONTAINER_CONFIG_DIR: &str = "/etc/gsup";
const CONTAINER_CONFIG: &str = "/etc/gsup/supervisor.toml";
/// The control socket when the config names none: in an emptyDir of its own.
const CONTAINER_SOCKET_DIR: &str = "/run/gsup";

/// The config's text as the value of a YAML mapping key at `indent` spaces: a literal
/// block when that keeps the text byte for byte, else a double-quoted string.
fn yaml_text(text: &str, indent: usize) -> String {
    let first = text.lines().find(|line| !line.trim().is_empty());
    let literal = text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.contains('\r')
        && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && first.is_some_and(|line| !line.starts_with([' ', '\t']));
    if !literal {
        return quoted(text);
    }
    let pad = " ".repeat(indent);
    let mut out = String::from("|\n");
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out.pop();
    out
}

fn kubernetes(loaded: &Loaded, file: Option<&ConfigFile>, program: &[String]) -> String {
    let config = &loaded.config;
    let grace = seconds_up(
        config
            .shutdown
            .drain_delay
            .saturating_add(stop_budget(loaded))
            .saturating_add(KUBERNETES_MARGIN),
    );
    let mut probes = String::new();
    match config.http.listen {
        None => probes.push_str("          # warning: [http] listen is \"off\": no readiness or liveness probes.\n"),
        Some(addr) => {
            let loopback = addr.ip().is_loopback();
            if loopback {
                probes.push_str(
                    "          # [http] listen is on loopback: the kubelet cannot reach it, so gsup probes itself.\n",
                );
            }
            let port = addr.port();
            let probe = |kind: &str, path: &str, period: u32| {
                let how = if loopback {
                    let url = format!("http://127.0.0.1:{port}{path}");
                    format!(
                        "            exec:\n              command: [\"gsup\", \"probe\", \"--url\", {}]\n",
                        quoted(&url)
                    )
                } else {
                    format!("            httpGet: {{ path: {path}, port: {port} }}\n")
                };
                format!("          {kind}:\n{how}            periodSeconds: {period}\n")
            };
            for (enabled, kind, key, path, period) in [
                (config.http.readiness, "readinessProbe", "readiness", "/ready", 5),
                (config.http.liveness, "livenessProbe", "liveness", "/alive", 10),
            ] {
                if enabled {
                    probes.push_str(&probe(kind, path, period));
                } else {
                    probes.push_str(&format!(
                        "          # [http] {key} = false: {path} answers 404, so no {kind}.\n"
                    ));
                }
            }
        }
    }

    // `gsup ctl prestop` finds the socket by $GSUP_CONTROL_SOCKET, which `run` also reads
    // as `[control] socket` (DESIGN §2), and reads the config (it waits drain_delay + 5 s).
    let mut env = Vec::new();
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut configmap = String::new();
    if let Some(file) = file {
        env.push(("GSUP_CONFIG", CONTAINER_CONFIG.to_string()));
        mounts.push(format!(
            "{{ name: gsup-config, mountPath: {CONTAINER_CONFIG_DIR}, readOnly: true }}"
        ));
        volumes.push("{ name: gsup-config, configMap: { name: app-gsup } }".to_string());
        configmap = format!(
            "# The config `gsup generate` read ({}), mounted at {CONTAINER_CONFIG}.\n\
             apiVersion: v1\n\
             kind: ConfigMap\n\
             metadata:\n  name: app-gsup\n\
             data:\n  supervisor.toml: {}\n\
             ---\n",
            file.given.display(),
            yaml_text(&file.text, 4),
        );
    }
    let socket_dir = match &config.control.socket {
        None => {
            env.push(("GSUP_CONTROL_SOCKET", format!("{CONTAINER_SOCKET_DIR}/control.sock")));
            Some(PathBuf::from(CONTAINER_SOCKET_DIR))
        }
        Some(socket) => socket
            .parent()
            .filter(|dir| !matches!(dir.to_str(), Some("" | "/" | CONTAINER_CONFIG_DIR)))
            .map(Path::to_path_buf),
    };
    if let Some(dir) = socket_dir {
        // A writable directory for the control socket, even on a read-only root.
        mounts.push(format!(
            "{{ name: gsup-run, mountPath: {} }}",
            quoted(&dir.display().to_string())
        ));
        volumes.push("{ name: gsup-run, emptyDir: {} }".to_string());
    }
    let mut pod = String::new();
    if !env.is_empty() {
        pod.push_str("          env:\n");
        for (name, value) in env {
            pod.push_str(&format!(
                "            - name: {name}\n              value: {}\n",
                quoted(&value)
            ));
        }
    }
    if !mounts.is_empty() {
        pod.push_str("          volumeMounts:\n");
        for mount in &mounts {
            pod.push_str(&format!("            - {mount}\n"));
        }
    }
    let volumes = if volumes.is_empty() {
        String::new()
    } else {
        let list: String = volumes.iter().map(|v| format!("        - {v}\n")).collect();
        format!("      volumes:\n{list}")
    };
    format!(
        "# Generated by `gsup generate kubernetes`: terminationGracePeriodSeconds =\n\
         # drain_delay + timeout + force_timeout + 5 s = {grace}s (gsup's worst case with a preStop).\n\
         {configmap}\
         apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: app\n\
         spec:\n  replicas: 2\n  selector:\n    matchLabels: {{ app: app }}\n  template:\n    metadata:\n      labels: {{ app: app }}\n    spec:\n\
         \x20     terminationGracePeriodSeconds: {grace}\n\
         \x20     containers:\n\
         \x20       - name: app\n\
         \x20         image: your/image\n\
         \x20         command: [\"gsup\", \"run\", \"--\"]\n\
         \x20         args: {args}\n\
         {pod}{probes}\
         \x20         lifecycle:\n\
         \x20           preStop:\n\
         \x20             # Readiness off, wait drain_delay: closes the endpoint-propagation race.\n\
         \x20             exec:\n                command: [\"gsup\", \"ctl\", \"prestop\"]\n\
         {volumes}",
        args = quoted_list(program),
    )
}

fn docker(loaded: &Loaded, file: Option<&ConfigFile>, program: &[String]) -> String {
    let budget = seconds_up(stop_budget(loaded));
    let config = match file {
        // COPY takes a path inside the build context: the one given, when relative.
        Some(file) => {
            let source = if file.given.is_relative() {
                file.given.display().to_string()
            } else {
                file.given.file_name().map_or_else(
                    || file.given.display().to_string(),
                    |name| name.to_string_lossy().into_owned(),
                )
            };
            let note = if file.given.is_relative() {
                String::new()
            } else {
                format!("# {} must be in the build context as {source}.\n", file.given.display())
            };
            format!(
                "{note}COPY {} {CONTAINER_CONFIG}\nENV GSUP_CONFIG={CONTAINER_CONFIG}\n",
                quoted(&source)
            )
        }
        None => String::new(),
    };
    let health = if loaded.config.http.listen.is_some() && loaded.config.http.readiness {
        "HEALTHCHECK CMD [\"gsup\", \"probe\", \"ready\"]\n"
    } else {
        "# No HEALTHCHECK: the config turns /ready off ([http] listen or readiness).\n"
    };
    format!(
        "# Generated by `gsup generate docker`. gsup's budget is timeout + force_timeout = {budget}s:\n\
         # give `docker stop --time {budget}` (or `docker run --stop-timeout {budget}`, compose\n\
         # `stop_grace_period: {budget}s`); Docker's default 10 s would SIGKILL a shutdown gsup still runs.\n\
         FROM debian:bookworm-slim\n\
         # The static musl build: cargo build --release --target x86_64-unknown-linux-musl --no-default-features\n\
         COPY gsup /usr/local/bin/gsup\n\
         {config}\
         STOPSIGNAL SIGTERM\n\
         {health}\
         # gsup is PID 1: it reaps every orphan and exits with the program's code.\n\
         ENTRYPOINT [\"gsup\", \"run\", \"--\"]\n\
         CMD {cmd}\n",
        cmd = quoted_list(program),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words_follow_systemd_syntax_not_the_shell() {
        use UnitContext::{Command, Environment, Executable};
        assert_eq!(systemd_word("/usr/bin/api", Command), "/usr/bin/api");
        assert_eq!(systemd_word("--port=3000", Command), "--port=3000");
        assert_eq!(systemd_word("a b", Command), "\"a b\"");
        assert_eq!(systemd_word("it's", Command), "\"it's\"");
        assert_eq!(systemd_word("say \"hi\"", Command), r#""say \"hi\"""#);
        assert_eq!(systemd_word(r"C:\x", Command), r#""C:\\x""#);
        assert_eq!(systemd_word("", Command), "\"\"");
        assert_eq!(systemd_word(";", Command), "\";\"");
        assert_eq!(systemd_word("100%", Command), "100%%");
        assert_eq!(systemd_word("$HOME", Command), "$$HOME");
        assert_eq!(systemd_word("$HOME", Environment), "$HOME");
        assert_eq!(systemd_word("/opt/a $b/gsup", Executable), r#""/opt/a $b/gsup""#);
        assert_eq!(systemd_word("a\nb", Command), r#""a\nb""#);
    }

    #[test]
    fn build_tree_paths_are_recognised() {
        assert!(in_build_tree("/home/me/gsup/target/debug/gsup"));
        assert!(in_build_tree("/src/target/x86_64-unknown-linux-musl/release/gsup"));
        assert!(!in_build_tree("/usr/bin/gsup"));
        assert!(!in_build_tree("/srv/target/app"));
    }

    #[test]
    fn config_text_is_a_literal_block_when_that_keeps_it() {
        assert_eq!(yaml_text("a = 1\n\nb = 2\n", 4), "|\n    a = 1\n\n    b = 2");
        assert_eq!(yaml_text("  a = 1\n", 4), "\"  a = 1\\n\"");
        assert_eq!(yaml_text("a = 1", 4), "\"a = 1\"");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_up(Duration::from_millis(35_000)), 35);
        assert_eq!(seconds_up(Duration::from_millis(35_001)), 36);
    }
}

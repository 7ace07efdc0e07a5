//! Configuration: defaults < file < environment < flags, validated into `Config`.
//!
//! `load` is the only way to build a `Config`. It applies the layers in that order onto
//! the defaults, recording for every key which layer set it last (`sources`, shown by
//! `gsup check` and `/config`), then checks what spans keys (a rewrite that drops the
//! stop signal, hook timeouts longer than their phase, the token file). It collects every
//! error before giving up. It never touches the process environment itself: the caller
//! passes a lookup, so tests need no `set_var`.

mod check;
mod env;
mod error;
mod file;
pub mod model;
mod render;
mod values;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

// Some of these are used only once `main` is wired.
#[allow(unused_imports)]
pub use check::{check_command, worst_case_shutdown};
#[allow(unused_imports)]
pub use env::ENV_VARS;
use error::At;
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
#[allow(unused_imports)]
pub use render::{render_check, render_json};

use crate::cli::ConfigFlags;
use values::Zero;

/// Where the effective value of a key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The file as the user named it (or `supervisor.toml` when found in the cwd).
    File(PathBuf),
    /// The variable's name.
    Env(String),
    /// The flag's long name, without `--`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag --{name}"),
        }
    }
}

/// A validated config and what it was built from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Dotted key (`shutdown.timeout`, `signals.rewrite.TERM`, `hooks[0].timeout`) →
    /// the layer that set it; a key missing here is a default.
    pub sources: BTreeMap<String, Source>,
    /// Suspicious but valid settings; `check` prints them, `run` logs them.
    pub warnings: Vec<String>,
    /// The config file read, resolved against the cwd; `None` without one.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// The layer that set `key` (the tests' view of `sources`).
    #[cfg(test)]
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&Source::Default)
    }
}

/// The config being built, layer by layer.
struct Builder {
    config: Config,
    sources: BTreeMap<String, Source>,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Builder {
    fn set_source(&mut self, key: impl Into<String>, source: Source) {
        self.sources.insert(key.into(), source);
    }

    fn error(&mut self, at: impl Into<At>, message: impl Into<String>) {
        let at = at.into();
        self.errors.push(ConfigError::Invalid {
            at: at.text,
            line: at.line,
            message: message.into(),
        });
    }

    /// "`signals.rewrite.TERM` (file supervisor.toml)": names a key and its layer, for
    /// errors that span keys.
    fn describe(&self, key: &str) -> String {
        let source = self.sources.get(key).unwrap_or(&Source::Default);
        format!("`{key}` ({source})")
    }
}

/// A lookup of the environment: `std::env::var_os` in gsup, a table in tests. Values are
/// bytes: paths take them as they are, and a value that must be text but is not UTF-8 is
/// an error naming the variable (DESIGN §3).
pub type Env = dyn Fn(&str) -> Option<OsString>;

/// Builds the effective config from the defaults, the config file, the environment (as
/// seen through `env`) and the flags. `cwd` resolves relative paths on the command line
/// and in the environment, and is where `./supervisor.toml` is looked for.
pub fn load(flags: &ConfigFlags, env: &Env, cwd: &Path) -> Result<Loaded, ConfigErrors> {
    let mut builder = Builder {
        config: Config::default(),
        sources: BTreeMap::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let file = find_file(flags, env, cwd);
    if let Some(found) = &file {
        match std::fs::read(&found.path) {
            Ok(bytes) => file::apply(&mut builder, &bytes, &found.display, &found.dir()),
            Err(source) => builder.errors.push(ConfigError::Read {
                path: found.display.display().to_string(),
                source,
            }),
        }
    }
    env::apply(&mut builder, env, cwd);
    apply_flags(&mut builder, flags, cwd);
    cross_check(&mut builder);
    resolve_token(&mut builder);

    if !builder.errors.is_empty() {
        return Err(ConfigErrors(builder.errors));
    }
    let loaded = Loaded {
        config: builder.config,
        sources: builder.sources,
        warnings: builder.warnings,
        file: file.map(|found| found.path),
    };
    Ok(loaded)
}

struct FoundFile {
    /// As the user named it, for messages and `Source::File`.
    display: PathBuf,
    /// Resolved against the cwd, for reading.
    path: PathBuf,
}

impl FoundFile {
    /// Relative paths in the file are relative to this directory (DESIGN §4).
    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// `--config F`, else `$GSUP_CONFIG`, else `./supervisor.toml` if present (DESIGN §2).
fn find_file(flags: &ConfigFlags, env: &Env, cwd: &Path) -> Option<FoundFile> {
    let named = flags
        .config
        .clone()
        .or_else(|| env("GSUP_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
    match named {
        Some(display) => Some(FoundFile {
            path: cwd.join(&display),
            display,
        }),
        None => {
            let path = cwd.join("supervisor.toml");
            // Only this implicit file is optional; a named one must be readable.
            path.exists().then(|| FoundFile {
                display: PathBuf::from("supervisor.toml"),
                path,
            })
        }
    }
}

/// The flags of `run`, the highest layer. Repeatable flags merge with the file's entries
/// (DESIGN §8), the flag winning per key.
fn apply_flags(b: &mut Builder, flags: &ConfigFlags, cwd: &Path) {
    fn parsed<T>(
        b: &mut Builder,
        flag: &str,
        text: &Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = text.as_ref()?;
        match parse(text) {
            Ok(value) => Some(value),
            Err(message) => {
                b.error(format!("--{flag} {text}"), message);
                None
            }
        }
    }
    let flag = |name: &str| Source::Flag(name.to_string());

    if let Some(v) = parsed(b, "http", &flags.http, values::http_listen) {
        b.config.http.listen = v;
        b.set_source("http.listen", flag("http"));
    }
    if let Some(v) = parsed(b, "timeout", &flags.timeout, |t| values::duration(t, Zero::Refused)) {
        b.config.shutdown.timeout = v;
        b.set_source("shutdown.timeout", flag("timeout"));
    }
    if let Some(v) = parsed(b, "force-timeout", &flags.force_timeout, |t| {
        values::duration(t, Zero::Refused)
    }) {
        b.config.shutdown.force_timeout = v;
        b.set_source("shutdown.force_timeout", flag("force-timeout"));
    }
    if let Some(v) = parsed(b, "drain-delay", &flags.drain_delay, |t| {
        values::duration(t, Zero::Allowed)
    }) {
        b.config.shutdown.drain_delay = v;
        b.set_source("shutdown.drain_delay", flag("drain-delay"));
    }
    if let Some(v) = parsed(b, "forward-to", &flags.forward_to, values::forward_to) {
        b.config.signals.forward_to = v;
        b.set_source("signals.forward_to", flag("forward-to"));
    }
    for entry in &flags.rewrite {
        let result =
            values::pair(entry).and_then(|(from, to)| Ok((values::signal(from)?, values::rewrite_target(to)?)));
        match result {
            Ok((from, to)) => {
                b.config.signals.rewrite.insert(from, to);
                let key = format!("signals.rewrite.{}", values::signal_key(from));
                b.set_source(key, flag("rewrite"));
            }
            Err(message) => b.error(format!("--rewrite {entry}"), message),
        }
    }
    if let Some(v) = parsed(b, "restart", &flags.restart, values::restart_policy) {
        b.config.restart.policy = v;
        b.set_source("restart.policy", flag("restart"));
    }
    if let Some(v) = parsed(b, "ready-http", &flags.ready_http, values::http_url) {
        b.config.readiness.probe = Some(Probe::Http(v));
        b.set_source("readiness.probe", flag("ready-http"));
    }
    if let Some(v) = parsed(b, "ready-tcp", &flags.ready_tcp, values::connect_address) {
        b.config.readiness.probe = Some(Probe::Tcp(v));
        b.set_source("readiness.probe", flag("ready-tcp"));
    }
    for entry in &flags.listen {
        let result = values::pair(entry).and_then(|(name, address)| Ok((name, values::listen_address(address, cwd)?)));
        match result {
            Ok((name, address)) => add_flag_listener(b, name, address),
            Err(message) => b.error(format!("--listen {entry}"), message),
        }
    }
    if let Some(path) = &flags.token_file {
        b.config.http.token_file = Some(cwd.join(path));
        b.set_source("http.token_file", flag("token-file"));
    }
    if let Some(path) = &flags.control_socket {
        b.config.control.socket = Some(cwd.join(path));
        b.set_source("control.socket", flag("control-socket"));
    }
    for entry in &flags.exit_map {
        let result = values::pair(entry).and_then(|(from, to)| Ok((values::exit_code(from)?, values::exit_code(to)?)));
        match result {
            Ok((from, to)) => {
                b.config.shutdown.exit_code_map.insert(from, to);
                b.set_source(format!("shutdown.exit_code_map.{from}"), flag("exit-map"));
            }
            Err(message) => b.error(format!("--exit-map {entry}"), message),
        }
    }
    if let Some(v) = parsed(b, "log-format", &flags.log_format, values::log_format) {
        b.config.log.format = v;
        b.set_source("log.format", flag("log-format"));
    }
}

/// `--listen NAME=ADDR` replaces the file's entry of that name, else adds one.
fn add_flag_listener(b: &mut Builder, name: &str, address: ListenAddress) {
    let index = match b.config.listen.iter().position(|l| l.name == name) {
        Some(index) => {
            b.config.listen[index].address = address;
            index
        }
        None => {
            b.config.listen.push(ListenConfig {
                name: name.to_string(),
                address,
                backlog: file::DEFAULT_BACKLOG,
                v6only: None,
                mode: file::DEFAULT_MODE,
            });
            b.config.listen.len() - 1
        }
    };
    let source = Source::Flag("listen".into());
    b.set_source(format!("listen[{index}].name"), source.clone());
    b.set_source(format!("listen[{index}].address"), source);
}

/// Rules that involve more than one key, checked once every layer is in.
fn cross_check(b: &mut Builder) {
    let config = &b.config;
    let stop = config.shutdown.stop_signal;
    if config.signals.rewritten(stop).is_none() {
        let key = format!("signals.rewrite.{}", values::signal_key(stop));
        let at = b.describe(&key);
        let message = format!(
            "drops the stop signal {} (`shutdown.stop_signal`), so the child could never be asked to stop; rewrite it to another signal or change stop_signal",
            crate::signals::name(stop)
        );
        b.error(at, message);
    }

    let restart = &b.config.restart;
    if restart.backoff_initial > restart.backoff_max {
        let message = format!(
            "{} is longer than `restart.backoff_max` ({})",
            values::format_duration(restart.backoff_initial),
            values::format_duration(restart.backoff_max)
        );
        let at = b.describe("restart.backoff_initial");
        b.error(at, message);
    }

    cut_hook_timeouts(b);

    let config = &b.config;
    if config.shutdown.connection_draining && config.shutdown.drain_delay.is_zero() {
        b.warnings.push(
            "`shutdown.connection_draining` is on with `shutdown.drain_delay` = 0: without a load balancer that stops routing first, requests keep arriving and the drain runs to `max_drain_time` (DESIGN §4)".into(),
        );
    }
    let config = &b.config;
    if !config.listen.is_empty() && matches!(config.readiness.probe, Some(Probe::Http(_) | Probe::Tcp(_))) {
        b.warnings.push(
            "`readiness.probe` is http/tcp while `[[listen]]` sockets are shared between generations: during a reload either child may answer it; prefer { notify = true }, exec, or a per-child address (DESIGN §8)".into(),
        );
    }
    // A planted symlink or a directory at `[shutdown] log` is never written (DESIGN §9).
    if let Some(problem) = config.shutdown.log.as_deref().and_then(crate::shutdown_log::problem) {
        b.warnings.push(problem);
    }
    let config = &b.config;
    if !config.listen.is_empty() && config.readiness.probe.is_none() {
        b.warnings.push(
            "`[[listen]]` sockets without a `readiness.probe`: a reload takes the new child as ready once it runs and stops the old one at once; set `readiness.probe = { notify = true }` (the child sends READY=1) or exec (DESIGN §8)".into(),
        );
    }
}

/// A hook cannot outlive its phase: a longer timeout is cut to the phase's bound (the
/// graceful deadline for `pre_stop`), with a warning (DESIGN §3).
fn cut_hook_timeouts(b: &mut Builder) {
    let mut warnings = Vec::new();
    let phases = b.config.phases.clone();
    let graceful = b.config.shutdown.timeout;
    for hook in &mut b.config.hooks {
        let (bound, bound_name) = match hook.phase {
            HookPhase::PreStop => (graceful, "shutdown.timeout"),
            HookPhase::Database => (phases.database.timeout, "phases.database.timeout"),
            HookPhase::Redis => (phases.redis.timeout, "phases.redis.timeout"),
            HookPhase::External => (phases.external.timeout, "phases.external.timeout"),
            HookPhase::Cleanup => (phases.cleanup.timeout, "phases.cleanup.timeout"),
        };
        if let Some(timeout) = hook.timeout.filter(|t| *t > bound) {
            warnings.push(format!(
                "hook `{}`: timeout {} is longer than its phase's bound `{bound_name}` ({}); cut to {}",
                hook.name,
                values::format_duration(timeout),
                values::format_duration(bound),
                values::format_duration(bound),
            ));
            hook.timeout = Some(bound);
        }
    }
    b.warnings.extend(warnings);
}

/// `GSUP_CONTROL_TOKEN` wins over `token_file`; the file's content is trimmed, and a
/// missing, unreadable or empty one is an error (DESIGN §5).
fn resolve_token(b: &mut Builder) {
    let Some(path) = b.config.http.token_file.clone() else {
        return;
    };
    if b.config.http.token.is_some() {
        b.warnings.push(format!(
            "`http.token_file` ({}) is not read: GSUP_CONTROL_TOKEN wins over it",
            path.display()
        ));
        return;
    }
    let at = b.describe("http.token_file");
    match std::fs::read_to_string(&path) {
        Ok(content) if content.trim().is_empty() => {
            b.error(at, format!("token file {} is empty", path.display()));
        }
        Ok(content) => {
            b.config.http.token = Some(content.trim().to_string());
            let source = b.sources.get("http.token_file").cloned().unwrap_or(Source::Default);
            b.set_source("http.token", source);
            warn_if_readable(b, &path);
        }
        Err(err) => b.error(at, format!("cannot read token file {}: {err}", path.display())),
    }
}

fn warn_if_readable(b: &mut Builder, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            b.warnings.push(format!(
                "token file {} can be read by group or others (mode {:04o}); consider chmod 600",
                path.display(),
                mode & 0o7777
            ));
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// A duration given on the command line of another subcommand (`probe --timeout`): the
/// same rules as everywhere (`"2s"`; a bare number or zero is refused).
pub fn flag_duration(text: &str) -> Result<std::time::Duration, String> {
    values::duration(text, Zero::Refused)
}

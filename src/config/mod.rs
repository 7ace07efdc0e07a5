//! TEMPORARY stand-in for the config loader being written on branch `config`; replaced
//! at merge. Applies only the env vars the supervisor tests need.
pub mod model;
use std::path::Path;
use std::time::Duration;

pub use model::*;

use crate::cli::{CheckArgs, ConfigFlags};

pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

pub struct ConfigErrors(pub Vec<String>);
impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

pub fn load(flags: &ConfigFlags, env: &dyn Fn(&str) -> Option<String>, _cwd: &Path) -> Result<Loaded, ConfigErrors> {
    let mut config = Config::default();
    let ms = |name: &str| env(name).and_then(|v| v.parse::<u64>().ok()).map(Duration::from_millis);
    if let Some(d) = ms("SHUTDOWN_TIMEOUT_MS") { config.shutdown.timeout = d; }
    if let Some(d) = ms("FORCE_SHUTDOWN_TIMEOUT_MS") { config.shutdown.force_timeout = d; }
    if let Some(p) = &flags.restart {
        config.restart.policy = match p.as_str() { "always" => RestartPolicy::Always, "on-failure" => RestartPolicy::OnFailure, _ => RestartPolicy::Never };
    }
    if let Some(f) = &flags.forward_to { config.signals.forward_to = if f == "child" { ForwardTo::Child } else { ForwardTo::Group }; }
    for r in &flags.rewrite {
        if let Some((a, b)) = r.split_once('=') {
            let from = crate::signals::parse(a).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
            let to = if b == "none" || b == "0" { None } else { Some(crate::signals::parse(b).map_err(|e| ConfigErrors(vec![e.to_string()]))?) };
            config.signals.rewrite.insert(from, to);
        }
    }
    Ok(Loaded { config, warnings: vec![] })
}

pub fn check_command(_args: &CheckArgs, _env: &dyn Fn(&str) -> Option<String>, _cwd: &Path) -> i32 { 0 }

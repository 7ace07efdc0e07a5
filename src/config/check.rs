//! `gsup check`: validate, print the effective config with its sources, and optionally
//! compare the worst-case shutdown with a grace period (DESIGN §2, §4 "The budget").

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::values::{self, Zero, format_duration};
use super::{Config, Env, load, render_check};
use crate::cli::CheckArgs;

/// The longest a shutdown can take, and the names of its parts.
pub fn worst_case_shutdown(config: &Config) -> (Duration, Vec<(&'static str, Duration)>) {
    let shutdown = &config.shutdown;
    // A preStop (GET /prestop or `gsup ctl prestop`) waits drain_delay before the stop
    // signal's own budget starts (DESIGN §5).
    let prestop_possible = config.http.prestop || config.control.socket.is_some();
    let mut parts = Vec::new();
    if prestop_possible {
        parts.push(("drain_delay", shutdown.drain_delay));
    }
    parts.push(("timeout", shutdown.timeout));
    parts.push(("force_timeout", shutdown.force_timeout));
    let total = parts.iter().fold(Duration::ZERO, |sum, (_, d)| sum.saturating_add(*d));
    (total, parts)
}

/// Runs `gsup check`; returns the exit code: 0 valid (and fits), 1 does not fit the grace
/// period, 2 config or usage error.
pub fn check_command(args: &CheckArgs, env: &Env, cwd: &Path) -> i32 {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    check_to(args, env, cwd, &mut stdout, &mut stderr)
}

fn check_to(args: &CheckArgs, env: &Env, cwd: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    // Output errors (a closed pipe) cannot change the verdict; the exit code still tells.
    let grace = match &args.grace_period {
        None => None,
        Some(text) => match values::duration(text, Zero::Refused) {
            Ok(grace) => Some(grace),
            Err(message) => {
                let _ = writeln!(err, "gsup: --grace-period {text}: {message}");
                return 2;
            }
        },
    };
    let loaded = match load(&args.config_flags(), env, cwd) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.0 {
                let _ = writeln!(err, "gsup: error: {error}");
            }
            let _ = writeln!(err, "gsup: {} config error(s)", errors.0.len());
            return 2;
        }
    };
    for warning in &loaded.warnings {
        let _ = writeln!(err, "gsup: warning: {warning}");
    }
    let _ = out.write_all(render_check(&loaded).as_bytes());
    let Some(grace) = grace else {
        return 0;
    };
    // The same rows the shutdown runs (DESIGN §4), with their bounds and hooks.
    let _ = writeln!(out, "\n# shutdown phases (bound):");
    for row in crate::supervisor::phases::plan(&loaded.config) {
        let hooks = loaded
            .config
            .hooks
            .iter()
            .filter(|h| h.phase.as_str() == row.name.as_str())
            .count();
        let note = match hooks {
            0 => String::new(),
            n => format!(", {n} hook(s)"),
        };
        let _ = writeln!(
            out,
            "#   {:<15} {}{note}",
            row.name.as_str(),
            format_duration(row.timeout)
        );
    }
    let (total, parts) = worst_case_shutdown(&loaded.config);
    let names: Vec<&str> = parts.iter().map(|(name, _)| *name).collect();
    let figures: Vec<String> = parts.iter().map(|(_, d)| format_duration(*d)).collect();
    // As TOML comments, so stdout still parses.
    let _ = writeln!(
        out,
        "\n# worst-case shutdown: {} = {} = {}",
        names.join(" + "),
        figures.join(" + "),
        format_duration(total)
    );
    if total <= grace {
        let _ = writeln!(out, "# fits within {}", format_duration(grace));
        0
    } else {
        let _ = writeln!(
            out,
            "# does not fit within {}: {} > {} by {}",
            format_duration(grace),
            format_duration(total),
            format_duration(grace),
            format_duration(total - grace)
        );
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, config: Option<&str>, grace: Option<&str>) -> (i32, String, String) {
        let args = CheckArgs {
            config: config.map(Into::into),
            grace_period: grace.map(Into::into),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = check_to(&args, &|_| None, dir, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn defaults_fit_35s_not_30s() {
        let dir = tempfile::tempdir().unwrap();
        let (code, out, _) = run(dir.path(), None, Some("35s"));
        assert_eq!(code, 0);
        assert!(out.contains("timeout + force_timeout = 30s + 5s = 35s"), "{out}");
        assert!(out.contains("fits within 35s"));
        let (code, out, _) = run(dir.path(), None, Some("30s"));
        assert_eq!(code, 1);
        assert!(out.contains("does not fit within 30s: 35s > 30s by 5s"), "{out}");
        toml::from_str::<toml::Table>(&out).unwrap();
    }

    #[test]
    fn prestop_adds_drain_delay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("supervisor.toml"),
            "[http]\nprestop = true\n[shutdown]\ndrain_delay = \"10s\"\n",
        )
        .unwrap();
        let (code, out, _) = run(dir.path(), None, Some("40s"));
        assert_eq!(code, 1);
        assert!(
            out.contains("drain_delay + timeout + force_timeout = 10s + 30s + 5s = 45s"),
            "{out}"
        );
    }

    #[test]
    fn errors_go_to_stderr_with_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("supervisor.toml"),
            "[shutdown]\ntimeot = \"1s\"\nforce_timeout = 5\n",
        )
        .unwrap();
        let (code, out, err) = run(dir.path(), None, None);
        assert_eq!(code, 2);
        assert!(out.is_empty());
        assert!(
            err.contains("unknown key `timeot` in supervisor.toml, line 2: did you mean `timeout`?"),
            "{err}"
        );
        assert!(err.contains("write \"5s\""), "{err}");
        let (code, _, err) = run(dir.path(), None, Some("soon"));
        assert_eq!(code, 2);
        assert!(err.contains("--grace-period soon"));
    }

    #[test]
    fn warns_about_draining_without_drain_delay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("supervisor.toml"),
            "[shutdown]\nconnection_draining = true\n",
        )
        .unwrap();
        let (code, _, err) = run(dir.path(), None, None);
        assert_eq!(code, 0);
        assert!(err.contains("warning: `shutdown.connection_draining` is on"), "{err}");
    }
}

//! `gsup ctl status|shutdown|kill|reload|prestop`: talks to a running gsup over its
//! control socket (no token: the socket's mode 0600 guards it). The socket is `--socket`,
//! else `$GSUP_CONTROL_SOCKET`, else `[control] socket` (DESIGN §2). Exit 0 when done, 1
//! when refused or no gsup answers (never a hang: every call has a deadline), 2 on usage.
//! `status` prints a short summary for a person on a terminal, the JSON elsewhere.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{ConfigFlags, CtlAction, CtlArgs};
use crate::config;
use crate::http::client::{self, Target};

/// Connecting and the answer to `status`, `shutdown` and `kill` (DESIGN §2), and what
/// `prestop` and `reload` wait on top of `drain_delay` and `startup_timeout`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: &CtlArgs, env: &config::Env, cwd: &Path) -> i32 {
    // The config gives the prefix, the socket when no flag or variable names it, and the
    // waits of prestop and reload. A config that fails to load (named or found: an
    // unreadable token_file) is an error: its defaults would be the wrong prefix and waits.
    let flags = ConfigFlags {
        config: args.config.clone(),
        ..ConfigFlags::default()
    };
    let config = match config::load(&flags, env, cwd) {
        Ok(loaded) => loaded.config,
        Err(errors) => {
            eprintln!("gsup ctl: the config does not load, so its prefix and waits are unknown: {errors}");
            return 2;
        }
    };
    let socket: Option<PathBuf> = args
        .socket
        .clone()
        .or_else(|| env("GSUP_CONTROL_SOCKET").map(|p| cwd.join(p)))
        .or_else(|| config.control.socket.clone());
    let Some(socket) = socket else {
        eprintln!("gsup ctl: no control socket: give --socket, set GSUP_CONTROL_SOCKET or [control] socket");
        return 2;
    };
    let prefix = config.http.prefix.trim_end_matches('/');
    let (method, path, timeout) = match args.action {
        CtlAction::Status => ("GET", format!("{prefix}/status"), ANSWER_TIMEOUT),
        CtlAction::Shutdown => ("POST", format!("{prefix}/shutdown"), ANSWER_TIMEOUT),
        CtlAction::Kill => ("DELETE", format!("{prefix}/shutdown"), ANSWER_TIMEOUT),
        CtlAction::Reload => (
            "POST",
            // Blocks until the new generation took over or failed (DESIGN §8).
            format!("{prefix}/reload?wait=true"),
            config.restart.startup_timeout.saturating_add(ANSWER_TIMEOUT),
        ),
        CtlAction::Prestop => (
            "GET",
            format!("{prefix}/prestop"),
            config.shutdown.drain_delay.saturating_add(ANSWER_TIMEOUT),
        ),
    };
    match client::request(&Target::Unix(&socket), method, &path, timeout) {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let human = args.action == CtlAction::Status && !args.json && std::io::stdout().is_terminal();
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(status) if human => {
                    // The tree's RSS and CPU and the not-ready reason are in `/overview`;
                    // without it the summary leaves them out rather than failing.
                    let overview = client::request(&Target::Unix(&socket), "GET", "/overview", ANSWER_TIMEOUT)
                        .ok()
                        .and_then(|answer| serde_json::from_slice(&answer.body).ok())
                        .unwrap_or(Value::Null);
                    print!("{}", summary(&status, &overview));
                }
                _ => println!("{}", answer.text().trim_end()),
            }
            0
        }
        Ok(answer) => {
            // 409 and the auth answers: gsup would not; anything else: it tried and failed
            // (a reload whose new child never got ready).
            let verdict = if answer.status < 500 { "refused" } else { "failed" };
            eprintln!("gsup ctl: {verdict} ({}): {}", answer.status, answer.text().trim_end());
            1
        }
        Err(error) => {
            eprintln!("gsup ctl: no gsup answers on {}: {error}", socket.display());
            1
        }
    }
}

/// `ctl status` for a person (DESIGN §2): state, readiness with its reason, pid, uptime,
/// the tree's RSS and CPU, restarts, last exit, last reload.
fn summary(status: &Value, overview: &Value) -> String {
    use crate::http::overview::{bytes, duration, percent};
    let state = status["state"].as_str().unwrap_or("unknown");
    let ready = match (status["ready"].as_bool(), overview["ready_reason"].as_str()) {
        (Some(true), _) => "ready".to_string(),
        (_, Some(reason)) => format!("not ready: {reason}"),
        _ => "not ready".to_string(),
    };
    let child = &status["child"];
    let pid = match child["pid"].as_i64() {
        Some(pid) => format!(
            "{pid} (generation {}), up {}",
            child["generation"].as_u64().unwrap_or(0),
            duration(child["uptime_seconds"].as_f64())
        ),
        None => "no child running".to_string(),
    };
    let process = &overview["process"];
    let tree = match process["processes"].as_u64() {
        Some(n) => format!(
            "{n} process{}, {} RSS, {} CPU",
            if n == 1 { "" } else { "es" },
            bytes(process["rss_bytes"].as_f64()),
            percent(process["cpu_percent"].as_f64())
        ),
        None => "not sampled (monitoring off)".to_string(),
    };
    let exit = &status["last_exit"];
    let last_exit = match (exit["code"].as_i64(), exit["signal"].as_str()) {
        (None, _) => "none".to_string(),
        (Some(code), Some(signal)) => format!("{signal} ({code}) at {}", exit["at"].as_str().unwrap_or("?")),
        (Some(code), None) => format!("code {code} at {}", exit["at"].as_str().unwrap_or("?")),
    };
    let reload = &status["last_reload"];
    let last_reload = match reload["outcome"].as_str() {
        None => "none".to_string(),
        Some(outcome) => {
            let detail = reload["detail"].as_str().filter(|d| !d.is_empty());
            format!(
                "{outcome} at {}{}",
                reload["started_at"].as_str().unwrap_or("?"),
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            )
        }
    };
    let mut text = format!("{state}, {ready}\n");
    let shutdown = &status["shutdown"];
    let mut rows = vec![("pid", pid), ("tree", tree)];
    if let Some(reason) = shutdown["reason"].as_str() {
        rows.push(("shutdown", reason.to_string()));
    }
    rows.extend([
        ("restarts", status["restarts"].as_u64().unwrap_or(0).to_string()),
        ("last exit", last_exit),
        ("last reload", last_reload),
    ]);
    for (label, value) in rows {
        text.push_str(&format!("  {label:<12}{value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_names_every_fact_in_a_few_lines() {
        let status = json!({
            "state": "running", "ready": false,
            "child": {"pid": 42, "generation": 2, "uptime_seconds": 125.0},
            "restarts": 1,
            "last_exit": {"code": 137, "signal": "SIGKILL", "at": "2026-01-01T00:00:00.000Z"},
            "last_reload": {"outcome": "ok", "detail": "", "started_at": "2026-01-01T00:01:00.000Z"},
            "shutdown": null,
        });
        let overview = json!({
            "ready_reason": "waiting for READY=1",
            "process": {"processes": 3, "rss_bytes": 52428800, "cpu_percent": 12.5},
        });
        let text = summary(&status, &overview);
        assert_eq!(
            text,
            "running, not ready: waiting for READY=1\n  pid         42 (generation 2), up 2m 5s\n  tree        3 processes, 50.0 MiB RSS, 12.5 % CPU\n  restarts    1\n  last exit   SIGKILL (137) at 2026-01-01T00:00:00.000Z\n  last reload ok at 2026-01-01T00:01:00.000Z\n"
        );
        let bare = summary(
            &json!({"state": "exited", "ready": false, "child": null, "restarts": 0}),
            &Value::Null,
        );
        assert!(
            bare.starts_with("exited, not ready\n  pid         no child running\n  tree        not sampled"),
            "{bare}"
        );
    }
}

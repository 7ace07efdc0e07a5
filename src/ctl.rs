//! `gsup ctl status|shutdown|kill|reload|prestop`: talks to a running gsup over its
//! control socket (no token: the socket's mode 0600 guards it). The socket is `--socket`,
//! else `$GSUP_CONTROL_SOCKET`, else `[control] socket` (DESIGN §2). Exit 0 when done, 1
//! when refused or no gsup answers (never a hang: every call has a deadline), 2 on usage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ConfigFlags, CtlAction, CtlArgs};
use crate::config;
use crate::http::client::{self, Target};

/// Connecting and the answer to `status`, `shutdown` and `kill` (DESIGN §2), and what
/// `prestop` and `reload` wait on top of `drain_delay` and `startup_timeout`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: &CtlArgs, env: &dyn Fn(&str) -> Option<String>, cwd: &Path) -> i32 {
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
            config.restart.startup_timeout + ANSWER_TIMEOUT,
        ),
        CtlAction::Prestop => (
            "GET",
            format!("{prefix}/prestop"),
            config.shutdown.drain_delay + ANSWER_TIMEOUT,
        ),
    };
    match client::request(&Target::Unix(&socket), method, &path, timeout) {
        Ok(answer) if (200..300).contains(&answer.status) => {
            println!("{}", answer.text().trim_end());
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

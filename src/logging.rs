//! gsup's own log: `tracing` to stderr, human text on a terminal, JSON lines otherwise
//! (DESIGN §10). The level comes from `[log] level` (which `GSUP_LOG` and
//! `DEBUG=graceful-shutdown:*` feed), else `warn` on a terminal and `info` elsewhere, so
//! interactive use looks like running the program itself.

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};
use crate::redact;

/// stderr, with every log line redacted (DESIGN §5): a dependency's URL with a password,
/// a hook's `-pSECRET` or a `DB_PASS=` in a detail never reach the log. tracing's fmt
/// layer writes each event with one `write_all` of the whole line.
struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(redact::text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn redacted_stderr() -> RedactedStderr {
    RedactedStderr
}

/// The log is JSON lines (set once by `init`).
static JSON_LINES: AtomicBool = AtomicBool::new(false);

pub fn init(log: &LogConfig) {
    let on_terminal = std::io::stderr().is_terminal();
    let default_level = if on_terminal {
        LevelFilter::WARN
    } else {
        LevelFilter::INFO
    };
    // The config layer validated the filter; fall back to the default should it not parse.
    let filter = log
        .level
        .as_deref()
        .and_then(|text| Targets::from_str(text).ok())
        .unwrap_or_else(|| Targets::new().with_default(default_level));
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !on_terminal,
    };
    JSON_LINES.store(json, Ordering::Relaxed);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(redacted_stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(on_terminal)
                    .with_writer(redacted_stderr),
            )
            .try_init()
    };
    // Only fails when a subscriber is already set (tests): keep that one.
    let _ = result;
}

/// The shutdown report (a JSON object) as one INFO event, `"message":"shutdown report"`.
/// In JSON mode the object is embedded as it is: as a tracing field it would be escaped
/// into a string, which costs more than building it (callgrind: about a third of gsup's
/// work from SIGTERM to exit) and is harder to query. The caller checks the level.
pub fn shutdown_report(report: &str) {
    let report = &redact::text(report);
    if !JSON_LINES.load(Ordering::Relaxed) {
        tracing::info!(report = &**report, "shutdown report");
        return;
    }
    let timestamp = crate::timefmt::rfc3339_millis(std::time::SystemTime::now());
    let line = format!(
        "{{\"timestamp\":\"{timestamp}\",\"level\":\"INFO\",\"message\":\"shutdown report\",\"report\":{report},\"target\":\"gsup\"}}\n"
    );
    // Like tracing's writer: a log line that cannot be written is dropped.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

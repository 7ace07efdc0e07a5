//! gsup's own log: `tracing` to stderr, human text on a terminal, JSON lines otherwise
//! (DESIGN §10). The level comes from `[log] level` (which `GSUP_LOG` and
//! `DEBUG=graceful-shutdown:*` feed), else `warn` on a terminal and `info` elsewhere, so
//! interactive use looks like running the program itself.

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::Context;
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
        registry.with(JsonLines).try_init()
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

/// JSON lines on stderr, one `write` each, every string redacted (DESIGN §5) before it is
/// escaped (in the escaped line `\n--token X` read as the word `n--token`), in the shape of
/// tracing-subscriber's `json().flatten_event(true)`, which wrote them before: timestamp
/// (RFC 3339, microseconds), level, the event's fields in order (`message` first),
/// target. Written here because that formatter cost ~17 k instructions an event, most of
/// gsup's work between the child's exit and its own (issue 14); a unit test holds the two
/// to the same output.
struct JsonLines;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JsonLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let line = json_line(event, std::time::SystemTime::now());
        // Like tracing's writer: a log line that cannot be written is dropped.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn json_line(event: &tracing::Event<'_>, at: std::time::SystemTime) -> String {
    let metadata = event.metadata();
    let mut line = String::with_capacity(256);
    line.push_str("{\"timestamp\":\"");
    line.push_str(&crate::timefmt::rfc3339_micros(at));
    line.push_str("\",\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push('"');
    event.record(&mut JsonFields(&mut line));
    line.push_str(",\"target\":");
    crate::json::push_str(&mut line, metadata.target());
    line.push_str("}\n");
    line
}

/// Appends each field as `,"name":value`: 64-bit numbers and booleans as JSON, the rest
/// as strings (`%x` its Display, `?x` its Debug, 128-bit numbers), as tracing-subscriber
/// did.
struct JsonFields<'a>(&'a mut String);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        crate::json::push_str(self.0, field.name());
        self.0.push(':');
    }

    fn number(&mut self, field: &Field, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        self.key(field);
        let _ = write!(self.0, "{value}");
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        crate::json::push_str(self.0, &redact::text(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        crate::json::push_str(self.0, &redact::text(&format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        crate::json::push_f64(self.0, value);
    }
}

/// The shutdown report (a JSON object) as one INFO event, `"message":"shutdown report"`.
/// In JSON mode the object is embedded as it is: as a tracing field it would be escaped
/// into a string, which costs more than building it (callgrind: about a third of gsup's
/// work from SIGTERM to exit) and is harder to query. The caller checks the level, and
/// redacts the report's free-text fields (a pass over the whole line cost more than all
/// the rest of the exit path).
pub fn shutdown_report(report: &str) {
    if !JSON_LINES.load(Ordering::Relaxed) {
        tracing::info!(report = report, "shutdown report");
        return;
    }
    let timestamp = crate::timefmt::rfc3339_millis(std::time::SystemTime::now());
    let line = format!(
        "{{\"timestamp\":\"{timestamp}\",\"level\":\"INFO\",\"message\":\"shutdown report\",\"report\":{report},\"target\":\"gsup\"}}\n"
    );
    // Like tracing's writer: a log line that cannot be written is dropped.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Lines written to a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("UTF-8")
        }
    }

    /// gsup's JSON lines, into a buffer.
    struct CaptureJson(Captured);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureJson {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let line = json_line(event, std::time::UNIX_EPOCH);
            let _ = self.0.clone().write_all(line.as_bytes());
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Target {
        pid: i32,
        name: &'static str,
    }

    fn events() {
        let reason = "a \"quoted\" \\ reason\nwith\ttabs \u{1} \u{7f} é ✓";
        let none: Option<&str> = None;
        tracing::info!(pid = 42u64, generation = 1, "child started");
        tracing::info!(%reason, timeout_ms = 30_000u64, "graceful shutdown started");
        tracing::warn!(value = 1.5f64, whole = 3.0f64, nan = f64::NAN, "threshold breached");
        tracing::error!(to = ?Target { pid: -7, name: "x\"y" }, ok = true, delta = -5i64, signal = none, "signal forwarded");
        tracing::info!(big = u128::MAX, small = i128::MIN, "wide numbers");
        tracing::info!("formatted {} and {:?}", 5, "five");
    }

    /// The line gsup writes is the one tracing-subscriber's JSON formatter wrote before
    /// (issue 14 replaced it): same keys, order, numbers and escapes.
    #[test]
    fn json_lines_match_tracing_subscribers_formatter() {
        let theirs = Captured::default();
        let writer = theirs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let ours = Captured::default();
        let subscriber = tracing_subscriber::registry().with(CaptureJson(ours.clone()));
        tracing::subscriber::with_default(subscriber, events);

        let epoch = "{\"timestamp\":\"1970-01-01T00:00:00.000000Z\",";
        let ours: Vec<String> = ours.text().lines().map(|line| line.replacen(epoch, "{", 1)).collect();
        let theirs: Vec<String> = theirs.text().lines().map(String::from).collect();
        assert_eq!(ours.len(), 6);
        assert_eq!(ours, theirs);
    }

    /// A secret after a newline in a message or a field is hidden: the escaped line has
    /// `\n--token`, which the redaction read as one word (it was, before each string was
    /// redacted before escaping).
    #[test]
    fn secrets_after_a_newline_are_hidden() {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::registry().with(CaptureJson(ours.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let detail = "line one\nBearer SECRET2";
            tracing::warn!(%detail, "hook said:\n--token SECRET1");
        });
        let line = ours.text();
        assert!(!line.contains("SECRET1") && !line.contains("SECRET2"), "{line}");
        assert!(line.contains("--token ***") && line.contains("Bearer ***"), "{line}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any text is escaped into a JSON string that serde_json reads back unchanged.
        #[test]
        fn json_strings_round_trip(text in "\\PC*|[\\x00-\\x1f\"\\\\]{0,8}") {
            let mut out = String::new();
            crate::json::push_str(&mut out, &text);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            proptest::prop_assert_eq!(back, text.clone());
            proptest::prop_assert_eq!(out, serde_json::to_string(&text).expect("serde_json"));
        }
    }
}

//! Parsers for single values, shared by the file, environment and flag layers. Each
//! returns a message saying what was expected; the caller adds where the value came from
//! (file and line, variable, or flag), so the three layers report alike.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use libc::c_int;

use super::model::{ForwardTo, ListenAddress, LogFormat, MonitorAction, RestartPolicy};
use crate::signals;

/// Whether a zero duration (or count) is meaningful for a key (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    Allowed,
    /// Refused; the key's feature cannot be turned off.
    Refused,
    /// Refused; the key's feature is turned off by what this names instead.
    OffBy(&'static str),
}

/// The longest duration gsup takes, for any key, flag or variable (DESIGN §3): no sum of
/// bounds can overflow, and nobody waits a year for a child on purpose.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A human duration such as "30s" or "250ms" (TOML and flags).
pub fn duration(text: &str, zero: Zero) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{trimmed}` has no unit; write {trimmed}s (or {trimmed}ms)"));
    }
    let value = humantime::parse_duration(trimmed).map_err(|err| describe_duration_error(trimmed, &err))?;
    if value > MAX_DURATION {
        return Err(format!("`{trimmed}` {}", too_long()));
    }
    check_zero(value, zero)
}

/// humantime's error in words: its own text gives byte offsets ("expected number at 11").
fn describe_duration_error(text: &str, err: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let example = "a duration such as \"30s\", \"250ms\" or \"1h 30m\"";
    // The word that starts at a byte offset humantime points at.
    let word_at = |offset: usize| -> &str {
        let rest = text.get(offset..).unwrap_or("");
        rest.split(|c: char| c.is_whitespace() || c.is_ascii_digit())
            .find(|w| !w.is_empty())
            .unwrap_or(rest)
    };
    match err {
        E::Empty => format!("is empty; write {example}"),
        // humantime says the same for a fraction finer than it can represent.
        E::NumberOverflow if text.contains('.') => {
            format!("`{text}` is finer than one nanosecond or longer than 365 days, the longest duration gsup takes")
        }
        E::NumberOverflow => format!("`{text}` {}", too_long()),
        E::NumberExpected(offset) => format!("a number is missing before `{}`; write {example}", word_at(*offset)),
        E::InvalidCharacter(offset) => {
            let found = text.get(*offset..).and_then(|rest| rest.chars().next()).unwrap_or('?');
            format!("`{found}` cannot be part of a duration; write {example}")
        }
        E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("`{value}` has no unit; write {value}s (or {value}ms)")
        }
        E::UnknownUnit { unit, .. } => {
            format!("`{unit}` is not a unit; use ms, s, m, h or d (e.g. \"30s\", \"1h 30m\")")
        }
    }
}

fn too_long() -> String {
    "is longer than 365 days, the longest duration gsup takes".into()
}

/// Integer milliseconds, as the original design's environment variables.
pub fn duration_ms(text: &str, zero: Zero) -> Result<Duration, String> {
    let trimmed = text.trim();
    let all_digits = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
    match trimmed.parse::<u64>() {
        Ok(value) if value <= MAX_DURATION.as_millis() as u64 => check_zero(Duration::from_millis(value), zero),
        Ok(_) => Err(format!("{} ({} ms)", too_long(), MAX_DURATION.as_millis())),
        Err(_) if all_digits => Err(format!("{} ({} ms)", too_long(), MAX_DURATION.as_millis())),
        Err(_) => Err(format!("`{text}` is not a whole number of milliseconds (e.g. 30000)")),
    }
}

fn check_zero(value: Duration, zero: Zero) -> Result<Duration, String> {
    match zero {
        _ if !value.is_zero() => Ok(value),
        Zero::Allowed => Ok(value),
        Zero::Refused => Err("must be longer than zero".into()),
        Zero::OffBy(switch) => Err(format!("must be longer than zero (to turn the feature off, {switch})")),
    }
}

/// `true|false|1|0`, as DESIGN §3 says for the environment.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean (expected true, false, 1 or 0)")),
    }
}

/// A positive whole number.
pub fn positive_u64(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("`{text}` is not a positive whole number")),
    }
}

/// A positive number, fractions allowed (percentages).
pub fn positive_f64(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(_) => Err("must be a number greater than zero".into()),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

pub fn signal(text: &str) -> Result<c_int, String> {
    signals::parse(text).map_err(|err| err.to_string())
}

/// A rewrite target: a signal, or "none"/"0" to drop it.
pub fn rewrite_target(text: &str) -> Result<Option<c_int>, String> {
    match text.trim() {
        "0" => Ok(None),
        t if t.eq_ignore_ascii_case("none") => Ok(None),
        t => signal(t).map(Some),
    }
}

/// The key of a rewrite entry in `sources` and in `check`: `TERM`, `RTMIN+3`.
pub fn signal_key(signal: c_int) -> String {
    let name = signals::name(signal);
    name.strip_prefix("SIG").unwrap_or(&name).to_string()
}

pub fn forward_to(text: &str) -> Result<ForwardTo, String> {
    match text {
        "group" => Ok(ForwardTo::Group),
        "child" => Ok(ForwardTo::Child),
        _ => Err(format!("`{text}` is not one of group, child")),
    }
}

pub fn restart_policy(text: &str) -> Result<RestartPolicy, String> {
    match text {
        "never" => Ok(RestartPolicy::Never),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "always" => Ok(RestartPolicy::Always),
        _ => Err(format!("`{text}` is not one of never, on-failure, always")),
    }
}

pub fn monitor_action(text: &str) -> Result<MonitorAction, String> {
    match text {
        "warn" => Ok(MonitorAction::Warn),
        "restart" => Ok(MonitorAction::Restart),
        "shutdown" => Ok(MonitorAction::Shutdown),
        _ => Err(format!("`{text}` is not one of warn, restart, shutdown")),
    }
}

pub fn log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "auto" => Ok(LogFormat::Auto),
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("`{text}` is not one of auto, text, json")),
    }
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// A `tracing_subscriber::filter::Targets` string: `level` or `target=level`, comma
/// separated. Only the syntax is checked here; logging builds the filter.
pub fn log_level(text: &str) -> Result<String, String> {
    let expected = || {
        format!(
            "`{text}` is not a log filter (expected e.g. \"info\" or \"warn,gsup::monitor=debug\"; levels: {})",
            LEVELS.join(", ")
        )
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(expected());
    }
    for directive in trimmed.split(',') {
        let directive = directive.trim();
        let level = match directive.split_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(expected()),
            None => directive,
        };
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(expected());
        }
    }
    Ok(trimmed.to_string())
}

/// `[http] listen`: a socket address, `localhost:PORT` (→ 127.0.0.1, DESIGN §2) or "off"
/// (→ `None`).
pub fn http_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    let localhost = text
        .strip_prefix("localhost:")
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)));
    localhost
        .or_else(|| text.parse::<SocketAddr>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "`{text}` is not \"off\" or an address such as \"127.0.0.1:9090\", \"[::1]:9090\" or \"localhost:9090\""
            )
        })
}

/// A `[[listen]]` address: `HOST:PORT` (an IP), `[::1]:PORT` or `unix:/path`. A relative
/// unix path is resolved against `base`.
pub fn listen_address(text: &str, base: &Path) -> Result<ListenAddress, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("`unix:` needs a path, e.g. \"unix:/run/api.sock\"".into());
        }
        return Ok(ListenAddress::Unix(base.join(path)));
    }
    text.parse::<SocketAddr>().map(ListenAddress::Tcp).map_err(|_| {
        format!("`{text}` is not an address such as \"0.0.0.0:3000\", \"[::1]:3000\" or \"unix:/run/api.sock\"")
    })
}

/// A `HOST:PORT` to connect to (probes, dependencies); the host may be a name.
pub fn connect_address(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not HOST:PORT (e.g. \"127.0.0.1:5432\" or \"db:5432\")");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty() && !host.contains(char::is_whitespace);
    match port.parse::<u16>() {
        Ok(port) if port > 0 && host_ok => Ok(text.to_string()),
        _ => Err(bad()),
    }
}

/// An `http://` URL (gsup's probe and hook client speaks plain HTTP).
pub fn http_url(text: &str) -> Result<String, String> {
    match text.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(text.to_string()),
        _ => Err(format!(
            "`{text}` is not an http:// URL such as \"http://127.0.0.1:3000/healthz\""
        )),
    }
}

/// A file mode as an octal string, e.g. "0660".
pub fn octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!("`{text}` is not an octal file mode such as \"0660\"")),
    }
}

/// An exit code 0..=255 (`exit_code_map` keys and values).
pub fn exit_code(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(code) if (0..=255).contains(&code) => Ok(code),
        _ => Err(format!("`{text}` is not an exit code 0-255")),
    }
}

/// `FROM=TO` of the repeatable flags.
pub fn pair(text: &str) -> Result<(&str, &str), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from, to)),
        _ => Err(format!("`{text}` is not FROM=TO")),
    }
}

/// Formats a duration the way the file takes it ("30s", "1m 30s", "250ms").
pub fn format_duration(value: Duration) -> String {
    if value.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30s", Zero::Refused), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms", Zero::Refused), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1h 30m", Zero::Refused), Ok(Duration::from_secs(5400)));
        assert!(duration("30", Zero::Refused).unwrap_err().contains("write 30s"));
        assert_eq!(duration("0s", Zero::Refused), Err("must be longer than zero".into()));
        assert!(
            duration("0s", Zero::OffBy("x"))
                .unwrap_err()
                .contains("to turn the feature off, x")
        );
        assert_eq!(duration("365d", Zero::Refused), Ok(MAX_DURATION));
        assert!(
            duration("366d", Zero::Allowed)
                .unwrap_err()
                .contains("longer than 365 days")
        );
        assert!(
            duration_ms("99999999999999999999999", Zero::Allowed)
                .unwrap_err()
                .contains("365 days")
        );
        assert_eq!(duration("0s", Zero::Allowed), Ok(Duration::ZERO));
        assert!(duration("5 parsecs", Zero::Refused).is_err());
        assert_eq!(duration_ms("1500", Zero::Refused), Ok(Duration::from_millis(1500)));
        assert!(duration_ms("abc", Zero::Refused).is_err());
        assert!(duration_ms("-5", Zero::Refused).is_err());
        assert!(duration_ms("0", Zero::Refused).is_err());
        assert_eq!(duration_ms("0", Zero::Allowed), Ok(Duration::ZERO));
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "30s", "250ms", "1m 30s", "2h"] {
            let value = duration(text, Zero::Allowed).unwrap();
            assert_eq!(duration(&format_duration(value), Zero::Allowed), Ok(value));
        }
    }

    #[test]
    fn small_forms() {
        assert_eq!(boolean("1"), Ok(true));
        assert_eq!(boolean("false"), Ok(false));
        assert!(boolean("maybe").is_err());
        assert!(boolean("TRUE").is_err());
        assert_eq!(rewrite_target("none"), Ok(None));
        assert_eq!(rewrite_target("0"), Ok(None));
        assert_eq!(rewrite_target("QUIT"), Ok(Some(libc::SIGQUIT)));
        assert!(rewrite_target("BOGUS").is_err());
        assert_eq!(signal_key(libc::SIGTERM), "TERM");
        assert_eq!(octal_mode("0660"), Ok(0o660));
        assert!(octal_mode("0999").is_err());
        assert!(octal_mode("").is_err());
        assert_eq!(exit_code("143"), Ok(143));
        assert!(exit_code("256").is_err());
        assert!(exit_code("-1").is_err());
        assert!(log_level("info,gsup::monitor=debug").is_ok());
        assert!(log_level("WARN").is_ok());
        assert!(log_level("loud").is_err());
        assert!(log_level("=debug").is_err());
        assert!(log_level("").is_err());
        assert_eq!(http_listen("off"), Ok(None));
        assert!(http_listen("[::1]:9090").unwrap().is_some());
        assert!(http_listen("localhost").is_err());
        assert!(connect_address("db:5432").is_ok());
        assert!(connect_address("db").is_err());
        assert!(connect_address("db:0").is_err());
        assert!(http_url("http://127.0.0.1:3000/healthz").is_ok());
        assert!(http_url("ftp://x").is_err());
        let base = Path::new("/etc/gsup");
        assert_eq!(
            listen_address("unix:api.sock", base),
            Ok(ListenAddress::Unix("/etc/gsup/api.sock".into()))
        );
        assert!(matches!(listen_address("[::1]:3000", base), Ok(ListenAddress::Tcp(_))));
        assert!(listen_address("unix:", base).is_err());
        assert!(listen_address("api:3000", base).is_err());
        assert_eq!(pair("TERM=QUIT"), Ok(("TERM", "QUIT")));
        assert!(pair("TERM").is_err());
    }
}

//! Redaction of secrets, the one place that decides what a secret looks like (DESIGN §5).
//! `/config`, the `/health` and `/status` details, every log line and the shutdown report
//! all go through these functions, so they cannot disagree on what they hide.
//!
//! What is hidden (replaced with `***`):
//! - the value of a key whose name contains SECRET, PASS, PWD, TOKEN, KEY, CREDENTIAL,
//!   AUTH, PRIVATE, DSN, COOKIE or SESSION (any case): `DB_PASS=x`, `--password=x`;
//! - the userinfo of any URL: `postgres://u:***@h` keeps the user, `https://***@github.com`
//!   hides a lone user (a GitHub token is one);
//! - the value after a flag with such a name (`--token X`) and after `Bearer`/`Basic`;
//! - in a command's arguments, mysql's `-pX`.
//!
//! Redaction errs on the side of hiding: a harmless `author=x` shows as `author=***`.

use std::borrow::Cow;

pub const REDACTED: &str = "***";

/// DESIGN §5: names containing any of these, in any case, hold secrets.
const SECRET_MARKERS: &[&str] = &[
    "SECRET",
    "PASS",
    "PWD",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "DSN",
    "COOKIE",
    "SESSION",
];

/// Whether a key (an env name, a flag name, a `KEY=VALUE` key) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|marker| upper.contains(marker))
}

/// A value shown under `key` (an env entry): all of it when the key names a secret, else
/// whatever [`text`] finds in it.
pub fn env_value(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        REDACTED.to_string()
    } else {
        text(value).into_owned()
    }
}

/// A free text: a log line, a check's detail, the shutdown report.
pub fn text(input: &str) -> Cow<'_, str> {
    redact(input, false)
}

/// A command's arguments (a hook, an exec probe, a dependency check): each element as
/// [`text`], a flag's value after `--token`, and mysql's `-pSECRET`.
pub fn argv(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push(REDACTED.to_string());
            continue;
        }
        // `-pSECRET` carries its own value; `--token` announces the next one.
        hide_next = is_secret_flag(arg) && redact_word(arg, true).is_none();
        out.push(redact(arg, true).into_owned());
    }
    out
}

/// Every string in a JSON value, as [`text`].
pub fn json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(redacted) = text(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(map) => map.values_mut().for_each(json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Characters that end a word in free text (JSON and shell quoting included), so a
/// `KEY=VALUE` inside `"…"` or `[…]` is still found.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '\\'
        )
}

/// `--token`, `-password`: a flag whose value follows as the next word.
fn is_secret_flag(word: &str) -> bool {
    let name = word.trim_start_matches('-');
    word.starts_with('-') && !word.contains('=') && is_name(name) && is_secret_key(name)
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn redact(input: &str, in_argv: bool) -> Cow<'_, str> {
    if !in_argv && !may_hold_secret(input) {
        return Cow::Borrowed(input);
    }
    redact_words(input, in_argv)
}

/// The word-by-word pass (URLs first).
fn redact_words(input: &str, in_argv: bool) -> Cow<'_, str> {
    let with_urls = urls(input);
    let source: &str = &with_urls;
    let mut out = String::new();
    let mut changed = !matches!(with_urls, Cow::Borrowed(_));
    let mut hide_next = false;
    let mut rest = source;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !is_delimiter(c)).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(is_delimiter).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        if word.is_empty() {
            continue;
        }
        if std::mem::take(&mut hide_next) {
            out.push_str(REDACTED);
            changed = true;
            continue;
        }
        // `password='…'`, `PGPASSWORD="…"`, `-p'…'`: the quoted value is hidden whole.
        let quoted = if opens_quoted_secret(word, in_argv) {
            opening_quote(rest)
        } else {
            None
        };
        if let Some((quote, after)) = quoted {
            out.push_str(word);
            out.push_str(quote);
            out.push_str(REDACTED);
            changed = true;
            rest = match closing_quote(quote, after) {
                Some(end) => {
                    out.push_str(quote);
                    &after[end + quote.len()..]
                }
                // No closing quote: one word is hidden, as without quotes.
                None => {
                    let end = after
                        .find(|c: char| c.is_whitespace() || c == '"' || c == '\\')
                        .unwrap_or(after.len());
                    &after[end..]
                }
            };
            continue;
        }
        match redact_word(word, in_argv) {
            Some(redacted) => {
                out.push_str(&redacted);
                changed = true;
            }
            None => {
                out.push_str(word);
                hide_next =
                    is_secret_flag(word) || word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
            }
        }
    }
    if changed { Cow::Owned(out) } else { Cow::Borrowed(input) }
}

/// Whether free text has anything the word-by-word pass of [`redact`] could hide: an `=`
/// (`KEY=VALUE`, `KEY='…'`), an `@` (a URL's userinfo), a word that starts with `-` (a
/// flag whose value follows), or `bearer`/`basic` in any case. Every log line goes
/// through [`text`], and nearly none has any of these: they skip the pass (issue 14).
/// It errs towards the pass: a `-` after any non-ASCII byte counts as a word's start.
fn may_hold_secret(input: &str) -> bool {
    let bytes = input.as_bytes();
    bytes.iter().enumerate().any(|(i, &byte)| match byte {
        b'=' | b'@' => true,
        b'-' => i == 0 || !bytes[i - 1].is_ascii() || is_delimiter(char::from(bytes[i - 1])),
        b'b' | b'B' => ["bearer", "basic"].iter().any(|word| {
            bytes
                .get(i..i + word.len())
                .is_some_and(|found| found.eq_ignore_ascii_case(word.as_bytes()))
        }),
        _ => false,
    })
}

/// `KEY=` with a secret key (its value follows in quotes), or (in argv) mysql's `-p`.
fn opens_quoted_secret(word: &str, in_argv: bool) -> bool {
    let assigns_secret = word.strip_suffix('=').is_some_and(|key| {
        let name = key.trim_start_matches('-');
        is_name(name) && is_secret_key(name)
    });
    assigns_secret || (in_argv && word == "-p")
}

/// A quote that opens `rest` (`'`, `"`, or `\"` as inside a JSON string), and what
/// follows it. A bare `"` followed by `,` `:` `}` `]` or nothing is the end of the JSON
/// string the key is in (`{"k":"DB_PASS=","v":1}`), not a quote.
fn opening_quote(rest: &str) -> Option<(&str, &str)> {
    let (quote, after) = ["\\\"", "\"", "'"]
        .into_iter()
        .find_map(|quote| rest.strip_prefix(quote).map(|after| (quote, after)))?;
    let ends_json_string = quote == "\"" && after.chars().next().is_none_or(|c| matches!(c, ',' | ':' | '}' | ']'));
    (!ends_json_string).then_some((quote, after))
}

/// Where the value opened by `quote` ends in `after` (the index of its closing quote).
/// It never spans a bare `"`: in a JSON line that ends the string it is in.
fn closing_quote(quote: &str, after: &str) -> Option<usize> {
    let first_double = after.find('"');
    match quote {
        "\"" => first_double,
        "\\\"" => first_double
            .filter(|&i| i > 0 && after[..i].ends_with('\\'))
            .map(|i| i - 1),
        _ => after[..first_double.unwrap_or(after.len())].find(quote),
    }
}

/// One word: `KEY=VALUE` / `--key=VALUE` with a secret key, or (in argv) `-pVALUE`.
fn redact_word(word: &str, in_argv: bool) -> Option<String> {
    if let Some((key, value)) = word.split_once('=') {
        let name = key.trim_start_matches('-');
        if is_name(name) && is_secret_key(name) && value != REDACTED {
            return Some(format!("{key}={REDACTED}"));
        }
    }
    if in_argv && word.len() > 2 && word.starts_with("-p") && !word.contains('=') && &word[2..] != REDACTED {
        return Some(format!("-p{REDACTED}"));
    }
    None
}

/// Where a URL's authority ends in free text: its own delimiters, whitespace, and the
/// characters that quote or escape text but never appear in a URL. Not the sub-delims
/// `!$&'()*+,;=` (nor `[`, `]`): RFC 3986 allows them in userinfo, and a password cut at
/// the first of them would show (`postgres://u:p,w@h`). Over-reaching errs on hiding.
fn ends_authority(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '/' | '?' | '#' | '"' | '`' | '<' | '>' | '\\' | '{' | '}' | '|' | '^'
        )
}

/// The userinfo of every URL in `text`: `scheme://user:pass@host` → `scheme://user:***@host`,
/// `scheme://user@host` → `scheme://***@host`.
pub fn urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_len = rest.find(ends_authority).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        match authority.rfind('@').filter(|&at| at > 0) {
            Some(at) => {
                let userinfo = &authority[..at];
                let shown = match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:{REDACTED}"),
                    None => REDACTED.to_string(),
                };
                changed |= shown != userinfo;
                out.push_str(&shown);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_len..];
    }
    out.push_str(rest);
    if changed { Cow::Owned(out) } else { Cow::Borrowed(text) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secret_keys_by_the_extended_list() {
        for key in [
            "DB_PASS",
            "DB_PASSWORD",
            "passwd",
            "MYSQL_PWD",
            "api_key",
            "GITHUB_TOKEN",
            "AwsSecretAccessKey",
            "AUTH_HEADER",
            "private_pem",
            "GCP_CREDENTIALS",
            "SENTRY_DSN",
            "DSN",
            "cookie_jar",
            "SESSION_ID",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["NODE_ENV", "PATH", "HOME", "PORT"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn url_userinfo_with_or_without_password() {
        assert_eq!(urls("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(urls("redis://:pw@cache"), "redis://:***@cache");
        assert_eq!(
            urls("https://ghp_x@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(urls("http://h/x@y"), "http://h/x@y");
        assert_eq!(urls("plain value"), "plain value");
        assert_eq!(
            urls("a=http://x:1@h b=ftp://y:2@k/p"),
            "a=http://x:***@h b=ftp://y:***@k/p"
        );
        assert_eq!(
            urls(r#"{"detail":"http://u:p@h:1/x: refused"}"#),
            r#"{"detail":"http://u:***@h:1/x: refused"}"#
        );
    }

    /// RFC 3986 lets userinfo hold the sub-delims `!$&'()*+,;=` unencoded, and people
    /// write passwords with them: the whole password is hidden, not cut at the first one.
    #[test]
    fn url_userinfo_with_sub_delims_in_the_password() {
        for (url, shown) in [
            ("postgres://app:p,w@db/x", "postgres://app:***@db/x"),
            ("redis://:pa;ss@cache:6379", "redis://:***@cache:6379"),
            ("mysql://root:pa(ss)@h", "mysql://root:***@h"),
            ("amqp://u:it's@mq", "amqp://u:***@mq"),
            ("https://tok,en@github.com/o/r", "https://***@github.com/o/r"),
        ] {
            assert_eq!(urls(url), shown, "{url}");
            assert_eq!(
                text(&format!("DATABASE_URL={url} ok")),
                format!("DATABASE_URL={shown} ok"),
                "{url}"
            );
        }
        // In JSON and quoted text the quote still ends the URL.
        assert_eq!(
            text(r#"{"u":"http://a:b@h/x","v":"y"}"#),
            r#"{"u":"http://a:***@h/x","v":"y"}"#
        );
    }

    /// A secret value in quotes (libpq's `password='…'`, a shell's `PGPASSWORD="…"`,
    /// mysql's `-p'…'` inside `sh -c`) is hidden whole, not just up to the quote.
    #[test]
    fn quoted_secret_values_are_hidden_whole() {
        assert_eq!(
            text("host=db password='hunter2' user=app"),
            "host=db password='***' user=app"
        );
        assert_eq!(text(r#"PGPASSWORD="two words" psql"#), r#"PGPASSWORD="***" psql"#);
        assert_eq!(
            argv(&strings(&["sh", "-c", "mysql -p'hunter2' --password='x y' db"])),
            strings(&["sh", "-c", "mysql -p'***' --password='***' db"])
        );
        // Escaped quotes, as in a JSON line.
        assert_eq!(
            text(r#"{"detail":"password=\"hunter2\" x"}"#),
            r#"{"detail":"password=\"***\" x"}"#
        );
        // A JSON line stays JSON: a string that ends with `KEY=`, a quote never closed.
        for (line, shown) in [
            (r#"{"k":"DB_PASS=","v":1}"#, r#"{"k":"DB_PASS=***","v":1}"#),
            (r#"{"d":"password='abc","x":"y'"}"#, r#"{"d":"password='***","x":"y'"}"#),
        ] {
            assert_eq!(text(line), shown);
            serde_json::from_str::<serde_json::Value>(&text(line)).unwrap();
        }
        assert_eq!(text("password= next"), "password=*** next");
    }

    #[test]
    fn key_value_flags_and_bearer_in_text() {
        assert_eq!(text("DB_PASS=hunter2"), "DB_PASS=***");
        assert_eq!(
            text("DSN=host=db user=app password=s3"),
            "DSN=*** user=app password=***"
        );
        assert_eq!(
            text("run --password=x --token y --name z"),
            "run --password=*** --token *** --name z"
        );
        assert_eq!(text("Authorization: bearer abc"), "Authorization: bearer ***");
        assert_eq!(text(r#"["--api-key=k","x"]"#), r#"["--api-key=***","x"]"#);
        assert_eq!(text("nothing to see here"), "nothing to see here");
        assert!(matches!(text("nothing to see here"), Cow::Borrowed(_)));
        // Idempotent: redacting twice changes nothing more.
        assert_eq!(text("TOKEN=***"), "TOKEN=***");
    }

    #[test]
    fn argv_elements_that_carry_a_secret() {
        assert_eq!(
            argv(&strings(&[
                "mysql",
                "-pHOOKSECRET",
                "-u",
                "root",
                "--password",
                "pw",
                "db"
            ])),
            strings(&["mysql", "-p***", "-u", "root", "--password", "***", "db"])
        );
        assert_eq!(
            argv(&strings(&["env", "API_TOKEN=abc", "curl", "https://u:p@h/x"])),
            strings(&["env", "API_TOKEN=***", "curl", "https://u:***@h/x"])
        );
        assert_eq!(
            argv(&strings(&["sh", "-c", "mysql -pS3 --token=t db"])),
            strings(&["sh", "-c", "mysql -p*** --token=*** db"])
        );
        assert_eq!(
            argv(&strings(&["pg_isready", "-h", "db"])),
            strings(&["pg_isready", "-h", "db"])
        );
    }

    #[test]
    fn the_shortcut_still_sees_a_flag_after_a_non_ascii_space() {
        assert_eq!(text("x\u{3000}--token SECRET"), "x\u{3000}--token ***");
        assert_eq!(text("go Bearer abc"), "go Bearer ***");
        assert_eq!(text("a plain line, nothing to hide"), "a plain line, nothing to hide");
        assert!(matches!(text("a plain line"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_strings_are_redacted_in_place() {
        let mut value = serde_json::json!({"a": ["redis://:pw@h"], "b": {"c": "X_TOKEN=1"}, "n": 3});
        json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": ["redis://:***@h"], "b": {"c": "X_TOKEN=***"}, "n": 3})
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// No input panics it (slicing at char boundaries), and a second pass changes
        /// nothing: what is shown never still holds a redactable secret.
        #[test]
        fn text_never_panics_and_is_idempotent(input in "\\PC{0,80}") {
            let once = text(&input).into_owned();
            let twice = text(&once).into_owned();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn a_planted_secret_never_shows(
            prefix in "[a-z ]{0,10}",
            key in "(DB_PASS|api_token|MYSQL_PWD|SENTRY_DSN|session_id)",
            secret in "Z9[A-Za-z0-9]{4,20}",
            user in "[a-z]{1,8}",
        ) {
            let line = format!("{prefix} {key}={secret} https://{user}:{secret}@h/x --token {secret}");
            let shown = text(&line);
            prop_assert!(!shown.contains(&secret), "{}", shown);
            let args = vec![format!("-p{secret}"), format!("{key}={secret}")];
            let shown = argv(&args).join(" ");
            prop_assert!(!shown.contains(&secret), "{}", shown);
        }

        /// The shortcut for lines without `=`, `@`, a flag or bearer/basic hides exactly
        /// what the full pass hides, on any text (issue 14).
        #[test]
        fn the_shortcut_agrees_with_the_full_pass(
            input in r#"([a-zA-Z0-9 "'\\:/_.,-]|=|@|\u{3000}|\u{a0}|é|\PC|bearer |Basic |--token |DB_PASS){0,24}"#,
        ) {
            prop_assert_eq!(text(&input), redact_words(&input, false));
        }

        #[test]
        fn argv_never_panics_and_keeps_its_length(args in proptest::collection::vec("\\PC{0,20}", 0..8)) {
            prop_assert_eq!(argv(&args).len(), args.len());
        }
    }
}

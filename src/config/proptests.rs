//! Property tests of the config parsers, which all take outside input (issue 12 item 6):
//! no input panics them, and what they refuse they refuse with an error that names it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::values::{self, MAX_DURATION, Zero};
use super::*;
use crate::cli::ConfigFlags;

const CASES: u32 = 256;

fn example() -> &'static str {
    include_str!("../../supervisor.example.toml")
}

/// Loads `bytes` as `supervisor.toml` in `dir` with `env`, as `run` would.
fn load_file(dir: &Path, bytes: &[u8], env: &[(&str, &[u8])]) -> Result<Loaded, ConfigErrors> {
    std::fs::write(dir.join("supervisor.toml"), bytes).expect("write the config");
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(name, value)| (name.to_string(), OsStr::from_bytes(value).to_os_string()))
        .collect();
    load(&ConfigFlags::default(), &move |name| env.get(name).cloned(), dir)
}

/// What a config error must look like: one line that says where (the file, a key, a
/// variable) and what.
fn assert_clear(errors: &ConfigErrors) -> Result<(), TestCaseError> {
    prop_assert!(!errors.0.is_empty());
    for error in &errors.0 {
        let text = error.to_string();
        let (at, message) = text.split_once(": ").unwrap_or((&text, ""));
        prop_assert!(!at.is_empty() && !message.trim().is_empty(), "{}", text);
        let named = at.contains("supervisor.toml") || at.contains('`') || at.contains('=');
        prop_assert!(named, "names neither file, key nor variable: {}", text);
    }
    Ok(())
}

/// A loaded config renders: `check`'s TOML parses again, and `/config`'s JSON is built.
fn assert_renders(loaded: &Loaded) -> Result<(), TestCaseError> {
    let text = render_check(loaded);
    prop_assert!(text.parse::<toml::Table>().is_ok(), "{}", text);
    let _ = render_json(loaded);
    Ok(())
}

/// Values worth putting where the example has one.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"0s\"".to_string()),
        Just("\"18446744073709551615s\"".to_string()),
        Just("\"366d\"".to_string()),
        Just("\"0.5ns\"".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("[[]]".to_string()),
        Just("{}".to_string()),
        Just("{ x = 1 }".to_string()),
        Just("true".to_string()),
        Just("\"RTMAX--2147483648\"".to_string()),
        Just("\"localhost:99999\"".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "\"[^\"\\\\]{0,12}\"",
        "-?[0-9]{1,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn durations_are_bounded_or_refused(
        text in prop_oneof![
            any::<String>(),
            "[0-9]{0,22}(\\.[0-9]{0,3})? ?[a-zµ]{0,8}( [0-9]{0,6} ?[a-z]{0,5}){0,2}",
        ],
        zero in prop_oneof![Just(Zero::Allowed), Just(Zero::Refused), Just(Zero::OffBy("x"))],
    ) {
        for result in [values::duration(&text, zero), values::duration_ms(&text, zero)] {
            match result {
                Ok(value) => {
                    prop_assert!(value <= MAX_DURATION);
                    prop_assert!(zero == Zero::Allowed || !value.is_zero());
                }
                Err(message) => prop_assert!(!message.trim().is_empty()),
            }
        }
    }

    #[test]
    fn durations_round_trip_through_their_format(millis in 0..=MAX_DURATION.as_millis() as u64) {
        let value = Duration::from_millis(millis);
        prop_assert_eq!(values::duration(&values::format_duration(value), Zero::Allowed), Ok(value));
    }

    /// The small parsers of flags and keys: never a panic, never an empty refusal.
    #[test]
    fn value_parsers_never_panic(text in any::<String>()) {
        let base = Path::new("/etc/gsup");
        let messages = [
            values::http_listen(&text).err(),
            values::listen_address(&text, base).err(),
            values::connect_address(&text).err(),
            values::http_url(&text).err(),
            values::octal_mode(&text).err(),
            values::exit_code(&text).err(),
            values::pair(&text).err(),
            values::log_level(&text).err(),
            values::rewrite_target(&text).err(),
            values::boolean(&text).err(),
            values::positive_u64(&text).err(),
            values::positive_f64(&text).err(),
        ];
        for message in messages.into_iter().flatten() {
            prop_assert!(!message.trim().is_empty());
        }
    }

    /// Any bytes in any variable of the table: the value is taken, or refused by one
    /// error naming the variable (DESIGN §3).
    #[test]
    fn env_values_are_taken_or_refused_naming_the_variable(
        index in 0..ENV_VARS.len(),
        value in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            "[0-9]{0,21}|-[0-9]{1,5}|true|false|1|0| 5 |1e3|\u{feff}1|[a-z:*, =]{0,12}".prop_map(String::into_bytes),
        ],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = ENV_VARS[index].name;
        let env = HashMap::from([(name.to_string(), OsStr::from_bytes(&value).to_os_string())]);
        match load(&ConfigFlags::default(), &move |n| env.get(n).cloned(), dir.path()) {
            Ok(loaded) => assert_renders(&loaded)?,
            Err(errors) => {
                prop_assert_eq!(errors.0.len(), 1, "{}", errors);
                let text = errors.0[0].to_string();
                let prefix = format!("{name}=");
                prop_assert!(text.starts_with(&prefix), "{}", text);
                if name == "GSUP_CONTROL_TOKEN" {
                    prop_assert!(text.starts_with("GSUP_CONTROL_TOKEN=***"), "{}", text);
                }
            }
        }
    }

    /// The example config with bytes replaced, inserted or removed.
    #[test]
    fn the_loader_survives_mutated_bytes(
        edits in proptest::collection::vec((any::<usize>(), 0..3u8, any::<u8>()), 1..8),
    ) {
        let mut bytes = example().as_bytes().to_vec();
        for (at, kind, byte) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        match load_file(dir.path(), &bytes, &[("GSUP_CONTROL_TOKEN", b"t")]) {
            Ok(loaded) => assert_renders(&loaded)?,
            Err(errors) => assert_clear(&errors)?,
        }
    }

    /// The example config with lines dropped, repeated, swapped or replaced by odd ones.
    #[test]
    fn the_loader_survives_mutated_lines(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), 0..4u8), 1..6),
        odd in prop_oneof![
            Just("[[hooks]]"), Just("[shutdown]"), Just("[process.env]"), Just("x = {"),
            Just("timeout = 30"), Just("[[listen]]"), Just("probe = 1"), Just("\"\" = 1"),
            Just("[readiness.probe]"), Just("a.b.c = 1"), Just("[signals.rewrite]"),
        ],
    ) {
        let mut lines: Vec<String> = example().lines().map(str::to_string).collect();
        for (a, b, kind) in edits {
            let (a, b) = (a % lines.len(), b % lines.len());
            match kind {
                0 if lines.len() > 1 => {
                    lines.remove(a);
                }
                1 => {
                    let line = lines[a].clone();
                    lines.insert(b, line);
                }
                2 => lines.swap(a, b),
                _ => lines[a] = odd.to_string(),
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        match load_file(dir.path(), lines.join("\n").as_bytes(), &[("GSUP_CONTROL_TOKEN", b"t")]) {
            Ok(loaded) => assert_renders(&loaded)?,
            Err(errors) => assert_clear(&errors)?,
        }
    }

    /// The example config with values replaced by odd ones.
    #[test]
    fn the_loader_survives_mutated_values(
        edits in proptest::collection::vec((any::<usize>(), odd_value()), 1..5),
    ) {
        let mut lines: Vec<String> = example().lines().map(str::to_string).collect();
        let assignments: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| !line.trim_start().starts_with('#') && line.contains(" = "))
            .map(|(index, _)| index)
            .collect();
        for (pick, value) in edits {
            let index = assignments[pick % assignments.len()];
            let key = lines[index].split(" = ").next().unwrap_or_default().to_string();
            lines[index] = format!("{key} = {value}");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        match load_file(dir.path(), lines.join("\n").as_bytes(), &[("GSUP_CONTROL_TOKEN", b"t")]) {
            Ok(loaded) => assert_renders(&loaded)?,
            Err(errors) => assert_clear(&errors)?,
        }
    }
}

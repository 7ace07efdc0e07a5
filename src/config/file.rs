//! The config-file layer: walks the TOML document section by section and applies each
//! key it knows onto the builder.
//!
//! Why a walk and not `#[derive(Deserialize)]` + `serde_ignored`: every key a section asks
//! for is, by that fact, a valid key, so the walk knows the whole schema and every unknown
//! key (all of them, not the first) with the nearest valid one, without a second list to
//! keep in sync. Values are read as `toml::Value`, so a wrong type is one more collected
//! error instead of the end of deserialization. Line numbers come from the key spans of a
//! second, spanned parse (`toml::de::DeTable`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libc::c_int;
use toml::Value;

use super::error::At;
use super::model::*;
use super::values::{self, Zero};
use super::{Builder, ConfigError, Source};

pub const DEFAULT_BACKLOG: u32 = 1024;
pub const DEFAULT_MODE: u32 = 0o660;
pub const DEFAULT_DEPENDENCY_INTERVAL: Duration = Duration::from_secs(30);

// What turns a feature off, for the keys whose zero is refused (DESIGN §3).
const REDIS_OFF: &str = "set `phases.redis.enabled = false`";
const RESTART_OFF: &str = "set `restart.policy = \"never\"` or `max_restarts = 0`";
const READINESS_OFF: &str = "leave out `readiness.probe`";
pub(super) const DEPENDENCY_OFF: &str = "remove its `[[dependencies]]` entry";
const MONITOR_OFF: &str = "set `monitor.enabled = false`";

/// The file being applied.
struct FileCtx {
    /// As the user named it.
    display: PathBuf,
    /// Relative paths in the file are relative to here.
    dir: PathBuf,
    /// Dotted path of every key (`shutdown.timeout`, `hooks[0].phase`) → its line.
    lines: BTreeMap<String, usize>,
}

impl FileCtx {
    fn source(&self) -> Source {
        Source::File(self.display.clone())
    }

    fn name(&self) -> String {
        self.display.display().to_string()
    }

    /// The line of `path`, or of the nearest enclosing key that has one.
    fn line(&self, path: &str) -> usize {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return *line;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return 1,
            }
        }
    }

    fn at(&self, path: &str) -> At {
        let line = self.line(path);
        At {
            text: format!("{}, line {line}: `{path}`", self.name()),
            line: Some(line),
        }
    }
}

/// Applies the file's `bytes`; its errors are listed in the order of its lines, whatever
/// the order of the sections that found them.
pub(super) fn apply(b: &mut Builder, bytes: &[u8], display: &Path, dir: &Path) {
    let name = display.display().to_string();
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            b.errors.push(ConfigError::Parse {
                path: name,
                message: format!(
                    "line {}: not UTF-8 text (a TOML file is UTF-8)",
                    line_of(valid, valid.len())
                ),
            });
            return;
        }
    };
    let first_error = b.errors.len();
    apply_text(b, text, display, dir);
    b.errors[first_error..].sort_by_key(ConfigError::line);
}

fn apply_text(b: &mut Builder, text: &str, display: &Path, dir: &Path) {
    let name = display.display().to_string();
    let root: toml::Table = match text.parse() {
        Ok(root) => root,
        Err(err) => {
            b.errors.push(ConfigError::Parse {
                path: name,
                message: describe_parse_error(text, &err),
            });
            return;
        }
    };
    let file = FileCtx {
        display: display.to_path_buf(),
        dir: dir.to_path_buf(),
        lines: line_index(text),
    };
    let mut doc = Section::new(&file, &root, String::new());
    process(b, &mut doc);
    signals(b, &mut doc);
    shutdown(b, &mut doc);
    phases(b, &mut doc);
    hooks(b, &mut doc);
    restart(b, &mut doc);
    http(b, &mut doc);
    control(b, &mut doc);
    readiness(b, &mut doc);
    dependencies(b, &mut doc);
    monitor(b, &mut doc);
    notify(b, &mut doc);
    listen(b, &mut doc);
    reload(b, &mut doc);
    log(b, &mut doc);
    doc.finish(b);
}

fn describe_parse_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // Characters, not bytes: a span may point into the middle of one.
            let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
            format!("line {}, column {column}: {message}", line_of(before, before.len()))
        }
        None => message,
    }
}

fn line_index(text: &str) -> BTreeMap<String, usize> {
    fn walk(text: &str, table: &toml::de::DeTable<'_>, prefix: &str, out: &mut BTreeMap<String, usize>) {
        for (key, value) in table.iter() {
            let path = join(prefix, key.get_ref());
            out.insert(path.clone(), line_of(text.as_bytes(), key.span().start));
            walk_value(text, value.get_ref(), &path, out);
        }
    }
    fn walk_value(text: &str, value: &toml::de::DeValue<'_>, path: &str, out: &mut BTreeMap<String, usize>) {
        match value {
            toml::de::DeValue::Table(table) => walk(text, table, path, out),
            toml::de::DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    out.insert(item_path.clone(), line_of(text.as_bytes(), item.span().start));
                    walk_value(text, item.get_ref(), &item_path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    // The document parsed once already; a failure here only costs line numbers.
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk(text, doc.get_ref(), "", &mut out);
    }
    out
}

fn line_of(text: &[u8], offset: usize) -> usize {
    text[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// One table of the file. Every key asked for is recorded as valid, so `finish` can name
/// the keys nobody asked for.
struct Section<'a> {
    file: &'a FileCtx,
    table: &'a toml::Table,
    path: String,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn new(file: &'a FileCtx, table: &'a toml::Table, path: String) -> Self {
        Section {
            file,
            table,
            path,
            known: Vec::new(),
        }
    }

    fn full(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn at(&self, key: &str) -> At {
        self.file.at(&self.full(key))
    }

    fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.table.get(key)
    }

    /// The value of `key` through `parse`; records its source, or the error with its line.
    fn take<T>(
        &mut self,
        b: &mut Builder,
        key: &'static str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.raw(key)?;
        match parse(value) {
            Ok(parsed) => {
                b.set_source(self.full(key), self.file.source());
                Some(parsed)
            }
            Err(message) => {
                b.error(self.at(key), message);
                None
            }
        }
    }

    /// A sub-table (`[phases.database]`, an inline `probe = { … }`).
    fn table(&mut self, b: &mut Builder, key: &'static str) -> Option<Section<'a>> {
        match self.raw(key)? {
            Value::Table(table) => Some(Section::new(self.file, table, self.full(key))),
            other => {
                b.error(self.at(key), format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// An array of tables (`[[hooks]]`).
    fn tables(&mut self, b: &mut Builder, key: &'static str) -> Vec<Section<'a>> {
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            b.error(
                self.at(key),
                format!("expected an array of tables ([[{key}]]), found {}", value.type_str()),
            );
            return Vec::new();
        };
        let mut sections = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let path = format!("{}[{index}]", self.full(key));
            match item {
                Value::Table(table) => sections.push(Section::new(self.file, table, path)),
                other => b.error(
                    self.file.at(&path),
                    format!("expected a table, found {}", other.type_str()),
                ),
            }
        }
        sections
    }

    /// A table of free-form keys (`rewrite`, `env`, `exit_code_map`): no unknown keys.
    fn map(&mut self, b: &mut Builder, key: &'static str) -> Option<(&'a toml::Table, String)> {
        match self.raw(key)? {
            Value::Table(table) => Some((table, self.full(key))),
            other => {
                b.error(self.at(key), format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// Reports every key of this table that no one asked for.
    fn finish(self, b: &mut Builder) {
        for key in self.table.keys() {
            if self.known.contains(&key.as_str()) {
                continue;
            }
            let full = self.full(key);
            b.errors.push(ConfigError::UnknownKey {
                key: key.clone(),
                file: self.file.name(),
                line: self.file.line(&full),
                hint: suggest(key, &self.known),
            });
        }
    }
}

/// "did you mean `timeout`?" when a valid key is close, else the list of valid keys.
fn suggest(key: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), *candidate))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, candidate)) if score >= 0.8 => format!("did you mean `{candidate}`?"),
        _ => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

// Value converters: each says what it expected, and what it found.

fn found(value: &Value) -> String {
    match value {
        Value::String(s) => format!("found \"{s}\""),
        Value::Table(_) | Value::Array(_) => format!("found {}", value.type_str()),
        other => format!("found {other}"),
    }
}

fn duration(zero: Zero) -> impl Fn(&Value) -> Result<Duration, String> {
    move |value| match value {
        Value::String(text) => values::duration(text, zero),
        Value::Integer(n) => Err(format!(
            "a bare number is not a duration; write \"{n}s\" (or \"{n}ms\")"
        )),
        other => Err(format!("expected a duration such as \"30s\", {}", found(other))),
    }
}

fn boolean(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("expected true or false, {}", found(value)))
}

fn string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::String(_) => Err("must not be empty".into()),
        other => Err(format!("expected a string, {}", found(other))),
    }
}

fn with<T>(parse: impl Fn(&str) -> Result<T, String>) -> impl Fn(&Value) -> Result<T, String> {
    move |value| match value {
        Value::String(s) => parse(s),
        other => Err(format!("expected a string, {}", found(other))),
    }
}

fn path(dir: &Path) -> impl Fn(&Value) -> Result<PathBuf, String> + '_ {
    move |value| string(value).map(|s| dir.join(s))
}

/// A command: a non-empty array of strings.
fn argv(value: &Value) -> Result<Vec<String>, String> {
    let expected = || "expected a non-empty array of strings such as [\"./api\", \"--port\", \"3000\"]";
    let Value::Array(items) = value else {
        return Err(format!("{}, {}", expected(), found(value)));
    };
    if items.is_empty() {
        return Err(expected().into());
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("{}, {} in it", expected(), found(other))),
        })
        .collect()
}

fn signal(value: &Value) -> Result<c_int, String> {
    match value {
        Value::String(s) => values::signal(s),
        Value::Integer(n) => values::signal(&n.to_string()),
        other => Err(format!("expected a signal such as \"TERM\", {}", found(other))),
    }
}

fn count(zero: Zero) -> impl Fn(&Value) -> Result<u64, String> {
    move |value| match value {
        Value::Integer(n) if *n > 0 || (*n == 0 && zero == Zero::Allowed) => Ok(*n as u64),
        Value::Integer(_) if zero == Zero::Allowed => Err("must not be negative".into()),
        Value::Integer(_) => Err("must be greater than zero".into()),
        other => Err(format!("expected a whole number, {}", found(other))),
    }
}

fn count_u32(zero: Zero) -> impl Fn(&Value) -> Result<u32, String> {
    move |value| {
        let n = count(zero)(value)?;
        u32::try_from(n).map_err(|_| format!("{n} is too large"))
    }
}

fn positive_number(value: &Value) -> Result<f64, String> {
    let number = match value {
        Value::Integer(n) => *n as f64,
        Value::Float(f) => *f,
        other => return Err(format!("expected a number, {}", found(other))),
    };
    if number.is_finite() && number > 0.0 {
        Ok(number)
    } else {
        Err("must be greater than zero".into())
    }
}

// The sections, in the order of DESIGN §3.

fn process(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "process") else {
        return;
    };
    let dir = s.file.dir.clone();
    if let Some(v) = s.take(b, "command", argv) {
        b.config.process.command = Some(v);
    }
    if let Some(v) = s.take(b, "workdir", path(&dir)) {
        b.config.process.workdir = Some(v);
    }
    if let Some((table, prefix)) = s.map(b, "env") {
        for (key, value) in table {
            let full = join(&prefix, key);
            match value {
                Value::String(v) => {
                    b.config.process.env.insert(key.clone(), v.clone());
                    b.set_source(full, s.file.source());
                }
                other => b.error(
                    s.file.at(&full),
                    format!("expected a string (quote numbers and booleans), {}", found(other)),
                ),
            }
        }
    }
    if let Some(v) = s.take(b, "user", string) {
        b.config.process.user = Some(v);
    }
    if let Some(v) = s.take(b, "group", string) {
        b.config.process.group = Some(v);
    }
    s.finish(b);
}

fn signals(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "signals") else {
        return;
    };
    if let Some(v) = s.take(b, "forward_to", with(values::forward_to)) {
        b.config.signals.forward_to = v;
    }
    if let Some((table, prefix)) = s.map(b, "rewrite") {
        for (key, value) in table {
            let at = s.file.at(&join(&prefix, key));
            let target = match value {
                Value::String(t) => values::rewrite_target(t),
                Value::Integer(n) => values::rewrite_target(&n.to_string()),
                other => Err(format!(
                    "expected a signal such as \"QUIT\", or \"none\", {}",
                    found(other)
                )),
            };
            match (values::signal(key), target) {
                (Ok(from), Ok(to)) => {
                    b.config.signals.rewrite.insert(from, to);
                    let source_key = join(&prefix, &values::signal_key(from));
                    b.set_source(source_key, s.file.source());
                }
                (Err(message), _) | (_, Err(message)) => b.error(at, message),
            }
        }
    }
    if let Some(v) = s.take(b, "shutdown_on", |value| match value {
        Value::Array(items) => items.iter().map(signal).collect(),
        other => Err(format!(
            "expected an array of signals such as [\"TERM\", \"INT\"], {}",
            found(other)
        )),
    }) {
        b.config.signals.shutdown_on = v;
    }
    if let Some(v) = s.take(b, "repeat_forces", boolean) {
        b.config.signals.repeat_forces = v;
    }
    s.finish(b);
}

fn shutdown(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "shutdown") else {
        return;
    };
    let dir = s.file.dir.clone();
    if let Some(v) = s.take(b, "stop_signal", signal) {
        b.config.shutdown.stop_signal = v;
    }
    if let Some(v) = s.take(b, "timeout", duration(Zero::Refused)) {
        b.config.shutdown.timeout = v;
    }
    if let Some(v) = s.take(b, "force_timeout", duration(Zero::Refused)) {
        b.config.shutdown.force_timeout = v;
    }
    if let Some(v) = s.take(b, "drain_delay", duration(Zero::Allowed)) {
        b.config.shutdown.drain_delay = v;
    }
    if let Some(v) = s.take(b, "connection_draining", boolean) {
        b.config.shutdown.connection_draining = v;
    }
    if let Some(v) = s.take(b, "max_drain_time", duration(Zero::Allowed)) {
        b.config.shutdown.max_drain_time = v;
    }
    if let Some(v) = s.take(b, "log", path(&dir)) {
        b.config.shutdown.log = Some(v);
    }
    if let Some((table, prefix)) = s.map(b, "exit_code_map") {
        for (key, value) in table {
            let full = join(&prefix, key);
            let to = match value {
                Value::Integer(n) => values::exit_code(&n.to_string()),
                other => Err(format!("expected an exit code 0-255, {}", found(other))),
            };
            match (values::exit_code(key), to) {
                (Ok(from), Ok(to)) => {
                    b.config.shutdown.exit_code_map.insert(from, to);
                    b.set_source(join(&prefix, &from.to_string()), s.file.source());
                }
                (Err(message), _) | (_, Err(message)) => b.error(s.file.at(&full), message),
            }
        }
    }
    s.finish(b);
}

fn phases(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "phases") else {
        return;
    };
    if let Some(mut p) = s.table(b, "database") {
        if let Some(v) = p.take(b, "timeout", duration(Zero::Refused)) {
            b.config.phases.database.timeout = v;
        }
        if let Some(v) = p.take(b, "force_close", boolean) {
            b.config.phases.database.force_close = v;
        }
        p.finish(b);
    }
    if let Some(mut p) = s.table(b, "redis") {
        if let Some(v) = p.take(b, "timeout", duration(Zero::OffBy(REDIS_OFF))) {
            b.config.phases.redis.timeout = v;
        }
        if let Some(v) = p.take(b, "enabled", boolean) {
            b.config.phases.redis.enabled = v;
        }
        p.finish(b);
    }
    if let Some(mut p) = s.table(b, "external") {
        if let Some(v) = p.take(b, "timeout", duration(Zero::Refused)) {
            b.config.phases.external.timeout = v;
        }
        if let Some(v) = p.take(b, "payment", boolean) {
            b.config.phases.external_services.payment = v;
        }
        if let Some(v) = p.take(b, "ai", boolean) {
            b.config.phases.external_services.ai = v;
        }
        if let Some(v) = p.take(b, "file_storage", boolean) {
            b.config.phases.external_services.file_storage = v;
        }
        p.finish(b);
    }
    if let Some(mut p) = s.table(b, "cleanup") {
        if let Some(v) = p.take(b, "timeout", duration(Zero::Refused)) {
            b.config.phases.cleanup.timeout = v;
        }
        p.finish(b);
    }
    s.finish(b);
}

fn hook_phase(text: &str) -> Result<HookPhase, String> {
    match text {
        "pre_stop" => Ok(HookPhase::PreStop),
        "database" => Ok(HookPhase::Database),
        "redis" => Ok(HookPhase::Redis),
        "external" => Ok(HookPhase::External),
        "cleanup" => Ok(HookPhase::Cleanup),
        _ => Err(format!(
            "`{text}` is not one of pre_stop, database, redis, external, cleanup"
        )),
    }
}

fn service(text: &str) -> Result<ExternalService, String> {
    match text {
        "payment" => Ok(ExternalService::Payment),
        "ai" => Ok(ExternalService::Ai),
        "file-storage" => Ok(ExternalService::FileStorage),
        _ => Err(format!("`{text}` is not one of payment, ai, file-storage")),
    }
}

fn hooks(b: &mut Builder, doc: &mut Section) {
    for (index, mut s) in doc.tables(b, "hooks").into_iter().enumerate() {
        let errors_before = b.errors.len();
        let phase = s.take(b, "phase", with(hook_phase));
        let name = s.take(b, "name", string);
        let exec = s.take(b, "exec", argv);
        let http_key = s.full("http");
        let http = s.table(b, "http").map(|mut h| {
            // `check` shows `http` as one inline value, so it needs a source of its own.
            b.set_source(http_key, h.file.source());
            let url = h.take(b, "url", with(values::http_url));
            let method = h.take(b, "method", with(http_method));
            let expect = h.take(b, "expect", |v| match v {
                Value::Integer(n) if (100..=599).contains(n) => Ok(*n as u16),
                other => Err(format!("expected an HTTP status 100-599, {}", found(other))),
            });
            if url.is_none() && h.table.get("url").is_none() {
                b.error(h.file.at(&h.path), "missing required key `url`");
            }
            h.finish(b);
            (url, method, expect)
        });
        let timeout = s.take(b, "timeout", duration(Zero::Refused));
        let service = s.take(b, "service", with(service));
        if phase.is_none() && s.table.get("phase").is_none() {
            b.error(
                s.file.at(&s.path),
                "missing required key `phase` (pre_stop | database | redis | external | cleanup)",
            );
        }
        let action = match (exec, http) {
            (Some(argv), None) => Some(HookAction::Exec(argv)),
            (None, Some((Some(url), method, expect))) => Some(HookAction::Http {
                url,
                method: method.unwrap_or_else(|| "POST".into()),
                expect: expect.unwrap_or(200),
            }),
            (Some(_), Some(_)) => {
                b.error(s.file.at(&s.path), "give `exec` or `http`, not both");
                None
            }
            (None, None) if s.table.get("exec").is_none() && s.table.get("http").is_none() => {
                b.error(
                    s.file.at(&s.path),
                    "missing required key `exec` (or `http = { url = \"…\" }`)",
                );
                None
            }
            _ => None,
        };
        if service.is_some() && phase.is_some_and(|p| p != HookPhase::External) {
            b.error(s.at("service"), "only hooks of phase = \"external\" can name a service");
        }
        s.finish(b);
        if b.errors.len() > errors_before {
            continue;
        }
        if let (Some(phase), Some(action)) = (phase, action) {
            b.config.hooks.push(HookConfig {
                phase,
                name: name.unwrap_or_else(|| format!("hook{index}")),
                action,
                timeout,
                service,
            });
        }
    }
}

fn http_method(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => Ok(upper),
        _ => Err(format!("`{text}` is not an HTTP method such as POST")),
    }
}

fn restart(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "restart") else {
        return;
    };
    if let Some(v) = s.take(b, "policy", with(values::restart_policy)) {
        b.config.restart.policy = v;
    }
    if let Some(v) = s.take(b, "backoff_initial", duration(Zero::OffBy(RESTART_OFF))) {
        b.config.restart.backoff_initial = v;
    }
    if let Some(v) = s.take(b, "backoff_max", duration(Zero::OffBy(RESTART_OFF))) {
        b.config.restart.backoff_max = v;
    }
    if let Some(v) = s.take(b, "max_restarts", count_u32(Zero::Allowed)) {
        b.config.restart.max_restarts = v;
    }
    if let Some(v) = s.take(b, "window", duration(Zero::OffBy(RESTART_OFF))) {
        b.config.restart.window = v;
    }
    if let Some(v) = s.take(b, "startup_timeout", duration(Zero::Refused)) {
        b.config.restart.startup_timeout = v;
    }
    s.finish(b);
}

fn http(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "http") else {
        return;
    };
    let dir = s.file.dir.clone();
    if let Some(v) = s.take(b, "listen", with(values::http_listen)) {
        b.config.http.listen = v;
    }
    if let Some(v) = s.take(b, "prefix", with(http_prefix)) {
        b.config.http.prefix = v;
    }
    if let Some(v) = s.take(b, "token_file", path(&dir)) {
        b.config.http.token_file = Some(v);
    }
    if let Some(v) = s.take(b, "readiness", boolean) {
        b.config.http.readiness = v;
    }
    if let Some(v) = s.take(b, "liveness", boolean) {
        b.config.http.liveness = v;
    }
    if let Some(v) = s.take(b, "prestop", boolean) {
        b.config.http.prestop = v;
    }
    if let Some(v) = s.take(b, "allowed_hosts", host_names) {
        b.config.http.allowed_hosts = v;
    }
    s.finish(b);
}

/// `[http] allowed_hosts`: an array of host names such as "gsup.internal", compared
/// without case and without port.
fn host_names(value: &Value) -> Result<Vec<String>, String> {
    let expected = "expected an array of host names such as [\"gsup.internal\"]";
    let Value::Array(items) = value else {
        return Err(format!("{expected}, {}", found(value)));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(name)
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
            {
                Ok(name.to_ascii_lowercase())
            }
            Value::String(name) => Err(format!("{expected}: `{name}` is not a host name (no port, no scheme)")),
            other => Err(format!("{expected}, {} in it", found(other))),
        })
        .collect()
}

fn http_prefix(text: &str) -> Result<String, String> {
    let ok = text.starts_with('/') && !text.contains(|c: char| c.is_whitespace() || c == '?' || c == '#');
    if !ok {
        return Err(format!("`{text}` is not a path such as \"/api/v1/shutdown\""));
    }
    // "/" and "/x/" mean the same routes as "" and "/x"; routing strips the prefix.
    Ok(text.trim_end_matches('/').to_string())
}

fn control(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "control") else {
        return;
    };
    let dir = s.file.dir.clone();
    if let Some(v) = s.take(b, "socket", path(&dir)) {
        b.config.control.socket = Some(v);
    }
    s.finish(b);
}

fn readiness(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "readiness") else {
        return;
    };
    if let Some(mut p) = s.table(b, "probe") {
        let forms = [
            p.take(b, "http", with(values::http_url)).map(Probe::Http),
            p.take(b, "tcp", with(values::connect_address)).map(Probe::Tcp),
            p.take(b, "exec", argv).map(Probe::Exec),
            p.take(b, "notify", |v| match v {
                Value::Boolean(true) => Ok(Probe::Notify),
                other => Err(format!("expected true, {}", found(other))),
            }),
        ];
        let given = ["http", "tcp", "exec", "notify"]
            .iter()
            .filter(|k| p.table.contains_key(**k))
            .count();
        let mut forms: Vec<Probe> = forms.into_iter().flatten().collect();
        if given != 1 {
            b.error(
                s.at("probe"),
                "expected exactly one of { http = \"…\" }, { tcp = \"…\" }, { exec = [\"…\"] }, { notify = true }",
            );
        } else if let Some(probe) = forms.pop() {
            b.config.readiness.probe = Some(probe);
            b.set_source(s.full("probe"), s.file.source());
        }
        p.finish(b);
    }
    if let Some(v) = s.take(b, "interval", duration(Zero::OffBy(READINESS_OFF))) {
        b.config.readiness.interval = v;
    }
    if let Some(v) = s.take(b, "timeout", duration(Zero::OffBy(READINESS_OFF))) {
        b.config.readiness.timeout = v;
    }
    s.finish(b);
}

fn dependencies(b: &mut Builder, doc: &mut Section) {
    for (index, mut s) in doc.tables(b, "dependencies").into_iter().enumerate() {
        let errors_before = b.errors.len();
        let name = s.take(b, "name", string);
        let checks = [
            s.take(b, "tcp", with(values::connect_address))
                .map(DependencyCheck::Tcp),
            s.take(b, "exec", argv).map(DependencyCheck::Exec),
            s.take(b, "http", with(values::http_url)).map(DependencyCheck::Http),
        ];
        let given = ["tcp", "exec", "http"]
            .iter()
            .filter(|k| s.table.contains_key(**k))
            .count();
        let critical = s.take(b, "critical", boolean);
        let interval = s.take(b, "interval", duration(Zero::OffBy(DEPENDENCY_OFF)));
        match given {
            0 => b.error(
                s.file.at(&s.path),
                "missing required key `tcp` (or `exec = [\"…\"]`, `http = \"…\"`)",
            ),
            1 => {}
            _ => b.error(s.file.at(&s.path), "give one of `tcp`, `exec`, `http`, not several"),
        }
        s.finish(b);
        if b.errors.len() > errors_before {
            continue;
        }
        if let Some(check) = checks.into_iter().flatten().next() {
            b.config.dependencies.push(DependencyConfig {
                name: name.unwrap_or_else(|| format!("dependency{index}")),
                check,
                critical: critical.unwrap_or(true),
                interval: interval.unwrap_or(DEFAULT_DEPENDENCY_INTERVAL),
            });
        }
    }
}

fn monitor(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "monitor") else {
        return;
    };
    if let Some(v) = s.take(b, "enabled", boolean) {
        b.config.monitor.enabled = v;
    }
    if let Some(v) = s.take(b, "interval", duration(Zero::OffBy(MONITOR_OFF))) {
        b.config.monitor.interval = v;
    }
    if let Some(v) = s.take(b, "memory_threshold_mb", count(Zero::Refused)) {
        b.config.monitor.memory_threshold_mb = v;
    }
    if let Some(v) = s.take(b, "cpu_threshold_percent", positive_number) {
        b.config.monitor.cpu_threshold_percent = v;
    }
    if let Some(v) = s.take(b, "sustain", duration(Zero::OffBy(MONITOR_OFF))) {
        b.config.monitor.sustain = v;
    }
    if let Some(v) = s.take(b, "action", with(values::monitor_action)) {
        b.config.monitor.action = v;
    }
    s.finish(b);
}

fn notify(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "notify") else {
        return;
    };
    if let Some(v) = s.take(b, "socket", boolean) {
        b.config.notify.socket = v;
    }
    if let Some(v) = s.take(b, "watchdog", duration(Zero::Allowed)) {
        b.config.notify.watchdog = v;
    }
    if let Some(v) = s.take(b, "watchdog_signal", signal) {
        b.config.notify.watchdog_signal = v;
    }
    s.finish(b);
}

fn listen(b: &mut Builder, doc: &mut Section) {
    for (index, mut s) in doc.tables(b, "listen").into_iter().enumerate() {
        let errors_before = b.errors.len();
        let dir = s.file.dir.clone();
        let name = s.take(b, "name", string);
        let address = s.take(b, "address", with(|t| values::listen_address(t, &dir)));
        let backlog = s.take(b, "backlog", count_u32(Zero::Refused));
        let v6only = s.take(b, "v6only", boolean);
        let mode = s.take(b, "mode", |v| match v {
            Value::String(t) => values::octal_mode(t),
            other => Err(format!(
                "expected an octal string such as \"0660\" (quoted), {}",
                found(other)
            )),
        });
        if address.is_none() && s.table.get("address").is_none() {
            b.error(
                s.file.at(&s.path),
                "missing required key `address` (\"HOST:PORT\", \"[::1]:PORT\" or \"unix:/path\")",
            );
        }
        let name = name.unwrap_or_else(|| format!("listen{index}"));
        if b.config.listen.iter().any(|l| l.name == name) {
            b.error(s.file.at(&s.path), format!("a second `[[listen]]` named `{name}`"));
        }
        let mode_at = s.at("mode");
        s.finish(b);
        if b.errors.len() > errors_before {
            continue;
        }
        let Some(address) = address else { continue };
        if mode.is_some() && matches!(address, ListenAddress::Tcp(_)) {
            b.warnings
                .push(format!("{mode_at}: `mode` applies to unix: sockets only; ignored"));
        }
        b.config.listen.push(ListenConfig {
            name,
            address,
            backlog: backlog.unwrap_or(DEFAULT_BACKLOG),
            v6only,
            mode: mode.unwrap_or(DEFAULT_MODE),
        });
    }
}

fn reload(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "reload") else {
        return;
    };
    if let Some(v) = s.take(b, "signal", signal) {
        b.config.reload.signal = v;
    }
    s.finish(b);
}

fn log(b: &mut Builder, doc: &mut Section) {
    let Some(mut s) = doc.table(b, "log") else {
        return;
    };
    if let Some(v) = s.take(b, "format", with(values::log_format)) {
        b.config.log.format = v;
    }
    if let Some(v) = s.take(b, "level", with(values::log_level)) {
        b.config.log.level = Some(v);
    }
    s.finish(b);
}

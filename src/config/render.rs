//! The effective config as data: one list of tables and keys, read by `gsup check` (TOML
//! with a source comment per value) and by `/config` (JSON, each leaf `{value, source}`),
//! so the two cannot disagree. Secrets are redacted here, for both (DESIGN §5): the
//! token, `process.env` values whose key looks secret, and the password of any URL.

use std::time::Duration;

use serde_json::{Map, Value as Json, json};

use super::model::*;
use super::values::{format_duration, signal_key};
use super::{Loaded, Source};

use crate::redact::{self, REDACTED};

enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Dur(Duration),
    List(Vec<Val>),
    Inline(Vec<(String, Val)>),
    /// No value and no default: shown as a comment in TOML, null in JSON.
    Unset,
}

struct Entry {
    key: String,
    /// The key in `Loaded::sources`.
    source_key: String,
    value: Val,
    /// False for resolved values that are no file key (the token): a comment in TOML.
    in_file: bool,
}

struct Table {
    /// `phases.database`, `hooks`; empty for none.
    header: String,
    /// `[[header]]`.
    array: bool,
    /// Prefix of the source keys: `phases.database`, `hooks[0]`.
    prefix: String,
    entries: Vec<Entry>,
}

impl Table {
    fn new(header: &str) -> Self {
        Table {
            header: header.to_string(),
            array: false,
            prefix: header.to_string(),
            entries: Vec::new(),
        }
    }

    fn entry(header: &str, index: usize) -> Self {
        Table {
            header: header.to_string(),
            array: true,
            prefix: format!("{header}[{index}]"),
            entries: Vec::new(),
        }
    }

    fn put(&mut self, key: &str, value: Val) -> &mut Self {
        self.entries.push(Entry {
            key: key.to_string(),
            source_key: format!("{}.{key}", self.prefix),
            value,
            in_file: true,
        });
        self
    }
}

fn s(text: impl Into<String>) -> Val {
    let text = text.into();
    Val::Str(redact::text(&text).into_owned())
}

fn opt_s(text: Option<impl Into<String>>) -> Val {
    text.map_or(Val::Unset, s)
}

/// A command's arguments: the secrets they carry are hidden (`-pX`, `--token X`).
fn list(items: &[String]) -> Val {
    Val::List(redact::argv(items).into_iter().map(Val::Str).collect())
}

fn path(p: &Option<std::path::PathBuf>) -> Val {
    opt_s(p.as_ref().map(|p| p.display().to_string()))
}

fn sig(signal: libc::c_int) -> Val {
    Val::Str(signal_key(signal))
}

fn document(config: &Config) -> Vec<Table> {
    let mut tables = Vec::new();

    let p = &config.process;
    let mut t = Table::new("process");
    t.put("command", p.command.as_deref().map_or(Val::Unset, list))
        .put("workdir", path(&p.workdir))
        .put("user", opt_s(p.user.clone()))
        .put("group", opt_s(p.group.clone()));
    tables.push(t);
    let mut t = Table::new("process.env");
    for (key, value) in &p.env {
        t.put(key, Val::Str(redact::env_value(key, value)));
    }
    tables.push(t);

    let g = &config.signals;
    let mut t = Table::new("signals");
    t.put("forward_to", s(g.forward_to.as_str()))
        .put(
            "shutdown_on",
            Val::List(g.shutdown_on.iter().map(|n| sig(*n)).collect()),
        )
        .put("repeat_forces", Val::Bool(g.repeat_forces));
    tables.push(t);
    let mut t = Table::new("signals.rewrite");
    for (from, to) in &g.rewrite {
        t.put(&signal_key(*from), to.map_or(Val::Str("none".into()), sig));
    }
    tables.push(t);

    let d = &config.shutdown;
    let mut t = Table::new("shutdown");
    t.put("stop_signal", sig(d.stop_signal))
        .put("timeout", Val::Dur(d.timeout))
        .put("force_timeout", Val::Dur(d.force_timeout))
        .put("drain_delay", Val::Dur(d.drain_delay))
        .put("connection_draining", Val::Bool(d.connection_draining))
        .put("max_drain_time", Val::Dur(d.max_drain_time))
        .put("log", path(&d.log));
    tables.push(t);
    let mut t = Table::new("shutdown.exit_code_map");
    for (from, to) in &d.exit_code_map {
        t.put(&from.to_string(), Val::Int(i64::from(*to)));
    }
    tables.push(t);

    let ph = &config.phases;
    let mut t = Table::new("phases.database");
    t.put("timeout", Val::Dur(ph.database.timeout))
        .put("force_close", Val::Bool(ph.database.force_close));
    tables.push(t);
    let mut t = Table::new("phases.redis");
    t.put("timeout", Val::Dur(ph.redis.timeout))
        .put("enabled", Val::Bool(ph.redis.enabled));
    tables.push(t);
    let mut t = Table::new("phases.external");
    t.put("timeout", Val::Dur(ph.external.timeout))
        .put("payment", Val::Bool(ph.external_services.payment))
        .put("ai", Val::Bool(ph.external_services.ai))
        .put("file_storage", Val::Bool(ph.external_services.file_storage));
    tables.push(t);
    let mut t = Table::new("phases.cleanup");
    t.put("timeout", Val::Dur(ph.cleanup.timeout));
    tables.push(t);

    for (index, hook) in config.hooks.iter().enumerate() {
        let mut t = Table::entry("hooks", index);
        t.put("phase", s(hook.phase.as_str()))
            .put("name", s(hook.name.as_str()));
        match &hook.action {
            HookAction::Exec(argv) => t.put("exec", list(argv)),
            HookAction::Http { url, method, expect } => t.put(
                "http",
                Val::Inline(vec![
                    ("url".into(), s(url.as_str())),
                    ("method".into(), s(method.as_str())),
                    ("expect".into(), Val::Int(i64::from(*expect))),
                ]),
            ),
        };
        t.put("timeout", hook.timeout.map_or(Val::Unset, Val::Dur))
            .put("service", opt_s(hook.service.map(|v| v.as_str())));
        tables.push(t);
    }

    let r = &config.restart;
    let mut t = Table::new("restart");
    t.put("policy", s(r.policy.as_str()))
        .put("backoff_initial", Val::Dur(r.backoff_initial))
        .put("backoff_max", Val::Dur(r.backoff_max))
        .put("max_restarts", Val::Int(i64::from(r.max_restarts)))
        .put("window", Val::Dur(r.window))
        .put("startup_timeout", Val::Dur(r.startup_timeout));
    tables.push(t);

    let h = &config.http;
    let mut t = Table::new("http");
    t.put("listen", s(h.listen.map_or("off".to_string(), |a| a.to_string())))
        .put("prefix", s(h.prefix.as_str()))
        .put("token_file", path(&h.token_file))
        .put("readiness", Val::Bool(h.readiness))
        .put("liveness", Val::Bool(h.liveness))
        .put("prestop", Val::Bool(h.prestop))
        .put("allowed_hosts", list(&h.allowed_hosts))
        .put("token", opt_s(h.token.as_ref().map(|_| REDACTED)));
    if let Some(token) = t.entries.last_mut() {
        token.in_file = false;
    }
    tables.push(t);

    let mut t = Table::new("control");
    t.put("socket", path(&config.control.socket));
    tables.push(t);

    let rd = &config.readiness;
    let mut t = Table::new("readiness");
    let probe = match &rd.probe {
        None => Val::Unset,
        Some(Probe::Http(url)) => Val::Inline(vec![("http".into(), s(url.as_str()))]),
        Some(Probe::Tcp(addr)) => Val::Inline(vec![("tcp".into(), s(addr.as_str()))]),
        Some(Probe::Exec(argv)) => Val::Inline(vec![("exec".into(), list(argv))]),
        Some(Probe::Notify) => Val::Inline(vec![("notify".into(), Val::Bool(true))]),
    };
    t.put("probe", probe)
        .put("interval", Val::Dur(rd.interval))
        .put("timeout", Val::Dur(rd.timeout));
    tables.push(t);

    for (index, dep) in config.dependencies.iter().enumerate() {
        let mut t = Table::entry("dependencies", index);
        t.put("name", s(dep.name.as_str()));
        match &dep.check {
            DependencyCheck::Tcp(addr) => t.put("tcp", s(addr.as_str())),
            DependencyCheck::Http(url) => t.put("http", s(url.as_str())),
            DependencyCheck::Exec(argv) => t.put("exec", list(argv)),
        };
        t.put("critical", Val::Bool(dep.critical))
            .put("interval", Val::Dur(dep.interval));
        tables.push(t);
    }

    let m = &config.monitor;
    let mut t = Table::new("monitor");
    t.put("enabled", Val::Bool(m.enabled))
        .put("interval", Val::Dur(m.interval))
        .put(
            "memory_threshold_mb",
            Val::Int(i64::try_from(m.memory_threshold_mb).unwrap_or(i64::MAX)),
        )
        .put("cpu_threshold_percent", Val::Float(m.cpu_threshold_percent))
        .put("sustain", Val::Dur(m.sustain))
        .put("action", s(m.action.as_str()));
    tables.push(t);

    let n = &config.notify;
    let mut t = Table::new("notify");
    t.put("socket", Val::Bool(n.socket))
        .put("watchdog", Val::Dur(n.watchdog))
        .put("watchdog_signal", sig(n.watchdog_signal));
    tables.push(t);

    for (index, l) in config.listen.iter().enumerate() {
        let mut t = Table::entry("listen", index);
        let address = match &l.address {
            ListenAddress::Tcp(addr) => addr.to_string(),
            ListenAddress::Unix(p) => format!("unix:{}", p.display()),
        };
        t.put("name", s(l.name.as_str()))
            .put("address", s(address))
            .put("backlog", Val::Int(i64::from(l.backlog)))
            .put("v6only", l.v6only.map_or(Val::Unset, Val::Bool));
        if matches!(l.address, ListenAddress::Unix(_)) {
            t.put("mode", Val::Str(format!("{:04o}", l.mode)));
        }
        tables.push(t);
    }

    let mut t = Table::new("reload");
    t.put("signal", sig(config.reload.signal));
    tables.push(t);

    let lg = &config.log;
    let mut t = Table::new("log");
    t.put("format", s(lg.format.as_str()))
        .put("level", opt_s(lg.level.clone()));
    tables.push(t);

    tables
}

/// Every key `check` shows, for `load` to mark the rest as defaults.
/// Every key `check` prints (tests check each has a source; `Loaded::source` defaults).
#[cfg(test)]
pub(super) fn keys(loaded: &Loaded) -> Vec<String> {
    document(&loaded.config)
        .into_iter()
        .flat_map(|t| t.entries.into_iter().map(|e| e.source_key))
        .collect()
}

/// The source of a key; a value given as a table (`hooks[0].http`) takes its fields'.
fn source_of<'a>(loaded: &'a Loaded, key: &str) -> &'a Source {
    if let Some(source) = loaded.sources.get(key) {
        return source;
    }
    let nested = format!("{key}.");
    loaded
        .sources
        .range(nested.clone()..)
        .take_while(|(k, _)| k.starts_with(&nested))
        .map(|(_, source)| source)
        .find(|source| **source != Source::Default)
        .unwrap_or(&Source::Default)
}

/// The effective config as TOML, each value followed by a comment naming its source.
/// Values without a default are shown commented out, so the output parses as TOML.
pub fn render_check(loaded: &Loaded) -> String {
    let mut out = String::new();
    if let Some(file) = &loaded.file {
        out.push_str(&format!("# gsup effective config (file {})\n", file.display()));
    } else {
        out.push_str("# gsup effective config (no config file)\n");
    }
    for table in document(&loaded.config) {
        if table.array {
            out.push_str(&format!("\n[[{}]]\n", table.header));
        } else {
            out.push_str(&format!("\n[{}]\n", table.header));
        }
        for entry in &table.entries {
            let source = source_of(loaded, &entry.source_key);
            let key = toml_key(&entry.key);
            match toml_value(&entry.value) {
                Some(value) if entry.in_file => out.push_str(&format!("{key} = {value}  # {source}\n")),
                Some(value) => out.push_str(&format!("# {key} = {value}  # {source}\n")),
                None => out.push_str(&format!("# {key} is unset  # {source}\n")),
            }
        }
    }
    out
}

/// The effective config for `/config`: each leaf `{"value": V, "source": S}`, durations
/// in float seconds, secrets redacted.
pub fn render_json(loaded: &Loaded) -> Json {
    let mut root = Map::new();
    for table in document(&loaded.config) {
        let mut leaves = Map::new();
        for entry in &table.entries {
            let source = source_of(loaded, &entry.source_key).to_string();
            leaves.insert(
                entry.key.clone(),
                json!({ "value": json_value(&entry.value), "source": source }),
            );
        }
        let mut parts: Vec<&str> = table.header.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut node = &mut root;
        for part in parts {
            node = object_at(node, part);
        }
        if table.array {
            let slot = node.entry(last.to_string()).or_insert_with(|| Json::Array(Vec::new()));
            if let Json::Array(items) = slot {
                items.push(Json::Object(leaves));
            }
        } else {
            object_at(node, last).extend(leaves);
        }
    }
    // Arrays of tables with no entries still show, as empty lists.
    for key in ["hooks", "dependencies", "listen"] {
        root.entry(key.to_string()).or_insert_with(|| Json::Array(Vec::new()));
    }
    Json::Object(root)
}

fn object_at<'a>(node: &'a mut Map<String, Json>, key: &str) -> &'a mut Map<String, Json> {
    let slot = node.entry(key.to_string()).or_insert_with(|| Json::Object(Map::new()));
    if !slot.is_object() {
        *slot = Json::Object(Map::new());
    }
    match slot {
        Json::Object(map) => map,
        _ => unreachable!("replaced by an object just above"),
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    }
}

fn toml_value(value: &Val) -> Option<String> {
    Some(match value {
        Val::Str(text) => toml::Value::String(text.clone()).to_string(),
        Val::Int(n) => n.to_string(),
        Val::Float(f) => toml::Value::Float(*f).to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Dur(d) => format!("\"{}\"", format_duration(*d)),
        Val::List(items) => {
            let items: Vec<String> = items.iter().filter_map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Val::Inline(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter_map(|(k, v)| Some(format!("{} = {}", toml_key(k), toml_value(v)?)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Val::Unset => return None,
    })
}

fn json_value(value: &Val) -> Json {
    match value {
        Val::Str(text) => json!(text),
        Val::Int(n) => json!(n),
        Val::Float(f) => json!(f),
        Val::Bool(b) => json!(b),
        Val::Dur(d) => json!(d.as_secs_f64()),
        Val::List(items) => Json::Array(items.iter().map(json_value).collect()),
        Val::Inline(fields) => Json::Object(fields.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()),
        Val::Unset => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_when_needed() {
        assert_eq!(toml_key("NODE_ENV"), "NODE_ENV");
        assert_eq!(toml_key("143"), "143");
        assert_eq!(toml_key("RTMIN+3"), "\"RTMIN+3\"");
        assert_eq!(toml_key("a b"), "\"a b\"");
    }
}

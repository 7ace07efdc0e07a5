//! The overview page (DESIGN §5a): one self-contained HTML page for a person with a
//! browser, and the JSON it refreshes itself from (`/overview`, `/process/history`).
//!
//! The page is rendered here from the same JSON values the endpoints answer, so it is
//! whole with scripts off; `overview.js` then redraws the same elements every second
//! from those endpoints. Every dynamic value passes through [`Html::text`] (here) or
//! `textContent` (there): nothing a child, its command line or its environment says can
//! become markup. The CSS and the script are inline and allowed by their SHA-256 in the
//! Content-Security-Policy, computed once at start-up from the very bytes served.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Api;
use crate::snapshot::Snapshot;
use crate::timefmt::seconds;

const CSS: &str = include_str!("overview.css");
const SCRIPT: &str = include_str!("overview.js");

/// The `Content-Security-Policy` of the page: only its own inline style and script run,
/// and the script may only talk to gsup itself.
pub static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; img-src data:",
        sha256_base64(SCRIPT),
        sha256_base64(CSS)
    )
});

fn sha256_base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// Whether a GET `/overview` wants the page rather than the JSON: its `Accept` names
/// `text/html` (browsers do; `*/*`, JSON and no `Accept` get the JSON).
pub fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|value| {
        value.split(',').any(|item| {
            item.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
        })
    })
}

/// The `/overview` JSON (DESIGN §5), with what a summary needs: the reason when not
/// ready and the tree's RSS and CPU (`ctl status` and the page read these).
pub fn overview_json(snapshot: &Snapshot, health: &str, now: Instant) -> Value {
    let totals = snapshot.sample.as_ref().map(|s| &s.tree.totals);
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": seconds(now.saturating_duration_since(snapshot.started_at)),
        "state": snapshot.state.as_str(),
        "ready": snapshot.ready,
        "ready_reason": if snapshot.ready { None } else { snapshot.not_ready.as_deref() },
        "health": health,
        "process": {
            "gsup_pid": std::process::id(),
            "child_pid": snapshot.child.as_ref().map(|c| c.pid),
            "generation": snapshot.child.as_ref().map(|c| c.generation),
            "restarts": snapshot.restarts,
            "processes": totals.map(|t| t.processes),
            "rss_bytes": totals.map(|t| t.rss_bytes),
            "cpu_percent": totals.map(|t| t.cpu_percent),
        },
    })
}

/// The `/process/history` body (DESIGN §5a), `timestamp` left to the caller.
pub fn history_json(snapshot: &Snapshot) -> Value {
    snapshot.history.to_json()
}

/// The JSON answers the page is drawn from, as the endpoints would give them now.
pub struct PageData {
    pub status: Value,
    pub overview: Value,
    pub process: Value,
    pub history: Value,
    pub health: Value,
}

/// The whole page, drawn from `data` with `api`'s config (prefix, token, env).
pub fn page(api: &Api, data: &PageData) -> String {
    let config = &api.loaded.config;
    let env = crate::config::render_json(&api.loaded)["process"]["env"].clone();
    let mut view = View {
        data,
        prefix: config.http.prefix.trim_end_matches('/'),
        token: config.http.token.is_some(),
        env: &env,
        now: SystemTime::now(),
        rows: 0,
        clip: 0,
    };
    view.render_within_limits()
}

/// (rows, characters) tried in turn until the page fits in [`MAX_PAGE_BYTES`], so a big
/// tree, a long environment or long values (escaping can make them five times longer)
/// cannot push it past 64 KiB (DESIGN §5a). The script shows every process once it runs.
const LIMITS: [(usize, usize); 4] = [(40, 240), (20, 120), (10, 60), (5, 20)];
const MAX_PAGE_BYTES: usize = 64 * 1024 - 512;

struct View<'a> {
    data: &'a PageData,
    prefix: &'a str,
    token: bool,
    /// `/config`'s `process.env`: redacted already.
    env: &'a Value,
    now: SystemTime,
    /// How many rows of the tree and the environment, and how many characters of a
    /// value, the page shows (see [`LIMITS`]).
    rows: usize,
    clip: usize,
}

/// HTML being written; [`Html::text`] is the only way text from outside gets in (`raw`
/// takes constants and numbers).
struct Html(String);

impl Html {
    fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// `value` escaped for element content and double-quoted attributes alike.
    fn text(&mut self, value: &str) -> &mut Self {
        for c in value.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    /// `<tag attrs>value</tag>`, the value escaped; `attrs` are constants.
    fn element(&mut self, tag: &str, attrs: &str, value: &str) -> &mut Self {
        let _ = write!(self.0, "<{tag}{}{attrs}>", if attrs.is_empty() { "" } else { " " });
        self.text(value);
        let _ = write!(self.0, "</{tag}>");
        self
    }
}

impl View<'_> {
    fn render_within_limits(&mut self) -> String {
        let mut page = String::new();
        for (rows, clip) in LIMITS {
            (self.rows, self.clip) = (rows, clip);
            page = self.render();
            if page.len() <= MAX_PAGE_BYTES {
                break;
            }
        }
        page
    }

    /// `text` cut at `self.clip` characters, saying so.
    fn clip(&self, text: &str) -> String {
        match text.char_indices().nth(self.clip) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.to_string(),
        }
    }

    fn render(&self) -> String {
        let data = self.data;
        let mut html = Html(String::with_capacity(24 * 1024));
        html.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
            .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
            .raw("<meta name=\"color-scheme\" content=\"light dark\">\n<title>");
        html.text(&format!("gsup · {}", self.clip(&self.headline())))
            .raw("</title>\n<style>");
        html.raw(CSS).raw("</style>\n</head>\n<body data-prefix=\"");
        html.text(self.prefix).raw("\" data-token=\"");
        html.raw(if self.token { "yes" } else { "no" })
            .raw("\">\n<div class=\"wrap\">\n");
        self.header(&mut html);
        let overview = &data.overview;
        let reason = overview["ready_reason"].as_str().unwrap_or("");
        html.raw("<p id=\"reason\" class=\"notice\"")
            .raw(if reason.is_empty() { " hidden>" } else { ">" })
            .text(&self.clip(&not_ready_line(reason)))
            .raw("</p>\n");
        self.cards(&mut html);
        self.shutdown(&mut html);
        self.charts(&mut html);
        self.tree(&mut html);
        html.raw("<div class=\"split\">\n");
        self.checks(&mut html);
        self.environment(&mut html);
        html.raw("</div>\n");
        self.controls(&mut html);
        html.raw("<footer><span>gsup ")
            .text(overview["version"].as_str().unwrap_or(""))
            .raw(" · pid ")
            .text(&number(&overview["process"]["gsup_pid"]))
            .raw(" · up ")
            .text(&duration(overview["uptime_seconds"].as_f64()))
            .raw("</span><span id=\"updated\">")
            .text(&format!(
                "rendered {} UTC · scripts off: reload to refresh",
                clock_time(data.status["timestamp"].as_str())
            ))
            .raw("</span></footer>\n</div>\n<script>")
            .raw(SCRIPT)
            .raw("</script>\n</body>\n</html>\n");
        html.0
    }

    /// The first process's command line, else the state: what the tab is named after.
    fn headline(&self) -> String {
        self.data.process["tree"][0]["command"]
            .as_str()
            .map_or_else(|| "no child".to_string(), str::to_string)
    }

    fn header(&self, html: &mut Html) {
        let overview = &self.data.overview;
        let state = overview["state"].as_str().unwrap_or("unknown");
        let ready = overview["ready"].as_bool().unwrap_or(false);
        let health = overview["health"].as_str().unwrap_or("unknown");
        html.raw("<header class=\"top\">\n<div class=\"brand\">gsup<small>overview</small></div>\n")
            .raw("<div class=\"badges\">");
        html.raw("<span id=\"state\" class=\"badge ")
            .raw(state_tone(state))
            .raw("\">")
            .text(state)
            .raw("</span>");
        html.raw("<span id=\"ready\" class=\"badge ")
            .raw(if ready { "ok" } else { "warn" })
            .raw("\">")
            .text(if ready { "ready" } else { "not ready" })
            .raw("</span>");
        html.raw("<span id=\"health\" class=\"badge ")
            .raw(health_tone(health))
            .raw("\">")
            .text(health)
            .raw("</span></div>\n</header>\n")
            .element("h1", "id=\"command\"", &self.clip(&self.headline()))
            .raw("\n");
    }

    fn cards(&self, html: &mut Html) {
        let status = &self.data.status;
        let child = &status["child"];
        let process = &self.data.overview["process"];
        html.raw("<section class=\"cards\" aria-label=\"summary\">\n");
        let pid = if child.is_null() {
            "—".to_string()
        } else {
            number(&child["pid"])
        };
        let generation = if child.is_null() {
            "no child running".to_string()
        } else {
            format!("generation {}", number(&child["generation"]))
        };
        card(html, "Child pid", "pid", &pid, "generation", &generation);
        let uptime = if child.is_null() {
            "—".to_string()
        } else {
            duration(child["uptime_seconds"].as_f64())
        };
        card(
            html,
            "Uptime",
            "uptime",
            &uptime,
            "gsup-uptime",
            &format!("gsup up {}", duration(self.data.overview["uptime_seconds"].as_f64())),
        );
        card(
            html,
            "Memory",
            "rss",
            &bytes(process["rss_bytes"].as_f64()),
            "processes",
            &processes(&process["processes"]),
        );
        card(
            html,
            "CPU",
            "cpu",
            &percent(process["cpu_percent"].as_f64()),
            "connections",
            &connections(&status["active_connections"]),
        );
        card(
            html,
            "Restarts",
            "restarts",
            &number(&status["restarts"]),
            "restarts-sub",
            "since gsup started",
        );
        let (exit, exit_at) = last_exit(&status["last_exit"], self.now);
        card(html, "Last exit", "last-exit", &exit, "last-exit-at", &exit_at);
        let (reload, reload_at) = last_reload(&status["last_reload"], self.now);
        card(
            html,
            "Last reload",
            "last-reload",
            &reload,
            "last-reload-at",
            &self.clip(&reload_at),
        );
        html.raw("</section>\n");
    }

    fn shutdown(&self, html: &mut Html) {
        let shutdown = &self.data.status["shutdown"];
        html.raw("<section id=\"shutdown\" class=\"panel\"")
            .raw(if shutdown.is_null() { " hidden" } else { "" })
            .raw(">\n<div class=\"panel-head\"><h2>Shutdown</h2>")
            .element("span", "id=\"shutdown-reason\" class=\"muted\"", &self.clip(&shutdown_line(shutdown, self.now)))
            .raw("</div>\n<div class=\"scroll\"><table><thead><tr><th>Phase</th><th class=\"num\">Bound</th><th class=\"num\">Elapsed</th><th>Outcome</th></tr></thead><tbody id=\"phases\">");
        for row in shutdown["phases"].as_array().into_iter().flatten() {
            let (elapsed, outcome) = phase_progress(row, self.now);
            html.raw("<tr>")
                .element("td", "", row["name"].as_str().unwrap_or(""))
                .element("td", "class=\"num\"", &duration(row["timeout_seconds"].as_f64()))
                .element("td", "class=\"num\"", &elapsed);
            html.raw("<td class=\"")
                .raw(outcome_tone(&outcome))
                .raw("\">")
                .text(&outcome)
                .raw("</td></tr>");
        }
        html.raw("</tbody></table></div>\n</section>\n");
    }

    fn charts(&self, html: &mut Html) {
        let history = &self.data.history;
        let samples = history["samples"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let rss: Vec<f64> = samples.iter().map(|s| s["rss_bytes"].as_f64().unwrap_or(0.0)).collect();
        let cpu: Vec<f64> = samples
            .iter()
            .map(|s| s["cpu_percent"].as_f64().unwrap_or(0.0))
            .collect();
        let span = span_label(history["interval_seconds"].as_f64());
        html.raw("<section class=\"charts\">\n");
        let rss_peak = rss.iter().copied().fold(0.0, f64::max);
        let cpu_peak = cpu.iter().copied().fold(0.0, f64::max);
        chart(
            html,
            &Chart {
                id: "rss",
                title: "Memory (tree RSS)",
                class: "spark",
                now: bytes(rss.last().copied()),
                peak: format!("peak {}", bytes((!rss.is_empty()).then_some(rss_peak))),
                label: format!("Tree RSS in bytes, {span}"),
                path: sparkline(&rss, rss_peak.max(1024.0 * 1024.0) * 1.15),
                span: &span,
            },
        );
        chart(
            html,
            &Chart {
                id: "cpu",
                title: "CPU (tree, % of one core)",
                class: "spark cpu",
                now: percent(cpu.last().copied()),
                peak: format!("peak {}", percent((!cpu.is_empty()).then_some(cpu_peak))),
                label: format!("Tree CPU in percent of one core, {span}"),
                path: sparkline(&cpu, cpu_peak.max(100.0) * 1.05),
                span: &span,
            },
        );
        html.raw("</section>\n");
    }

    fn tree(&self, html: &mut Html) {
        let tree = self.data.process["tree"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        html.raw("<section class=\"panel\">\n<div class=\"panel-head\"><h2>Process tree</h2>")
            .element("span", "id=\"tree-count\" class=\"muted\"", &processes(&json!(tree.len())))
            .raw("</div>\n<div class=\"scroll\"><table><thead><tr><th class=\"num\">PID</th><th>Command</th><th class=\"num\">RSS</th><th class=\"num\">CPU</th><th class=\"num hide-narrow\">Threads</th></tr></thead><tbody id=\"tree\">");
        for (entry, depth) in tree.iter().zip(depths(tree)).take(self.rows) {
            html.raw("<tr>")
                .element("td", "class=\"num\"", &number(&entry["pid"]))
                .raw("<td class=\"cmd d")
                .raw(&depth.min(5).to_string())
                .raw("\">");
            if depth > 0 {
                html.element("span", "class=\"tree\"", "└ ");
            }
            html.text(&self.clip(entry["command"].as_str().unwrap_or("")))
                .raw("</td>")
                .element("td", "class=\"num\"", &bytes(entry["rss_bytes"].as_f64()))
                .element("td", "class=\"num\"", &percent(entry["cpu_percent"].as_f64()))
                .element("td", "class=\"num hide-narrow\"", &number(&entry["threads"]))
                .raw("</tr>");
        }
        if tree.len() > self.rows {
            html.raw("<tr><td></td>")
                .element(
                    "td",
                    "class=\"muted\"",
                    &format!("and {} more (the live page lists all)", tree.len() - self.rows),
                )
                .raw("</tr>");
        }
        html.raw("</tbody></table></div>\n<p id=\"tree-empty\" class=\"empty\"")
            .raw(if tree.is_empty() { ">" } else { " hidden>" })
            .raw("No process is running.</p>\n</section>\n");
    }

    fn checks(&self, html: &mut Html) {
        html.raw("<section class=\"panel\">\n<div class=\"panel-head\"><h2>Checks and thresholds</h2></div>\n<div class=\"scroll\"><table><thead><tr><th>Check</th><th>Status</th><th>Detail</th></tr></thead><tbody id=\"checks\">");
        let checks = self.data.health["checks"].as_object();
        for (name, check) in checks.into_iter().flatten() {
            let status = check["status"].as_str().unwrap_or("");
            html.raw("<tr>")
                .element("td", "", name)
                .raw("<td class=\"")
                .raw(outcome_tone(status))
                .raw("\">")
                .text(status)
                .raw("</td>")
                .element("td", "class=\"muted\"", &self.clip(&check_detail(name, check)))
                .raw("</tr>");
        }
        html.raw("</tbody></table></div>\n</section>\n");
    }

    fn environment(&self, html: &mut Html) {
        html.raw("<section class=\"panel\">\n<div class=\"panel-head\"><h2>Environment</h2><span class=\"muted\">[process] env, secrets redacted</span></div>\n");
        let Some(env) = self.env.as_object().filter(|e| !e.is_empty()) else {
            html.raw("<p class=\"empty\">Inherited from gsup, nothing added.</p>\n</section>\n");
            return;
        };
        html.raw("<dl class=\"env\">");
        for (key, entry) in env.iter().take(self.rows) {
            let value = match &entry["value"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            html.element("dt", "", &self.clip(key))
                .element("dd", "", &self.clip(&value));
        }
        if env.len() > self.rows {
            html.element("dt", "", "…").element(
                "dd",
                "class=\"muted\"",
                &format!("and {} more (see /config)", env.len() - self.rows),
            );
        }
        html.raw("</dl>\n</section>\n");
    }

    fn controls(&self, html: &mut Html) {
        if !self.token {
            return;
        }
        // Shown by the script: without it the buttons could not send the token.
        html.raw("<section id=\"controls\" class=\"panel\" hidden>\n<div class=\"panel-head\"><h2>Control</h2><span class=\"muted\">needs the control token; kept in this tab only</span></div>\n<div class=\"controls\"><input id=\"token\" type=\"password\" autocomplete=\"off\" placeholder=\"control token\" aria-label=\"control token\"><button id=\"reload-button\" type=\"button\">Reload</button><button id=\"shutdown-button\" type=\"button\" class=\"danger\">Shut down</button></div>\n<p id=\"control-msg\" class=\"muted\"></p>\n</section>\n");
    }
}

fn card(html: &mut Html, title: &str, id: &str, value: &str, sub_id: &str, sub: &str) {
    html.raw("<div class=\"card\">")
        .element("h2", "", title)
        .raw("<p class=\"value\" id=\"")
        .raw(id)
        .raw("\">")
        .text(value)
        .raw("</p><p class=\"sub\" id=\"")
        .raw(sub_id)
        .raw("\">")
        .text(sub)
        .raw("</p></div>\n");
}

struct Chart<'a> {
    id: &'a str,
    title: &'a str,
    class: &'a str,
    now: String,
    peak: String,
    label: String,
    path: (String, String),
    span: &'a str,
}

/// Sparkline width in SVG units: one unit per kept sample, newest at the right edge.
const SPARK_WIDTH: usize = crate::monitor::history::CAPACITY;
const SPARK_HEIGHT: f64 = 100.0;

fn chart(html: &mut Html, chart: &Chart) {
    let id = chart.id;
    html.raw("<div class=\"panel\">\n<div class=\"panel-head\">")
        .element("h2", "", chart.title)
        .raw("<span class=\"figure\"><span id=\"")
        .raw(id)
        .raw("-now\">")
        .text(&chart.now)
        .raw("</span> <small id=\"")
        .raw(id)
        .raw("-peak\">")
        .text(&chart.peak)
        .raw("</small></span></div>\n");
    let _ = write!(
        html.0,
        "<svg id=\"{id}-chart\" class=\"{}\" viewBox=\"0 0 {SPARK_WIDTH} {SPARK_HEIGHT}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"",
        chart.class
    );
    html.text(&chart.label)
        .raw("\"><title>")
        .text(&chart.label)
        .raw("</title>");
    for y in [25, 50, 75] {
        let _ = write!(
            html.0,
            "<line class=\"grid\" x1=\"0\" x2=\"{SPARK_WIDTH}\" y1=\"{y}\" y2=\"{y}\" vector-effect=\"non-scaling-stroke\"></line>"
        );
    }
    let (area, line) = &chart.path;
    let _ = writeln!(
        html.0,
        "<polygon class=\"area\" points=\"{area}\"></polygon><polyline class=\"line\" points=\"{line}\" vector-effect=\"non-scaling-stroke\"></polyline></svg>"
    );
    html.raw("<div class=\"axis\"><span class=\"span-label\">")
        .text(chart.span)
        .raw("</span><span>now</span></div>\n</div>\n");
}

/// (area polygon, line) points of `values` scaled to `top`, right-aligned. At most
/// [`SPARK_POINTS`] of them (every other sample of a full history, and the newest): the
/// page stays small, and the script draws every sample once it runs.
fn sparkline(values: &[f64], top: f64) -> (String, String) {
    let Some(last) = values.len().checked_sub(1) else {
        return (String::new(), String::new());
    };
    let start = SPARK_WIDTH.saturating_sub(values.len());
    let stride = values.len().div_ceil(SPARK_POINTS);
    let mut line = String::new();
    for (i, value) in values.iter().enumerate() {
        if i % stride == 0 || i == last {
            let y = SPARK_HEIGHT - (value / top).clamp(0.0, 1.0) * (SPARK_HEIGHT - 2.0);
            let _ = write!(line, "{},{y:.1} ", start + i);
        }
    }
    let line = line.trim_end().to_string();
    let area = format!("{start},{SPARK_HEIGHT} {line} {},{SPARK_HEIGHT}", start + last);
    (area, line)
}

const SPARK_POINTS: usize = 300;

/// "last 10 min" for the default interval (600 samples a second apart).
fn span_label(interval: Option<f64>) -> String {
    let total = interval.unwrap_or(1.0) * SPARK_WIDTH as f64;
    format!("last {}", duration(Some(total)))
}

/// Each entry's depth in the tree (entries come parents first).
fn depths(tree: &[Value]) -> Vec<usize> {
    let mut depth_of: Vec<(i64, usize)> = Vec::with_capacity(tree.len());
    tree.iter()
        .map(|entry| {
            let ppid = entry["ppid"].as_i64().unwrap_or(0);
            let depth = depth_of.iter().find(|(pid, _)| *pid == ppid).map_or(0, |(_, d)| d + 1);
            depth_of.push((entry["pid"].as_i64().unwrap_or(0), depth));
            depth
        })
        .collect()
}

fn state_tone(state: &str) -> &'static str {
    match state {
        "running" => "ok",
        "starting" | "restarting" | "reloading" | "draining" => "warn",
        "stopping" | "killing" | "cleanup" | "exited" => "bad",
        _ => "",
    }
}

fn health_tone(health: &str) -> &'static str {
    match health {
        "healthy" => "ok",
        "degraded" => "warn",
        "unhealthy" => "bad",
        _ => "",
    }
}

fn outcome_tone(outcome: &str) -> &'static str {
    match outcome {
        "ok" | "up" => "ok-text",
        "skipped" | "pending" | "unknown" => "muted",
        "running" | "over" | "starting" | "restarting" | "degraded" => "warn-text",
        _ => "bad-text",
    }
}

fn not_ready_line(reason: &str) -> String {
    format!("Not ready: {reason}")
}

fn number(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::Null => "—".to_string(),
        other => other.to_string(),
    }
}

fn processes(value: &Value) -> String {
    match value.as_u64() {
        Some(1) => "1 process".to_string(),
        Some(n) => format!("{n} processes"),
        None => "monitoring off".to_string(),
    }
}

fn connections(value: &Value) -> String {
    match value.as_u64() {
        Some(1) => "1 connection".to_string(),
        Some(n) => format!("{n} connections"),
        None => "connections unknown".to_string(),
    }
}

/// 1536 → "1.5 KiB".
pub fn bytes(value: Option<f64>) -> String {
    let Some(mut value) = value else {
        return "—".to_string();
    };
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at GiB")
}

pub fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| format!("{v:.1} %"))
}

/// 3725 → "1h 2m"; 42.5 → "42s".
pub fn duration(value: Option<f64>) -> String {
    let Some(total) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
        return "—".to_string();
    };
    let secs = total as u64;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) if total < 10.0 && total.fract() != 0.0 => format!("{total:.1}s"),
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// How long ago an RFC 3339 timestamp was, "3m 4s ago".
fn ago(at: &Value, now: SystemTime) -> String {
    let Some(at) = at.as_str().and_then(|t| humantime::parse_rfc3339(t).ok()) else {
        return String::new();
    };
    let elapsed = now.duration_since(at).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    format!("{} ago", duration(Some(elapsed.floor())))
}

/// "12:34:56" of an RFC 3339 timestamp.
fn clock_time(at: Option<&str>) -> &str {
    at.and_then(|t| t.get(11..19)).unwrap_or("")
}

fn last_exit(exit: &Value, now: SystemTime) -> (String, String) {
    if exit.is_null() {
        return ("none".to_string(), "no exit yet".to_string());
    }
    let what = match exit["signal"].as_str() {
        Some(signal) => format!("{signal} ({})", number(&exit["code"])),
        None => format!("code {}", number(&exit["code"])),
    };
    (what, ago(&exit["at"], now))
}

fn last_reload(reload: &Value, now: SystemTime) -> (String, String) {
    if reload.is_null() {
        return ("none".to_string(), "no reload yet".to_string());
    }
    let outcome = reload["outcome"].as_str().unwrap_or("").to_string();
    let detail = reload["detail"].as_str().filter(|d| !d.is_empty());
    let when = ago(&reload["started_at"], now);
    (outcome, detail.map_or(when.clone(), |d| format!("{when} · {d}")))
}

fn shutdown_line(shutdown: &Value, now: SystemTime) -> String {
    if shutdown.is_null() {
        return String::new();
    }
    let reason = shutdown["reason"].as_str().unwrap_or("");
    let left = shutdown["deadline"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .map(|deadline| deadline.duration_since(now).map(|d| d.as_secs_f64()).unwrap_or(0.0));
    format!("{reason} · deadline in {}", duration(left.map(f64::ceil)))
}

/// A phase row's (elapsed, outcome): "running" while started and not ended.
fn phase_progress(row: &Value, now: SystemTime) -> (String, String) {
    if let Some(outcome) = row["outcome"].as_str() {
        return (duration(row["duration_seconds"].as_f64()), outcome.to_string());
    }
    match row["started_at"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
    {
        Some(started) => {
            let elapsed = now.duration_since(started).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            (duration(Some(elapsed.floor())), "running".to_string())
        }
        None => ("—".to_string(), "pending".to_string()),
    }
}

fn check_detail(name: &str, check: &Value) -> String {
    let mut parts = Vec::new();
    match name {
        "child" => parts.push(check["pid"].as_i64().map_or(String::new(), |pid| format!("pid {pid}"))),
        "memory" => parts.push(format!(
            "{} MiB of {} MiB",
            check["rss_mb"].as_f64().map_or("—".to_string(), |v| format!("{v:.1}")),
            number(&check["threshold_mb"])
        )),
        "cpu" => parts.push(format!(
            "{} of {}",
            percent(check["cpu_percent"].as_f64()),
            percent(check["threshold_percent"].as_f64())
        )),
        _ => {
            if let Some(critical) = check["critical"].as_bool() {
                parts.push(if critical { "critical" } else { "non-critical" }.to_string());
            }
            if let Some(latency) = check["latency_seconds"].as_f64() {
                parts.push(format!("{:.0} ms", latency * 1000.0));
            }
            if let Some(detail) = check["detail"].as_str().filter(|d| !d.is_empty()) {
                parts.push(detail.to_string());
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_only_when_accept_names_it() {
        assert!(wants_html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(wants_html(Some("TEXT/HTML; q=0.9")));
        assert!(!wants_html(Some("*/*")));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(Some("text/htmlx")));
        assert!(!wants_html(None));
    }

    #[test]
    fn text_escapes_markup_and_quotes() {
        let mut html = Html(String::new());
        html.text("<script>alert(\"x\" & 'y')</script>");
        assert_eq!(
            html.0,
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn the_policy_names_the_served_bytes() {
        let policy = CONTENT_SECURITY_POLICY.as_str();
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(policy.contains(&format!("'sha256-{}'", sha256_base64(CSS))));
        assert!(policy.ends_with("connect-src 'self'; img-src data:"));
        // The well-known digest of "abc" (FIPS 180-2), base64.
        assert_eq!(sha256_base64("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[test]
    fn assets_have_no_inline_styles_or_handlers() {
        for asset in [CSS, SCRIPT] {
            assert!(!asset.contains("</script"), "an asset must not end its own element");
            assert!(!asset.contains("</style"));
        }
        assert!(!SCRIPT.contains("innerHTML"), "the script writes text only");
        assert!(!SCRIPT.contains(".style"), "no inline styles: the policy forbids them");
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(bytes(Some(512.0)), "512 B");
        assert_eq!(bytes(Some(1536.0)), "1.5 KiB");
        assert_eq!(bytes(Some(52_428_800.0)), "50.0 MiB");
        assert_eq!(bytes(None), "—");
        assert_eq!(duration(Some(42.0)), "42s");
        assert_eq!(duration(Some(2.5)), "2.5s");
        assert_eq!(duration(Some(600.0)), "10m");
        assert_eq!(duration(Some(3725.0)), "1h 2m");
        assert_eq!(duration(Some(90_000.0)), "1d 1h");
        assert_eq!(percent(Some(12.345)), "12.3 %");
        assert_eq!(span_label(Some(1.0)), "last 10m");
    }

    #[test]
    fn depths_follow_ppid() {
        let tree = vec![
            json!({"pid": 10, "ppid": 1}),
            json!({"pid": 11, "ppid": 10}),
            json!({"pid": 12, "ppid": 11}),
            json!({"pid": 13, "ppid": 10}),
        ];
        assert_eq!(depths(&tree), [0, 1, 2, 1]);
    }

    #[test]
    fn sparkline_is_right_aligned_and_scaled() {
        let (area, line) = sparkline(&[0.0, 50.0, 100.0], 100.0);
        assert_eq!(line, "597,100.0 598,51.0 599,2.0");
        assert_eq!(area, "597,100 597,100.0 598,51.0 599,2.0 599,100");
        assert_eq!(sparkline(&[], 1.0), (String::new(), String::new()));
        let full = vec![1.0; 600];
        let (_, line) = sparkline(&full, 2.0);
        assert_eq!(
            line.split(' ').count(),
            SPARK_POINTS + 1,
            "every other sample and the newest"
        );
        assert!(line.starts_with("0,") && line.ends_with(" 599,51.0"), "{line}");
    }

    #[test]
    fn the_page_stays_under_64_kib_whatever_the_child_runs() {
        let long = "x".repeat(4096);
        let hostile = "<&>".repeat(1000);
        let process: Vec<Value> = (0..300)
            .map(|pid| json!({"pid": pid + 2, "ppid": pid + 1, "command": long, "rss_bytes": 1u64 << 40, "cpu_percent": 1234.5, "threads": 999}))
            .collect();
        let samples: Vec<Value> = (0..600)
            .map(|i| json!({"at": "2026-01-01T00:00:00.000Z", "rss_bytes": 123_456_789 + i * 7919, "cpu_percent": 99.123 + i as f64, "processes": 300}))
            .collect();
        let checks: serde_json::Map<String, Value> = (0..20)
            .map(|i| {
                (
                    format!("dep{i}"),
                    json!({"status": "failing", "critical": true, "latency_seconds": 1.5, "detail": hostile}),
                )
            })
            .collect();
        let env: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("VAR_{i}_{long}"), json!({"value": hostile, "source": "file"})))
            .collect();
        let data = PageData {
            status: json!({"state": "stopping", "ready": false, "child": {"pid": 1, "generation": 1, "uptime_seconds": 1.0}, "restarts": 9, "shutdown": {"reason": hostile, "deadline": "2026-01-01T00:00:00.000Z", "phases": (0..11).map(|_| json!({"name": "wait_exit", "timeout_seconds": 30.0, "outcome": "ok", "duration_seconds": 1.0})).collect::<Vec<_>>()}, "timestamp": "2026-01-01T00:00:00.000Z"}),
            overview: json!({"state": "stopping", "ready": false, "ready_reason": hostile, "health": "unhealthy", "version": "0.1.0", "process": {"gsup_pid": 1, "processes": 300, "rss_bytes": 1, "cpu_percent": 1.0}}),
            process: json!({"tree": process}),
            history: json!({"interval_seconds": 1.0, "samples": samples}),
            health: json!({"status": "unhealthy", "checks": checks}),
        };
        let env = Value::Object(env);
        let mut view = View {
            data: &data,
            prefix: "/api/v1/shutdown",
            token: true,
            env: &env,
            now: SystemTime::now(),
            rows: 0,
            clip: 0,
        };
        let page = view.render_within_limits();
        assert!(page.len() < 64 * 1024, "the page is {} bytes", page.len());
        assert!(page.contains(" more (the live page lists all)"), "the cut is said");
        assert!(!page.contains("<&>"), "escaped");
    }
}

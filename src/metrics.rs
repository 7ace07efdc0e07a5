//! gsup's metrics (DESIGN §6): one [`Metrics`], created at start-up and shared as
//! `Arc<Metrics>` between the event loop, which updates it, and the HTTP server, which
//! renders it for `GET /metrics` (DESIGN §5).
//!
//! Every update method is a few atomic operations: no I/O, no allocation beyond the first
//! use of a label value, never blocking the event loop for long. All reading of /proc (the
//! `process_*` series, gsup's own) happens at render time, on the HTTP side.
//!
//! The series live in a private `prometheus` registry (the tikv crate without default
//! features: its text format passes `promtool check metrics`, DEPS §9). Both renderings,
//! text and JSON, are built from the same `Registry::gather`, so their names cannot drift
//! apart. This module knows nothing of the supervisor: it never touches the child.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{SysconfVar, sysconf};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Counter, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use serde_json::{Map, Value, json};

/// The `Content-Type` of [`Metrics::render_text`]: Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// `graceful_shutdown_duration_seconds` buckets, from the original design (DESIGN §6).
const SHUTDOWN_BUCKETS: [f64; 6] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A metric that could not be created or registered. With gsup's fixed names and label
/// sets this means a programming error (a bad or duplicate name), caught by the tests.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric {name}: {source}")]
pub struct MetricsError {
    name: &'static str,
    #[source]
    source: prometheus::Error,
}

/// gsup's metrics: the series, created at their first use, and the text rendering's cache.
///
/// The series are registered by the first update or rendering, not at start-up: with the
/// child started first, that is the `child_started` of its start, while the child execs
/// on another CPU (issue 14: registering them was 15 % of `gsup run -- true`'s
/// instructions, all before the child started).
pub struct Metrics {
    series: OnceLock<Series>,
    /// Bumped by every update: the text rendering is reused while it is unchanged.
    version: AtomicU64,
    /// The last text rendering (see [`Metrics::render_text`]).
    rendered: Mutex<Option<Rendered>>,
}

/// Every series of DESIGN §6. Fields are handles into `registry`; cloning a handle shares
/// the same value, so the registry sees every update.
struct Series {
    /// Private, so nothing else (a library's default registry) can add series to ours.
    registry: Registry,
    shutdown_duration: Histogram,
    active_connections: IntGauge,
    shutdown_success: IntCounter,
    shutdown_failure: IntCounter,
    child_up: IntGauge,
    ready: IntGauge,
    restarts: IntCounter,
    exits: IntCounterVec,
    signals_forwarded: IntCounterVec,
    zombies_reaped: IntCounter,
    threshold_breaches: IntCounterVec,
    child_rss: IntGauge,
    child_threads: IntGauge,
    child_fds: IntGauge,
    child_processes: IntGauge,
    /// Float seconds: CPU time arrives in clock ticks, and whole seconds would hide a
    /// quiet child's usage for minutes.
    child_cpu: Counter,
    /// The highest total ever passed to `raise_child_cpu_seconds`, as `f64` bits. For
    /// non-negative floats the bit patterns order like the values, so `fetch_max` keeps
    /// the counter monotonic without a lock even if two callers race.
    child_cpu_high: AtomicU64,
    inflight: IntGauge,
    phase_duration: GaugeVec,
    reloads: IntCounterVec,
}

/// A text rendering and what it was made from.
struct Rendered {
    /// `Metrics::version` read before the rendering began.
    version: u64,
    at: Instant,
    text: String,
}

/// How long a text rendering is reused when no `gsup_*` series changed: the age bound of
/// gsup's own `process_*` series (its CPU, memory and fds), which change without an
/// update. Scrapes come every few seconds at the most; a burst of them (or many
/// scrapers) shares one rendering.
const RENDER_MAX_AGE: Duration = Duration::from_millis(500);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// No series yet: see [`Metrics::series`].
    pub fn new() -> Self {
        Metrics {
            series: OnceLock::new(),
            version: AtomicU64::new(0),
            rendered: Mutex::new(None),
        }
    }

    /// The series, registered at the first call. Each shows from then on: counters 0, the
    /// histogram empty, gauges 0 except `gsup_build_info{version}` = 1. Labelled series
    /// appear at their first use (there is no value to show before).
    fn series(&self) -> &Series {
        self.series.get_or_init(|| {
            // Only gsup's own fixed names and label sets go in, and the unit tests register
            // them all (`series_register`): a failure here is a bug in this file, not
            // something a user or the OS can cause.
            Series::new().unwrap_or_else(|error| panic!("{error}"))
        })
    }
}

impl Series {
    fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let r = &registry;

        let shutdown_duration = add(
            r,
            "graceful_shutdown_duration_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "graceful_shutdown_duration_seconds",
                    "Time from a graceful shutdown's trigger to the child's exit.",
                )
                .buckets(SHUTDOWN_BUCKETS.to_vec()),
            ),
        )?;
        let active_connections = add(
            r,
            "graceful_shutdown_active_connections",
            IntGauge::new(
                "graceful_shutdown_active_connections",
                "Inbound connections to the child, sampled at all times.",
            ),
        )?;
        let shutdown_success = add(
            r,
            "graceful_shutdown_success_total",
            IntCounter::new(
                "graceful_shutdown_success_total",
                "Graceful shutdowns where the child exited by the deadline and every phase ended ok.",
            ),
        )?;
        let shutdown_failure = add(
            r,
            "graceful_shutdown_failure_total",
            IntCounter::new(
                "graceful_shutdown_failure_total",
                "Graceful shutdowns that needed SIGKILL, a failed hook or a killed phase.",
            ),
        )?;
        let child_up = add(
            r,
            "gsup_child_up",
            IntGauge::new("gsup_child_up", "1 while the child runs, else 0."),
        )?;
        let ready = add(
            r,
            "gsup_ready",
            IntGauge::new("gsup_ready", "1 while gsup reports ready, else 0."),
        )?;
        let restarts = add(
            r,
            "gsup_child_restarts_total",
            IntCounter::new("gsup_child_restarts_total", "Restarts of the child."),
        )?;
        let exits = add(
            r,
            "gsup_child_exits_total",
            IntCounterVec::new(
                Opts::new(
                    "gsup_child_exits_total",
                    "Child exits by exit code (128+N for signal N), every generation.",
                ),
                &["code"],
            ),
        )?;
        let signals_forwarded = add(
            r,
            "gsup_signals_forwarded_total",
            IntCounterVec::new(
                Opts::new(
                    "gsup_signals_forwarded_total",
                    "Signals sent to the child, after rewrite; dropped signals are not counted.",
                ),
                &["signal"],
            ),
        )?;
        let zombies_reaped = add(
            r,
            "gsup_zombies_reaped_total",
            IntCounter::new("gsup_zombies_reaped_total", "Processes reaped by gsup."),
        )?;
        let threshold_breaches = add(
            r,
            "gsup_threshold_breaches_total",
            IntCounterVec::new(
                Opts::new(
                    "gsup_threshold_breaches_total",
                    "Monitor thresholds breached for their sustain window, by resource.",
                ),
                &["resource"],
            ),
        )?;
        let child_rss = add(
            r,
            "gsup_child_memory_rss_bytes",
            IntGauge::new(
                "gsup_child_memory_rss_bytes",
                "Resident memory of the child's process tree in bytes.",
            ),
        )?;
        let child_threads = add(
            r,
            "gsup_child_threads",
            IntGauge::new("gsup_child_threads", "Threads in the child's process tree."),
        )?;
        let child_fds = add(
            r,
            "gsup_child_open_fds",
            IntGauge::new(
                "gsup_child_open_fds",
                "Open file descriptors in the child's process tree.",
            ),
        )?;
        let child_processes = add(
            r,
            "gsup_child_processes",
            IntGauge::new("gsup_child_processes", "Processes in the child's process tree."),
        )?;
        let child_cpu = add(
            r,
            "gsup_child_cpu_seconds_total",
            Counter::new(
                "gsup_child_cpu_seconds_total",
                "CPU time of the child's tree over the whole run, exited descendants and earlier generations included.",
            ),
        )?;
        let inflight = add(
            r,
            "gsup_inflight_connections",
            IntGauge::new("gsup_inflight_connections", "Inbound connections in flight."),
        )?;
        let phase_duration = add(
            r,
            "gsup_shutdown_phase_duration_seconds",
            GaugeVec::new(
                Opts::new(
                    "gsup_shutdown_phase_duration_seconds",
                    "Duration of each phase of the last shutdown in seconds.",
                ),
                &["phase"],
            ),
        )?;
        let reloads = add(
            r,
            "gsup_reloads_total",
            IntCounterVec::new(
                Opts::new("gsup_reloads_total", "Zero-downtime reloads by outcome."),
                &["outcome"],
            ),
        )?;
        let build_info = add(
            r,
            "gsup_build_info",
            IntGaugeVec::new(
                Opts::new("gsup_build_info", "Always 1; the version is in the label."),
                &["version"],
            ),
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let process = SelfProcess::new().map_err(|source| MetricsError {
            name: "process_*",
            source,
        })?;
        registry.register(Box::new(process)).map_err(|source| MetricsError {
            name: "process_*",
            source,
        })?;

        Ok(Series {
            registry,
            shutdown_duration,
            active_connections,
            shutdown_success,
            shutdown_failure,
            child_up,
            ready,
            restarts,
            exits,
            signals_forwarded,
            zombies_reaped,
            threshold_breaches,
            child_rss,
            child_threads,
            child_fds,
            child_processes,
            child_cpu,
            child_cpu_high: AtomicU64::new(0.0_f64.to_bits()),
            inflight,
            phase_duration,
            reloads,
        })
    }
}

impl Metrics {
    // --- Updates, called by the event loop. ---

    /// Every update, once done, marks the last text rendering stale (after, not before:
    /// a rendering that began in between must not be kept as current).
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub fn child_started(&self) {
        self.series().child_up.set(1);
        self.changed();
    }

    /// 1 while any generation of the child runs (a reload's old and new ones overlap).
    pub fn set_child_up(&self, up: bool) {
        set_gauge(&self.series().child_up, i64::from(up), || self.changed());
    }

    /// `code` as DESIGN §6 counts it: the exit code, or 128+N for a death by signal N.
    pub fn child_exited(&self, code: i32) {
        self.series().exits.with_label_values(&[code.to_string()]).inc();
        self.changed();
    }

    pub fn restarted(&self) {
        self.series().restarts.inc();
        self.changed();
    }

    /// Called at every publish of the state: marks a change only when there is one.
    pub fn set_ready(&self, ready: bool) {
        set_gauge(&self.series().ready, i64::from(ready), || self.changed());
    }

    /// `name` is the signal actually sent, after rewrite (`SIGHUP`).
    pub fn signal_forwarded(&self, name: &str) {
        self.series().signals_forwarded.with_label_values(&[name]).inc();
        self.changed();
    }

    pub fn zombie_reaped(&self) {
        self.series().zombies_reaped.inc();
        self.changed();
    }

    /// `resource` is `memory` or `cpu`.
    pub fn threshold_breached(&self, resource: &str) {
        self.series().threshold_breaches.with_label_values(&[resource]).inc();
        self.changed();
    }

    pub fn shutdown_succeeded(&self) {
        self.series().shutdown_success.inc();
        self.changed();
    }

    pub fn shutdown_failed(&self) {
        self.series().shutdown_failure.inc();
        self.changed();
    }

    /// Trigger to the child's exit, observed when that exit is known.
    pub fn observe_shutdown_duration(&self, seconds: f64) {
        self.series().shutdown_duration.observe(seconds);
        self.changed();
    }

    /// One phase of the last shutdown; a later shutdown overwrites it.
    pub fn set_phase_duration(&self, phase: &str, seconds: f64) {
        self.series().phase_duration.with_label_values(&[phase]).set(seconds);
        self.changed();
    }

    /// Forgets the phases of the previous shutdown, so a phase the next one does not run
    /// is not shown with a stale duration. Call when a shutdown starts.
    pub fn clear_phase_durations(&self) {
        self.series().phase_duration.reset();
        self.changed();
    }

    /// One monitor sample of the child's tree.
    pub fn set_tree(&self, rss_bytes: u64, threads: u64, fds: u64, processes: u64) {
        let (series, changed) = (self.series(), || self.changed());
        set_gauge(&series.child_rss, saturate(rss_bytes), changed);
        set_gauge(&series.child_threads, saturate(threads), changed);
        set_gauge(&series.child_fds, saturate(fds), changed);
        set_gauge(&series.child_processes, saturate(processes), changed);
    }

    /// Raises `gsup_child_cpu_seconds_total` to `total`, the current cumulative CPU time of
    /// the run. A lower total (a descendant exited before its parent collected its time,
    /// so neither the live tree nor `cutime` shows it for a moment) leaves the counter
    /// where it is: a counter that drops reads as a reset to Prometheus.
    pub fn raise_child_cpu_seconds(&self, total: f64) {
        // Negative values (and -0.0) have the sign bit set, which would order above every
        // positive value as bits; NaN and infinity are not CPU times.
        if !total.is_finite() || total.is_sign_negative() {
            return;
        }
        let series = self.series();
        let before = f64::from_bits(series.child_cpu_high.fetch_max(total.to_bits(), Ordering::AcqRel));
        if total > before {
            series.child_cpu.inc_by(total - before);
            self.changed();
        }
    }

    /// `active` feeds `graceful_shutdown_active_connections`, `inflight`
    /// `gsup_inflight_connections` (DESIGN §4, §7).
    pub fn set_connections(&self, active: u64, inflight: u64) {
        let series = self.series();
        set_gauge(&series.active_connections, saturate(active), || self.changed());
        set_gauge(&series.inflight, saturate(inflight), || self.changed());
    }

    /// `outcome` is `ok` or `failed` (DESIGN §8).
    pub fn reload(&self, outcome: &str) {
        self.series().reloads.with_label_values(&[outcome]).inc();
        self.changed();
    }

    // --- Rendering, called by the HTTP server. ---

    /// Prometheus text format 0.0.4, served as [`TEXT_CONTENT_TYPE`].
    ///
    /// Rendering (the registry's `gather`, the encoder and /proc/self) is what a scrape
    /// costs, and at 32 concurrent scrapes on the single event-loop thread they queued
    /// behind each other. So the text is reused while no update came since it was made
    /// and it is younger than [`RENDER_MAX_AGE`]: every `gsup_*` and `graceful_*` series
    /// is as current as without the cache, and gsup's own `process_*` series are at most
    /// that old.
    pub fn render_text(&self) -> String {
        let version = self.version.load(Ordering::Acquire);
        let mut rendered = self.rendered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(last) = rendered.as_ref()
            && last.version == version
            && last.at.elapsed() < RENDER_MAX_AGE
        {
            return last.text.clone();
        }
        let text = self.render_text_now();
        *rendered = Some(Rendered {
            version,
            at: Instant::now(),
            text: text.clone(),
        });
        text
    }

    fn render_text_now(&self) -> String {
        let encoder = TextEncoder::new();
        let mut out = String::with_capacity(8 * 1024);
        // One family at a time, so a family the encoder refuses (it refuses only empty or
        // nameless ones, which `gather` never returns) costs that family, not the page.
        for family in self.series().registry.gather() {
            let mark = out.len();
            if let Err(error) = encoder.encode_utf8(std::slice::from_ref(&family), &mut out) {
                out.truncate(mark);
                tracing::warn!(metric = family.name(), %error, "metric left out of /metrics");
            }
        }
        out
    }

    /// DESIGN §6's JSON form: the same names as keys; an unlabelled series is a number, a
    /// labelled metric an array of `{"labels", "value"}`, a histogram `{"count", "sum",
    /// "buckets"}` with cumulative counts keyed by `le` as the text form writes it.
    pub fn render_json(&self) -> Value {
        let mut out = Map::new();
        for family in self.series().registry.gather() {
            let kind = family.get_field_type();
            let metrics = family.get_metric();
            let value = match metrics {
                [only] if only.get_label().is_empty() => metric_json(kind, only),
                _ => Value::Array(
                    metrics
                        .iter()
                        .map(|metric| {
                            let labels: Map<String, Value> = metric
                                .get_label()
                                .iter()
                                .map(|pair| (pair.name().to_owned(), pair.value().into()))
                                .collect();
                            json!({"labels": labels, "value": metric_json(kind, metric)})
                        })
                        .collect(),
                ),
            };
            out.insert(family.name().to_owned(), value);
        }
        Value::Object(out)
    }
}

/// Creates `metric` and registers it; `name` only labels the error.
fn add<C: Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    metric: prometheus::Result<C>,
) -> Result<C, MetricsError> {
    let metric = metric.map_err(|source| MetricsError { name, source })?;
    registry
        .register(Box::new(metric.clone()))
        .map_err(|source| MetricsError { name, source })?;
    Ok(metric)
}

/// Sets `gauge` and calls `changed` when that changed its value.
fn set_gauge(gauge: &IntGauge, value: i64, changed: impl Fn()) {
    if gauge.get() != value {
        gauge.set(value);
        changed();
    }
}

/// Gauges are `i64`; a count beyond `i64::MAX` cannot happen, but must not wrap negative.
fn saturate(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One sample's value in JSON.
fn metric_json(kind: MetricType, metric: &proto::Metric) -> Value {
    match kind {
        MetricType::COUNTER => number(metric.get_counter().get_value()),
        MetricType::GAUGE => number(metric.get_gauge().get_value()),
        MetricType::HISTOGRAM => {
            let histogram = metric.get_histogram();
            let mut buckets = Map::new();
            for bucket in histogram.get_bucket() {
                // Skip an explicit +Inf bucket: the count below is the same value.
                if bucket.upper_bound().is_finite() {
                    // f64's Display writes 1.0 as "1", as the text encoder does for `le`.
                    buckets.insert(bucket.upper_bound().to_string(), bucket.cumulative_count().into());
                }
            }
            buckets.insert("+Inf".to_owned(), histogram.get_sample_count().into());
            json!({
                "count": histogram.get_sample_count(),
                "sum": number(histogram.get_sample_sum()),
                "buckets": buckets,
            })
        }
        // gsup registers no summaries or untyped metrics.
        MetricType::SUMMARY | MetricType::UNTYPED => Value::Null,
    }
}

/// A whole number as a JSON integer (`1`, not `1.0`), anything else as a float.
fn number(value: f64) -> Value {
    // Below 2^53 every whole f64 is exact as an i64.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        Value::from(value as i64)
    } else {
        Value::from(value)
    }
}

/// gsup's own standard `process_*` series, as the Prometheus client libraries name them,
/// read from /proc/self at each render. A series whose source cannot be read is left out
/// for that render rather than shown as 0.
struct SelfProcess {
    descs: Vec<Desc>,
    /// `sysconf` values, constant for the process; `None` if the libc cannot tell.
    clock_ticks: Option<u64>,
    page_size: Option<u64>,
    /// Constant for the process too, and /proc/stat is long (a line per CPU and IRQ).
    start_time: OnceLock<Option<f64>>,
}

/// Name, help and type of each `process_*` series.
const PROCESS_SERIES: [(&str, &str, MetricType); 6] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::GAUGE,
    ),
];

impl SelfProcess {
    fn new() -> prometheus::Result<Self> {
        let descs = PROCESS_SERIES
            .iter()
            .map(|(name, help, _)| Desc::new((*name).to_owned(), (*help).to_owned(), Vec::new(), HashMap::new()))
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(SelfProcess {
            descs,
            clock_ticks: sysconf_u64(SysconfVar::CLK_TCK),
            page_size: sysconf_u64(SysconfVar::PAGE_SIZE),
            start_time: OnceLock::new(),
        })
    }

    /// Values in `PROCESS_SERIES` order; `None` where unknown.
    fn sample(&self) -> [Option<f64>; 6] {
        let stat = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text));
        let cpu = stat.and_then(|s| Some(s.cpu_ticks as f64 / self.clock_ticks? as f64));
        let rss = stat.and_then(|s| Some(s.rss_pages as f64 * self.page_size? as f64));
        let vsize = stat.map(|s| s.vsize_bytes as f64);
        let start = *self.start_time.get_or_init(|| {
            let boot = fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|text| parse_btime(&text))?;
            Some(boot as f64 + stat?.start_ticks as f64 / self.clock_ticks? as f64)
        });
        // The soft limit: the one that makes open() fail with EMFILE.
        let max_fds = getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(soft, _hard)| soft as f64);
        [cpu, rss, vsize, open_fds().map(|n| n as f64), max_fds, start]
    }
}

impl Collector for SelfProcess {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        PROCESS_SERIES
            .iter()
            .zip(self.sample())
            .filter_map(|(&(name, help, kind), value)| {
                let value = value?;
                let mut metric = proto::Metric::default();
                if kind == MetricType::COUNTER {
                    let mut counter = proto::Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                } else {
                    let mut gauge = proto::Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                let mut family = MetricFamily::default();
                family.set_name(name.to_owned());
                family.set_help(help.to_owned());
                family.set_field_type(kind);
                family.set_metric(vec![metric]);
                Some(family)
            })
            .collect()
    }
}

/// The fields of `/proc/<pid>/stat` that `process_*` needs (proc(5)).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Since boot, in clock ticks.
    start_ticks: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

/// Parses after the last `)`: the command name before it may hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is index 0 here, so field N of proc(5) is index N - 3.
    let fields: Vec<&str> = after.split_ascii_whitespace().take(22).collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Boot time, seconds since the epoch: the `btime` line of /proc/stat.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// gsup's open fds. Since Linux 6.2 `stat` on /proc/self/fd gives the count as its size
/// without opening anything; older kernels say 0, so list the directory instead and leave
/// out the fd the listing itself holds open.
fn open_fds() -> Option<u64> {
    match fs::metadata("/proc/self/fd") {
        Ok(meta) if meta.len() > 0 => Some(meta.len()),
        _ => {
            let listed = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
            Some(listed.saturating_sub(1))
        }
    }
}

fn sysconf_u64(var: SysconfVar) -> Option<u64> {
    sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name DESIGN §6 lists, with its TYPE, and whether it has labels.
    const NAMES: [(&str, &str, bool); 26] = [
        ("graceful_shutdown_duration_seconds", "histogram", false),
        ("graceful_shutdown_active_connections", "gauge", false),
        ("graceful_shutdown_success_total", "counter", false),
        ("graceful_shutdown_failure_total", "counter", false),
        ("gsup_child_up", "gauge", false),
        ("gsup_ready", "gauge", false),
        ("gsup_child_restarts_total", "counter", false),
        ("gsup_child_exits_total", "counter", true),
        ("gsup_signals_forwarded_total", "counter", true),
        ("gsup_zombies_reaped_total", "counter", false),
        ("gsup_threshold_breaches_total", "counter", true),
        ("gsup_child_memory_rss_bytes", "gauge", false),
        ("gsup_child_threads", "gauge", false),
        ("gsup_child_open_fds", "gauge", false),
        ("gsup_child_processes", "gauge", false),
        ("gsup_child_cpu_seconds_total", "counter", false),
        ("gsup_inflight_connections", "gauge", false),
        ("gsup_shutdown_phase_duration_seconds", "gauge", true),
        ("gsup_reloads_total", "counter", true),
        // Labelled, but set at construction.
        ("gsup_build_info", "gauge", false),
        ("process_cpu_seconds_total", "counter", false),
        ("process_resident_memory_bytes", "gauge", false),
        ("process_virtual_memory_bytes", "gauge", false),
        ("process_open_fds", "gauge", false),
        ("process_max_fds", "gauge", false),
        ("process_start_time_seconds", "gauge", false),
    ];

    fn metrics() -> Metrics {
        Metrics::new()
    }

    /// What `Metrics::series` counts on to never panic: gsup's fixed names register.
    #[test]
    fn series_register() {
        if let Err(error) = Series::new() {
            panic!("{error}");
        }
    }

    /// The value of the sample line `series` (`name` or `name{label="v"}`), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.parse().ok()
        })
    }

    fn has_headers(text: &str, name: &str, kind: &str) -> bool {
        text.lines()
            .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 8)
            && text.lines().any(|l| l == format!("# TYPE {name} {kind}"))
    }

    /// Calls every update method, each label at least once.
    fn exercised() -> Metrics {
        let m = metrics();
        m.child_started();
        m.child_exited(143);
        m.child_started();
        m.restarted();
        m.set_ready(true);
        m.signal_forwarded("SIGHUP");
        m.signal_forwarded("SIGHUP");
        m.signal_forwarded("SIGUSR1");
        m.zombie_reaped();
        m.threshold_breached("memory");
        m.shutdown_succeeded();
        m.shutdown_failed();
        m.observe_shutdown_duration(4.25);
        m.set_phase_duration("stale", 1.0);
        m.clear_phase_durations();
        m.set_phase_duration("drain", 5.0);
        m.set_phase_duration("wait_exit", 0.125);
        m.set_tree(10 << 20, 7, 12, 3);
        m.raise_child_cpu_seconds(1.5);
        m.set_connections(4, 2);
        m.reload("ok");
        m.reload("failed");
        m
    }

    #[test]
    fn every_name_has_help_and_type_from_start_up() {
        let text = metrics().render_text();
        for (name, kind, labelled) in NAMES {
            if labelled {
                assert!(!text.contains(name), "{name} shown before use:\n{text}");
            } else {
                assert!(has_headers(&text, name, kind), "{name} {kind} missing:\n{text}");
            }
        }
    }

    #[test]
    fn start_up_values() {
        let text = metrics().render_text();
        for name in [
            "graceful_shutdown_success_total",
            "graceful_shutdown_failure_total",
            "gsup_child_up",
            "gsup_ready",
            "gsup_child_restarts_total",
            "gsup_zombies_reaped_total",
            "gsup_child_cpu_seconds_total",
            "graceful_shutdown_duration_seconds_count",
            "graceful_shutdown_duration_seconds_sum",
        ] {
            assert_eq!(sample(&text, name), Some(0.0), "{name}");
        }
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(&text, &format!("gsup_build_info{{version=\"{version}\"}}")),
            Some(1.0)
        );
    }

    #[test]
    fn labelled_series_appear_once_used() {
        let text = exercised().render_text();
        for (name, kind, _) in NAMES {
            assert!(has_headers(&text, name, kind), "{name} {kind} missing:\n{text}");
        }
    }

    #[test]
    fn methods_change_what_they_say() {
        let m = exercised();
        let text = m.render_text();
        let expect = [
            ("gsup_child_up", 1.0),
            ("gsup_ready", 1.0),
            ("gsup_child_restarts_total", 1.0),
            ("gsup_child_exits_total{code=\"143\"}", 1.0),
            ("gsup_signals_forwarded_total{signal=\"SIGHUP\"}", 2.0),
            ("gsup_signals_forwarded_total{signal=\"SIGUSR1\"}", 1.0),
            ("gsup_zombies_reaped_total", 1.0),
            ("gsup_threshold_breaches_total{resource=\"memory\"}", 1.0),
            ("graceful_shutdown_success_total", 1.0),
            ("graceful_shutdown_failure_total", 1.0),
            ("graceful_shutdown_duration_seconds_count", 1.0),
            ("graceful_shutdown_duration_seconds_sum", 4.25),
            ("graceful_shutdown_duration_seconds_bucket{le=\"1\"}", 0.0),
            ("graceful_shutdown_duration_seconds_bucket{le=\"5\"}", 1.0),
            ("graceful_shutdown_duration_seconds_bucket{le=\"+Inf\"}", 1.0),
            ("gsup_shutdown_phase_duration_seconds{phase=\"drain\"}", 5.0),
            ("gsup_shutdown_phase_duration_seconds{phase=\"wait_exit\"}", 0.125),
            ("gsup_child_memory_rss_bytes", 10_485_760.0),
            ("gsup_child_threads", 7.0),
            ("gsup_child_open_fds", 12.0),
            ("gsup_child_processes", 3.0),
            ("gsup_child_cpu_seconds_total", 1.5),
            ("graceful_shutdown_active_connections", 4.0),
            ("gsup_inflight_connections", 2.0),
            ("gsup_reloads_total{outcome=\"ok\"}", 1.0),
            ("gsup_reloads_total{outcome=\"failed\"}", 1.0),
        ];
        assert_eq!(
            sample(&text, "gsup_shutdown_phase_duration_seconds{phase=\"stale\"}"),
            None
        );
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
        }

        m.child_exited(0);
        m.set_child_up(false);
        m.set_ready(false);
        let json = m.render_json();
        assert_eq!(json["gsup_child_up"], json!(0));
        assert_eq!(json["gsup_ready"], json!(0));
        let mut exits = json["gsup_child_exits_total"].as_array().expect("array").clone();
        exits.sort_by_key(|e| e["labels"]["code"].as_str().unwrap_or_default().to_owned());
        assert_eq!(
            exits,
            vec![
                json!({"labels": {"code": "0"}, "value": 1}),
                json!({"labels": {"code": "143"}, "value": 1}),
            ]
        );
    }

    #[test]
    fn json_form_matches_design() {
        let m = metrics();
        m.child_started();
        m.signal_forwarded("SIGHUP");
        m.signal_forwarded("SIGHUP");
        m.observe_shutdown_duration(4.25);
        let json = m.render_json();
        assert_eq!(json["gsup_child_up"], json!(1));
        assert_eq!(
            json["gsup_signals_forwarded_total"],
            json!([{"labels": {"signal": "SIGHUP"}, "value": 2}])
        );
        assert_eq!(
            json["graceful_shutdown_duration_seconds"],
            json!({"count":1,"sum":4.25,"buckets":{"1":0,"5":1,"10":1,"30":1,"60":1,"120":1,"+Inf":1}})
        );
        // Integers, not 1.0: the serialised form is what clients see.
        let text = serde_json::to_string(&json["graceful_shutdown_duration_seconds"]).expect("serialises");
        assert!(text.contains(r#""count":1,"#) && text.contains(r#""120":1"#), "{text}");
        // Every name of the text form is a key of the JSON form, and nothing else is.
        let mut keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        keys.sort();
        let text = m.render_text();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        names.sort();
        assert_eq!(keys, names);
        assert!(json["process_resident_memory_bytes"].as_u64().is_some_and(|v| v > 0));
    }

    #[test]
    fn child_cpu_never_goes_down() {
        let m = metrics();
        let cpu = |m: &Metrics| m.render_json()["gsup_child_cpu_seconds_total"].as_f64();
        m.raise_child_cpu_seconds(2.5);
        assert_eq!(cpu(&m), Some(2.5));
        m.raise_child_cpu_seconds(1.0);
        assert_eq!(cpu(&m), Some(2.5));
        for bad in [-1.0, -0.0, f64::NAN, f64::INFINITY] {
            m.raise_child_cpu_seconds(bad);
            assert_eq!(cpu(&m), Some(2.5), "{bad}");
        }
        m.raise_child_cpu_seconds(4.0);
        assert_eq!(cpu(&m), Some(4.0));
    }

    #[test]
    fn stat_parses_after_the_last_paren() {
        // A command name with spaces and parentheses, as a user can set with prctl.
        let text = "4242 (a) b) (c d) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    30 12 0 0 20 0 3 0 5000 12345678 321 18446744073709551615 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                cpu_ticks: 42,
                start_ticks: 5000,
                vsize_bytes: 12_345_678,
                rss_pages: 321,
            })
        );
        assert_eq!(parse_stat("4242 (cut"), None);
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5 6\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn process_series_are_plausible() {
        let json = metrics().render_json();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let start = json["process_start_time_seconds"].as_f64().expect("start time");
        assert!(start > 1.0e9 && start <= now + 1.0, "{start} vs {now}");
        let open = json["process_open_fds"].as_u64().expect("open fds");
        let max = json["process_max_fds"].as_u64().expect("max fds");
        assert!(open >= 3 && open <= max, "{open} of {max}");
        assert!(json["process_virtual_memory_bytes"].as_u64() > json["process_resident_memory_bytes"].as_u64());
        assert!(json["process_cpu_seconds_total"].as_f64().is_some_and(|v| v >= 0.0));
    }

    /// `promtool check metrics` (lint included) on the text after every method was used.
    #[test]
    #[allow(clippy::disallowed_methods)] // promtool is this test's own child; no reaper runs here
    fn promtool_accepts_the_text() {
        let Some(promtool) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("promtool"))
                .find(|p| p.is_file())
        }) else {
            eprintln!("SKIPPED: promtool not installed");
            return;
        };
        let text = exercised().render_text();
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        let stdin = fs::File::open(file.path()).expect("reopen");
        let out = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(stdin)
            .output()
            .expect("run promtool");
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}: {complaints}\n{text}", out.status);
        assert!(complaints.trim().is_empty(), "promtool: {complaints}\n{text}");
    }

    #[test]
    fn text_rendering_shows_every_update_at_once() {
        let m = metrics();
        let first = m.render_text();
        assert_eq!(sample(&first, "gsup_child_up"), Some(0.0));
        type Update = fn(&Metrics);
        let steps: [(Update, &str, f64); 16] = [
            (|m| m.child_started(), "gsup_child_up", 1.0),
            (|m| m.set_child_up(false), "gsup_child_up", 0.0),
            (|m| m.set_child_up(true), "gsup_child_up", 1.0),
            (|m| m.set_ready(true), "gsup_ready", 1.0),
            (|m| m.restarted(), "gsup_child_restarts_total", 1.0),
            (|m| m.zombie_reaped(), "gsup_zombies_reaped_total", 1.0),
            (|m| m.set_tree(1, 2, 3, 4), "gsup_child_open_fds", 3.0),
            (|m| m.set_tree(1, 2, 5, 4), "gsup_child_open_fds", 5.0),
            (|m| m.raise_child_cpu_seconds(2.5), "gsup_child_cpu_seconds_total", 2.5),
            (|m| m.set_connections(5, 1), "gsup_inflight_connections", 1.0),
            (
                |m| m.signal_forwarded("SIGHUP"),
                "gsup_signals_forwarded_total{signal=\"SIGHUP\"}",
                1.0,
            ),
            (|m| m.child_exited(143), "gsup_child_exits_total{code=\"143\"}", 1.0),
            (|m| m.shutdown_failed(), "graceful_shutdown_failure_total", 1.0),
            (|m| m.reload("ok"), "gsup_reloads_total{outcome=\"ok\"}", 1.0),
            (
                |m| m.set_phase_duration("drain", 2.0),
                "gsup_shutdown_phase_duration_seconds{phase=\"drain\"}",
                2.0,
            ),
            (
                |m| m.observe_shutdown_duration(4.0),
                "graceful_shutdown_duration_seconds_count",
                1.0,
            ),
        ];
        for (update, series, value) in steps {
            update(&m);
            let text = m.render_text();
            assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
        }
    }

    #[test]
    fn own_process_series_are_refreshed_within_the_render_age() {
        let m = metrics();
        let fds = |m: &Metrics| sample(&m.render_text(), "process_open_fds").expect("process_open_fds");
        let before = fds(&m);
        // Other tests open and close fds meanwhile, so hold many and wait for a jump.
        let held: Vec<fs::File> = (0..200)
            .filter_map(|_| fs::File::open("/proc/self/stat").ok())
            .collect();
        assert_eq!(held.len(), 200);
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds(&m) < before + 150.0 {
            assert!(Instant::now() < deadline, "process_open_fds stayed near {before}");
            std::thread::sleep(RENDER_MAX_AGE / 5);
        }
    }

    /// Render cost, printed (no timing assertion): `cargo test render_cost -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn render_cost() {
        let m = exercised();
        for (what, render) in [
            ("text", &(|| drop(m.render_text_now())) as &dyn Fn()),
            ("text, reused", &|| drop(m.render_text())),
            ("json", &|| drop(m.render_json())),
        ] {
            let runs = 2000;
            let started = std::time::Instant::now();
            for _ in 0..runs {
                render();
            }
            eprintln!("render_{what}: {:?} per render", started.elapsed() / runs);
        }
        let process = SelfProcess::new().expect("descs");
        let started = std::time::Instant::now();
        for _ in 0..2000 {
            std::hint::black_box(process.sample());
        }
        eprintln!("of which /proc/self: {:?}", started.elapsed() / 2000);
        let started = std::time::Instant::now();
        for _ in 0..100_000 {
            m.signal_forwarded("SIGHUP");
            m.set_tree(1, 2, 3, 4);
        }
        eprintln!("signal_forwarded + set_tree: {:?}", started.elapsed() / 100_000);
    }
}

//! What the HTTP side sees: an immutable copy of the supervisor's state, published by the
//! event loop after every step (a `tokio::sync::watch`). Readers never lock anything the
//! loop needs and never touch the child.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::monitor;
use crate::supervisor::phases::PhaseRow;
use crate::supervisor::state::Pid;
use crate::supervisor::state::{Lifecycle, ReloadRecord, State};
use crate::timefmt::{rfc3339_millis, seconds};

/// Maps the monotonic clock the state machine uses to wall-clock time for JSON.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            origin: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.origin) {
            Some(after) => self.wall + after,
            None => self.wall - self.origin.duration_since(at),
        }
    }

    pub fn json(&self, at: Instant) -> Value {
        Value::String(self.text(at))
    }

    /// `at` as an RFC 3339 UTC timestamp with milliseconds.
    pub fn text(&self, at: Instant) -> String {
        rfc3339_millis(self.wall(at))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChildView {
    pub pid: i32,
    pub pgid: i32,
    pub started_at: Instant,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitView {
    pub code: i32,
    pub signal: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownView {
    pub reason: String,
    pub started_at: Instant,
    pub deadline: Instant,
    pub phases: Vec<PhaseRow>,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub clock: Clock,
    /// When gsup started.
    pub started_at: Instant,
    pub state: Lifecycle,
    pub ready: bool,
    /// Why not ready, for `/ready`'s 503 body.
    pub not_ready: Option<String>,
    /// Each dependency: name, critical, latest result and when it came.
    pub dependencies: Vec<crate::supervisor::state::DependencyStatus>,
    pub child: Option<ChildView>,
    pub restarts: u64,
    pub last_exit: Option<ExitView>,
    pub shutdown: Option<ShutdownView>,
    /// The latest inbound-connection sample.
    pub connections: Option<crate::supervisor::state::ConnectionCount>,
    /// Memory and CPU against their thresholds, as last sampled.
    pub thresholds: [(crate::supervisor::state::Resource, crate::supervisor::state::Threshold); 2],
    /// `[monitor] memory_threshold_mb`, shown next to a cgroup's memory limit.
    pub memory_threshold_mb: u64,
    /// `[monitor] enabled`: without samples the thresholds say nothing.
    pub monitoring: bool,
    /// The monitor's latest sample (none with monitoring off).
    pub sample: Option<std::sync::Arc<Sample>>,
    /// The latest reload's outcome (DESIGN §8).
    pub last_reload: Option<ReloadRecord>,
    /// The tree's RSS and CPU over the last samples (`/process/history`, DESIGN §5a).
    pub history: crate::monitor::SharedHistory,
}

/// One monitor reading: gsup's own entry and the child's tree.
#[derive(Debug, Clone)]
pub struct Sample {
    pub gsup: Option<crate::monitor::ProcessInfo>,
    pub tree: std::sync::Arc<crate::monitor::TreeSample>,
}

impl Snapshot {
    pub fn of(state: &State, clock: Clock, started_at: Instant) -> Self {
        let lifecycle = state.lifecycle();
        let not_ready = state.not_ready();
        Snapshot {
            clock,
            started_at,
            state: lifecycle,
            ready: state.ready(),
            not_ready,
            child: state.child().map(|c| ChildView {
                pid: c.pid,
                pgid: c.pgid,
                started_at: c.started_at,
                generation: c.generation,
            }),
            restarts: state.restarts(),
            last_exit: state.last_exit().map(|e| ExitView {
                code: e.status.code(),
                signal: e.status.signal_name(),
                at: e.at,
            }),
            shutdown: state.shutdown().map(|s| ShutdownView {
                reason: s.reason.clone(),
                started_at: s.started_at,
                deadline: s.deadline,
                phases: state.phases().to_vec(),
            }),
            sample: None,
            last_reload: state.last_reload().cloned(),
            connections: state.connections(),
            dependencies: state.dependency_results(),
            thresholds: state.thresholds(),
            monitoring: state.config().monitor.enabled,
            memory_threshold_mb: state.config().monitor.memory_threshold_mb,
            history: crate::monitor::SharedHistory::new(state.config().monitor.interval),
        }
    }

    /// `/alive`: the loop answers (it published this) and a child runs or is about to.
    pub fn alive(&self) -> bool {
        self.child.is_some() || matches!(self.state, Lifecycle::Starting | Lifecycle::Restarting)
    }

    /// The `/status` body (DESIGN §5), `timestamp` included.
    pub fn status_json(&self, now: Instant) -> Value {
        let clock = &self.clock;
        json!({
            "state": self.state.as_str(),
            "ready": self.ready,
            "child": self.child.as_ref().map(|c| json!({
                "pid": c.pid,
                "pgid": c.pgid,
                "started_at": clock.json(c.started_at),
                "uptime_seconds": seconds(now.saturating_duration_since(c.started_at)),
                "generation": c.generation,
            })),
            "restarts": self.restarts,
            "last_exit": self.last_exit.as_ref().map(|e| json!({
                "code": e.code,
                "signal": e.signal,
                "at": clock.json(e.at),
            })),
            // From the kernel (sock_diag); null when gsup cannot count them.
            "active_connections": self.connections.map(|c| c.active),
            "inflight_connections": self.connections.map(|c| c.inflight),
            "shutdown": self.shutdown.as_ref().map(|s| json!({
                "reason": s.reason,
                "started_at": clock.json(s.started_at),
                "deadline": clock.json(s.deadline),
                "phases": s.phases.iter().map(|row| phase_json(row, clock)).collect::<Vec<_>>(),
            })),
            "last_reload": self.last_reload.as_ref().map(|r| reload_json(r, clock)),
            "timestamp": clock.json(now),
        })
    }
}

/// A reload's outcome as `/status` `last_reload` and `ctl reload` show it (DESIGN §8).
pub fn reload_json(record: &ReloadRecord, clock: &Clock) -> Value {
    json!({
        "id": record.reload.id,
        "outcome": if record.ok { "ok" } else { "failed" },
        "detail": record.detail,
        "started_at": clock.json(record.reload.started_at),
        "duration_seconds": seconds(record.duration),
        "old_pid": record.reload.old_pid,
        "new_pid": record.new_pid(),
        "old_exit": record.reload.old_exit.map(|e| json!({
            "code": e.status.code(),
            "signal": e.status.signal_name(),
            "at": clock.json(e.at),
        })),
    })
}

/// One phase row as `/status` and the shutdown log show it (DESIGN §4).
pub fn phase_json(row: &PhaseRow, clock: &Clock) -> Value {
    serde_json::to_value(PhaseView::of(row, clock)).unwrap_or(Value::Null)
}

/// A phase row ready to serialize: the shutdown report writes these straight to its line,
/// without building a `Value` tree first (it is on gsup's way out).
#[derive(serde::Serialize)]
pub struct PhaseView<'a> {
    name: &'static str,
    timeout_seconds: f64,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_seconds: Option<f64>,
    outcome: Option<&'static str>,
    detail: &'a str,
}

impl<'a> PhaseView<'a> {
    /// The same row with `detail` shown instead (the shutdown report's redacted one).
    pub fn with_detail(self, detail: &'a str) -> Self {
        PhaseView { detail, ..self }
    }

    pub fn of(row: &'a PhaseRow, clock: &Clock) -> Self {
        let wall = |at: Instant| clock.text(at);
        PhaseView {
            name: row.name.as_str(),
            timeout_seconds: seconds(row.timeout),
            started_at: row.started_at.map(wall),
            ended_at: row.ended_at.map(wall),
            duration_seconds: match (row.started_at, row.ended_at) {
                (Some(start), Some(end)) => Some(seconds(end.saturating_duration_since(start))),
                _ => None,
            },
            outcome: row.outcome.map(|o| o.as_str()),
            detail: &row.detail,
        }
    }
}

impl PhaseView<'_> {
    /// The row as its `Serialize` writes it, straight into `out` (the shutdown report).
    pub fn write_json(&self, out: &mut String) {
        let mut object = crate::json::Object::begin(out);
        object
            .str("name", self.name)
            .f64("timeout_seconds", self.timeout_seconds)
            .opt_str("started_at", self.started_at.as_deref())
            .opt_str("ended_at", self.ended_at.as_deref())
            .opt_f64("duration_seconds", self.duration_seconds)
            .opt_str("outcome", self.outcome)
            .str("detail", self.detail);
        object.end();
    }
}

/// Remaining wait of a preStop started at `since`, given `drain_delay`.
pub fn prestop_remaining(since: Instant, drain_delay: Duration, now: Instant) -> Duration {
    drain_delay.saturating_sub(now.saturating_duration_since(since))
}

/// `/process`: gsup and the child's tree from the monitor's latest sample; with
/// monitoring off, a one-off read (cpu_percent is then 0: it needs two samples).
pub fn process_json(snapshot: &Snapshot) -> serde_json::Value {
    let now = std::time::SystemTime::now();
    let (gsup, tree) = match &snapshot.sample {
        Some(sample) => (sample.gsup.clone(), Arc::clone(&sample.tree)),
        None => match monitor::Sampler::new() {
            Ok(mut sampler) => {
                let roots = monitor_roots(snapshot.child.as_ref().map(|c| c.pid));
                let tree = sampler.sample(&roots, &HashSet::new());
                (sampler.sample_self(&HashSet::new()), Arc::new(tree))
            }
            Err(error) => {
                return serde_json::json!({"error": format!("cannot read /proc: {error}")});
            }
        },
    };
    serde_json::json!({
        "gsup": gsup.map(|entry| entry.to_json(now)),
        "tree": tree.processes.iter().map(|entry| entry.to_json(now)).collect::<Vec<_>>(),
        "totals": {
            "processes": tree.totals.processes,
            "rss_bytes": tree.totals.rss_bytes,
            "threads": tree.totals.threads,
            "fds": tree.totals.fds,
            "cpu_percent": tree.totals.cpu_percent,
        },
        // Where gsup runs in a cgroup with a memory limit (a container, a systemd unit):
        // the limit and usage next to the threshold (DESIGN §7). Null elsewhere.
        "cgroup": monitor::cgroup_memory().map(|(limit, usage)| serde_json::json!({
            "memory_limit_bytes": limit,
            "memory_usage_bytes": usage,
        })),
        "memory_threshold_bytes": snapshot.memory_threshold_mb.saturating_mul(1024 * 1024),
    })
}

/// The child's tree, plus whatever else lives below gsup (orphans re-parented to it).
pub fn monitor_roots(child: Option<Pid>) -> Vec<monitor::Root> {
    let own = std::process::id() as Pid;
    let mut roots: Vec<monitor::Root> = child.map(monitor::Root::tree).into_iter().collect();
    roots.push(monitor::Root::below(own));
    roots
}

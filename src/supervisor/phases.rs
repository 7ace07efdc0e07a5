//! The graceful shutdown as data: one row per phase, in order (DESIGN §4).
//!
//! `plan` builds the rows from the config; the state machine fills in start, end and
//! outcome; `/status`, the shutdown log and `gsup check --grace-period` read the same rows,
//! so they cannot disagree.

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhaseName {
    StopAccepting,
    Drain,
    PreStop,
    CloseServer,
    WaitExit,
    Force,
    Database,
    Redis,
    External,
    Cleanup,
    Exit,
}

impl PhaseName {
    pub const ALL: [PhaseName; 11] = [
        PhaseName::StopAccepting,
        PhaseName::Drain,
        PhaseName::PreStop,
        PhaseName::CloseServer,
        PhaseName::WaitExit,
        PhaseName::Force,
        PhaseName::Database,
        PhaseName::Redis,
        PhaseName::External,
        PhaseName::Cleanup,
        PhaseName::Exit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::StopAccepting => "stop_accepting",
            PhaseName::Drain => "drain",
            PhaseName::PreStop => "pre_stop",
            PhaseName::CloseServer => "close_server",
            PhaseName::WaitExit => "wait_exit",
            PhaseName::Force => "force",
            PhaseName::Database => "database",
            PhaseName::Redis => "redis",
            PhaseName::External => "external",
            PhaseName::Cleanup => "cleanup",
            PhaseName::Exit => "exit",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Timeout,
    /// A hook failed.
    Failed,
    Killed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::Killed => "killed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One row of the shutdown plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRow {
    pub name: PhaseName,
    /// The phase's own bound (`timeout_seconds` in JSON).
    pub timeout: Duration,
    pub started_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    pub outcome: Option<Outcome>,
    pub detail: String,
}

/// The rows of a shutdown, in order, none started yet.
pub fn plan(config: &Config) -> Vec<PhaseRow> {
    let shutdown = &config.shutdown;
    let phases = &config.phases;
    PhaseName::ALL
        .iter()
        .map(|&name| {
            let timeout = match name {
                PhaseName::StopAccepting | PhaseName::CloseServer | PhaseName::Exit => Duration::ZERO,
                PhaseName::Drain if shutdown.connection_draining => {
                    shutdown.drain_delay.saturating_add(shutdown.max_drain_time)
                }
                PhaseName::Drain => shutdown.drain_delay,
                PhaseName::PreStop | PhaseName::WaitExit => shutdown.timeout,
                PhaseName::Force => shutdown.force_timeout,
                PhaseName::Database => phases.database.timeout,
                PhaseName::Redis => phases.redis.timeout,
                PhaseName::External => phases.external.timeout,
                PhaseName::Cleanup => phases.cleanup.timeout,
            };
            PhaseRow {
                name,
                timeout,
                started_at: None,
                ended_at: None,
                outcome: None,
                detail: String::new(),
            }
        })
        .collect()
}

/// Whether a shutdown with these rows failed (DESIGN §6): the tree needed SIGKILL, or a
/// phase failed, timed out or was killed. A drain that waited `max_drain_time` out is
/// not a failure: requests still in flight are the child's to finish after its signal.
pub fn failed(rows: &[PhaseRow]) -> bool {
    rows.iter().any(|row| match row.outcome {
        Some(Outcome::Failed | Outcome::Killed) => true,
        Some(Outcome::Timeout) => row.name != PhaseName::Drain,
        _ => false,
    }) || {
        let force = &rows[PhaseName::Force as usize];
        force.started_at.is_some() && force.outcome != Some(Outcome::Skipped)
    }
}

/// The phase running now: the first started and not ended, else the first not ended.
pub fn current(rows: &[PhaseRow]) -> Option<PhaseName> {
    rows.iter()
        .find(|row| row.outcome.is_none() && row.started_at.is_some())
        .or_else(|| rows.iter().find(|row| row.outcome.is_none()))
        .map(|row| row.name)
}

/// Operations on the rows of one shutdown.
pub trait Rows {
    fn row_mut(&mut self, name: PhaseName) -> &mut PhaseRow;
    fn start(&mut self, name: PhaseName, now: Instant);
    fn finish(&mut self, name: PhaseName, outcome: Outcome, detail: &str, now: Instant);
    /// Starts and finishes `name` in one go (instant phases and skipped ones).
    fn record(&mut self, name: PhaseName, outcome: Outcome, detail: &str, now: Instant);
    /// Ends every phase before `until` that has not ended: a running one with
    /// `running_outcome`, one never started as `skipped` with `detail`.
    fn close_before(&mut self, until: PhaseName, running_outcome: Outcome, detail: &str, now: Instant);
    fn current(&self) -> Option<PhaseName>;
}

impl Rows for Vec<PhaseRow> {
    fn row_mut(&mut self, name: PhaseName) -> &mut PhaseRow {
        // `plan` always produces every phase, in `PhaseName::ALL` order.
        &mut self[name as usize]
    }

    fn start(&mut self, name: PhaseName, now: Instant) {
        let row = self.row_mut(name);
        if row.started_at.is_none() {
            row.started_at = Some(now);
        }
    }

    fn finish(&mut self, name: PhaseName, outcome: Outcome, detail: &str, now: Instant) {
        let row = self.row_mut(name);
        if row.outcome.is_some() {
            return;
        }
        row.started_at.get_or_insert(now);
        row.ended_at = Some(now);
        row.outcome = Some(outcome);
        row.detail = detail.to_string();
    }

    fn record(&mut self, name: PhaseName, outcome: Outcome, detail: &str, now: Instant) {
        self.start(name, now);
        self.finish(name, outcome, detail, now);
    }

    fn close_before(&mut self, until: PhaseName, running_outcome: Outcome, detail: &str, now: Instant) {
        for name in PhaseName::ALL.into_iter().filter(|&name| name < until) {
            let running = self[name as usize].started_at.is_some();
            let outcome = if running { running_outcome } else { Outcome::Skipped };
            self.finish(name, outcome, detail, now);
        }
    }

    fn current(&self) -> Option<PhaseName> {
        current(self)
    }
}

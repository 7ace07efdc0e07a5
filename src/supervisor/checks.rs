//! Periodic checks (DESIGN §5 readiness sources): the readiness probe (`http`, `tcp`,
//! `exec`) and the `[[dependencies]]`. `tcp` and `http` run on a blocking thread (nothing
//! forks there); `exec` is a process of gsup's, reaped by the one reaper and killed with
//! its group at its timeout. Results go to the state machine as events; this module
//! decides nothing about readiness.

use std::collections::HashSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::debug;

use super::spawn::{self, ChildSpec};
use super::state::{ExitStatus, Pid};
use crate::config::{Config, DependencyCheck, Probe};
use crate::deadline::SaturatingAdd;
use crate::http::client;
use crate::os::{self, ChildSetup};

/// Which check a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckId {
    Readiness,
    /// The child's `READY=1` on its notify socket (`probe = { notify = true }`).
    Notify,
    Dependency(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub id: CheckId,
    /// The generation of the child a readiness result is about (0 for dependencies):
    /// during a reload the probe follows the new one (DESIGN §8).
    pub generation: u64,
    pub ok: bool,
    pub latency: Duration,
    pub detail: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Tcp(String),
    Http(String),
    Exec(Vec<String>),
}

struct Check {
    id: CheckId,
    kind: Kind,
    interval: Duration,
    timeout: Duration,
    next_due: Instant,
    running: Option<Running>,
    /// Run again as soon as the one under way ends: it was for an older generation.
    rerun: bool,
}

impl Check {
    /// The run under way ended: the next is due after the interval, or at once.
    fn ended(&mut self, now: Instant) {
        self.running = None;
        self.next_due = if std::mem::take(&mut self.rerun) {
            now
        } else {
            now.saturating_add(self.interval)
        };
    }
}

struct Running {
    started: Instant,
    deadline: Instant,
    /// An exec check's pid (`None` for tcp/http, which report on the channel).
    pid: Option<Pid>,
    killed: bool,
    /// The generation the readiness probe was started for.
    generation: u64,
}

pub struct Checks {
    checks: Vec<Check>,
    base: ChildSpec,
    setup: ChildSetup,
    results: mpsc::UnboundedSender<CheckResult>,
    /// The generation (and its pid) the readiness probe is about: the newest one.
    probed: (u64, Pid),
}

/// Dependencies have no timeout key: a check may take at most this long, or its
/// interval if that is shorter.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(5);

impl Checks {
    pub fn new(config: &Config, base: ChildSpec, setup: ChildSetup) -> (Self, mpsc::UnboundedReceiver<CheckResult>) {
        let now = Instant::now();
        let mut checks = Vec::new();
        let readiness = &config.readiness;
        let probe = match &readiness.probe {
            Some(Probe::Http(url)) => Some(Kind::Http(url.clone())),
            Some(Probe::Tcp(addr)) => Some(Kind::Tcp(addr.clone())),
            Some(Probe::Exec(argv)) => Some(Kind::Exec(argv.clone())),
            Some(Probe::Notify) | None => None,
        };
        if let Some(kind) = probe {
            let (interval, timeout) = (readiness.interval, readiness.timeout);
            checks.push(Check {
                id: CheckId::Readiness,
                kind,
                interval,
                timeout,
                next_due: now,
                running: None,
                rerun: false,
            });
        }
        for (index, dependency) in config.dependencies.iter().enumerate() {
            let kind = match &dependency.check {
                DependencyCheck::Tcp(addr) => Kind::Tcp(addr.clone()),
                DependencyCheck::Http(url) => Kind::Http(url.clone()),
                DependencyCheck::Exec(argv) => Kind::Exec(argv.clone()),
            };
            checks.push(Check {
                id: CheckId::Dependency(index),
                kind,
                interval: dependency.interval,
                timeout: dependency.interval.min(DEPENDENCY_TIMEOUT),
                next_due: now,
                running: None,
                rerun: false,
            });
        }
        let (results, incoming) = mpsc::unbounded_channel();
        (
            Checks {
                checks,
                base,
                setup,
                results,
                probed: (0, 0),
            },
            incoming,
        )
    }

    /// The readiness probe is now about this generation: probe it at once, and stamp
    /// results with it (an exec probe gets its pid as `GSUP_CHILD_PID`).
    pub fn follow(&mut self, generation: u64, pid: Pid, now: Instant) {
        if self.probed.0 == generation {
            return;
        }
        self.probed = (generation, pid);
        if let Some(check) = self.checks.iter_mut().find(|c| c.id == CheckId::Readiness) {
            // A probe of the older generation under way: the new one's starts when it ends.
            match check.running {
                Some(_) => check.rerun = true,
                None => check.next_due = now,
            }
        }
    }

    /// When `tick` has something to do.
    pub fn next_due(&self, child_running: bool) -> Option<Instant> {
        self.checks
            .iter()
            .filter(|check| child_running || check.id != CheckId::Readiness)
            .map(|check| match &check.running {
                Some(running) if !running.killed => running.deadline,
                Some(_) => Instant::now().saturating_add(Duration::from_secs(3600)),
                None => check.next_due,
            })
            .min()
    }

    /// Starts the checks that are due and kills exec checks past their timeout. The
    /// readiness probe runs only while a child runs.
    pub fn tick(&mut self, now: Instant, child_running: bool) -> Vec<CheckResult> {
        let mut results = Vec::new();
        for index in 0..self.checks.len() {
            let check = &mut self.checks[index];
            if let Some(running) = &mut check.running {
                if running.deadline <= now && !running.killed {
                    match running.pid {
                        // Its exit arrives through the reaper and reports the failure.
                        Some(pid) => {
                            let _ = os::killpg(pid, libc::SIGKILL);
                            running.killed = true;
                        }
                        None => {
                            let latency = now.saturating_duration_since(running.started);
                            let generation = running.generation;
                            check.ended(now);
                            results.push(CheckResult {
                                id: check.id,
                                generation,
                                ok: false,
                                latency,
                                detail: "timed out".into(),
                            });
                        }
                    }
                }
                continue;
            }
            if check.next_due > now || (check.id == CheckId::Readiness && !child_running) {
                continue;
            }
            if let Some(failed) = self.start(index, now) {
                results.push(failed);
            }
        }
        results
    }

    fn start(&mut self, index: usize, now: Instant) -> Option<CheckResult> {
        let check = &mut self.checks[index];
        let deadline = now.saturating_add(check.timeout);
        let generation = if check.id == CheckId::Readiness {
            self.probed.0
        } else {
            0
        };
        match check.kind.clone() {
            Kind::Exec(argv) => {
                let mut spec = ChildSpec {
                    argv,
                    ..self.base.clone()
                };
                if check.id == CheckId::Readiness {
                    spec.env.insert("GSUP_CHILD_PID".into(), self.probed.1.to_string());
                }
                match spawn::spawn_quiet(&spec, self.setup) {
                    Ok(pid) => {
                        check.running = Some(Running {
                            started: now,
                            deadline,
                            pid: Some(pid),
                            killed: false,
                            generation,
                        });
                        None
                    }
                    Err(error) => {
                        check.next_due = now.saturating_add(check.interval);
                        Some(CheckResult {
                            id: check.id,
                            generation,
                            ok: false,
                            latency: Duration::ZERO,
                            detail: error.to_string(),
                        })
                    }
                }
            }
            kind => {
                check.running = Some(Running {
                    started: now,
                    deadline,
                    pid: None,
                    killed: false,
                    generation,
                });
                let (id, timeout, results) = (check.id, check.timeout, self.results.clone());
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let (ok, detail) = match kind {
                        Kind::Tcp(addr) => tcp(&addr, timeout),
                        Kind::Http(url) => http(&url, timeout),
                        Kind::Exec(_) => (false, String::new()),
                    };
                    let _ = results.send(CheckResult {
                        id,
                        generation,
                        ok,
                        latency: started.elapsed(),
                        detail,
                    });
                });
                None
            }
        }
    }

    /// A tcp/http result from its thread: the check may run again after its interval.
    pub fn on_result(&mut self, result: &CheckResult, now: Instant) {
        if let Some(check) = self.checks.iter_mut().find(|c| c.id == result.id) {
            check.ended(now);
        }
    }

    /// A reaped pid: the result of the exec check it belonged to.
    pub fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> Option<CheckResult> {
        let check = self
            .checks
            .iter_mut()
            .find(|c| c.running.as_ref().is_some_and(|r| r.pid == Some(pid)))?;
        let running = check.running.take()?;
        check.ended(now);
        let latency = now.saturating_duration_since(running.started);
        let (ok, detail) = match (running.killed, status) {
            (true, _) => (false, "timed out".to_string()),
            (false, ExitStatus::Code(0)) => (true, "exit 0".to_string()),
            (false, ExitStatus::Code(code)) => (false, format!("exit {code}")),
            (false, ExitStatus::Signal(signal)) => (false, format!("killed by {}", crate::signals::Sig(signal))),
        };
        Some(CheckResult {
            id: check.id,
            generation: running.generation,
            ok,
            latency,
            detail,
        })
    }

    pub fn owns(&self, pid: Pid) -> bool {
        self.pids().contains(&pid)
    }

    /// Pids of running exec checks, left out of the child's tree.
    pub fn pids(&self) -> HashSet<Pid> {
        self.checks.iter().filter_map(|c| c.running.as_ref()?.pid).collect()
    }
}

fn tcp(addr: &str, timeout: Duration) -> (bool, String) {
    let resolved = match addr.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(resolved)) => resolved,
        Ok(None) => return (false, format!("{addr}: no address")),
        Err(error) => return (false, format!("{addr}: {error}")),
    };
    match TcpStream::connect_timeout(&resolved, timeout) {
        Ok(_) => (true, "connected".into()),
        Err(error) => {
            debug!(%addr, %error, "tcp check failed");
            (false, format!("{addr}: {error}"))
        }
    }
}

fn http(url: &str, timeout: Duration) -> (bool, String) {
    match client::request_url("GET", url, timeout) {
        Ok(answer) if (200..300).contains(&answer.status) => (true, format!("{}", answer.status)),
        Ok(answer) => (false, format!("{url}: {}", answer.status)),
        Err(detail) => (false, detail),
    }
}

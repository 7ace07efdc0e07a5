//! Runs the `[[hooks]]` of one shutdown phase at a time (DESIGN §4): in config order, one
//! after another, each bounded by its own timeout and the phase's deadline.
//!
//! An `exec` hook is a process of gsup's (own process group, PDEATHSIG, reaped by the one
//! reaper, which hands its status here); its stdout and stderr go to gsup's log under the
//! hook's name. An `http` hook is one request on a blocking thread. A hook past its
//! deadline is killed with its group. The state machine decides *when* a phase runs and
//! until when; this module only runs it and reports the outcome.

use std::collections::{HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::phases::Outcome;
use super::spawn::{self, ChildSpec};
use super::state::{ExitStatus, Pid};
use crate::config::{Config, HookAction, HookConfig, HookPhase};
use crate::deadline::SaturatingAdd;
use crate::http::client;
use crate::os::{self, ChildSetup};
use crate::signals::Sig;

/// The hooks of `phase` that run, in order: the external ones tagged with a service only
/// when that service's toggle is on; none of redis's with `REDIS_GRACEFUL_CLOSE=false`.
pub fn runnable(config: &Config, phase: HookPhase) -> Vec<usize> {
    if phase == HookPhase::Redis && !config.phases.redis.enabled {
        return Vec::new();
    }
    config
        .hooks
        .iter()
        .enumerate()
        .filter(|(_, hook)| hook.phase == phase)
        .filter(|(_, hook)| {
            hook.service
                .is_none_or(|service| config.phases.external_services.enabled(service))
        })
        .map(|(index, _)| index)
        .collect()
}

/// How a phase's hooks ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    pub phase: HookPhase,
    pub outcome: Outcome,
    pub detail: String,
}

/// News from a hook's helper task: an `http` hook's answer, or the end of an exec hook's
/// output pipe.
#[derive(Debug)]
pub enum HookReport {
    Http {
        run: u64,
        index: usize,
        result: Result<u16, String>,
    },
    OutputClosed {
        run: u64,
        index: usize,
    },
}

/// How long an exited hook's output may take to arrive (a grandchild may keep the pipe
/// open): the phase waits no longer than this for the last lines.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

struct Run {
    id: u64,
    phase: HookPhase,
    queue: VecDeque<usize>,
    deadline: Instant,
    current: Option<Current>,
    outcome: Outcome,
    details: Vec<String>,
}

enum Current {
    Exec {
        index: usize,
        pid: Pid,
        deadline: Instant,
        timed_out: bool,
        /// Its stdout and stderr still open: the hook is done when both closed (or
        /// `OUTPUT_GRACE` after its exit), so its last lines reach the log first.
        open_pipes: u8,
        exited: Option<(ExitStatus, Instant)>,
    },
    Http {
        index: usize,
        deadline: Instant,
    },
}

pub struct HookRunner {
    config: Config,
    /// Environment, workdir and user of exec hooks: the child's.
    base: ChildSpec,
    setup: ChildSetup,
    run: Option<Run>,
    runs: u64,
    /// Exec hooks killed when their phase was cut: reaped quietly.
    abandoned: HashSet<Pid>,
    reports: mpsc::UnboundedSender<HookReport>,
}

impl HookRunner {
    pub fn new(config: Config, base: ChildSpec, setup: ChildSetup) -> (Self, mpsc::UnboundedReceiver<HookReport>) {
        let (reports, incoming) = mpsc::unbounded_channel();
        let runner = HookRunner {
            config,
            base,
            setup,
            run: None,
            runs: 0,
            abandoned: HashSet::new(),
            reports,
        };
        (runner, incoming)
    }

    /// Starts `phase`'s hooks; they must finish by `deadline`. The result comes from
    /// `on_exit`, `on_report` or `on_tick` (or at once, when nothing could start).
    pub fn start(&mut self, phase: HookPhase, deadline: Instant, now: Instant) -> Option<PhaseResult> {
        // A phase cut short whose hook still runs is never left behind (DESIGN §4).
        self.kill();
        self.runs += 1;
        let queue: VecDeque<usize> = runnable(&self.config, phase).into();
        info!(phase = phase.as_str(), hooks = queue.len(), "running hooks");
        self.run = Some(Run {
            id: self.runs,
            phase,
            queue,
            deadline,
            current: None,
            outcome: Outcome::Ok,
            details: Vec::new(),
        });
        self.advance(now)
    }

    /// A reaped pid of a running exec hook: `Some(result)` when that ended the phase.
    pub fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> Option<PhaseResult> {
        let run = self.run.as_mut()?;
        let Some(Current::Exec {
            pid: running,
            open_pipes,
            exited,
            ..
        }) = &mut run.current
        else {
            return None;
        };
        if *running != pid {
            return None;
        }
        *exited = Some((status, now));
        if *open_pipes == 0 { self.exec_done(now) } else { None }
    }

    /// Whether `pid` is a hook's (running, or abandoned and not yet reaped); forgets an
    /// abandoned one once reaped.
    pub fn owns(&mut self, pid: Pid) -> bool {
        if self.abandoned.remove(&pid) {
            return true;
        }
        matches!(&self.run, Some(Run { current: Some(Current::Exec { pid: running, .. }), .. }) if *running == pid)
    }

    pub fn on_report(&mut self, report: HookReport, now: Instant) -> Option<PhaseResult> {
        match report {
            HookReport::Http { run, index, result } => self.on_http(run, index, result, now),
            HookReport::OutputClosed { run: id, index: closed } => {
                let run = self.run.as_mut()?;
                let Some(Current::Exec {
                    index,
                    open_pipes,
                    exited,
                    ..
                }) = &mut run.current
                else {
                    return None;
                };
                if run.id != id || *index != closed {
                    return None;
                }
                *open_pipes = open_pipes.saturating_sub(1);
                if *open_pipes == 0 && exited.is_some() {
                    self.exec_done(now)
                } else {
                    None
                }
            }
        }
    }

    /// Kills a hook past its deadline (an http one ends here, an exec one when reaped),
    /// and ends an exited hook whose output did not close within `OUTPUT_GRACE`.
    pub fn on_tick(&mut self, now: Instant) -> Option<PhaseResult> {
        let run = self.run.as_mut()?;
        match &mut run.current {
            Some(Current::Exec {
                exited: Some((_, at)), ..
            }) if *at + OUTPUT_GRACE <= now => self.exec_done(now),
            Some(Current::Exec {
                pid,
                deadline,
                timed_out,
                index,
                exited: None,
                ..
            }) if *deadline <= now && !*timed_out => {
                warn!(hook = %self.config.hooks[*index].name, pid = *pid, "hook timed out: SIGKILL to its group");
                *timed_out = true;
                let _ = os::killpg(*pid, libc::SIGKILL);
                None
            }
            Some(Current::Http { deadline, index }) if *deadline <= now => {
                let name = self.config.hooks[*index].name.clone();
                warn!(hook = %name, "http hook timed out");
                self.finish_hook(Outcome::Timeout, format!("{name}: no answer by its timeout"), now)
            }
            _ => None,
        }
    }

    /// The phase was cut (the graceful deadline, the end of the force window): SIGKILL the
    /// running hook's group and forget the phase.
    pub fn kill(&mut self) {
        let Some(run) = self.run.take() else { return };
        if let Some(Current::Exec { pid, exited, .. }) = run.current {
            let _ = os::killpg(pid, libc::SIGKILL);
            if exited.is_none() {
                self.abandoned.insert(pid);
            }
        }
        warn!(phase = run.phase.as_str(), "hooks cut short: killed");
    }

    /// When `on_tick` has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.run.as_ref()?.current {
            Some(Current::Exec {
                exited: Some((_, at)), ..
            }) => Some(*at + OUTPUT_GRACE),
            Some(
                Current::Exec {
                    deadline,
                    timed_out: false,
                    ..
                }
                | Current::Http { deadline, .. },
            ) => Some(*deadline),
            _ => None,
        }
    }

    /// Pids of hook processes, left out of the child's tree.
    pub fn pids(&self) -> HashSet<Pid> {
        let mut pids = self.abandoned.clone();
        if let Some(Run {
            current: Some(Current::Exec { pid, .. }),
            ..
        }) = &self.run
        {
            pids.insert(*pid);
        }
        pids
    }

    fn on_http(&mut self, id: u64, done: usize, result: Result<u16, String>, now: Instant) -> Option<PhaseResult> {
        let run = self.run.as_mut()?;
        if run.id != id || !matches!(run.current, Some(Current::Http { index, .. }) if index == done) {
            return None;
        }
        let hook = &self.config.hooks[done];
        let HookAction::Http { expect, .. } = &hook.action else {
            return None;
        };
        let (outcome, detail) = match result {
            Ok(status) if status == *expect => (Outcome::Ok, format!("{}: {status}", hook.name)),
            Ok(status) => (Outcome::Failed, format!("{}: {status}, expected {expect}", hook.name)),
            Err(error) => (Outcome::Failed, format!("{}: {error}", hook.name)),
        };
        self.finish_hook(outcome, detail, now)
    }

    /// The exec hook exited and its output is in: its outcome, then the next hook.
    fn exec_done(&mut self, now: Instant) -> Option<PhaseResult> {
        let run = self.run.as_mut()?;
        let Some(Current::Exec {
            index,
            timed_out,
            exited: Some((status, _)),
            ..
        }) = &run.current
        else {
            return None;
        };
        let (index, timed_out, status) = (*index, *timed_out, *status);
        let name = &self.config.hooks[index].name;
        let (outcome, detail) = match (timed_out, status) {
            (true, _) => (Outcome::Timeout, format!("{name}: killed at its timeout")),
            (false, ExitStatus::Code(0)) => (Outcome::Ok, format!("{name}: exit 0")),
            (false, ExitStatus::Code(code)) => (Outcome::Failed, format!("{name}: exit {code}")),
            (false, ExitStatus::Signal(signal)) => (Outcome::Failed, format!("{name}: killed by {}", Sig(signal))),
        };
        self.finish_hook(outcome, detail, now)
    }

    fn finish_hook(&mut self, outcome: Outcome, detail: String, now: Instant) -> Option<PhaseResult> {
        let run = self.run.as_mut()?;
        run.current = None;
        info!(phase = run.phase.as_str(), outcome = outcome.as_str(), %detail, "hook finished");
        run.outcome = worse(run.outcome, outcome);
        run.details.push(detail);
        self.advance(now)
    }

    /// Starts the next hook, or ends the phase when none is left or time is up.
    fn advance(&mut self, now: Instant) -> Option<PhaseResult> {
        loop {
            let run = self.run.as_mut()?;
            if run.current.is_some() {
                return None;
            }
            let Some(index) = run.queue.pop_front() else {
                let run = self.run.take()?;
                let detail = if run.details.is_empty() {
                    "no hooks".to_string()
                } else {
                    run.details.join("; ")
                };
                return Some(PhaseResult {
                    phase: run.phase,
                    outcome: run.outcome,
                    detail,
                });
            };
            if run.deadline <= now {
                let left = run.queue.len() + 1;
                run.queue.clear();
                run.outcome = worse(run.outcome, Outcome::Timeout);
                run.details.push(format!("phase bound reached: {left} hook(s) not run"));
                continue;
            }
            let hook = self.config.hooks[index].clone();
            let deadline = hook
                .timeout
                .map_or(run.deadline, |timeout| now.saturating_add(timeout).min(run.deadline));
            let id = run.id;
            match self.launch(id, index, &hook, deadline, now) {
                Ok(current) => {
                    if let Some(run) = self.run.as_mut() {
                        run.current = Some(current);
                    }
                    return None;
                }
                Err(detail) => {
                    let run = self.run.as_mut()?;
                    warn!(hook = %hook.name, %detail, "hook could not start");
                    run.outcome = worse(run.outcome, Outcome::Failed);
                    run.details.push(detail);
                }
            }
        }
    }

    fn launch(
        &self,
        run: u64,
        index: usize,
        hook: &HookConfig,
        deadline: Instant,
        now: Instant,
    ) -> Result<Current, String> {
        match &hook.action {
            HookAction::Exec(argv) => {
                let spec = ChildSpec {
                    argv: argv.clone(),
                    ..self.base.clone()
                };
                let (pid, stdout, stderr) =
                    spawn::spawn_piped(&spec, self.setup).map_err(|error| format!("{}: {error}", hook.name))?;
                info!(hook = %hook.name, pid, "hook started");
                let mut open_pipes = 0;
                for (stream, fd) in [("stdout", OwnedFd::from(stdout)), ("stderr", OwnedFd::from(stderr))] {
                    let reports = self.reports.clone();
                    let closed = move || {
                        let _ = reports.send(HookReport::OutputClosed { run, index });
                    };
                    open_pipes += u8::from(log_lines(&hook.name, stream, fd, closed));
                }
                Ok(Current::Exec {
                    index,
                    pid,
                    deadline,
                    timed_out: false,
                    open_pipes,
                    exited: None,
                })
            }
            HookAction::Http { url, method, .. } => {
                let (url, method) = (url.clone(), method.clone());
                let timeout = deadline.saturating_duration_since(now);
                let reports = self.reports.clone();
                info!(hook = %hook.name, %method, %url, "hook started");
                // A blocking request on its own thread: it never holds up the event loop,
                // and gsup forks nothing from that thread.
                tokio::task::spawn_blocking(move || {
                    let result = client::request_url(&method, &url, timeout).map(|answer| answer.status);
                    let _ = reports.send(HookReport::Http { run, index, result });
                });
                Ok(Current::Http { index, deadline })
            }
        }
    }
}

/// The longest line of hook output gsup logs; a longer one is cut into pieces this long.
const MAX_LINE: usize = 8 * 1024;

/// Logs each line a hook writes, under its name, until the pipe closes; then calls
/// `closed`. Returns whether it reads (false: the pipe could not be registered).
///
/// Bytes, not text (DESIGN §5): shown as lossy UTF-8, cut at `MAX_LINE`, and read until
/// EOF whatever arrives, so a hook that prints binary is never killed by SIGPIPE and one
/// that never prints a newline cannot grow gsup's memory.
fn log_lines(hook: &str, stream: &'static str, fd: OwnedFd, closed: impl FnOnce() + Send + 'static) -> bool {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return false;
    };
    let hook = hook.to_string();
    tokio::spawn(async move {
        let mut lines = Lines::default();
        let mut buffer = vec![0u8; MAX_LINE];
        // A `\r` before the newline goes too, as `lines()` did.
        let log = |line: &[u8]| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            info!(hook = %hook, stream, "{}", String::from_utf8_lossy(line));
        };
        loop {
            match pipe.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => lines.push(&buffer[..n], log),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    warn!(hook = %hook, stream, %error, "cannot read the hook's output");
                    break;
                }
            }
        }
        lines.finish(log);
        closed();
    });
    true
}

/// Splits bytes into lines of at most `MAX_LINE` bytes (without their `\n`).
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let newline = bytes[..bytes.len().min(room)].iter().position(|&b| b == b'\n');
            let taken = match newline {
                Some(at) => {
                    self.partial.extend_from_slice(&bytes[..at]);
                    at + 1
                }
                None => {
                    let taken = bytes.len().min(room);
                    self.partial.extend_from_slice(&bytes[..taken]);
                    taken
                }
            };
            bytes = &bytes[taken..];
            if newline.is_some() || self.partial.len() == MAX_LINE {
                emit(&self.partial);
                self.partial.clear();
            }
        }
    }

    /// What is left after the last newline, at EOF.
    fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// The phase's outcome is its worst hook's: killed > timeout > failed > ok.
fn worse(a: Outcome, b: Outcome) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Ok | Outcome::Skipped => 0,
        Outcome::Failed => 1,
        Outcome::Timeout => 2,
        Outcome::Killed => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExternalService, HookConfig};

    fn hook(phase: HookPhase, service: Option<ExternalService>) -> HookConfig {
        HookConfig {
            phase,
            name: "h".into(),
            action: HookAction::Exec(vec!["true".into()]),
            timeout: None,
            service,
        }
    }

    #[test]
    fn toggles_decide_which_hooks_run() {
        let mut config = Config {
            hooks: vec![
                hook(HookPhase::External, Some(ExternalService::Payment)),
                hook(HookPhase::External, Some(ExternalService::Ai)),
                hook(HookPhase::External, None),
                hook(HookPhase::Redis, None),
                hook(HookPhase::PreStop, None),
            ],
            ..Config::default()
        };
        assert_eq!(runnable(&config, HookPhase::External), vec![0, 1, 2]);
        config.phases.external_services.payment = false;
        assert_eq!(runnable(&config, HookPhase::External), vec![1, 2]);
        assert_eq!(runnable(&config, HookPhase::Redis), vec![3]);
        config.phases.redis.enabled = false;
        assert!(runnable(&config, HookPhase::Redis).is_empty());
        assert_eq!(runnable(&config, HookPhase::PreStop), vec![4]);
        assert!(runnable(&config, HookPhase::Cleanup).is_empty());
    }

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(chunk, |line| out.push(line.to_vec()));
        }
        lines.finish(|line| out.push(line.to_vec()));
        out
    }

    #[test]
    fn output_is_cut_into_lines_of_at_most_8_kib() {
        assert_eq!(split(&[b"a\nb", b"c\n\nd"]), [&b"a"[..], b"bc", b"", b"d"]);
        assert_eq!(split(&[b"caf\xe9\n"]), [b"caf\xe9"]);
        let long = vec![b'x'; 2 * MAX_LINE + 5];
        let cut = split(&[&long[..100], &long[100..]]);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [MAX_LINE, MAX_LINE, 5]);
        // A newline right after a full piece ends an empty line, as written.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(split(&[&exact]).iter().map(Vec::len).collect::<Vec<_>>(), [MAX_LINE, 0]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any bytes in any chunks: no line is longer than `MAX_LINE`, none holds a
        /// newline, and nothing but the newlines is lost.
        #[test]
        fn any_output_splits_without_loss(
            chunks in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![b'\n', b'a', 0xe9, 0]), 0..20_000),
                0..4,
            ),
        ) {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let lines = split(&refs);
            proptest::prop_assert!(lines.iter().all(|l| l.len() <= MAX_LINE && !l.contains(&b'\n')));
            let kept: usize = lines.iter().map(Vec::len).sum();
            let sent: Vec<u8> = chunks.concat();
            let newlines = sent.iter().filter(|&&b| b == b'\n').count();
            proptest::prop_assert_eq!(kept, sent.len() - newlines);
        }
    }

    #[test]
    fn the_worst_outcome_wins() {
        assert_eq!(worse(Outcome::Ok, Outcome::Failed), Outcome::Failed);
        assert_eq!(worse(Outcome::Timeout, Outcome::Failed), Outcome::Timeout);
        assert_eq!(worse(Outcome::Killed, Outcome::Ok), Outcome::Killed);
    }
}

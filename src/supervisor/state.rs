//! The one state machine that owns the child (DESIGN §4).
//!
//! `State::step` takes one `Event` and returns the `Action`s the event loop must perform.
//! It performs no process, file or network I/O (it may log), so every edge case — a second
//! signal, a deadline, backoff, the crash-loop limit — is a cheap deterministic unit test.
//! The lifecycle name shown by `/status` is derived from the fields, never stored twice.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libc::c_int;
use tracing::{debug, error, info, warn};

use super::checks::{CheckId, CheckResult};
use super::hooks::{self, PhaseResult};
use super::phases::{self, Outcome, PhaseName, PhaseRow, Rows};
use crate::config::{Config, ForwardTo, HookPhase, MonitorAction, Probe, RestartPolicy};
use crate::deadline::SaturatingAdd;
use crate::signals::Sig;

pub type Pid = i32;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(c_int),
}

impl ExitStatus {
    /// The shell convention: the code, or 128+N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => 128 + signal,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The signal that killed the process, by name (logs, `/status`).
    pub fn signal_name(self) -> Option<String> {
        match self {
            ExitStatus::Signal(signal) => Some(Sig(signal).to_string()),
            ExitStatus::Code(_) => None,
        }
    }
}

/// Everything the supervisor reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// gsup is up: start the first child.
    Start,
    /// The loop spawned the child asked for by `Action::Spawn`.
    Spawned {
        pid: Pid,
    },
    /// The program could not be started: 127 not found, 126 not executable.
    SpawnFailed {
        code: i32,
    },
    /// The exec shim could not execute the program (it reported its `execve` errno): a
    /// failed start like `SpawnFailed`, 127/126 whatever the restart policy (DESIGN §8).
    ExecFailed {
        pid: Pid,
        code: i32,
    },
    /// The kernel lacked a resource to start the child (EMFILE, EAGAIN…): counts as an exit
    /// with code 1, for the restart policy (DESIGN §4 Resources).
    SpawnOutOfResources,
    /// A signal for gsup (never SIGCHLD, which wakes the reaper). `sender` is the pid
    /// that sent it, when the kernel says.
    Signal {
        signal: c_int,
        sender: Option<Pid>,
    },
    /// The reaper collected the main child.
    ChildExited {
        pid: Pid,
        status: ExitStatus,
    },
    /// The main child was stopped (Ctrl+Z, SIGSTOP): reported through `WUNTRACED`.
    ChildStopped {
        pid: Pid,
        signal: c_int,
    },
    /// Periodic look at what is left of the tree while the machine waits for it to go.
    Poll {
        tree_empty: bool,
    },
    Timer(Timer),
    Command(Command),
    /// The hooks of a phase started by `Action::RunHooks` ended.
    HooksDone(PhaseResult),
    /// A sample of the child's inbound connections (DESIGN §4): every monitor interval,
    /// every 100 ms while the drain waits for in-flight requests.
    Connections {
        active: u64,
        inflight: u64,
    },
    /// A monitor sample of the child's whole tree (DESIGN §7).
    Sample {
        rss_bytes: u64,
        cpu_percent: f64,
    },
    /// A readiness probe or dependency check ended.
    Check(CheckResult),
    /// The child of `generation` sent no `WATCHDOG=1` within `[notify] watchdog` of being
    /// ready or of its last one (DESIGN §9).
    WatchdogMissed {
        generation: u64,
    },
}

/// Requests from the control surfaces (HTTP, control socket, monitor).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shutdown {
        reason: String,
    },
    Kill {
        reason: String,
    },
    /// A Kubernetes preStop (`ctl prestop`, GET `/prestop`): readiness off until gsup
    /// exits; the drain of the shutdown that follows waits only what remains of
    /// `drain_delay` since then.
    Prestop,
    /// A zero-downtime reload (DESIGN §8): `ctl reload`, POST `/reload`, `[reload] signal`.
    /// The loop asks `reload_refusal` first, so it can answer a refusal.
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// `drain_delay` is over: send the stop signal.
    DrainEnd,
    /// trigger + `timeout`: SIGKILL whatever remains.
    GracefulDeadline,
    /// end of the `force_timeout` window: exit whatever still runs.
    ForceDeadline,
    /// The child exited on its own and the rest of its tree got the stop signal: SIGKILL
    /// what is left at this point.
    StragglerKill,
    /// The stragglers got SIGKILL and still show: give up waiting.
    StragglerGiveUp,
    /// Backoff is over: start the next generation.
    Restart,
    /// `max_drain_time` is over: stop waiting for in-flight requests.
    DrainMax,
    /// `startup_timeout` after a start with a readiness probe: not ready by then is a
    /// failed start.
    Startup,
    /// A failed start got the stop signal `timeout` ago: SIGKILL.
    StartupKill,
    /// `startup_timeout` after a reload's new generation started: not ready by then is a
    /// failed reload.
    ReloadStartup,
    /// The earliest SIGKILL due to a retiring generation's group.
    Retire,
    /// A child that missed its watchdog got `watchdog_signal` `timeout` ago: SIGKILL.
    WatchdogKill,
}

/// Where a forwarded signal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Group(Pid),
    Child(Pid),
}

/// What the event loop must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start the next generation of the child; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// Send a signal to the child or its group (counted as forwarded).
    Forward {
        target: Target,
        signal: c_int,
    },
    /// Send a signal to the last child's group and to every remaining descendant of gsup.
    SignalTree {
        signal: c_int,
    },
    /// Send a signal to one process group (a retiring generation's; not counted).
    SignalGroup {
        pgid: Pid,
        signal: c_int,
    },
    /// A reload began (tell systemd `RELOADING=1`).
    ReloadStarted {
        id: u64,
    },
    /// A reload has its outcome: count it, answer who waits, tell systemd `READY=1`.
    ReloadDone(ReloadRecord),
    Arm(Timer, Instant),
    Disarm(Timer),
    /// Stop gsup itself with this signal (job control); returns when continued.
    StopSelf(c_int),
    /// Make this process group the terminal's foreground group.
    Foreground(Pid),
    /// Run the hooks of `phase`, all done by `deadline`; answer with `HooksDone`.
    RunHooks {
        phase: HookPhase,
        deadline: Instant,
    },
    /// SIGKILL the running hook (its phase was cut short) and forget the phase.
    KillHooks,
    /// Log "graceful shutdown started" (after the stop signal it precedes in time, so
    /// formatting and writing the line does not delay the forward).
    ShutdownStarted,
    /// A monitor restart's stop is over: the loop counts and reports it.
    ShutdownDone(Shutdown),
    /// A threshold held for `sustain`: count and log it (the machine acts on it itself).
    Breached {
        resource: Resource,
        value: f64,
        threshold: f64,
    },
    Exit(i32),
}

/// The `/status` `state` (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Starting,
    Running,
    Draining,
    Stopping,
    Killing,
    Cleanup,
    Exited,
    Restarting,
    Reloading,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Starting => "starting",
            Lifecycle::Running => "running",
            Lifecycle::Draining => "draining",
            Lifecycle::Stopping => "stopping",
            Lifecycle::Killing => "killing",
            Lifecycle::Cleanup => "cleanup",
            Lifecycle::Exited => "exited",
            Lifecycle::Restarting => "restarting",
            Lifecycle::Reloading => "reloading",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunningChild {
    pub pid: Pid,
    /// The child leads its own group, so pgid = pid.
    pub pgid: Pid,
    pub generation: u64,
    pub started_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExitRecord {
    pub pid: Pid,
    pub status: ExitStatus,
    pub at: Instant,
    pub generation: u64,
    pub uptime: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shutdown {
    pub reason: String,
    pub started_at: Instant,
    pub deadline: Instant,
    /// Set once `force` began: the end of the `force_timeout` window.
    pub force_deadline: Option<Instant>,
    /// A restart asked for by the monitor: the phases up to `force`, then a new child
    /// instead of the post-stop phases and exit (DESIGN §4 Restarts).
    pub restart: bool,
}

/// A zero-downtime reload that runs (DESIGN §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    pub id: u64,
    pub started_at: Instant,
    /// The generation that served when the reload began.
    pub old_pid: Pid,
    /// The new generation once spawned; it replaces the old one when ready. After the old
    /// one exited during the reload, it is `child` too.
    pub new: Option<RunningChild>,
    /// The old one's exit, when it exited during the reload.
    pub old_exit: Option<ExitRecord>,
}

/// The outcome of a reload, for `/status` `last_reload` and `ctl reload`: the reload as
/// it ended (its `old_exit` filled in later, once the old generation has gone).
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadRecord {
    pub reload: Reload,
    pub ok: bool,
    pub detail: String,
    pub duration: Duration,
}

impl ReloadRecord {
    pub fn new_pid(&self) -> Option<Pid> {
        self.reload.new.as_ref().map(|c| c.pid)
    }
}

/// A generation on its way out: the old one after a reload, or a new one that failed.
/// Its exit never reaches the restart policy; its group gets SIGKILL at `kill_at`.
#[derive(Debug, Clone, PartialEq)]
struct Retiring {
    child: RunningChild,
    /// `None` once the SIGKILL went out.
    kill_at: Option<Instant>,
    exited: bool,
}

/// What a threshold watches (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Memory,
    Cpu,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Cpu => "cpu",
        }
    }
}

/// One threshold's state: over it since when, and whether that held for `sustain`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Threshold {
    pub over_since: Option<Instant>,
    pub breached: bool,
    pub value: f64,
    pub limit: f64,
}

/// The child exited on its own (no shutdown): the rest of its tree is being stopped
/// before gsup restarts it or exits.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Aftermath {
    killed: bool,
}

/// Restart bookkeeping (DESIGN §4 Restarts).
#[derive(Debug, Clone, Default, PartialEq)]
struct Restarts {
    /// Restarts in a row, reset when a child stays up for `window`.
    consecutive: u32,
    /// When each recent restart happened, for the crash-loop limit.
    recent: VecDeque<Instant>,
    total: u64,
    /// Backoff running: the next start is due then.
    pending_at: Option<Instant>,
}

/// A dependency check's latest result, for `/health`.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyStatus {
    pub name: String,
    pub critical: bool,
    /// The latest result and when it came; `None` before the first.
    pub last: Option<(CheckResult, Instant)>,
}

/// Inbound connections of the child's tree (DESIGN §4), as last sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCount {
    pub active: u64,
    pub inflight: u64,
}

/// Facts about gsup itself that the machine needs and cannot look up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Host {
    pub own_pid: Pid,
    pub own_pgid: Pid,
    /// Interactive: the child's group is handed the terminal, and gsup follows its job
    /// control stops.
    pub tty: bool,
    /// gsup holds listening sockets for the child (`[[listen]]`, systemd's): reloads work.
    pub sockets: bool,
    /// TSTP/TTIN/TTOU sent to gsup stop gsup itself (with SIGSTOP) once forwarded: no
    /// terminal, not PID 1, no systemd watchdog (DESIGN §4 Spawning).
    pub self_stop: bool,
}

#[derive(Debug, Clone)]
pub struct State {
    config: Config,
    host: Host,
    generation: u64,
    child: Option<RunningChild>,
    /// Process group of the latest child, for the stragglers after it exited.
    last_pgid: Option<Pid>,
    last_exit: Option<ExitRecord>,
    shutdown: Option<Shutdown>,
    /// The rows of the current shutdown (a fresh plan until one starts).
    phases: Vec<PhaseRow>,
    aftermath: Option<Aftermath>,
    prestop_at: Option<Instant>,
    /// The drain waits until no inbound request is in flight.
    awaiting_inflight: bool,
    /// The latest connection sample, and the one when the shutdown began.
    connections: Option<ConnectionCount>,
    connections_at_trigger: Option<ConnectionCount>,
    /// "graceful shutdown started" is owed: `Action::ShutdownStarted` asked the loop for
    /// it (after the stop signal), and nothing of this module logged since.
    announce_owed: bool,
    /// [memory, cpu].
    thresholds: [Threshold; 2],
    /// The run ends because of a failure gsup detected (monitor shutdown, a restart
    /// limit): the exit code is the child's if non-zero, else 1 (DESIGN §2).
    failure_exit: bool,
    /// The child (by pid) that missed its watchdog: its exit is a failure (DESIGN §4
    /// Restarts), and `WatchdogKill` is for it alone.
    watchdog_missed: Option<Pid>,
    /// The readiness probe's latest result for this child (`None`: none yet, or no probe).
    probe_ok: Option<bool>,
    /// The latest readiness result's detail (`URL: 503`, `exit 1`), for `/ready`'s reason.
    probe_detail: Option<String>,
    /// The latest result of each `[[dependencies]]` entry, and when it came.
    dependencies: Vec<Option<(CheckResult, Instant)>>,
    restarts: Restarts,
    /// The child (with a readiness probe) has not been ready since it started, or failed
    /// its start and is being stopped: no reload then (DESIGN §11).
    startup_pending: bool,
    /// The child stopped as a failed start: `StartupKill` is for it alone, never for a
    /// later generation.
    failed_start: Option<Pid>,
    reload: Option<Reload>,
    last_reload: Option<ReloadRecord>,
    /// Reloads begun so far (their ids).
    reloads: u64,
    retiring: Vec<Retiring>,
    exited: Option<i32>,
}

impl State {
    pub fn new(config: Config, host: Host) -> Self {
        State {
            host,
            generation: 0,
            child: None,
            last_pgid: None,
            last_exit: None,
            shutdown: None,
            phases: phases::plan(&config),
            aftermath: None,
            prestop_at: None,
            awaiting_inflight: false,
            connections: None,
            connections_at_trigger: None,
            announce_owed: false,
            thresholds: [Threshold::default(); 2],
            failure_exit: false,
            watchdog_missed: None,
            probe_ok: None,
            probe_detail: None,
            dependencies: vec![None; config.dependencies.len()],
            restarts: Restarts::default(),
            startup_pending: false,
            failed_start: None,
            reload: None,
            last_reload: None,
            reloads: 0,
            retiring: Vec::new(),
            exited: None,
            config,
        }
    }

    pub fn child(&self) -> Option<&RunningChild> {
        self.child.as_ref()
    }

    pub fn last_exit(&self) -> Option<&ExitRecord> {
        self.last_exit.as_ref()
    }

    pub fn shutdown(&self) -> Option<&Shutdown> {
        self.shutdown.as_ref()
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.total
    }

    /// How many children have started so far.
    pub fn generation_count(&self) -> u64 {
        self.generation
    }

    #[cfg(test)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn last_pgid(&self) -> Option<Pid> {
        self.last_pgid
    }

    pub fn reload(&self) -> Option<&Reload> {
        self.reload.as_ref()
    }

    pub fn last_reload(&self) -> Option<&ReloadRecord> {
        self.last_reload.as_ref()
    }

    /// Whether `pid` is a generation of the child: the current one, a reload's new one, or
    /// one retiring. Their exits are `ChildExited`; anything else reaped is an orphan.
    pub fn is_generation(&self, pid: Pid) -> bool {
        self.child.as_ref().is_some_and(|c| c.pid == pid)
            || self.reload_new().is_some_and(|c| c.pid == pid)
            || self.retiring.iter().any(|r| r.child.pid == pid && !r.exited)
    }

    /// The newest generation (a reload's new one, else the child): the one forwarded
    /// signals and the readiness probe are for.
    pub fn newest(&self) -> Option<&RunningChild> {
        self.reload_new().or(self.child.as_ref())
    }

    fn reload_new(&self) -> Option<&RunningChild> {
        self.reload.as_ref().and_then(|r| r.new.as_ref())
    }

    /// Why a reload cannot start now, or `None` when it can (DESIGN §8: 409, `ctl` exit 1).
    pub fn reload_refusal(&self) -> Option<&'static str> {
        if !self.host.sockets {
            return Some(
                "no sockets are configured ([[listen]] or inherited from systemd): a zero-downtime reload needs them",
            );
        }
        if self.exited.is_some() || self.shutdown.is_some() {
            return Some("a shutdown is running");
        }
        if self.prestop_at.is_some() {
            return Some("a preStop has started: gsup is about to shut down");
        }
        if self.reload.is_some() {
            return Some("a reload is already running");
        }
        if self.child.is_none() || self.aftermath.is_some() {
            return Some("no child is running");
        }
        if self.startup_pending {
            return Some("the child has not become ready since it started");
        }
        None
    }

    /// Ready (DESIGN §5): a child runs, the readiness probe (if any) passes, no critical
    /// dependency fails, and no shutdown or preStop has started.
    pub fn ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why not ready, or `None` when ready.
    pub fn not_ready(&self) -> Option<String> {
        if self.shutdown.is_some() {
            return Some("shutting down".into());
        }
        if self.prestop_at.is_some() {
            return Some("prestop: readiness off until gsup exits".into());
        }
        if self.child.is_none() {
            return Some(match self.lifecycle() {
                Lifecycle::Restarting => "child restarting".into(),
                _ => "child not running".into(),
            });
        }
        if let Some(probe) = &self.config.readiness.probe
            && self.probe_ok != Some(true)
        {
            return Some(self.probe_waiting(probe));
        }
        let failing = self
            .config
            .dependencies
            .iter()
            .zip(&self.dependencies)
            .find(|(dependency, result)| dependency.critical && result.as_ref().is_some_and(|(r, _)| !r.ok));
        failing.map(|(dependency, _)| format!("critical dependency {} failing", dependency.name))
    }

    /// What readiness waits for, naming the probe and its latest answer (DESIGN §2).
    fn probe_waiting(&self, probe: &Probe) -> String {
        let (what, detail) = match probe {
            Probe::Notify => return "waiting for READY=1 on NOTIFY_SOCKET".into(),
            // Their details start with the URL or address.
            Probe::Http(url) => (format!("http probe {url}"), "http probe "),
            Probe::Tcp(addr) => (format!("tcp probe {addr}"), "tcp probe "),
            Probe::Exec(argv) => {
                let what = format!("exec probe {}", argv.join(" "));
                let failing = self.probe_detail.as_ref().map(|detail| format!("{what}: {detail}"));
                return failing.unwrap_or_else(|| format!("waiting for {what}"));
            }
        };
        match &self.probe_detail {
            Some(latest) => format!("{detail}{latest}"),
            None => format!("waiting for {what}"),
        }
    }

    /// Each dependency with its latest result, for `/health`.
    pub fn dependency_results(&self) -> Vec<DependencyStatus> {
        self.config
            .dependencies
            .iter()
            .zip(&self.dependencies)
            .map(|(dependency, result)| DependencyStatus {
                name: dependency.name.clone(),
                critical: dependency.critical,
                last: result.clone(),
            })
            .collect()
    }

    /// The child once ready (its readiness probe passed, or it runs when there is none):
    /// its watchdog clock runs from then (DESIGN §9).
    pub fn ready_child(&self) -> Option<&RunningChild> {
        let probed = self.config.readiness.probe.is_some();
        self.child.as_ref().filter(|_| !probed || self.probe_ok == Some(true))
    }

    /// Whether any generation of the child runs (`gsup_child_up`): the serving one, a
    /// reload's new one, or one retiring.
    pub fn generation_running(&self) -> bool {
        self.child.is_some() || self.reload_new().is_some() || self.retiring.iter().any(|r| !r.exited)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The loop samples connections every 100 ms while this holds (DESIGN §7).
    pub fn awaiting_inflight(&self) -> bool {
        self.awaiting_inflight
    }

    /// Memory and CPU thresholds as last sampled (`/health` shows a breached one).
    pub fn thresholds(&self) -> [(Resource, Threshold); 2] {
        [
            (Resource::Memory, self.thresholds[0]),
            (Resource::Cpu, self.thresholds[1]),
        ]
    }

    /// The latest connection sample.
    pub fn connections(&self) -> Option<ConnectionCount> {
        self.connections
    }

    /// The connection sample taken when the shutdown began.
    pub fn connections_at_trigger(&self) -> Option<ConnectionCount> {
        self.connections_at_trigger
    }

    pub fn prestop_at(&self) -> Option<Instant> {
        self.prestop_at
    }

    /// The rows of the current (or last) shutdown.
    pub fn phases(&self) -> &[PhaseRow] {
        &self.phases
    }

    pub fn lifecycle(&self) -> Lifecycle {
        if self.exited.is_some() {
            return Lifecycle::Exited;
        }
        if self.shutdown.is_some() {
            return match self.phases.current() {
                Some(PhaseName::StopAccepting | PhaseName::Drain | PhaseName::PreStop) => Lifecycle::Draining,
                Some(PhaseName::CloseServer | PhaseName::WaitExit) => Lifecycle::Stopping,
                // The stragglers of an exited child wait for the deadline before `force`.
                Some(PhaseName::Force) if self.phases[PhaseName::Force as usize].started_at.is_none() => {
                    Lifecycle::Stopping
                }
                Some(PhaseName::Force) => Lifecycle::Killing,
                _ => Lifecycle::Cleanup,
            };
        }
        if self.reload.is_some() {
            return Lifecycle::Reloading;
        }
        if let Some(aftermath) = self.aftermath {
            return if aftermath.killed {
                Lifecycle::Killing
            } else {
                Lifecycle::Stopping
            };
        }
        if self.restarts.pending_at.is_some() {
            return Lifecycle::Restarting;
        }
        if self.child.is_some() {
            Lifecycle::Running
        } else {
            Lifecycle::Starting
        }
    }

    /// The loop polls the tree (and sends `Poll`) while this is true: the child is gone
    /// and what is left of its tree must go before gsup moves on.
    pub fn awaiting_tree(&self) -> bool {
        self.exited.is_none()
            && self.child.is_none()
            && (self.aftermath.is_some()
                || self.shutdown.as_ref().is_some() && self.phases[PhaseName::Force as usize].outcome.is_none())
            && self.last_exit.is_some()
    }

    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.exited.is_some() {
            return actions;
        }
        match event {
            Event::Start => actions.push(Action::Spawn),
            Event::Spawned { pid } => self.on_spawned(pid, now, &mut actions),
            Event::SpawnFailed { code } if self.reload.is_some() => {
                let detail = format!("cannot start the new generation (exit {code})");
                self.fail_reload(detail, now, &mut actions);
            }
            Event::SpawnFailed { code } => self.exit(code, &mut actions),
            Event::SpawnOutOfResources if self.reload.is_some() => {
                let detail = "cannot start the new generation: out of resources".to_string();
                self.fail_reload(detail, now, &mut actions);
            }
            Event::SpawnOutOfResources => self.start_out_of_resources(now, &mut actions),
            Event::ExecFailed { pid, code } => self.on_exec_failed(pid, code, now, &mut actions),
            Event::Signal { signal, sender } => self.on_signal(signal, sender, now, &mut actions),
            Event::ChildExited { pid, status } => self.on_child_exit(pid, status, now, &mut actions),
            Event::ChildStopped { pid, signal } => {
                if self.host.tty && self.child.as_ref().is_some_and(|c| c.pid == pid) {
                    actions.push(Action::StopSelf(signal));
                }
            }
            Event::Poll { tree_empty } => self.on_poll(tree_empty, now, &mut actions),
            Event::Timer(timer) => self.on_timer(timer, now, &mut actions),
            Event::Command(Command::Shutdown { reason }) => {
                if self.shutdown.is_none() {
                    self.begin_shutdown(reason, now, &mut actions);
                }
            }
            Event::Command(Command::Kill { reason }) => self.force(reason, now, &mut actions),
            Event::HooksDone(result) => self.on_hooks_done(result, now, &mut actions),
            Event::Check(result) => self.on_check(result, now, &mut actions),
            Event::WatchdogMissed { generation } => self.on_watchdog_missed(generation, now, &mut actions),
            Event::Sample { rss_bytes, cpu_percent } => self.on_sample(rss_bytes, cpu_percent, now, &mut actions),
            Event::Connections { active, inflight } => {
                self.connections = Some(ConnectionCount { active, inflight });
                if self.awaiting_inflight && inflight == 0 {
                    self.end_drain(Outcome::Ok, "no inbound request in flight".into(), now, &mut actions);
                }
            }
            Event::Command(Command::Reload) => self.begin_reload(now, &mut actions),
            Event::Command(Command::Prestop) => {
                if self.prestop_at.is_none() {
                    info!("prestop: readiness off until gsup exits");
                    self.prestop_at = Some(now);
                }
            }
        }
        actions
    }

    /// `watchdog_signal` to the child, SIGKILL `timeout` later if it is still there, and
    /// its exit becomes a failure: the restart policy decides; unrestarted, gsup exits with
    /// its code if non-zero, else 1 (DESIGN §4, §9).
    fn on_watchdog_missed(&mut self, generation: u64, now: Instant, actions: &mut Vec<Action>) {
        let Some(child) = self.child.as_ref().filter(|c| c.generation == generation) else {
            return;
        };
        let signal = self.config.notify.watchdog_signal;
        error!(pid = child.pid, signal = %Sig(signal), "child missed its watchdog");
        self.watchdog_missed = Some(child.pid);
        actions.push(Action::Forward {
            target: Target::Child(child.pid),
            signal,
        });
        actions.push(Action::Arm(
            Timer::WatchdogKill,
            now.saturating_add(self.config.shutdown.timeout),
        ));
    }

    fn on_check(&mut self, result: CheckResult, now: Instant, actions: &mut Vec<Action>) {
        match result.id {
            CheckId::Readiness | CheckId::Notify => {
                // A reload's new generation: ready ends the reload (DESIGN §8).
                if self.reload_new().is_some_and(|new| new.generation == result.generation) {
                    if result.ok {
                        info!(detail = %result.detail, "new generation ready");
                        self.complete_reload(now, actions);
                    }
                    return;
                }
                // Results about an earlier generation say nothing about this one.
                if self.child.as_ref().is_none_or(|c| c.generation != result.generation) {
                    return;
                }
                if self.probe_ok != Some(result.ok) {
                    // Logged once per change, not once per probe.
                    info!(ok = result.ok, detail = %result.detail, "readiness probe changed");
                }
                if result.ok {
                    self.startup_pending = false;
                    actions.push(Action::Disarm(Timer::Startup));
                }
                self.probe_ok = Some(result.ok);
                self.probe_detail = Some(result.detail);
            }
            CheckId::Dependency(index) => {
                let Some(slot) = self.dependencies.get_mut(index) else {
                    return;
                };
                if slot.as_ref().is_none_or(|(last, _)| last.ok != result.ok) {
                    let name = self
                        .config
                        .dependencies
                        .get(index)
                        .map(|d| d.name.clone())
                        .unwrap_or_default();
                    info!(dependency = %name, ok = result.ok, detail = %result.detail, "dependency changed");
                }
                *slot = Some((result, now));
            }
        }
    }

    fn on_spawned(&mut self, pid: Pid, now: Instant, actions: &mut Vec<Action>) {
        self.generation += 1;
        let started = RunningChild {
            pid,
            pgid: pid,
            generation: self.generation,
            started_at: now,
        };
        let has_probe = self.config.readiness.probe.is_some();
        if let Some(reload) = self.reload.as_mut().filter(|r| r.new.is_none()) {
            info!(pid, generation = self.generation, "new generation started (reload)");
            reload.new = Some(started);
            if has_probe {
                let at = now.saturating_add(self.config.restart.startup_timeout);
                actions.push(Action::Arm(Timer::ReloadStartup, at));
            } else {
                // With no probe a child is ready once it runs (DESIGN §5).
                self.complete_reload(now, actions);
            }
            return;
        }
        self.child = Some(started);
        self.last_pgid = Some(pid);
        self.probe_ok = None;
        self.probe_detail = None;
        self.failed_start = None;
        self.watchdog_missed = None;
        self.startup_pending = has_probe;
        info!(pid, generation = self.generation, "child started");
        if has_probe {
            actions.push(Action::Arm(
                Timer::Startup,
                now.saturating_add(self.config.restart.startup_timeout),
            ));
        }
    }

    fn begin_reload(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(why) = self.reload_refusal() {
            warn!(reason = why, "reload refused");
            return;
        }
        let Some(old) = &self.child else { return };
        self.reloads += 1;
        info!(id = self.reloads, old_pid = old.pid, "reload started");
        self.reload = Some(Reload {
            id: self.reloads,
            started_at: now,
            old_pid: old.pid,
            new: None,
            old_exit: None,
        });
        actions.push(Action::ReloadStarted { id: self.reloads });
        actions.push(Action::Spawn);
    }

    /// The new generation is ready: it becomes the child, and the old one (if still
    /// there) gets the stop signal and, after `timeout`, SIGKILL. No phases, no drain wait:
    /// the kernel queues new connections on the shared socket throughout (DESIGN §8).
    fn complete_reload(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(reload) = self.reload.take() else { return };
        let Some(new) = reload.new.clone() else { return };
        actions.push(Action::Disarm(Timer::ReloadStartup));
        if let Some(old) = self.child.take_if(|c| c.pid != new.pid) {
            self.retire(&old, now, actions);
        }
        self.child = Some(new.clone());
        self.last_pgid = Some(new.pgid);
        self.startup_pending = false;
        if self.config.readiness.probe.is_some() {
            self.probe_ok = Some(true);
        }
        self.record_reload(reload, true, "new generation ready".into(), now, actions);
    }

    /// The reload failed: a new generation still running gets the stop sequence; the old
    /// one keeps serving (DESIGN §8).
    fn fail_reload(&mut self, detail: String, now: Instant, actions: &mut Vec<Action>) {
        let Some(reload) = self.reload.take() else { return };
        actions.push(Action::Disarm(Timer::ReloadStartup));
        error!(%detail, "reload failed: the old generation keeps serving");
        let promoted = reload
            .new
            .as_ref()
            .is_some_and(|new| self.child.as_ref().is_some_and(|c| c.pid == new.pid));
        if let Some(new) = reload.new.as_ref().filter(|_| !promoted) {
            self.retire(new, now, actions);
        }
        self.record_reload(reload, false, detail, now, actions);
    }

    fn record_reload(&mut self, reload: Reload, ok: bool, detail: String, now: Instant, actions: &mut Vec<Action>) {
        let record = ReloadRecord {
            duration: now.saturating_duration_since(reload.started_at),
            reload,
            ok,
            detail,
        };
        if ok {
            info!(
                id = record.reload.id,
                old_pid = record.reload.old_pid,
                new_pid = record.new_pid(),
                duration_ms = record.duration.as_millis() as u64,
                "reload done"
            );
        }
        self.last_reload = Some(record.clone());
        actions.push(Action::ReloadDone(record));
    }

    /// `stop_signal` (after rewrite, per `forward_to`) to a generation leaving, and its
    /// group's SIGKILL after `timeout`.
    fn retire(&mut self, leaving: &RunningChild, now: Instant, actions: &mut Vec<Action>) {
        let target = self.target_of(leaving);
        actions.push(Action::Forward {
            target,
            signal: self.config.effective_stop_signal(),
        });
        self.retiring.push(Retiring {
            child: leaving.clone(),
            kill_at: Some(now.saturating_add(self.config.shutdown.timeout)),
            exited: false,
        });
        self.arm_retire(actions);
    }

    /// Forgets the retiring generations that exited and got their SIGKILL; arms the next.
    fn arm_retire(&mut self, actions: &mut Vec<Action>) {
        self.retiring.retain(|r| !(r.exited && r.kill_at.is_none()));
        match self.retiring.iter().filter_map(|r| r.kill_at).min() {
            Some(at) => actions.push(Action::Arm(Timer::Retire, at)),
            None => actions.push(Action::Disarm(Timer::Retire)),
        }
    }

    /// A retiring generation exited: recorded in `last_reload` when it was the old one;
    /// the rest of its group gets the stop signal (it had it already with `forward_to =
    /// "group"`), and SIGKILL at the kill time.
    fn on_retired_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant, actions: &mut Vec<Action>) {
        let Some(retiring) = self.retiring.iter_mut().find(|r| r.child.pid == pid && !r.exited) else {
            return;
        };
        retiring.exited = true;
        let exit = exit_record(&retiring.child, status, now);
        let pgid = retiring.child.pgid;
        info!(
            pid,
            code = status.code(),
            signal = status.signal_name().as_deref(),
            uptime_ms = exit.uptime.as_millis() as u64,
            "retired generation exited"
        );
        if let Some(record) = self.last_reload.as_mut().filter(|r| r.reload.old_pid == pid) {
            record.reload.old_exit = Some(exit);
        }
        actions.push(Action::SignalGroup {
            pgid,
            signal: self.config.effective_stop_signal(),
        });
        self.arm_retire(actions);
    }

    fn on_signal(&mut self, signal: c_int, sender: Option<Pid>, now: Instant, actions: &mut Vec<Action>) {
        if sender == Some(self.host.own_pid) {
            // e.g. SIGPIPE from writing to a closed stderr: gsup's own business (DESIGN §4).
            return;
        }
        let name = Sig(signal);
        if sender.is_none() && crate::signals::FAULT_SIGNALS.contains(&signal) {
            // Not sent by a process: a fault is gsup's own and the kernel's to deliver
            // (DESIGN §4 Signals); never forwarded.
            warn!(signal = %name, "fault signal not sent by a process: not forwarded");
            return;
        }
        let from_terminal = self.host.tty && sender.is_none() && matches!(signal, libc::SIGINT | libc::SIGQUIT);
        if from_terminal && self.child.is_none() {
            // Ctrl+C / Ctrl+\ while gsup's own group holds the terminal (backoff, the
            // stragglers, post-stop hooks): gsup's to act on, never ignored (DESIGN §4).
            if self.shutdown.is_none() {
                return self.begin_shutdown(format!("terminal {name}"), now, actions);
            }
            return self.force(format!("terminal {name}"), now, actions);
        }
        // Ctrl+C / Ctrl+\ typed while gsup's own group held the terminal with a child
        // running (the instant after `fg`, before gsup hands it back): meant for the
        // program, as without gsup.
        // `[reload] signal` reloads only when there are sockets to reload on; else it is
        // forwarded like any other (DESIGN §3).
        if self.host.sockets && signal == self.config.reload.signal {
            debug!(signal = %name, sender, "reload signal received");
            return self.begin_reload(now, actions);
        }
        if self.config.signals.shutdown_on.contains(&signal) && !from_terminal {
            if self.shutdown.is_none() {
                debug!(signal = %name, sender, "shutdown signal received");
                return self.begin_shutdown(format!("signal {name}"), now, actions);
            }
            if self.config.signals.repeat_forces {
                warn!(signal = %name, "shutdown signal repeated: forcing");
                return self.force(format!("signal {name} (repeated)"), now, actions);
            }
        }
        if signal == libc::SIGCONT && self.host.tty {
            // `fg`/`bg` in the shell continued gsup: give the terminal back to the child's
            // group when gsup's job is in the foreground (the loop checks that).
            if let Some(child) = &self.child {
                actions.push(Action::Foreground(child.pgid));
            }
        }
        self.forward(signal, actions);
        if self.host.self_stop && matches!(signal, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
            // Without a terminal the kernel discards these in an orphaned group (gsup's,
            // under systemd): stop as dumb-init does, with SIGSTOP; SIGCONT resumes gsup
            // and is forwarded (DESIGN §4 Spawning).
            actions.push(Action::StopSelf(libc::SIGSTOP));
        }
    }

    /// Where a signal for `child` goes: its group or itself (`forward_to`).
    fn target_of(&self, child: &RunningChild) -> Target {
        match self.config.signals.forward_to {
            ForwardTo::Group => Target::Group(child.pgid),
            ForwardTo::Child => Target::Child(child.pid),
        }
    }

    /// Forwarded signals go to the newest generation (DESIGN §8).
    fn forward(&self, received: c_int, actions: &mut Vec<Action>) {
        let Some(child) = self.newest() else {
            info!(signal = %Sig(received), "no child running: signal not forwarded");
            return;
        };
        let Some(signal) = self.config.signals.rewritten(received) else {
            info!(signal = %Sig(received), "signal dropped by the rewrite map");
            return;
        };
        let target = self.target_of(child);
        actions.push(Action::Forward { target, signal });
    }

    fn begin_shutdown(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) {
        let first = actions.len();
        self.drain_and_stop(reason, now, actions);
        // The stop signal goes first; "graceful shutdown started" right after it.
        let Some(announce) = actions[first..]
            .iter()
            .position(|action| *action == Action::ShutdownStarted)
            .map(|at| first + at)
        else {
            return;
        };
        if let Some(forward) = actions[announce..]
            .iter()
            .position(|action| matches!(action, Action::Forward { .. }))
            .map(|at| announce + at)
        {
            let shutdown_started = actions.remove(announce);
            actions.insert(forward, shutdown_started);
        }
    }

    fn drain_and_stop(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) {
        if !self.open_shutdown(reason, now, actions) {
            if self.phases[PhaseName::Force as usize].outcome.is_some() {
                // Nothing was left to stop (restart backoff): the post-stop phases.
                self.post_stop(now, actions);
            }
            return;
        }
        let deadline = now.saturating_add(self.config.shutdown.timeout);
        // After a preStop, only what remains of drain_delay since then (DESIGN §4).
        let drain_delay = match self.prestop_at {
            Some(since) => self
                .config
                .shutdown
                .drain_delay
                .saturating_sub(now.saturating_duration_since(since)),
            None => self.config.shutdown.drain_delay,
        };
        let draining = self.config.shutdown.connection_draining && !self.config.shutdown.max_drain_time.is_zero();
        if drain_delay.is_zero() && !draining {
            let detail = if self.config.shutdown.drain_delay.is_zero() {
                "drain_delay is 0"
            } else {
                "drain_delay already waited out since the preStop"
            };
            self.rows().record(PhaseName::Drain, Outcome::Skipped, detail, now);
            return self.pre_stop(now, actions);
        }
        self.rows().start(PhaseName::Drain, now);
        if drain_delay.is_zero() {
            self.wait_for_inflight(now, actions);
        } else {
            actions.push(Action::Arm(
                Timer::DrainEnd,
                now.saturating_add(drain_delay).min(deadline),
            ));
        }
    }

    /// With connection draining on: hold the stop signal until no inbound request is in
    /// flight, at most `max_drain_time` from now and never past the graceful deadline.
    fn wait_for_inflight(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(deadline) = self.shutdown.as_ref().map(|s| s.deadline) else {
            return;
        };
        self.awaiting_inflight = true;
        actions.push(Action::Arm(
            Timer::DrainMax,
            now.saturating_add(self.config.shutdown.max_drain_time).min(deadline),
        ));
    }

    fn stop_awaiting_inflight(&mut self, actions: &mut Vec<Action>) {
        if std::mem::take(&mut self.awaiting_inflight) {
            actions.push(Action::Disarm(Timer::DrainMax));
        }
    }

    fn end_drain(&mut self, outcome: Outcome, detail: String, now: Instant, actions: &mut Vec<Action>) {
        self.stop_awaiting_inflight(actions);
        self.rows().finish(PhaseName::Drain, outcome, &detail, now);
        self.pre_stop(now, actions);
    }

    /// The line `Action::ShutdownStarted` asks for, once per shutdown: the loop writes it
    /// after the stop signal, or `finish` before "shutdown complete" when the shutdown
    /// ends in the step that opened it. (A reload cut by the shutdown is logged first.)
    pub fn log_shutdown_started(&mut self) {
        if !std::mem::take(&mut self.announce_owed) {
            return;
        }
        if let Some(shutdown) = &self.shutdown {
            let reason = &shutdown.reason;
            info!(%reason, timeout_ms = self.config.shutdown.timeout.as_millis() as u64, "graceful shutdown started");
        }
    }

    /// Starts the shutdown's bookkeeping: the rows, readiness off, the graceful deadline.
    /// Returns whether a running child is left to drain and stop; the cases without one
    /// (restart backoff, stragglers of an exited child) are settled here.
    fn open_shutdown(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) -> bool {
        let deadline = now.saturating_add(self.config.shutdown.timeout);
        self.phases = phases::plan(&self.config);
        self.phases
            .record(PhaseName::StopAccepting, Outcome::Ok, "readiness off", now);
        // Logged by the loop (`log_shutdown_started`), after the stop signal when this
        // step sends one: the log write must not delay the forward (issue 14). A shutdown
        // that ends in this same step (no child left to stop) logs it before its own end.
        actions.push(Action::ShutdownStarted);
        self.announce_owed = true;
        self.connections_at_trigger = self.connections;
        self.fail_reload("a shutdown started".into(), now, actions);
        self.shutdown = Some(Shutdown {
            reason,
            started_at: now,
            deadline,
            force_deadline: None,
            restart: false,
        });

        actions.push(Action::Arm(Timer::GracefulDeadline, deadline));
        if self.restarts.pending_at.take().is_some() {
            // Backoff was running: there is no child to stop; the caller runs the
            // post-stop phases (DESIGN §4 Restarts).
            actions.push(Action::Disarm(Timer::Restart));
            self.rows().close_before(
                PhaseName::Database,
                Outcome::Skipped,
                "no child running (restart backoff)",
                now,
            );
            return false;
        }
        if self.aftermath.take().is_some() {
            // The child had exited on its own and its stragglers were being stopped: they
            // now get the shutdown's deadlines.
            actions.push(Action::Disarm(Timer::StragglerKill));
            actions.push(Action::Disarm(Timer::StragglerGiveUp));
            self.rows()
                .close_before(PhaseName::Force, Outcome::Skipped, "child had already exited", now);
            return false;
        }
        true
    }

    /// `pre_stop`: its hooks, bounded by the graceful deadline, then `close_server`.
    fn pre_stop(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(deadline) = self.shutdown.as_ref().map(|s| s.deadline) else {
            return;
        };
        if hooks::runnable(&self.config, HookPhase::PreStop).is_empty() || self.child.is_none() {
            self.rows()
                .record(PhaseName::PreStop, Outcome::Skipped, "no pre_stop hooks", now);
            return self.close_server(now, actions);
        }
        self.rows().start(PhaseName::PreStop, now);
        actions.push(Action::RunHooks {
            phase: HookPhase::PreStop,
            deadline,
        });
    }

    /// The stop signal (after rewrite) to the group or the child, then `wait_exit`.
    fn close_server(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let stop = self.config.effective_stop_signal();
        match &self.child {
            Some(child) => {
                let target = self.target_of(child);
                actions.push(Action::Forward { target, signal: stop });
                let detail = format!("{} sent", Sig(stop));
                self.rows().record(PhaseName::CloseServer, Outcome::Ok, &detail, now);
                self.rows().start(PhaseName::WaitExit, now);
            }
            None => {
                self.rows().record(
                    PhaseName::CloseServer,
                    Outcome::Skipped,
                    "child had already exited",
                    now,
                );
            }
        }
    }

    fn on_child_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant, actions: &mut Vec<Action>) {
        if self.retiring.iter().any(|r| r.child.pid == pid && !r.exited) {
            return self.on_retired_exit(pid, status, now, actions);
        }
        let serving = self.child.as_ref().is_some_and(|c| c.pid == pid);
        if self.reload_new().is_some_and(|n| n.pid == pid) {
            if !serving {
                // The new generation died before it was ready: the old one keeps serving.
                self.fail_reload(format!("new generation {}", describe(status)), now, actions);
                return self.on_retired_exit(pid, status, now, actions);
            }
            // It had taken over from an old one that exited; now it failed too: the reload
            // fails and the restart policy decides, as for any exit (DESIGN §8).
            let detail = format!("new generation {} before it was ready", describe(status));
            self.fail_reload(detail, now, actions);
        } else if serving && self.reload.is_some() {
            return self.old_exited_during_reload(status, now, actions);
        }
        let Some(child) = self.child.take_if(|c| c.pid == pid) else {
            return;
        };
        if self.failed_start.take().is_some() {
            // Its stragglers get the aftermath's own stop and SIGKILL below.
            actions.push(Action::Disarm(Timer::StartupKill));
        }
        let exit = exit_record(&child, status, now);
        let uptime = exit.uptime;
        self.last_exit = Some(exit);
        info!(
            pid,
            code = status.code(),
            signal = status.signal_name().as_deref(),
            uptime_ms = uptime.as_millis() as u64,
            "child exited"
        );
        if self.host.tty {
            actions.push(Action::Foreground(self.host.own_pgid));
        }
        // Whatever is left of the tree gets the stop signal at once, whatever
        // `forward_to` says (DESIGN §4); `Poll` tells when it is gone.
        let stop = self.config.effective_stop_signal();
        actions.push(Action::SignalTree { signal: stop });
        if self.shutdown.is_some() {
            let detail = match status {
                ExitStatus::Code(code) => format!("child exited with code {code}"),
                ExitStatus::Signal(signal) => format!("child killed by {}", Sig(signal)),
            };
            let rows = &mut self.phases;
            if rows[PhaseName::Force as usize].started_at.is_none() {
                rows.close_before(PhaseName::WaitExit, Outcome::Skipped, &detail, now);
                rows.finish(PhaseName::WaitExit, Outcome::Ok, &detail, now);
                actions.push(Action::Disarm(Timer::DrainEnd));
                self.stop_awaiting_inflight(actions);
            }
        } else {
            self.aftermath = Some(Aftermath { killed: false });
            actions.push(Action::Arm(
                Timer::StragglerKill,
                now.saturating_add(self.config.shutdown.timeout),
            ));
        }
    }

    /// The old generation exited while a reload runs: recorded, its group stopped, and
    /// the new generation becomes the child — ready or not; the reload goes on (DESIGN §8).
    fn old_exited_during_reload(&mut self, status: ExitStatus, now: Instant, actions: &mut Vec<Action>) {
        let Some(old) = self.child.take() else { return };
        let exit = exit_record(&old, status, now);
        info!(
            pid = old.pid,
            code = status.code(),
            signal = status.signal_name().as_deref(),
            "child exited during a reload: the new generation takes over"
        );
        self.last_exit = Some(exit);
        actions.push(Action::SignalGroup {
            pgid: old.pgid,
            signal: self.config.effective_stop_signal(),
        });
        self.retiring.push(Retiring {
            child: old,
            kill_at: Some(now.saturating_add(self.config.shutdown.timeout)),
            exited: true,
        });
        self.arm_retire(actions);
        let Some(reload) = &mut self.reload else { return };
        reload.old_exit = Some(exit);
        match reload.new.clone() {
            Some(new) => {
                self.last_pgid = Some(new.pgid);
                self.child = Some(new);
                self.probe_ok = None;
                self.probe_detail = None;
                self.startup_pending = self.config.readiness.probe.is_some();
            }
            None => self.fail_reload(
                "the old generation exited before the new one started".into(),
                now,
                actions,
            ),
        }
    }

    fn on_poll(&mut self, tree_empty: bool, now: Instant, actions: &mut Vec<Action>) {
        if !self.awaiting_tree() {
            return;
        }
        if tree_empty {
            return self.tree_gone(now, actions);
        }
        let forcing = self.phases[PhaseName::Force as usize].started_at.is_some() && self.shutdown.is_some();
        if forcing || self.aftermath.is_some_and(|a| a.killed) {
            // Processes forked while the last SIGKILL went out: send it again. Before
            // `force`, what is left has its stop signal and the graceful deadline.
            actions.push(Action::SignalTree { signal: libc::SIGKILL });
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, actions: &mut Vec<Action>) {
        match timer {
            Timer::WatchdogKill => {
                let pid = self.child.as_ref().map(|c| c.pid);
                if pid.is_some() && pid == self.watchdog_missed && self.shutdown.is_none() {
                    warn!(pid, "child still alive after watchdog_signal: SIGKILL");
                    if let Some(pid) = pid {
                        actions.push(Action::Forward {
                            target: Target::Child(pid),
                            signal: libc::SIGKILL,
                        });
                    }
                }
            }
            Timer::DrainEnd => {
                let row = &self.phases[PhaseName::Drain as usize];
                let drain_running = self.shutdown.is_some() && row.started_at.is_some() && row.outcome.is_none();
                if drain_running {
                    let draining =
                        self.config.shutdown.connection_draining && !self.config.shutdown.max_drain_time.is_zero();
                    if draining {
                        self.wait_for_inflight(now, actions);
                    } else {
                        self.end_drain(Outcome::Ok, "drain_delay elapsed".into(), now, actions);
                    }
                }
            }
            Timer::ReloadStartup => {
                let promoted = self.reload_new().is_some_and(|n| self.child.as_ref() == Some(n));
                let detail = format!(
                    "new generation not ready within startup_timeout ({} ms)",
                    self.config.restart.startup_timeout.as_millis()
                );
                self.fail_reload(detail, now, actions);
                if promoted {
                    // No old one left to serve: a failed start like any other.
                    self.stop_failed_start(now, actions);
                }
            }
            Timer::Retire => {
                for retiring in &mut self.retiring {
                    if retiring.kill_at.is_some_and(|at| at <= now) {
                        retiring.kill_at = None;
                        warn!(
                            pid = retiring.child.pid,
                            "retired generation outlived timeout: SIGKILL to its group"
                        );
                        actions.push(Action::SignalGroup {
                            pgid: retiring.child.pgid,
                            signal: libc::SIGKILL,
                        });
                    }
                }
                self.arm_retire(actions);
            }
            Timer::Startup => {
                if self.child.is_some() && self.shutdown.is_none() && self.probe_ok != Some(true) {
                    self.stop_failed_start(now, actions);
                }
            }
            Timer::StartupKill => {
                let failed = self.failed_start.take();
                if failed.is_some() && self.child.as_ref().map(|c| c.pid) == failed && self.shutdown.is_none() {
                    actions.push(Action::SignalTree { signal: libc::SIGKILL });
                }
            }
            Timer::DrainMax => {
                if self.awaiting_inflight {
                    let inflight = self.connections.map_or(0, |c| c.inflight);
                    let detail = format!("{inflight} request(s) still in flight after max_drain_time");
                    self.end_drain(Outcome::Timeout, detail, now, actions);
                }
            }
            Timer::GracefulDeadline => {
                if self.shutdown.as_ref().is_none_or(|s| s.force_deadline.is_some()) {
                    return;
                }
                let detail = "graceful deadline reached";
                if self.phases[PhaseName::Force as usize].outcome.is_some() {
                    warn!("graceful deadline reached during the post-stop phases: killing the running hook");
                    return self.open_force_window(detail, now, actions);
                }
                self.stop_awaiting_inflight(actions);
                // `wait_exit` cut by the deadline ends `timeout`; one that never started
                // (a pre_stop hook ran until then) is closed below with the rest.
                if self.phases[PhaseName::WaitExit as usize].started_at.is_some() {
                    self.phases.finish(PhaseName::WaitExit, Outcome::Timeout, detail, now);
                }
                self.phases.close_before(PhaseName::Force, Outcome::Killed, detail, now);
                warn!("graceful deadline reached: killing what is left of the tree");
                self.begin_force(now, actions);
            }
            Timer::ForceDeadline => {
                actions.push(Action::KillHooks);
                error!(
                    "force_timeout window over: processes of the tree did not go away after SIGKILL; exiting anyway"
                );
                if self.shutdown.is_some() {
                    self.phases.finish(
                        PhaseName::Force,
                        Outcome::Timeout,
                        "tree still present at the end of force_timeout",
                        now,
                    );
                }
                self.finish(now, actions);
            }
            Timer::StragglerKill => {
                if let Some(aftermath) = &mut self.aftermath {
                    warn!("processes of the exited child's tree outlived the stop signal: SIGKILL");
                    aftermath.killed = true;
                    actions.push(Action::SignalTree { signal: libc::SIGKILL });
                    actions.push(Action::Arm(
                        Timer::StragglerGiveUp,
                        now.saturating_add(self.config.shutdown.force_timeout),
                    ));
                }
            }
            Timer::StragglerGiveUp => {
                if self.aftermath.is_some() {
                    error!("processes of the exited child's tree survived SIGKILL; moving on");
                    self.tree_gone(now, actions);
                }
            }
            Timer::Restart => {
                if self.restarts.pending_at.take().is_some() {
                    self.restarts.total += 1;
                    self.restarts.recent.push_back(now);
                    info!(restart = self.restarts.total, "restarting the child");
                    actions.push(Action::Spawn);
                }
            }
        }
    }

    /// A failed start: stop it; its exit then goes to the restart policy.
    fn stop_failed_start(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.startup_pending = true;
        self.failed_start = self.child.as_ref().map(|c| c.pid);
        error!(
            startup_timeout_ms = self.config.restart.startup_timeout.as_millis() as u64,
            "child not ready within startup_timeout: stopping it"
        );
        actions.push(Action::SignalTree {
            signal: self.config.effective_stop_signal(),
        });
        actions.push(Action::Arm(
            Timer::StartupKill,
            now.saturating_add(self.config.shutdown.timeout),
        ));
    }

    /// A forced shutdown (second signal, DELETE, `ctl kill`): straight to `force`.
    fn force(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) {
        if self.shutdown.is_none() {
            self.open_shutdown(reason.clone(), now, actions);
        }
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        if shutdown.force_deadline.is_some() {
            return;
        }
        if self.phases[PhaseName::Force as usize].outcome.is_some() {
            // Nothing of the tree is left (post-stop phases, or a restart backoff): what
            // remains of them runs in the force window.
            return self.open_force_window(&format!("forced: {reason}"), now, actions);
        }
        let detail = format!("forced: {reason}");
        self.phases
            .close_before(PhaseName::Force, Outcome::Killed, &detail, now);
        actions.push(Action::Disarm(Timer::DrainEnd));
        actions.push(Action::Disarm(Timer::GracefulDeadline));
        self.stop_awaiting_inflight(actions);
        self.begin_force(now, actions);
    }

    fn begin_force(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let window_end = now.saturating_add(self.config.shutdown.force_timeout);
        let Some(shutdown) = &mut self.shutdown else {
            return;
        };
        shutdown.force_deadline = Some(window_end);
        self.phases.start(PhaseName::Force, now);
        // A hook still running (pre_stop) goes with the tree: its group gets SIGKILL too.
        actions.push(Action::KillHooks);
        actions.push(Action::SignalTree { signal: libc::SIGKILL });
        actions.push(Action::Arm(Timer::ForceDeadline, window_end));
    }

    /// The force window opens once the tree is gone (the graceful deadline or a forced
    /// shutdown during the post-stop phases, a forced one with no child): the running
    /// hook's group gets SIGKILL, the phases left share `force_timeout` (DESIGN §4 budget).
    fn open_force_window(&mut self, detail: &str, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::KillHooks);
        let window_end = now.saturating_add(self.config.shutdown.force_timeout);
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.force_deadline = Some(window_end);
        }
        actions.push(Action::Disarm(Timer::GracefulDeadline));
        actions.push(Action::Arm(Timer::ForceDeadline, window_end));
        if let Some(running) = self.running_post_phase() {
            self.phases.finish(running, Outcome::Killed, detail, now);
        }
        self.post_stop(now, actions);
    }

    /// Nothing of the tree remains: finish the shutdown, or restart, or exit.
    fn tree_gone(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::Disarm(Timer::StragglerKill));
        actions.push(Action::Disarm(Timer::StragglerGiveUp));
        if self.shutdown.is_some() {
            if self.phases[PhaseName::PreStop as usize].started_at.is_some() {
                // The child exited while a pre_stop hook ran: the hook's group goes now,
                // before any post-stop hook starts (DESIGN §4).
                actions.push(Action::KillHooks);
            }
            if self.phases[PhaseName::Force as usize].started_at.is_some() {
                self.phases
                    .finish(PhaseName::Force, Outcome::Ok, "tree gone after SIGKILL", now);
            } else {
                self.phases
                    .record(PhaseName::Force, Outcome::Skipped, "nothing of the tree remained", now);
            }
            if self.shutdown.as_ref().is_some_and(|s| s.restart) {
                return self.restart_after_stop(now, actions);
            }
            return self.post_stop(now, actions);
        }
        if self.aftermath.take().is_some() {
            self.after_own_exit(now, actions);
        }
    }

    /// The serving child's program never ran (the exec shim reported it): gsup ends with
    /// 127/126 as for `SpawnFailed`. A reload's new generation fails the reload, as for
    /// any exit of it.
    fn on_exec_failed(&mut self, pid: Pid, code: i32, now: Instant, actions: &mut Vec<Action>) {
        let serving = self.child.as_ref().is_some_and(|c| c.pid == pid);
        if !serving || self.reload.is_some() {
            return self.on_child_exit(pid, ExitStatus::Code(code), now, actions);
        }
        if let Some(child) = self.child.take() {
            self.last_exit = Some(exit_record(&child, ExitStatus::Code(code), now));
        }
        self.exit(code, actions);
    }

    /// A start the kernel refused for lack of a resource: an exit with code 1 of a child
    /// that never ran, for the restart policy (DESIGN §4 Resources).
    fn start_out_of_resources(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.last_exit = Some(ExitRecord {
            pid: 0,
            status: ExitStatus::Code(1),
            at: now,
            generation: self.generation,
            uptime: Duration::ZERO,
        });
        self.after_own_exit(now, actions);
    }

    /// The child exited on its own and its tree is gone: restart or exit (DESIGN §4).
    fn after_own_exit(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(exit) = self.last_exit else { return };
        let restart = &self.config.restart;
        let failed = !exit.status.success() || self.watchdog_missed.is_some();
        let wanted = match restart.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !wanted {
            // A missed watchdog is a failure: no exit_code_map for it (DESIGN §2, §9).
            self.failure_exit |= self.watchdog_missed.is_some();
            return self.end_after_exit(format!("child {}", describe(exit.status)), now, actions);
        }
        while self
            .restarts
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= restart.window)
        {
            self.restarts.recent.pop_front();
        }
        if self.restarts.recent.len() >= restart.max_restarts as usize {
            let code = match exit.status.code() {
                0 => 1,
                code => code,
            };
            error!(
                max_restarts = restart.max_restarts,
                window_ms = restart.window.as_millis() as u64,
                code,
                "crash loop: restart limit reached, giving up"
            );
            self.failure_exit = true;
            return self.end_after_exit("crash loop: restart limit reached".into(), now, actions);
        }
        if exit.uptime >= restart.window {
            self.restarts.consecutive = 0;
        }
        self.restarts.consecutive += 1;
        let delay = backoff(restart.backoff_initial, restart.backoff_max, self.restarts.consecutive);
        let at = exit.at.saturating_add(delay);
        info!(delay_ms = delay.as_millis() as u64, policy = ?restart.policy, "child will be restarted");
        self.restarts.pending_at = Some(at);
        actions.push(Action::Arm(Timer::Restart, at));
    }

    /// The child's own exit ends gsup: a full shutdown with nothing left to stop, so the
    /// post-stop phases run before the exit (DESIGN §4 Restarts).
    fn end_after_exit(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) {
        self.open_shutdown(reason, now, actions);
        self.rows()
            .close_before(PhaseName::Force, Outcome::Skipped, "child had already exited", now);
        self.rows()
            .record(PhaseName::Force, Outcome::Skipped, "nothing of the tree remained", now);
        self.post_stop(now, actions);
    }

    /// DESIGN §7 thresholds: breached once over for `sustain`; cleared when back under.
    fn on_sample(&mut self, rss_bytes: u64, cpu_percent: f64, now: Instant, actions: &mut Vec<Action>) {
        let monitor = &self.config.monitor;
        let readings = [
            (
                Resource::Memory,
                rss_bytes as f64 / (1024.0 * 1024.0),
                monitor.memory_threshold_mb as f64,
            ),
            (Resource::Cpu, cpu_percent, monitor.cpu_threshold_percent),
        ];
        let (sustain, action) = (monitor.sustain, monitor.action);
        let mut breached = None;
        for (index, (resource, value, limit)) in readings.into_iter().enumerate() {
            let threshold = &mut self.thresholds[index];
            threshold.value = value;
            threshold.limit = limit;
            if value <= limit {
                if threshold.breached {
                    info!(resource = resource.as_str(), value, limit, "back under the threshold");
                }
                *threshold = Threshold {
                    value,
                    limit,
                    ..Threshold::default()
                };
                continue;
            }
            let since = *threshold.over_since.get_or_insert(now);
            if !threshold.breached && now.saturating_duration_since(since) >= sustain {
                threshold.breached = true;
                actions.push(Action::Breached {
                    resource,
                    value,
                    threshold: limit,
                });
                breached.get_or_insert(resource);
            }
        }
        let Some(resource) = breached else { return };
        if self.shutdown.is_some() || self.child.is_none() {
            return;
        }
        let reason = format!("monitor {}", resource.as_str());
        match action {
            MonitorAction::Warn => {}
            MonitorAction::Shutdown => {
                self.failure_exit = true;
                self.begin_shutdown(reason, now, actions);
            }
            MonitorAction::Restart => {
                self.begin_shutdown(reason, now, actions);
                if let Some(shutdown) = &mut self.shutdown {
                    shutdown.restart = true;
                }
            }
        }
    }

    /// A monitor restart stopped the child through the phases up to `force`: start the
    /// next one at once (it was asked for; it counts toward `max_restarts`).
    fn restart_after_stop(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let window = self.config.restart.window;
        while self
            .restarts
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            self.restarts.recent.pop_front();
        }
        if self.restarts.recent.len() >= self.config.restart.max_restarts as usize {
            error!(
                max_restarts = self.config.restart.max_restarts,
                "restart limit reached, giving up"
            );
            // A crash-loop give-up is a full shutdown: the post-stop phases run, and the
            // exit is the child's code if non-zero, else 1.
            self.failure_exit = true;
            if let Some(shutdown) = &mut self.shutdown {
                shutdown.restart = false;
            }
            return self.post_stop(now, actions);
        }
        for name in POST_STOP {
            self.phases.record(
                name,
                Outcome::Skipped,
                "restart: post-stop phases run only at exit",
                now,
            );
        }
        self.phases
            .record(PhaseName::Exit, Outcome::Skipped, "restart: no exit", now);
        actions.push(Action::Disarm(Timer::GracefulDeadline));
        actions.push(Action::Disarm(Timer::ForceDeadline));
        if let Some(shutdown) = self.shutdown.take() {
            actions.push(Action::ShutdownDone(shutdown));
        }
        self.prestop_at = None;
        self.thresholds = [Threshold::default(); 2];
        self.restarts.total += 1;
        self.restarts.recent.push_back(now);
        info!(restart = self.restarts.total, "restarting the child (monitor)");
        actions.push(Action::Spawn);
    }

    fn on_hooks_done(&mut self, result: PhaseResult, now: Instant, actions: &mut Vec<Action>) {
        let name = phase_of(result.phase);
        let row = &self.phases[name as usize];
        if self.shutdown.is_none() || row.outcome.is_some() || row.started_at.is_none() {
            return; // cut short already (a deadline): its late report changes nothing
        }
        self.phases.finish(name, result.outcome, &result.detail, now);
        if name == PhaseName::PreStop {
            self.close_server(now, actions);
        } else {
            self.post_stop(now, actions);
        }
    }

    /// The post-stop phase now running, if any.
    fn running_post_phase(&self) -> Option<PhaseName> {
        POST_STOP.into_iter().find(|&name| {
            self.phases[name as usize].started_at.is_some() && self.phases[name as usize].outcome.is_none()
        })
    }

    /// The next post-stop phase with hooks to run (database → redis → external →
    /// cleanup), each bounded by its own timeout and what is left of the budget; then exit.
    fn post_stop(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        let budget_end = shutdown.force_deadline.unwrap_or(shutdown.deadline);
        for name in POST_STOP {
            let row = &self.phases[name as usize];
            if row.outcome.is_some() {
                continue;
            }
            if row.started_at.is_some() {
                return; // running: wait for its HooksDone
            }
            let phase = hook_phase_of(name);
            if name == PhaseName::Redis && !self.config.phases.redis.enabled {
                self.phases
                    .record(name, Outcome::Skipped, "REDIS_GRACEFUL_CLOSE is false", now);
                continue;
            }
            if hooks::runnable(&self.config, phase).is_empty() {
                self.phases.record(name, Outcome::Skipped, "no hooks", now);
                continue;
            }
            // DB_FORCE_CLOSE=false lets the database hooks run on to the end of the budget.
            let own_bound = if name == PhaseName::Database && !self.config.phases.database.force_close {
                budget_end
            } else {
                now.saturating_add(row.timeout)
            };
            self.phases.start(name, now);
            actions.push(Action::RunHooks {
                phase,
                deadline: own_bound.min(budget_end),
            });
            return;
        }
        self.finish(now, actions);
    }

    /// Exit phase and exit.
    fn finish(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::Disarm(Timer::GracefulDeadline));
        actions.push(Action::Disarm(Timer::ForceDeadline));
        let code = match self.last_exit {
            Some(exit) if self.failure_exit => match exit.status.code() {
                0 => 1,
                code => code,
            },
            Some(exit) => self.config.map_exit_code(exit.status.code()),
            // The child was never reaped (it survived SIGKILL): report what SIGKILL gives.
            None if self.child.is_some() => 128 + libc::SIGKILL,
            None => 0,
        };
        if self.shutdown.is_some() {
            // Anything still open was cut by the end of the force window.
            self.phases
                .close_before(PhaseName::Exit, Outcome::Killed, "force_timeout window over", now);
            self.phases
                .record(PhaseName::Exit, Outcome::Ok, &format!("exit code {code}"), now);
        }
        self.log_shutdown_started();
        if let Some(shutdown) = &self.shutdown {
            let elapsed = now.saturating_duration_since(shutdown.started_at);
            info!(reason = %shutdown.reason, code, elapsed_ms = elapsed.as_millis() as u64, "shutdown complete");
        }
        self.exit(code, actions);
    }

    fn exit(&mut self, code: i32, actions: &mut Vec<Action>) {
        self.exited = Some(code);
        actions.push(Action::Exit(code));
    }

    fn rows(&mut self) -> &mut Vec<PhaseRow> {
        &mut self.phases
    }
}

const POST_STOP: [PhaseName; 4] = [
    PhaseName::Database,
    PhaseName::Redis,
    PhaseName::External,
    PhaseName::Cleanup,
];

fn phase_of(phase: HookPhase) -> PhaseName {
    match phase {
        HookPhase::PreStop => PhaseName::PreStop,
        HookPhase::Database => PhaseName::Database,
        HookPhase::Redis => PhaseName::Redis,
        HookPhase::External => PhaseName::External,
        HookPhase::Cleanup => PhaseName::Cleanup,
    }
}

fn hook_phase_of(name: PhaseName) -> HookPhase {
    match name {
        PhaseName::Database => HookPhase::Database,
        PhaseName::Redis => HookPhase::Redis,
        PhaseName::External => HookPhase::External,
        PhaseName::Cleanup => HookPhase::Cleanup,
        _ => HookPhase::PreStop,
    }
}

fn exit_record(child: &RunningChild, status: ExitStatus, now: Instant) -> ExitRecord {
    ExitRecord {
        pid: child.pid,
        status,
        at: now,
        generation: child.generation,
        uptime: now.saturating_duration_since(child.started_at),
    }
}

/// `exited with code 3` / `killed by SIGKILL`.
fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("killed by {}", Sig(signal)),
    }
}

/// The n-th consecutive restart waits `min(initial × 2^(n−1), max)`.
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests;

//! The event loop: owns the child, the reaper, the timers; feeds every event to the one
//! state machine (`state::State::step`) and performs the actions it returns.
//!
//! Everything runs on one thread — the main thread — in a current-thread tokio runtime.
//! Reaping, signals and state changes share one task, so no locks and no second waiter
//! exist. Once the loop serves, every process gsup starts (the child, hooks, exec checks)
//! is started by the spawner thread, which lives as long as gsup (PDEATHSIG is tied to
//! the thread that started the child); before, on the loop's own thread. The loop learns
//! each pid by a message, and for the child holds its queue until then (docs/DESIGN.md
//! "The spawn path").

pub mod checks;
pub mod hooks;
pub mod phases;
mod reaper;
mod spawn;
pub(crate) use spawn::candidates as exec_candidates;
pub mod state;
mod tree;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, IsTerminal};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, error, info, warn};

use crate::config::{Config, Loaded};
use crate::deadline::SaturatingAdd;
use crate::http::{self, Api, BindError, Control};
use crate::metrics::Metrics;
use crate::monitor;
use crate::notify::{self, NotifyMessage, NotifyServer, SystemdNotifier};
use crate::os::{self, ChildSetup, InheritedSignals, SignalReceiver};
use crate::signals::{self, Sig};
use crate::snapshot::{self, Clock, Sample, Snapshot};
use reaper::Reaped;
use spawn::{ChildSpec, SpawnError};
use state::{Action, Command, Event, Host, Pid, State, Target, Timer};

/// How often the loop looks at the tree while waiting for it to go (grandchildren reaped
/// by their own parents send gsup no SIGCHLD).
const TREE_POLL: Duration = Duration::from_millis(20);
/// How often connections are sampled while the drain waits for in-flight requests.
const DRAIN_SAMPLE: Duration = Duration::from_millis(100);
/// The reaper's safety net when idle. SIGCHLDs coalesce, but a coalesced delivery is no
/// loss (each wake-up reaps until nothing is left), so this only guards against a lost
/// wake-up; kept long so an idle gsup wakes less than once a second (bench/README.md).
const IDLE_TICK: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    #[error("[process] user: no such user `{0}`")]
    UnknownUser(String),
    #[error("[process] group: no such group `{0}`")]
    UnknownGroup(String),
    #[error("[process] workdir: {path}: {source}")]
    Workdir { path: PathBuf, source: io::Error },
    #[error("no program to run: give one after `--` or set [process] command")]
    NoCommand,
    #[error("cannot set up signal handling: {0}")]
    Signals(io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    #[error("{0}")]
    Bind(#[from] BindError),
    #[error("cannot serve HTTP: {0}")]
    Serve(io::Error),
    #[error("{0}")]
    Listen(#[from] crate::listen::ListenError),
    #[error("[notify] the child's notify socket: {0}")]
    Notify(io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Spawn(error) => error.exit_code(),
            RunError::UnknownUser(_)
            | RunError::UnknownGroup(_)
            | RunError::Workdir { .. }
            | RunError::NoCommand
            | RunError::Bind(_)
            | RunError::Notify(_)
            | RunError::Listen(_) => 2,
            RunError::Signals(_) | RunError::Runtime(_) | RunError::Serve(_) => 1,
        }
    }
}

/// Supervises `argv` (already merged with `[process] command`) until gsup should exit;
/// returns gsup's exit code. `inherited` must be captured before any signal handler exists.
/// `nofile` is the `RLIMIT_NOFILE` gsup was started with, which every child gets.
pub fn run(
    loaded: Loaded,
    argv: Vec<String>,
    inherited: InheritedSignals,
    nofile: libc::rlimit,
) -> Result<i32, RunError> {
    let spec = child_spec(&loaded.config, argv)?;
    // Both bound before the child starts: a port in use or a live control socket is a
    // start-up error (exit 2), not a surprise later.
    let http_listener = loaded.config.http.listen.map(http::bind_http).transpose()?;
    let control_socket = loaded
        .config
        .control
        .socket
        .as_deref()
        .map(http::bind_control)
        .transpose()?;
    if notify_wanted(&loaded.config) {
        notify::check_runtime_dir(&notify_dir()).map_err(RunError::Notify)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(RunError::Runtime)?;
    let sockets = crate::listen::open(&loaded.config.listen, &|name| std::env::var(name).ok())?;
    let loaded = Arc::new(loaded);
    let code = runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let (mut supervisor, hook_reports, check_results) =
            Supervisor::new(loaded.config.clone(), spec, (inherited, nofile), metrics, sockets);
        let (control, requests) = mpsc::unbounded_channel();
        let api = Arc::new(Api {
            snapshot: supervisor.published.subscribe(),
            control,
            metrics: Arc::clone(&supervisor.metrics),
            loaded: Arc::clone(&loaded),
        });
        // Both sockets are bound already (connections wait in their backlog); serving them
        // starts once the child's start has its answer (issue 14: the child first).
        let serve = || {
            if let Some(listener) = http_listener {
                http::spawn_http(listener, Arc::clone(&api)).map_err(RunError::Serve)?;
            }
            if let Some(socket) = &control_socket {
                http::spawn_control(socket, Arc::clone(&api)).map_err(RunError::Serve)?;
            }
            Ok(())
        };
        let code = supervisor.run(requests, hook_reports, check_results, serve).await;
        // A `ctl shutdown` that ended gsup at once still gets its answer (bounded).
        http::answers_written(Duration::from_secs(1)).await;
        // Removes the socket file; the process's exit closes everything else.
        drop(control_socket);
        supervisor.leave();
        // The metrics' registry too goes with the process, not family by family.
        std::mem::forget(api);
        code
    });
    // gsup exits right after this: dropping the runtime would free every task, connection
    // and metric one by one (a sixth of the work from SIGTERM to exit) and wait for any
    // blocking thread still running (an http hook past its deadline). The kernel does both.
    std::mem::forget(runtime);
    code
}

/// Whether the child gets a notify socket of gsup's (`[notify]`, DESIGN §9).
fn notify_wanted(config: &Config) -> bool {
    config.notify.socket
        || !config.notify.watchdog.is_zero()
        || matches!(config.readiness.probe, Some(crate::config::Probe::Notify))
}

/// Where the child's notify sockets are made (DESIGN §9).
fn notify_dir() -> PathBuf {
    notify::runtime_dir(&|name| std::env::var(name).ok(), nix::unistd::geteuid().is_root())
}

fn child_spec(config: &Config, argv: Vec<String>) -> Result<ChildSpec, RunError> {
    if argv.is_empty() {
        return Err(RunError::NoCommand);
    }
    let process = &config.process;
    let user = match &process.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| RunError::UnknownUser(name.clone()))?,
        ),
        None => None,
    };
    let gid = match &process.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| RunError::UnknownGroup(name.clone()))?
                .gid
                .as_raw(),
        ),
        None => user.as_ref().map(|u| u.gid.as_raw()),
    };
    if let Some(dir) = &process.workdir {
        std::fs::read_dir(dir).map_err(|source| RunError::Workdir {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(ChildSpec {
        argv,
        workdir: process.workdir.clone(),
        env: process.env.clone(),
        uid: user.map(|u| u.uid.as_raw()),
        gid,
    })
}

struct Supervisor {
    state: State,
    spec: ChildSpec,
    setup: ChildSetup,
    /// The terminal handed to the child's group, when interactive.
    tty: Option<i32>,
    own_pid: Pid,
    own_pgid: Pid,
    /// Armed timers; the loop sleeps until the earliest.
    timers: HashMap<Timer, Instant>,
    /// Events waiting for `step`, in arrival order.
    queue: VecDeque<Event>,
    metrics: Arc<Metrics>,
    /// What the HTTP side reads; replaced after every step.
    published: watch::Sender<Arc<Snapshot>>,
    clock: Clock,
    started_at: Instant,
    /// Whether the current shutdown's outcome has gone into the metrics.
    shutdown_counted: bool,
    /// Whether its trigger-to-exit duration has.
    shutdown_duration_observed: bool,
    /// Which shutdown (by its start) the two flags above are about.
    counted_for: Option<std::time::Instant>,
    /// An exit decided while answering a control request, returned by the next round.
    pending_exit: Option<i32>,
    /// The process-tree sampler (DESIGN §7); `None` when monitoring is off or /proc
    /// cannot be read.
    sampler: Option<monitor::Sampler>,
    monitor_interval: Duration,
    next_sample: Instant,
    /// When the next full tree sample is due (connections may be sampled more often).
    next_full_sample: Instant,
    /// The latest sample, for `/process`.
    sample: Option<Arc<Sample>>,
    /// The samples' totals over time, for `/process/history` (shared with the snapshots).
    history: monitor::SharedHistory,
    /// Runs the hooks of one shutdown phase at a time.
    hooks: hooks::HookRunner,
    /// The readiness probe and the dependency checks.
    checks: checks::Checks,
    /// Listening sockets held open across children and handed to each (DESIGN §8).
    sockets: crate::listen::Sockets,
    /// gsup's own binary, resolved at start-up, for the exec shim.
    own_exe: Option<PathBuf>,
    /// The read ends of the exec shims' error pipes, by generation pid, until it exits.
    shim_errors: HashMap<Pid, std::os::fd::OwnedFd>,
    /// Starts every process off the loop's thread once it serves (the child, hooks, exec
    /// checks).
    starter: spawn::Starter,
    /// Where starts are answered (the sender is the starter's); `run` takes it.
    spawn_replies_receiver: Option<mpsc::UnboundedReceiver<spawn::SpawnReply>>,
    /// A start of the main child is under way (with its shim's error pipe): the queue
    /// waits for its reply. While any start is (`starter.in_flight()`), exits the reaper
    /// collects of pids nobody knows yet wait in `unclaimed`.
    spawning: Option<Option<std::os::fd::OwnedFd>>,
    unclaimed: HashMap<Pid, state::ExitStatus>,
    /// `starter.submitted()` when the reaper last found gsup without any child (ECHILD):
    /// while no start came since, nothing of the tree is left and no `/proc` walk is
    /// needed to know it (the exit path, issue 14).
    childless_since: Option<u64>,
    /// gsup's own relation to systemd (`NOTIFY_SOCKET` in gsup's environment).
    systemd: Option<SystemdNotifier>,
    /// What gsup last told systemd: ready sent, the last STATUS, STOPPING sent.
    told: (bool, String, bool),
    /// The serving child's notify socket, one per generation (`[notify]`, DESIGN §9),
    /// with the generation it belongs to.
    notify_server: Option<Generational<NotifyServer>>,
    /// A reload's new generation's notify socket, until the reload has its outcome.
    reload_notify: Option<Generational<NotifyServer>>,
    /// `ctl reload` (and POST `/reload?wait=true`) callers waiting for the outcome.
    reload_waiters: Vec<oneshot::Sender<state::ReloadRecord>>,
    /// When the child's next `WATCHDOG=1` is due (`[notify] watchdog`), once ready.
    child_watchdog: Option<Instant>,
    /// The generation whose watchdog clock has started (once it was ready).
    watchdog_generation: Option<u64>,
    /// Counts the tree's inbound connections (sock_diag); `None` if netlink is refused.
    connections: Option<monitor::connections::ConnectionCounter>,
}

impl Supervisor {
    fn new(
        config: Config,
        spec: ChildSpec,
        (inherited, nofile): (InheritedSignals, libc::rlimit),
        metrics: Arc<Metrics>,
        sockets: crate::listen::Sockets,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<hooks::HookReport>,
        mpsc::UnboundedReceiver<checks::CheckResult>,
    ) {
        let own_pid = nix::unistd::getpid().as_raw();
        let own_pgid = nix::unistd::getpgrp().as_raw();
        let tty = interactive_tty(own_pgid);
        let host = Host {
            own_pid,
            own_pgid,
            tty: tty.is_some(),
            sockets: !sockets.is_empty(),
            // As PID 1 or under systemd's watchdog, a stopped gsup would be a dead one.
            self_stop: tty.is_none() && own_pid != 1 && std::env::var_os("WATCHDOG_USEC").is_none(),
        };
        let monitor_interval = config.monitor.interval;
        let sampler = if config.monitor.enabled {
            monitor::Sampler::new()
                .map_err(|error| warn!(%error, "cannot read /proc: process monitoring is off"))
                .ok()
        } else {
            None
        };
        let (listen_fds, listen_count) = sockets.raw();
        let setup = ChildSetup {
            inherited,
            nofile,
            parent_pid: own_pid,
            foreground_tty: tty,
            listen_fds,
            listen_count,
            shim_error: None,
        };
        let (spawn_replies, spawn_replies_receiver) = mpsc::unbounded_channel();
        let starter = spawn::Starter::new(spawn_replies);
        let (hooks, hook_reports) = hooks::HookRunner::new(config.clone(), spec.clone(), setup, starter.clone());
        let (checks, check_results) = checks::Checks::new(&config, spec.clone(), setup, starter.clone());
        let state = State::new(config, host);
        let clock = Clock::now();
        let started_at = Instant::now();
        let (published, _) = watch::channel(Arc::new(Snapshot::of(&state, clock, started_at.into_std())));
        let supervisor = Supervisor {
            state,
            spec,
            setup,
            tty,
            own_pid,
            own_pgid,
            timers: HashMap::new(),
            queue: VecDeque::new(),
            metrics,
            published,
            clock,
            started_at,
            shutdown_counted: false,
            shutdown_duration_observed: false,
            counted_for: None,
            pending_exit: None,
            sampler,
            monitor_interval,
            next_sample: Instant::now() + monitor_interval,
            next_full_sample: Instant::now(),
            sample: None,
            history: monitor::SharedHistory::new(monitor_interval),
            hooks,
            checks,
            sockets,
            own_exe: std::env::current_exe().ok(),
            shim_errors: HashMap::new(),
            starter,
            spawn_replies_receiver: Some(spawn_replies_receiver),
            spawning: None,
            unclaimed: HashMap::new(),
            childless_since: None,
            systemd: SystemdNotifier::from_env(&|name| std::env::var(name).ok(), own_pid),
            told: (false, String::new(), false),
            notify_server: None,
            reload_notify: None,
            reload_waiters: Vec::new(),
            child_watchdog: None,
            watchdog_generation: None,
            connections: monitor::connections::ConnectionCounter::new()
                .map_err(
                    |error| warn!(%error, "cannot count connections (sock_diag): drain and connection gauges are off"),
                )
                .ok(),
        };
        (supervisor, hook_reports, check_results)
    }

    /// What must happen before gsup exits: the notify sockets and their directories are
    /// removed. The rest (memory, descriptors, the spawner thread) goes with the process:
    /// freeing it piece by piece was a tenth of the time from the child's exit to gsup's
    /// (issue 14).
    fn leave(mut self) {
        drop(self.notify_server.take());
        drop(self.reload_notify.take());
        std::mem::forget(self);
    }

    async fn run(
        &mut self,
        mut requests: mpsc::UnboundedReceiver<Control>,
        mut hook_reports: mpsc::UnboundedReceiver<hooks::HookReport>,
        mut check_results: mpsc::UnboundedReceiver<checks::CheckResult>,
        serve: impl FnOnce() -> Result<(), RunError>,
    ) -> Result<i32, RunError> {
        let Some(mut spawn_replies) = self.spawn_replies_receiver.take() else {
            return Err(RunError::Runtime(io::Error::other("the supervisor runs once")));
        };
        let mut watched = signals::forwardable();
        watched.push(libc::SIGCHLD);
        // Blocked too, so a `kill -SEGV` from outside waits in the signalfd to be
        // forwarded, while a real fault (forced by the kernel) still kills gsup (DESIGN §4).
        watched.extend_from_slice(signals::FAULT_SIGNALS);
        // Both kept to the exit, where closing them (deregistering each from the runtime
        // first) would only delay gsup's own: the kernel closes them (issue 14).
        let incoming = SignalReceiver::open(&watched)
            .and_then(SignalReceiver::into_async)
            .map(std::mem::ManuallyDrop::new)
            .map_err(RunError::Signals)?;
        // The monitor's ticks (and with them the reaper's safety net): a kernel timer, one
        // wake-up per tick. Without it (no timerfd) the loop falls back to tokio sleeps.
        let sampling = self.sampler.is_some() || self.connections.is_some();
        let mut tick_interval = self.monitor_interval;
        // The first tick after one interval, not at once: a sample before the child runs
        // shows nothing and competes with its start (`/process` reads /proc itself until
        // the first sample).
        let ticker = if sampling {
            os::Ticker::new(tick_interval, tick_interval)
                .and_then(os::Ticker::into_async)
                .map_err(|error| warn!(%error, "no timerfd: monitor ticks on tokio timers"))
                .ok()
        } else {
            None
        };
        let ticker = std::mem::ManuallyDrop::new(ticker);
        if self.own_pid != 1 {
            if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
                warn!(%error, "cannot become a child subreaper: orphans of the child will not be reaped by gsup");
            }
        }
        // When gsup's next WATCHDOG=1 to systemd is due (half of WATCHDOG_USEC).
        let mut next_systemd_ping: Option<Instant> = None;
        debug!(pid = self.own_pid, tty = self.tty.is_some(), "gsup started");
        self.queue.push_back(Event::Start);
        // The child first; the servers once its start has its answer, so the first request
        // already sees the child (or why it did not start).
        let mut serve = Some(serve);

        loop {
            if let Some(code) = self.process_queue() {
                return Ok(code);
            }
            if self.spawning.is_none() {
                if let Some(serve) = serve.take() {
                    // From here on a start must not hold up the loop: the spawner thread.
                    self.starter.serving();
                    serve()?;
                }
            }
            if self.state.awaiting_tree() {
                // Look at once: mostly the tree went with the child, and gsup can move on
                // without waiting a poll interval.
                let tree_empty = self.tree_empty();
                self.queue.push_back(Event::Poll { tree_empty });
                if let Some(code) = self.process_queue() {
                    return Ok(code);
                }
            }
            let next_timer = self.timers.values().min().copied();
            let hook_deadline = self.hooks.next_deadline().map(Instant::from_std);
            let check_due = self
                .checks
                .next_due(self.state.child().is_some())
                .map(Instant::from_std);
            let notify_server = self.notify_server.clone();
            let reload_notify = self.reload_notify.clone();
            let child_watchdog = self.child_watchdog;
            // A deadline, not a fresh sleep per round: the loop wakes more often than the
            // period (monitor ticks, requests), and a sleep re-created each time never ends.
            let systemd_ping = self
                .systemd
                .as_ref()
                .and_then(SystemdNotifier::watchdog_interval)
                .map(|half_period| {
                    *next_systemd_ping.get_or_insert_with(|| Instant::now().saturating_add(half_period))
                });
            // The safety tick is needed only where the ticker does not wake the loop anyway.
            let tick = if self.state.awaiting_tree() {
                Some(TREE_POLL)
            } else if ticker.is_some() {
                None
            } else {
                Some(IDLE_TICK)
            };
            let sample_by_sleep = ticker.is_none() && sampling;
            let spawning = self.spawning.is_some();
            tokio::select! {
                biased;
                // Signals for gsup: SIGCHLD wakes the reaper, anything else is an event.
                ready = incoming.readable() => {
                    match ready {
                        Ok(mut guard) => {
                            self.receive_signals(guard.get_inner());
                            guard.clear_ready();
                        }
                        Err(error) => error!(%error, "cannot wait for signals"),
                    }
                }
                // The spawner thread started a process (or could not).
                Some(reply) = spawn_replies.recv() => self.on_spawn_reply(reply),
                // A request from the HTTP side or the control socket; not while a start is
                // under way (its answer would not know the new child yet).
                Some(request) = requests.recv(), if !spawning => self.on_control(request),
                // An http hook answered (or failed), or a hook's output ended.
                Some(report) = hook_reports.recv() => {
                    if let Some(result) = self.hooks.on_report(report, Instant::now().into_std()) {
                        self.queue.push_back(Event::HooksDone(result));
                    }
                }
                // A hook reached its deadline.
                _ = sleep_until(hook_deadline.unwrap_or_else(Instant::now)), if hook_deadline.is_some() => {
                    if let Some(result) = self.hooks.on_tick(Instant::now().into_std()) {
                        self.queue.push_back(Event::HooksDone(result));
                    }
                }
                // A datagram from the child on its notify socket.
                Ok((server, generation, notification)) = receive(notify_server.as_ref()) => {
                    self.on_notification(server, generation, notification);
                }
                Ok((server, generation, notification)) = receive(reload_notify.as_ref()) => {
                    self.on_notification(server, generation, notification);
                }
                // The child's watchdog ran out.
                _ = sleep_until(child_watchdog.unwrap_or_else(Instant::now)), if child_watchdog.is_some() => {
                    self.child_watchdog_missed();
                }
                // Half of systemd's watchdog period: the loop is alive, say so.
                _ = sleep_until(systemd_ping.unwrap_or_else(Instant::now)), if systemd_ping.is_some() => {
                    next_systemd_ping = None;
                    if let Some(systemd) = &self.systemd {
                        let _ = systemd.watchdog();
                    }
                }
                // A tcp/http check answered.
                Some(result) = check_results.recv() => {
                    self.checks.on_result(&result, Instant::now().into_std());
                    self.queue.push_back(Event::Check(result));
                }
                // A check is due, or an exec check reached its timeout.
                _ = sleep_until(check_due.unwrap_or_else(Instant::now)), if check_due.is_some() => {
                    let child_running = self.state.child().is_some();
                    for result in self.checks.tick(Instant::now().into_std(), child_running) {
                        self.queue.push_back(Event::Check(result));
                    }
                }
                // The monitor's next sample of the tree and its connections.
                ready = tick_of(ticker.as_ref()) => {
                    if let Ok(mut guard) = ready {
                        guard.get_inner().acknowledge();
                        guard.clear_ready();
                    }
                    self.reap();
                    let wanted = self.sample_tree();
                    if let Some(ticker) = &*ticker {
                        if wanted != tick_interval {
                            tick_interval = wanted;
                            let _ = ticker.get_ref().set(wanted, wanted);
                        }
                    }
                }
                _ = sleep_until(self.next_sample), if sample_by_sleep => {
                    self.sample_tree();
                }
                // The earliest armed timer.
                _ = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    self.fire_timers();
                }
                // Safety net for coalesced SIGCHLDs, and the tree poll while it must go.
                _ = sleep(tick.unwrap_or(IDLE_TICK)), if tick.is_some() => {
                    self.reap();
                }
            }
        }
    }

    /// Reads every pending signal.
    fn receive_signals(&mut self, incoming: &SignalReceiver) {
        let mut reap = false;
        loop {
            match incoming.read() {
                Ok(Some(received)) if received.signal == libc::SIGCHLD => reap = true,
                Ok(Some(os::Received { signal, sender })) => {
                    debug!(signal = %Sig(signal), sender, "signal received");
                    #[cfg(debug_assertions)]
                    if signal == libc::SIGUSR1 && std::env::var_os("GSUP_TEST_FAULT").is_some() {
                        // Test-only: a real fault in gsup must still crash it (tests/paths.rs).
                        os::fault_for_tests();
                    }
                    #[cfg(debug_assertions)]
                    if signal == libc::SIGUSR2 && std::env::var_os("GSUP_TEST_PANIC").is_some() {
                        // Test-only: a panic in the loop unwinds and exits 101 (tests/paths.rs).
                        panic!("test panic in the event loop");
                    }
                    self.queue.push_back(Event::Signal { signal, sender });
                }
                Ok(None) => break,
                Err(error) => {
                    error!(%error, "cannot read signals");
                    break;
                }
            }
        }
        if reap {
            self.reap();
        }
    }

    /// A request from the HTTP side: becomes an event; the reply says what happened.
    fn on_control(&mut self, request: Control) {
        match request {
            Control::Shutdown { reason, reply } => {
                let starts = self.state.shutdown().is_none();
                self.queue.push_back(Event::Command(Command::Shutdown { reason }));
                let _ = self.process_queue_now();
                let _ = reply.send(starts);
            }
            Control::Kill { reason, reply } => {
                self.queue.push_back(Event::Command(Command::Kill { reason }));
                let _ = self.process_queue_now();
                let _ = reply.send(());
            }
            Control::Reload { reply, outcome } => {
                if let Some(why) = self.state.reload_refusal() {
                    let _ = reply.send(Err(why.to_string()));
                    return;
                }
                self.queue.push_back(Event::Command(Command::Reload));
                let _ = self.process_queue_now();
                // Still running, or decided in the same step (no readiness probe: a child is
                // ready once it runs; or it could not be started).
                let running = self.state.reload().map(|r| r.id);
                let decided = self.state.last_reload().cloned().filter(|_| running.is_none());
                let id = running.or(decided.as_ref().map(|r| r.reload.id)).unwrap_or_default();
                let _ = reply.send(Ok(id));
                match (outcome, decided) {
                    (Some(outcome), Some(record)) => {
                        let _ = outcome.send(record);
                    }
                    (Some(outcome), None) => self.reload_waiters.push(outcome),
                    (None, _) => {}
                }
            }
            Control::Prestop { reply } => {
                self.queue.push_back(Event::Command(Command::Prestop));
                let _ = self.process_queue_now();
                let now = Instant::now().into_std();
                let _ = reply.send(self.state.prestop_at().unwrap_or(now));
            }
        }
    }

    /// Steps what a control request queued before replying; an exit it causes is picked
    /// up by the loop's next `process_queue`, which finds the machine exited.
    fn process_queue_now(&mut self) -> Option<i32> {
        let code = self.process_queue();
        if let Some(code) = code {
            // Keep the decision for the loop: it returns on the next round.
            self.pending_exit = Some(code);
        }
        code
    }

    /// Steps every queued event; returns the exit code once the machine says exit.
    fn process_queue(&mut self) -> Option<i32> {
        if let Some(code) = self.pending_exit {
            return Some(code);
        }
        let result = self.step_queue();
        // On the way out nobody reads a snapshot: exit sooner instead.
        if result.is_none() {
            self.publish();
        }
        result
    }

    fn step_queue(&mut self) -> Option<i32> {
        // While a start is under way its `Spawned` must come first: the rest waits.
        while self.spawning.is_none() {
            let Some(event) = self.queue.pop_front() else { break };
            self.count(&event);
            let restarts_before = self.state.restarts();
            let actions = self.state.step(event, Instant::now().into_std());
            if self.state.restarts() > restarts_before {
                self.metrics.restarted();
            }
            let mut actions = actions.into_iter().peekable();
            while let Some(action) = actions.next() {
                if let Action::Forward { target, signal } = action {
                    // The signal first; then the lines the machine placed after it (they
                    // tell what came before it), then the forward's own line.
                    let sent = self.send(target, signal);
                    while let Some(Action::ShutdownStarted) = actions.peek() {
                        actions.next();
                        self.state.log_shutdown_started();
                    }
                    self.report_forward(target, signal, sent);
                    continue;
                }
                if let Some(code) = self.perform(action) {
                    return Some(code);
                }
            }
        }
        None
    }

    fn perform(&mut self, action: Action) -> Option<i32> {
        match action {
            Action::Spawn => self.start_child(),
            Action::Forward { target, signal } => self.forward(target, signal),
            Action::SignalTree { signal } => self.signal_tree(signal),
            Action::SignalGroup { pgid, signal } => {
                // A retiring generation's group, maybe long after its leader went: only
                // while a process of gsup's tree is still in it (else the number may be
                // another program's group by now).
                if !tree::group_in_tree(self.own_pid, pgid, &self.helper_pids()) {
                    debug!(pgid, signal = %Sig(signal), "group empty: not signalled");
                } else if let Err(error) = os::killpg(pgid, signal) {
                    debug!(pgid, signal = %Sig(signal), %error, "group not signalled");
                }
            }
            Action::ReloadStarted { id } => {
                debug!(id, "reload: starting the new generation");
                if let Some(systemd) = &self.systemd {
                    let _ = systemd.reloading();
                }
            }
            Action::ReloadDone(record) => self.reload_done(record),
            Action::Arm(timer, at) => {
                self.timers.insert(timer, Instant::from_std(at));
            }
            Action::Disarm(timer) => {
                self.timers.remove(&timer);
            }
            Action::StopSelf(signal) => {
                let continued = self
                    .queue
                    .iter()
                    .any(|event| matches!(event, Event::Signal { signal, .. } if *signal == libc::SIGCONT));
                if continued {
                    // A SIGCONT read in the same batch came after the stop: stopping now
                    // would wait for another one that may never come.
                    debug!(signal = %Sig(signal), "already continued: gsup does not stop");
                } else {
                    info!(signal = %Sig(signal), "stopping gsup too (job control)");
                    os::stop_self(signal);
                    debug!("gsup continued");
                }
            }
            Action::Foreground(pgid) => self.foreground(pgid),
            Action::RunHooks { phase, deadline } => {
                if let Some(result) = self.hooks.start(phase, deadline, Instant::now().into_std()) {
                    self.queue.push_back(Event::HooksDone(result));
                }
            }
            Action::KillHooks => self.hooks.kill(),
            Action::ShutdownStarted => self.state.log_shutdown_started(),
            Action::Exit(code) => {
                // Only the report: gsup's metrics and snapshot go with gsup, unread.
                if let Some(shutdown) = self.state.shutdown() {
                    self.report_shutdown(shutdown, Some(code));
                }
                return Some(code);
            }
            Action::ShutdownDone(shutdown) => {
                self.count_shutdown(&shutdown, true);
                self.report_shutdown(&shutdown, None);
                // READY=1 again once the new child is ready.
                self.told.0 = false;
            }
            Action::Breached {
                resource,
                value,
                threshold,
            } => {
                warn!(resource = resource.as_str(), value, threshold, "threshold breached");
                self.metrics.threshold_breached(resource.as_str());
            }
        }
        None
    }

    /// Starts the next generation (`Action::Spawn`) on the spawner thread. Until its reply
    /// the queue waits, so `Spawned` is still stepped before anything else (DEPS §4).
    fn start_child(&mut self) {
        let (spec, shim_pipe) = self.spec_for_next_generation();
        let (read, keep) = match shim_pipe {
            Some((read, write)) => (Some(read), vec![write]),
            None => (None, Vec::new()),
        };
        let setup = ChildSetup {
            shim_error: keep.first().map(AsRawFd::as_raw_fd),
            ..self.setup
        };
        match self.starter.submit(&spec, setup, keep) {
            Ok(()) => self.spawning = Some(read),
            Err(error) => self.start_failed(error),
        }
    }

    /// The spawner thread's answer: a pid or why there is none, for the child, a hook or
    /// an exec check. A child that could not exec is collected here, unless the reaper
    /// was first; an exit the reaper collected before the answer goes where it belongs.
    fn on_spawn_reply(&mut self, reply: spawn::SpawnReply) {
        self.starter.answered();
        let result = reply.result.map_err(|(pid, error)| {
            if let Some(pid) = pid {
                if self.unclaimed.remove(&pid).is_none() {
                    os::reap_failed(pid);
                }
            }
            error
        });
        let now = Instant::now().into_std();
        let started = result.as_ref().ok().copied();
        match reply.purpose {
            spawn::Purpose::Main => self.on_child_started(result),
            spawn::Purpose::Hook { run, index } => {
                if let Some(result) = self.hooks.on_started((run, index), result, now) {
                    self.queue.push_back(Event::HooksDone(result));
                }
            }
            spawn::Purpose::Check(id) => {
                if let Some(result) = self.checks.on_started(id, result, now) {
                    self.queue.push_back(Event::Check(result));
                }
            }
        }
        if reply.purpose != spawn::Purpose::Main {
            if let Some((pid, status)) = started.and_then(|pid| Some((pid, self.unclaimed.remove(&pid)?))) {
                self.other_exited(pid, status);
            }
        }
        if self.starter.in_flight() == 0 {
            // What else was collected meanwhile was no start of gsup's: orphans.
            for (pid, status) in self.unclaimed.drain() {
                self.metrics.zombie_reaped();
                debug!(pid, code = status.code(), "orphan reaped");
            }
        }
    }

    /// The new generation's pid (stepped first, with its exit should the reaper have
    /// collected it already), or why it could not start.
    fn on_child_started(&mut self, result: Result<Pid, SpawnError>) {
        let shim_pipe = self.spawning.take().flatten();
        match result {
            Ok(pid) => {
                if let Some(read) = shim_pipe {
                    self.shim_errors.insert(pid, read);
                }
                if let Some(status) = self.unclaimed.remove(&pid) {
                    let exit = self.generation_exit(pid, status);
                    self.queue.push_front(exit);
                }
                self.queue.push_front(Event::Spawned { pid });
            }
            Err(error) => self.start_failed(error),
        }
    }

    /// A start that failed: reported once, and stepped before anything else.
    fn start_failed(&mut self, error: SpawnError) {
        self.report_start_failure(&error);
        self.queue.push_front(if error.is_resources() {
            Event::SpawnOutOfResources
        } else {
            Event::SpawnFailed {
                code: error.exit_code(),
            }
        });
    }

    /// A generation's exit as an event: a failed exec when its exec shim says so.
    fn generation_exit(&mut self, pid: Pid, status: state::ExitStatus) -> Event {
        match self.shim_exec_failure(pid) {
            Some(error) => {
                self.report_start_failure(&error);
                if error.is_resources() {
                    Event::ChildExited {
                        pid,
                        status: state::ExitStatus::Code(1),
                    }
                } else {
                    Event::ExecFailed {
                        pid,
                        code: error.exit_code(),
                    }
                }
            }
            None => Event::ChildExited { pid, status },
        }
    }

    /// Says once why the child could not start: on stderr when it ends gsup (127/126),
    /// in the log when gsup goes on (a reload fails, the restart policy decides).
    fn report_start_failure(&self, error: &SpawnError) {
        if error.is_resources() || self.state.reload().is_some() {
            error!(%error, "cannot start the child");
        } else {
            eprintln!("gsup: {error}");
        }
    }

    /// A generation run through the exec shim exited: when the shim wrote an errno to its
    /// error pipe the program never ran, and this is a failed start (DESIGN §8).
    fn shim_exec_failure(&mut self, pid: Pid) -> Option<SpawnError> {
        let pipe = self.shim_errors.remove(&pid)?;
        let mut errno = [0u8; 4];
        match nix::unistd::read(&pipe, &mut errno) {
            Ok(4) => Some(spawn::exec_failure(&self.spec, i32::from_ne_bytes(errno))),
            _ => None,
        }
    }

    /// A reload has its outcome: counted, answered, told to systemd; the notify socket of
    /// the generation that now serves is kept, the other dropped.
    fn reload_done(&mut self, record: state::ReloadRecord) {
        self.metrics.reload(if record.ok { "ok" } else { "failed" });
        for waiter in self.reload_waiters.drain(..) {
            let _ = waiter.send(record.clone());
        }
        if let Some(systemd) = &self.systemd {
            let _ = systemd.ready();
        }
        let serving = self.state.child().map(|c| c.generation);
        if let Some(server) = self
            .reload_notify
            .take()
            .filter(|(generation, _)| Some(*generation) == serving)
        {
            self.notify_server = Some(server);
        }
    }

    /// The shutdown report (DESIGN §4): one JSON line with the reason, every phase's
    /// timings, the exit code and the connection counts, to the log and to
    /// `[shutdown] log` when set.
    fn report_shutdown(&self, shutdown: &state::Shutdown, code: Option<i32>) {
        // Nobody would read it: skip the JSON (it is most of gsup's work on its way out).
        if !tracing::enabled!(tracing::Level::INFO) && self.state.config().shutdown.log.is_none() {
            return;
        }
        let now = Instant::now().into_std();
        let rows = self.state.phases();
        let wall = |at: std::time::Instant| self.clock.text(at);
        // Redacted field by field: only the reason and the phases' details are free text
        // (the rest is gsup's own names, numbers and times). Redacting the whole line was
        // most of gsup's work between the child's exit and its own (callgrind, issue 14).
        let details: Vec<_> = rows.iter().map(|row| crate::redact::text(&row.detail)).collect();
        let report = ShutdownReport {
            event: "shutdown",
            reason: &crate::redact::text(&shutdown.reason),
            started_at: wall(shutdown.started_at),
            ended_at: wall(now),
            duration_seconds: now.saturating_duration_since(shutdown.started_at).as_secs_f64(),
            deadline: wall(shutdown.deadline),
            exit_code: code,
            restart: shutdown.restart,
            outcome: if phases::failed(rows) { "failure" } else { "success" },
            active_connections: self.state.connections_at_trigger().map(|c| c.active),
            inflight_connections: self.state.connections_at_trigger().map(|c| c.inflight),
            active_connections_at_end: self.state.connections().map(|c| c.active),
            phases: rows
                .iter()
                .zip(&details)
                .map(|(row, detail)| snapshot::PhaseView::of(row, &self.clock).with_detail(detail))
                .collect(),
        };
        let line = report.to_json();
        crate::logging::shutdown_report(&line);
        if let Some(path) = &self.state.config().shutdown.log {
            if let Err(warning) = crate::shutdown_log::append(path, &line) {
                warn!("{warning}");
            }
        }
    }

    /// Metrics that follow events.
    fn count(&mut self, event: &Event) {
        match event {
            Event::Spawned { .. } => self.metrics.child_started(),
            Event::ChildExited { status, .. } => self.metrics.child_exited(status.code()),
            _ => {}
        }
    }

    /// The shutdown's metrics (DESIGN §6). Failure counts as soon as it is known (the tree
    /// needed SIGKILL, a hook failed or timed out, a phase was killed), while the shutdown
    /// still runs; success once it ended without one (`ended`). The duration is observed
    /// when the child's exit is known; phase durations as phases end.
    fn count_shutdown(&mut self, shutdown: &state::Shutdown, ended: bool) {
        let started_at = shutdown.started_at;
        if self.counted_for != Some(started_at) {
            // A new shutdown (a monitor restart ran one before).
            self.counted_for = Some(started_at);
            self.shutdown_counted = false;
            self.shutdown_duration_observed = false;
            self.metrics.clear_phase_durations();
        }
        let rows = self.state.phases();
        for row in rows {
            if let (Some(start), Some(end)) = (row.started_at, row.ended_at) {
                self.metrics
                    .set_phase_duration(row.name.as_str(), end.saturating_duration_since(start).as_secs_f64());
            }
        }
        if !self.shutdown_duration_observed {
            if let Some(exit) = self.state.last_exit().filter(|e| e.at >= started_at) {
                self.shutdown_duration_observed = true;
                let took = exit.at.saturating_duration_since(started_at);
                self.metrics.observe_shutdown_duration(took.as_secs_f64());
            }
        }
        if self.shutdown_counted {
            return;
        }
        if phases::failed(rows) {
            self.metrics.shutdown_failed();
            self.shutdown_counted = true;
        } else if ended {
            self.metrics.shutdown_succeeded();
            self.shutdown_counted = true;
        }
    }

    /// One monitor sample: the tree's gauges and what `/process` shows.
    /// One tick of the monitor; returns the interval the next tick should come after.
    fn sample_tree(&mut self) -> Duration {
        let now = Instant::now();
        // Every 100 ms while the drain waits for in-flight requests (DESIGN §7); the full
        // tree sample keeps its own interval.
        let interval = if self.state.awaiting_inflight() {
            self.monitor_interval.min(DRAIN_SAMPLE)
        } else {
            self.monitor_interval
        };
        self.next_sample = now.saturating_add(interval);
        let hook_pids = self.helper_pids();
        let full = self.sampler.is_some() && full_sample_due(self.next_full_sample, now, interval);
        let pids: Vec<(Pid, Option<u64>)> = match &mut self.sampler {
            Some(sampler) if full => {
                self.next_full_sample = now.saturating_add(self.monitor_interval);
                let tree = sampler.sample(&snapshot::monitor_roots(self.state.child().map(|c| c.pid)), &hook_pids);
                let gsup = sampler.sample_self(&hook_pids);
                let totals = &tree.totals;
                self.metrics
                    .set_tree(totals.rss_bytes, totals.threads, totals.fds, totals.processes);
                self.metrics.raise_child_cpu_seconds(tree.cpu_seconds_total);
                if self.state.child().is_some() {
                    let (rss_bytes, cpu_percent) = (totals.rss_bytes, totals.cpu_percent);
                    self.queue.push_back(Event::Sample { rss_bytes, cpu_percent });
                }
                self.history.push(monitor::history::Point {
                    at: std::time::SystemTime::now(),
                    rss_bytes: totals.rss_bytes,
                    cpu_percent: totals.cpu_percent,
                    processes: totals.processes,
                });
                // The drain's samples dump every time: a listener the fingerprints missed
                // must count at once there (see `ConnectionCounter::socketless`).
                let draining = self.state.awaiting_inflight();
                let pids = tree
                    .processes
                    .iter()
                    .map(|p| {
                        (
                            p.pid,
                            (!draining).then(|| monitor::connections::fingerprint(p.fds, &p.command)),
                        )
                    })
                    .collect();
                self.sample = Some(Arc::new(Sample {
                    gsup,
                    tree: Arc::new(tree),
                }));
                pids
            }
            // The connection counter needs only the pids: one cheap walk, not a sample.
            _ => tree::descendants(self.own_pid, &hook_pids)
                .into_iter()
                .map(|pid| (pid, None))
                .collect(),
        };
        self.sample_connections(pids);
        self.publish();
        interval
    }

    /// Inbound connections of the tree from the kernel (sampled whatever `[monitor]
    /// enabled` says: the drain and the gauges need them), into the state machine.
    /// `tree` has each pid's fingerprint where this tick's sample read one
    /// (`connections::fingerprint`).
    fn sample_connections(&mut self, mut tree: Vec<(Pid, Option<u64>)>) {
        let Some(counter) = &mut self.connections else { return };
        tree.sort_unstable();
        let pids: Vec<Pid> = tree.iter().map(|&(pid, _)| pid).collect();
        let fingerprints: Option<Vec<u64>> = tree.iter().map(|&(_, seen)| seen).collect();
        let counted = match fingerprints {
            Some(fingerprints) => counter.count_sampled(&pids, &fingerprints),
            None => counter.count(&pids),
        };
        match counted {
            Ok(counts) => {
                self.metrics.set_connections(counts.active, counts.inflight);
                self.queue.push_back(Event::Connections {
                    active: counts.active,
                    inflight: counts.inflight,
                });
            }
            Err(error) => debug!(%error, "cannot count connections"),
        }
    }

    /// Publishes the snapshot the HTTP side reads, and the gauges that follow the state.
    fn publish(&mut self) {
        if let Some(newest) = self.state.newest() {
            self.checks
                .follow(newest.generation, newest.pid, Instant::now().into_std());
        }
        self.tell_systemd();
        self.follow_child_watchdog();
        if let Some(shutdown) = self.state.shutdown().cloned() {
            self.count_shutdown(&shutdown, false);
        }
        self.metrics.set_ready(self.state.ready());
        self.metrics.set_child_up(self.state.generation_running());
        let mut snapshot = Snapshot::of(&self.state, self.clock, self.started_at.into_std());
        snapshot.sample = self.sample.clone();
        snapshot.history = self.history.clone();
        self.published.send_replace(Arc::new(snapshot));
    }

    fn forward(&mut self, target: Target, signal: libc::c_int) {
        let sent = self.send(target, signal);
        self.report_forward(target, signal, sent);
    }

    fn send(&self, target: Target, signal: libc::c_int) -> std::io::Result<()> {
        match target {
            Target::Group(pgid) => os::killpg(pgid, signal),
            Target::Child(pid) => os::kill(pid, signal),
        }
    }

    /// The forward's log line and count, once the signal is sent.
    fn report_forward(&mut self, target: Target, signal: libc::c_int, result: std::io::Result<()>) {
        let pid = match target {
            Target::Group(pgid) => pgid,
            Target::Child(pid) => pid,
        };
        match result {
            Ok(()) => {
                // Everyday forwards (WINCH on every terminal resize, HUP, USR1…) are debug,
                // as in tini; during a shutdown every signal sent is a lifecycle event.
                if self.state.shutdown().is_some() {
                    info!(signal = %Sig(signal), to = ?target, "signal forwarded");
                } else {
                    debug!(signal = %Sig(signal), to = ?target, "signal forwarded");
                }
                self.metrics.signal_forwarded(&signals::name(signal));
            }
            Err(error) => debug!(signal = %Sig(signal), pid, %error, "signal not delivered"),
        }
    }

    /// The child's spec for its next start: with its own notify socket when `[notify]`
    /// asks for one (one per generation, so an old child's `READY=1` never counts).
    /// With the exec shim, also the pipe it reports a failed `exec` through (read, write).
    fn spec_for_next_generation(&mut self) -> (ChildSpec, Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>) {
        let notify = &self.state.config().notify;
        let wanted = notify_wanted(self.state.config());
        let mut spec = self.spec.clone();
        let watchdog_on = !notify.watchdog.is_zero();
        let mut shim_pipe = None;
        // The child's own pid must be in LISTEN_PID / WATCHDOG_PID: the exec shim sets it.
        if !self.sockets.is_empty() || watchdog_on {
            if let Some(exe) = &self.own_exe {
                let mut argv = vec![exe.display().to_string(), "__exec-shim".into(), "--".into()];
                argv.extend(spec.argv);
                spec.argv = argv;
                if !self.sockets.is_empty() {
                    spec.env.extend(self.sockets.env());
                    spec.env.insert(crate::shim::SET_LISTEN_PID.into(), "1".into());
                }
                if watchdog_on {
                    spec.env.insert(crate::shim::SET_WATCHDOG_PID.into(), "1".into());
                }
                match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
                    Ok(pipe) => {
                        let fd = os::shim_error_fd(self.setup.listen_count);
                        spec.env.insert(crate::shim::ERROR_FD.into(), fd.to_string());
                        shim_pipe = Some(pipe);
                    }
                    Err(error) => {
                        warn!(%error, "no error pipe for the exec shim: a missing program looks like its exit")
                    }
                }
            }
        }
        if !wanted {
            return (spec, shim_pipe);
        }
        let watchdog = (!notify.watchdog.is_zero()).then_some(notify.watchdog);
        let dir = notify_dir();
        let generation = self.state.generation_count() + 1;
        // A reload's new generation gets a socket of its own next to the serving one's.
        let slot = if self.state.reload().is_some() {
            &mut self.reload_notify
        } else {
            &mut self.notify_server
        };
        *slot = None;
        match NotifyServer::bind(&dir, generation) {
            Ok(server) => {
                if let Err(error) = server.chown(self.spec.uid, self.spec.gid) {
                    warn!(%error, "cannot hand the notify socket to [process] user");
                }
                spec.env.extend(notify::child_env(&server, watchdog));
                *slot = Some((generation, Arc::new(server)));
            }
            Err(error) => error!(%error, "cannot create the child's notify socket"),
        }
        (spec, shim_pipe)
    }

    /// A datagram on a generation's notify socket: accepted from the child's tree only.
    /// `READY=1` counts for that generation alone; the watchdog is the serving child's.
    /// An outsider is remembered by `server`, which then drops its datagrams unread for
    /// a while: a flood costs no `/proc` walk each (DESIGN §5).
    fn on_notification(&mut self, server: &NotifyServer, generation: u64, notification: notify::Notification) {
        let in_tree = notification.sender_pid.is_some_and(|pid| {
            self.state.is_generation(pid) || tree::descendants(self.own_pid, &self.helper_pids()).contains(&pid)
        });
        let serving = self.state.child().is_some_and(|c| c.generation == generation);
        if !in_tree {
            debug!(
                sender = notification.sender_pid,
                "notify datagram from outside the child's tree: ignored"
            );
            if let Some(pid) = notification.sender_pid {
                server.ignore_sender(pid);
            }
            return;
        }
        for message in notify::parse(&notification.fields) {
            match message {
                NotifyMessage::Ready => {
                    info!(generation, sender = notification.sender_pid, "child sent READY=1");
                    self.queue.push_back(Event::Check(checks::CheckResult {
                        id: checks::CheckId::Notify,
                        generation,
                        ok: true,
                        latency: Duration::ZERO,
                        detail: "READY=1".into(),
                    }));
                }
                NotifyMessage::Watchdog => {
                    let watchdog = self.state.config().notify.watchdog;
                    if serving && !watchdog.is_zero() {
                        self.child_watchdog = Some(Instant::now().saturating_add(watchdog));
                    }
                }
                NotifyMessage::WatchdogTrigger if serving => self.child_watchdog = Some(Instant::now()),
                NotifyMessage::Status(status) => info!(%status, "child status"),
                NotifyMessage::Stopping => info!("child sent STOPPING=1"),
                NotifyMessage::Reloading => info!("child sent RELOADING=1"),
                other => debug!(?other, "child notification"),
            }
        }
    }

    /// The child missed its watchdog: the machine sends `watchdog_signal` and counts the
    /// exit that follows as a failure.
    fn child_watchdog_missed(&mut self) {
        self.child_watchdog = None;
        if let Some(generation) = self.watchdog_generation {
            self.queue.push_back(Event::WatchdogMissed { generation });
        }
    }

    /// Starts the child's watchdog clock once it is ready, whatever made it ready (a
    /// `READY=1`, an http/tcp/exec probe, or none: it runs) (DESIGN §9).
    fn follow_child_watchdog(&mut self) {
        let watchdog = self.state.config().notify.watchdog;
        if watchdog.is_zero() || self.state.shutdown().is_some() {
            return;
        }
        let Some(generation) = self.state.ready_child().map(|c| c.generation) else {
            return;
        };
        if self.watchdog_generation != Some(generation) {
            self.watchdog_generation = Some(generation);
            self.child_watchdog = Some(Instant::now().saturating_add(watchdog));
        }
    }

    /// Tells systemd what changed (DESIGN §9): READY=1 once the child is ready, STATUS=
    /// on changes, STOPPING=1 when a shutdown starts.
    fn tell_systemd(&mut self) {
        let Some(systemd) = &self.systemd else { return };
        if self.state.ready() && !self.told.0 {
            let _ = systemd.ready();
            self.told.0 = true;
        }
        // A monitor restart is no shutdown for systemd (DESIGN §4 Restarts): STOPPING=1
        // only when gsup itself is going away.
        if self.state.shutdown().is_some_and(|s| !s.restart) && !self.told.2 {
            let _ = systemd.stopping();
            self.told.2 = true;
        }
        let status = match (self.state.shutdown(), phases::current(self.state.phases())) {
            (Some(_), Some(phase)) => format!("{}: {}", self.state.lifecycle().as_str(), phase.as_str()),
            _ => self.state.lifecycle().as_str().to_string(),
        };
        if status != self.told.1 {
            let _ = systemd.status(&status);
            self.told.1 = status;
        }
    }

    /// Processes of gsup's own (hooks, exec checks): not part of the child's tree.
    fn helper_pids(&self) -> HashSet<Pid> {
        let mut pids = self.hooks.pids();
        pids.extend(self.checks.pids());
        pids
    }

    /// The child's group and every remaining descendant of gsup.
    fn signal_tree(&mut self, signal: libc::c_int) {
        if let Some(pgid) = self.state.last_pgid() {
            let _ = os::killpg(pgid, signal);
        }
        let rest = self.descendants();
        if !rest.is_empty() {
            info!(signal = %Sig(signal), processes = rest.len(), "signalling what is left of the tree");
        }
        for pid in rest {
            let _ = os::kill(pid, signal);
        }
    }

    fn tree_empty(&self) -> bool {
        let group_gone = self.state.last_pgid().is_none_or(|pgid| os::killpg(pgid, 0).is_err());
        group_gone && self.descendants().is_empty()
    }

    /// gsup's descendants but its helpers: none, without a `/proc` walk, when the reaper
    /// found gsup childless and nothing was started since.
    fn descendants(&self) -> Vec<Pid> {
        if self.childless_since == Some(self.starter.submitted()) {
            return Vec::new();
        }
        tree::descendants(self.own_pid, &self.helper_pids())
    }

    fn reap(&mut self) {
        let (reaped, childless) = reaper::reap_all();
        // A start still in the spawner's queue may not have its process yet.
        let quiet = self.starter.in_flight() == 0;
        self.childless_since = (childless && quiet).then(|| self.starter.submitted());
        for reaped in reaped {
            let main = self.state.child().map(|c| c.pid);
            match reaped {
                Reaped::Exited { pid, status } if self.state.is_generation(pid) => {
                    if Some(pid) == main {
                        self.child_watchdog = None;
                    }
                    let exit = self.generation_exit(pid, status);
                    self.queue.push_back(exit);
                }
                Reaped::Stopped { pid, signal } if Some(pid) == main => {
                    self.queue.push_back(Event::ChildStopped { pid, signal });
                }
                Reaped::Exited { pid, status } => self.other_exited(pid, status),
                Reaped::Stopped { .. } => {}
            }
        }
    }

    /// An exit that is not a generation's: a hook's or an exec check's, maybe a process
    /// being started whose pid the loop does not know yet, else an orphan.
    fn other_exited(&mut self, pid: Pid, status: state::ExitStatus) {
        if self.checks.owns(pid) {
            if let Some(result) = self.checks.on_exit(pid, status, Instant::now().into_std()) {
                self.queue.push_back(Event::Check(result));
            }
        } else if self.hooks.owns(pid) {
            if let Some(result) = self.hooks.on_exit(pid, status, Instant::now().into_std()) {
                self.queue.push_back(Event::HooksDone(result));
            }
        } else if self.starter.in_flight() > 0 {
            self.unclaimed.insert(pid, status);
        } else {
            self.metrics.zombie_reaped();
            debug!(pid, code = status.code(), "orphan reaped");
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due: Vec<(Timer, Instant)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, at)| (*t, *at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        for (timer, _) in due {
            self.timers.remove(&timer);
            self.queue.push_back(Event::Timer(timer));
        }
    }

    /// Hands the terminal to `pgid` — only while it belongs to gsup's job (gsup's own
    /// group or its child's), so a gsup in the background never steals it from the shell.
    fn foreground(&self, pgid: Pid) {
        let Some(tty) = self.tty else { return };
        let current = nix::unistd::tcgetpgrp(io::stdin()).map(|p| p.as_raw()).ok();
        let ours = current == Some(self.own_pgid) || current == self.state.last_pgid();
        debug!(?current, pgid, ours, "terminal foreground");
        if ours && current != Some(pgid) {
            if let Err(error) = os::set_foreground(tty, pgid) {
                debug!(%error, pgid, "cannot hand over the terminal");
            }
        }
    }
}

/// The shutdown report's line (DESIGN §4), in this field order.
#[cfg_attr(test, derive(serde::Serialize))]
struct ShutdownReport<'a> {
    event: &'static str,
    reason: &'a str,
    started_at: String,
    ended_at: String,
    duration_seconds: f64,
    deadline: String,
    exit_code: Option<i32>,
    restart: bool,
    outcome: &'static str,
    active_connections: Option<u64>,
    inflight_connections: Option<u64>,
    active_connections_at_end: Option<u64>,
    phases: Vec<snapshot::PhaseView<'a>>,
}

impl ShutdownReport<'_> {
    /// The report as its `Serialize` (tests only) writes it: by hand, because it is most
    /// of gsup's work between the child's exit and its own (issue 14).
    fn to_json(&self) -> String {
        let mut out = String::with_capacity(2048 + 256 * self.phases.len());
        let mut object = crate::json::Object::begin(&mut out);
        object
            .str("event", self.event)
            .str("reason", self.reason)
            .str("started_at", &self.started_at)
            .str("ended_at", &self.ended_at)
            .f64("duration_seconds", self.duration_seconds)
            .str("deadline", &self.deadline)
            .opt_display("exit_code", self.exit_code)
            .display("restart", self.restart)
            .str("outcome", self.outcome)
            .opt_display("active_connections", self.active_connections)
            .opt_display("inflight_connections", self.inflight_connections)
            .opt_display("active_connections_at_end", self.active_connections_at_end)
            .with("phases", |out| {
                out.push('[');
                for (i, phase) in self.phases.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    phase.write_json(out);
                }
                out.push(']');
            });
        object.end();
        out
    }
}

/// stdin, when it is a terminal whose foreground group is gsup's own: then the child's
/// group gets the terminal. A gsup started in the background leaves the terminal alone.
fn interactive_tty(own_pgid: Pid) -> Option<i32> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let foreground = nix::unistd::tcgetpgrp(&stdin).ok()?.as_raw();
    (foreground == own_pgid).then(|| stdin.as_raw_fd())
}

/// Whether a tick at `now` (ticks `tick` apart) takes the full tree sample due at `due`.
/// Due within half a tick counts as due: the ticks come exactly one interval apart, a hair
/// before `due` (set from when the previous tick was handled), and without the slack every
/// other tick skipped the full sample (a 2 s cadence with `interval = "1s"`).
fn full_sample_due(due: Instant, now: Instant, tick: Duration) -> bool {
    due <= now + tick / 2
}

/// Something that belongs to one generation of the child.
type Generational<T> = (u64, Arc<T>);

/// `server.recv()` with the server and its generation, or never when there is no notify
/// socket.
async fn receive(
    server: Option<&Generational<NotifyServer>>,
) -> std::io::Result<(&NotifyServer, u64, notify::Notification)> {
    match server {
        Some((generation, server)) => Ok((server, *generation, server.recv().await?)),
        None => std::future::pending().await,
    }
}

/// The ticker's next tick, or never without one.
async fn tick_of(
    ticker: Option<&tokio::io::unix::AsyncFd<os::Ticker>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, os::Ticker>> {
    match ticker {
        Some(ticker) => ticker.readable().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_a_hair_early_still_takes_the_full_sample() {
        let tick = Duration::from_secs(1);
        let handled = Instant::now();
        let due = handled + tick;
        // The next tick fires one interval after the previous one fired, which was a
        // little before it was handled.
        assert!(full_sample_due(due, handled + tick - Duration::from_micros(300), tick));
        assert!(full_sample_due(due, due, tick));
        // While the drain samples connections every 100 ms, the full sample keeps its 1 s.
        let drain_tick = Duration::from_millis(100);
        assert!(!full_sample_due(due, handled + Duration::from_millis(800), drain_tick));
        assert!(full_sample_due(due, handled + Duration::from_millis(960), drain_tick));
    }

    /// The hand-written report is what serde_json wrote for the same report.
    #[test]
    fn the_report_is_written_as_serde_json_wrote_it() {
        let clock = Clock::now();
        let at = std::time::Instant::now();
        let mut rows = phases::plan(&Config::default());
        let outcomes = [phases::Outcome::Ok, phases::Outcome::Timeout, phases::Outcome::Skipped];
        for (i, row) in rows.iter_mut().enumerate().take(3) {
            row.started_at = Some(at + Duration::from_millis(i as u64 * 7));
            row.ended_at = (i != 1).then(|| at + Duration::from_millis(i as u64 * 7 + 3));
            row.outcome = Some(outcomes[i]);
            row.detail = format!("detail {i} \"quoted\"\n\u{1}");
        }
        for (exit_code, connections) in [(Some(143), Some(3)), (None, None)] {
            let report = ShutdownReport {
                event: "shutdown",
                reason: "signal SIGTERM \\ \t",
                started_at: clock.text(at),
                ended_at: clock.text(at + Duration::from_millis(12)),
                duration_seconds: 0.0125,
                deadline: clock.text(at + Duration::from_secs(30)),
                exit_code,
                restart: exit_code.is_none(),
                outcome: "success",
                active_connections: connections,
                inflight_connections: connections.map(|c| c - 1),
                active_connections_at_end: Some(0),
                phases: rows.iter().map(|row| snapshot::PhaseView::of(row, &clock)).collect(),
            };
            assert_eq!(report.to_json(), serde_json::to_string(&report).expect("serializes"));
        }
    }
}

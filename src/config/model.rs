//! The validated configuration: what the rest of gsup reads. Built only by `config::load`;
//! every value here has passed validation (no zero timeouts where DESIGN §3 refuses them,
//! signals resolved to numbers, paths resolved against the config file's directory).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use libc::c_int;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub process: ProcessConfig,
    pub signals: SignalsConfig,
    pub shutdown: ShutdownConfig,
    pub phases: PhasesConfig,
    pub hooks: Vec<HookConfig>,
    pub restart: RestartConfig,
    pub http: HttpConfig,
    pub control: ControlConfig,
    pub readiness: ReadinessConfig,
    pub dependencies: Vec<DependencyConfig>,
    pub monitor: MonitorConfig,
    pub notify: NotifyConfig,
    pub listen: Vec<ListenConfig>,
    pub reload: ReloadConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessConfig {
    /// PROGRAM and ARGS; the command line wins over `[process] command`.
    pub command: Option<Vec<String>>,
    pub workdir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardTo {
    Group,
    Child,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalsConfig {
    pub forward_to: ForwardTo,
    /// received signal -> signal sent; `None` drops it.
    pub rewrite: BTreeMap<c_int, Option<c_int>>,
    pub shutdown_on: Vec<c_int>,
    pub repeat_forces: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownConfig {
    /// Before rewrite; `effective_stop_signal()` applies it.
    pub stop_signal: c_int,
    pub timeout: Duration,
    pub force_timeout: Duration,
    pub drain_delay: Duration,
    pub connection_draining: bool,
    pub max_drain_time: Duration,
    pub log: Option<PathBuf>,
    pub exit_code_map: BTreeMap<i32, i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhasesConfig {
    pub database: DatabasePhase,
    pub redis: RedisPhase,
    pub external: PhaseBound,
    pub cleanup: PhaseBound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabasePhase {
    pub timeout: Duration,
    pub force_close: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisPhase {
    pub timeout: Duration,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseBound {
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    PreStop,
    Database,
    Redis,
    External,
    Cleanup,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HookAction {
    Exec(Vec<String>),
    Http {
        url: String,
        method: String,
        expect: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookConfig {
    pub phase: HookPhase,
    pub name: String,
    pub action: HookAction,
    /// Already cut to the phase's bound (with a warning) where it was longer.
    pub timeout: Option<Duration>,
    pub service: Option<ExternalService>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalService {
    Payment,
    Ai,
    FileStorage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    pub policy: RestartPolicy,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_restarts: u32,
    pub window: Duration,
    pub startup_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// `None` when `listen = "off"`.
    pub listen: Option<SocketAddr>,
    pub prefix: String,
    pub token_file: Option<PathBuf>,
    pub readiness: bool,
    pub liveness: bool,
    pub prestop: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlConfig {
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Http(String),
    Tcp(String),
    Exec(Vec<String>),
    Notify,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessConfig {
    pub probe: Option<Probe>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DependencyCheck {
    Tcp(String),
    Http(String),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DependencyConfig {
    pub name: String,
    pub check: DependencyCheck,
    pub critical: bool,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorAction {
    Warn,
    Restart,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub memory_threshold_mb: u64,
    pub cpu_threshold_percent: f64,
    pub sustain: Duration,
    pub action: MonitorAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub socket: bool,
    /// Zero = off.
    pub watchdog: Duration,
    pub watchdog_signal: c_int,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    pub name: String,
    pub address: ListenAddress,
    pub backlog: u32,
    pub v6only: Option<bool>,
    /// Unix sockets only; parsed from an octal string such as "0660".
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReloadConfig {
    pub signal: c_int,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::filter::Targets` string; `None` = the §10 default.
    pub level: Option<String>,
}

impl SignalsConfig {
    /// The signal actually sent for `received`, after the rewrite map; `None` = dropped.
    pub fn rewritten(&self, received: c_int) -> Option<c_int> {
        match self.rewrite.get(&received) {
            Some(target) => *target,
            None => Some(received),
        }
    }
}

impl Config {
    /// `stop_signal` after rewrite. Validation guarantees the rewrite does not drop it.
    pub fn effective_stop_signal(&self) -> c_int {
        self.signals
            .rewritten(self.shutdown.stop_signal)
            .unwrap_or(self.shutdown.stop_signal)
    }

    /// The exit code gsup reports for `code`, after `exit_code_map`.
    pub fn map_exit_code(&self, code: i32) -> i32 {
        self.shutdown.exit_code_map.get(&code).copied().unwrap_or(code)
    }
}

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
    /// PAYMENT_GATEWAY_CLOSE, AI_SERVICE_CLOSE, FILE_STORAGE_CLOSE: which `external`
    /// hooks tagged with a `service` run. File keys: `[phases.external] payment`, `ai`,
    /// `file_storage`.
    pub external_services: ExternalToggles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalToggles {
    pub payment: bool,
    pub ai: bool,
    pub file_storage: bool,
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
    Http { url: String, method: String, expect: u16 },
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
    /// Host names (port ignored, lower case) a request's `Host` may carry besides IP
    /// literals and `localhost` (DNS rebinding, DESIGN §5). Empty: loopback listens
    /// check `Host` against the built-in set only, other listens not at all.
    pub allowed_hosts: Vec<String>,
    /// The bearer token, resolved at load: GSUP_CONTROL_TOKEN, else the trimmed content
    /// of `token_file`. `None`: mutating endpoints answer 403.
    pub token: Option<String>,
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

impl ExternalToggles {
    /// Whether hooks tagged `service` run.
    pub fn enabled(&self, service: ExternalService) -> bool {
        match service {
            ExternalService::Payment => self.payment,
            ExternalService::Ai => self.ai,
            ExternalService::FileStorage => self.file_storage,
        }
    }
}

impl HookPhase {
    /// The name used in the config file and in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreStop => "pre_stop",
            HookPhase::Database => "database",
            HookPhase::Redis => "redis",
            HookPhase::External => "external",
            HookPhase::Cleanup => "cleanup",
        }
    }
}

impl ExternalService {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalService::Payment => "payment",
            ExternalService::Ai => "ai",
            ExternalService::FileStorage => "file-storage",
        }
    }
}

impl ForwardTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardTo::Group => "group",
            ForwardTo::Child => "child",
        }
    }
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

impl MonitorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorAction::Warn => "warn",
            MonitorAction::Restart => "restart",
            MonitorAction::Shutdown => "shutdown",
        }
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The defaults of DESIGN §3, before any file, environment variable or flag.
impl Default for Config {
    fn default() -> Self {
        let secs = Duration::from_secs;
        Config {
            process: ProcessConfig::default(),
            signals: SignalsConfig {
                forward_to: ForwardTo::Group,
                rewrite: BTreeMap::new(),
                shutdown_on: vec![libc::SIGTERM, libc::SIGINT, libc::SIGUSR2],
                repeat_forces: true,
            },
            shutdown: ShutdownConfig {
                stop_signal: libc::SIGTERM,
                timeout: secs(30),
                force_timeout: secs(5),
                drain_delay: Duration::ZERO,
                connection_draining: false,
                max_drain_time: secs(20),
                log: None,
                exit_code_map: BTreeMap::new(),
            },
            phases: PhasesConfig {
                database: DatabasePhase {
                    timeout: secs(10),
                    force_close: true,
                },
                redis: RedisPhase {
                    timeout: secs(5),
                    enabled: true,
                },
                external: PhaseBound { timeout: secs(15) },
                cleanup: PhaseBound { timeout: secs(5) },
                external_services: ExternalToggles {
                    payment: true,
                    ai: true,
                    file_storage: true,
                },
            },
            hooks: Vec::new(),
            restart: RestartConfig {
                policy: RestartPolicy::Never,
                backoff_initial: secs(1),
                backoff_max: secs(30),
                max_restarts: 5,
                window: secs(60),
                startup_timeout: secs(60),
            },
            http: HttpConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
                prefix: "/api/v1/shutdown".to_string(),
                token_file: None,
                readiness: true,
                liveness: true,
                prestop: false,
                allowed_hosts: Vec::new(),
                token: None,
            },
            control: ControlConfig::default(),
            readiness: ReadinessConfig {
                probe: None,
                interval: secs(1),
                timeout: secs(1),
            },
            dependencies: Vec::new(),
            monitor: MonitorConfig {
                enabled: true,
                interval: secs(1),
                memory_threshold_mb: 1024,
                cpu_threshold_percent: 80.0,
                sustain: secs(30),
                action: MonitorAction::Warn,
            },
            notify: NotifyConfig {
                socket: false,
                watchdog: Duration::ZERO,
                watchdog_signal: libc::SIGABRT,
            },
            listen: Vec::new(),
            reload: ReloadConfig { signal: libc::SIGHUP },
            log: LogConfig {
                format: LogFormat::Auto,
                level: None,
            },
        }
    }
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

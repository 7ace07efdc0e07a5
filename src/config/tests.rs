use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::cli::ConfigFlags;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    env_of_bytes(&pairs)
}

/// An environment whose values are any bytes, UTF-8 or not.
fn env_of_bytes(pairs: &[(&str, &[u8])]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsStr::from_bytes(v).to_os_string()))
        .collect();
    move |name| map.get(name).cloned()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn with_file(text: &str) -> Self {
        let case = Case::new();
        case.write("supervisor.toml", text);
        case
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn cwd(&self) -> &Path {
        self.dir.path()
    }

    fn load(&self, env: &[(&str, &str)], flags: &ConfigFlags) -> Result<Loaded, ConfigErrors> {
        load(flags, &env_of(env), self.cwd())
    }

    fn ok(&self, env: &[(&str, &str)], flags: &ConfigFlags) -> Loaded {
        match self.load(env, flags) {
            Ok(loaded) => loaded,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        }
    }

    fn errors(&self, env: &[(&str, &str)], flags: &ConfigFlags) -> Vec<String> {
        match self.load(env, flags) {
            Ok(_) => panic!("expected errors"),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }
}

fn no_flags() -> ConfigFlags {
    ConfigFlags::default()
}

fn file_source() -> Source {
    Source::File("supervisor.toml".into())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn assert_one_error_containing(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no error contains {needle:?}:\n{}",
        errors.join("\n")
    );
}

fn example_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/supervisor.example.toml")).unwrap()
}

fn load_example() -> Loaded {
    let case = Case::with_file(&example_text());
    case.ok(&[("GSUP_CONTROL_TOKEN", "example-token")], &no_flags())
}

#[test]
fn no_file_gives_the_defaults() {
    let case = Case::new();
    let loaded = case.ok(&[], &no_flags());
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.file.is_none());
    assert!(loaded.warnings.is_empty());
    assert!(loaded.sources.values().all(|s| *s == Source::Default));
    assert_eq!(loaded.source("shutdown.timeout"), &Source::Default);
    let keys = super::render::keys(&loaded);
    assert!(keys.iter().any(|k| k == "monitor.cpu_threshold_percent"));
    assert!(keys.iter().all(|k| loaded.source(k) == &Source::Default));
}

#[test]
fn example_file_sets_every_key() {
    let loaded = load_example();
    assert!(loaded.file.is_some());
    let c = &loaded.config;
    let dir = loaded.file.as_ref().unwrap().parent().unwrap().to_path_buf();

    assert_eq!(
        c.process.command.as_deref(),
        Some(&["./api".to_string(), "--port".into(), "3000".into()][..])
    );
    assert_eq!(c.process.workdir, Some(PathBuf::from("/srv/api")));
    assert_eq!(c.process.env.get("NODE_ENV").map(String::as_str), Some("production"));
    assert_eq!(c.process.user.as_deref(), Some("nodejs"));
    assert_eq!(c.process.group.as_deref(), Some("nodejs"));

    assert_eq!(c.signals.forward_to, ForwardTo::Group);
    assert_eq!(c.signals.rewrite.get(&libc::SIGTERM), Some(&Some(libc::SIGQUIT)));
    assert_eq!(c.signals.shutdown_on, [libc::SIGTERM, libc::SIGINT, libc::SIGUSR2]);
    assert!(c.signals.repeat_forces);

    assert_eq!(c.shutdown.stop_signal, libc::SIGTERM);
    assert_eq!(c.effective_stop_signal(), libc::SIGQUIT);
    assert_eq!(c.shutdown.timeout, secs(30));
    assert_eq!(c.shutdown.force_timeout, secs(5));
    assert_eq!(c.shutdown.drain_delay, Duration::ZERO);
    assert!(!c.shutdown.connection_draining);
    assert_eq!(c.shutdown.max_drain_time, secs(20));
    assert_eq!(c.shutdown.log, Some(dir.join("shutdown.log")));
    assert_eq!(c.map_exit_code(143), 0);

    assert_eq!(c.phases.database.timeout, secs(10));
    assert!(c.phases.database.force_close);
    assert_eq!(c.phases.redis.timeout, secs(5));
    assert!(c.phases.redis.enabled);
    assert_eq!(c.phases.external.timeout, secs(15));
    assert_eq!(
        c.phases.external_services,
        ExternalToggles {
            payment: true,
            ai: true,
            file_storage: true
        }
    );
    assert_eq!(c.phases.cleanup.timeout, secs(5));

    assert_eq!(c.hooks.len(), 2);
    assert_eq!(
        c.hooks[0],
        HookConfig {
            phase: HookPhase::PreStop,
            name: "flush-queue".into(),
            action: HookAction::Exec(vec!["./bin/flush".into()]),
            timeout: Some(secs(5)),
            service: None,
        }
    );
    assert_eq!(
        c.hooks[1],
        HookConfig {
            phase: HookPhase::External,
            name: "close-payments".into(),
            action: HookAction::Http {
                url: "http://127.0.0.1:3000/close-payments".into(),
                method: "POST".into(),
                expect: 200,
            },
            timeout: None,
            service: Some(ExternalService::Payment),
        }
    );

    assert_eq!(c.restart, Config::default().restart);

    assert_eq!(c.http.listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.http.prefix, "/api/v1/shutdown");
    assert_eq!(c.http.token_file, Some(PathBuf::from("/run/secrets/gsup-token")));
    assert_eq!(c.http.token.as_deref(), Some("example-token"));
    assert!(c.http.readiness && c.http.liveness && !c.http.prestop);

    assert_eq!(c.control.socket, Some(PathBuf::from("/run/gsup.sock")));

    assert_eq!(
        c.readiness.probe,
        Some(Probe::Http("http://127.0.0.1:3000/healthz".into()))
    );
    assert_eq!(c.readiness.interval, secs(1));
    assert_eq!(c.readiness.timeout, secs(1));

    assert_eq!(
        c.dependencies,
        [DependencyConfig {
            name: "postgres".into(),
            check: DependencyCheck::Tcp("127.0.0.1:5432".into()),
            critical: true,
            interval: secs(30),
        }]
    );

    assert_eq!(c.monitor, Config::default().monitor);
    assert_eq!(c.notify, Config::default().notify);

    assert_eq!(
        c.listen,
        [
            ListenConfig {
                name: "http".into(),
                address: ListenAddress::Tcp("0.0.0.0:3000".parse().unwrap()),
                backlog: 1024,
                v6only: Some(true),
                mode: 0o660,
            },
            ListenConfig {
                name: "admin".into(),
                address: ListenAddress::Unix("/run/api-admin.sock".into()),
                backlog: 1024,
                v6only: None,
                mode: 0o660,
            }
        ]
    );
    assert_eq!(c.reload.signal, libc::SIGHUP);
    assert_eq!(c.log.format, LogFormat::Auto);
    assert_eq!(c.log.level.as_deref(), Some("info"));

    assert_eq!(loaded.source("shutdown.timeout"), &file_source());
    assert_eq!(loaded.source("signals.rewrite.TERM"), &file_source());
    assert_eq!(loaded.source("http.token"), &Source::Env("GSUP_CONTROL_TOKEN".into()));
    // The example's http/tcp probe next to [[listen]] is what §8 warns about.
    assert!(loaded.warnings.iter().any(|w| w.contains("readiness.probe")));
}

#[test]
fn every_design_key_appears_in_the_example() {
    fn collect(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    out.push(path.clone());
                    collect(value, &path, out);
                }
            }
            // An array of tables: its entries' keys, whatever the index.
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for item in items {
                    collect(item, prefix, out);
                }
            }
            _ => {}
        }
    }
    let root: toml::Value = toml::Value::Table(example_text().parse().unwrap());
    let mut written = Vec::new();
    collect(&root, "", &mut written);
    let loaded = load_example();
    // Every key `check` shows (less the resolved token) is written in the example.
    for key in super::render::keys(&loaded) {
        let mut general = key.clone();
        while let Some(open) = general.find('[') {
            let close = general[open..].find(']').unwrap() + open;
            general.replace_range(open..=close, "");
        }
        if key == "http.token" {
            continue;
        }
        assert!(written.contains(&general), "example lacks `{general}`");
    }
}

#[test]
fn precedence_flag_over_env_over_file_over_default() {
    let case = Case::with_file("[shutdown]\ntimeout = \"10s\"\nforce_timeout = \"7s\"\ndrain_delay = \"3s\"\n");
    let env = [("SHUTDOWN_TIMEOUT_MS", "20000"), ("FORCE_SHUTDOWN_TIMEOUT_MS", "8000")];
    let flags = ConfigFlags {
        timeout: Some("40s".into()),
        ..no_flags()
    };
    let loaded = case.ok(&env, &flags);
    let s = &loaded.config.shutdown;
    assert_eq!(s.timeout, secs(40));
    assert_eq!(s.force_timeout, secs(8));
    assert_eq!(s.drain_delay, secs(3));
    assert_eq!(s.max_drain_time, secs(20));
    assert_eq!(loaded.source("shutdown.timeout"), &Source::Flag("timeout".into()));
    assert_eq!(
        loaded.source("shutdown.force_timeout"),
        &Source::Env("FORCE_SHUTDOWN_TIMEOUT_MS".into())
    );
    assert_eq!(loaded.source("shutdown.drain_delay"), &file_source());
    assert_eq!(loaded.source("shutdown.max_drain_time"), &Source::Default);

    let text = render_check(&loaded);
    assert!(text.contains("timeout = \"40s\"  # flag --timeout"), "{text}");
    assert!(text.contains("force_timeout = \"8s\"  # env FORCE_SHUTDOWN_TIMEOUT_MS"));
    assert!(text.contains("drain_delay = \"3s\"  # file supervisor.toml"));
    assert!(text.contains("max_drain_time = \"20s\"  # default"));
}

#[test]
fn source_display() {
    assert_eq!(Source::Default.to_string(), "default");
    assert_eq!(file_source().to_string(), "file supervisor.toml");
    assert_eq!(
        Source::Env("SHUTDOWN_TIMEOUT_MS".into()).to_string(),
        "env SHUTDOWN_TIMEOUT_MS"
    );
    assert_eq!(Source::Flag("timeout".into()).to_string(), "flag --timeout");
}

#[test]
fn every_env_var_applies() {
    let case = Case::with_file("[[dependencies]]\ntcp = \"db:5432\"\n[[dependencies]]\nexec = [\"true\"]\n");
    let env = [
        ("SHUTDOWN_TIMEOUT_MS", "1000"),
        ("FORCE_SHUTDOWN_TIMEOUT_MS", "2000"),
        ("ENABLE_CONNECTION_DRAINING", "1"),
        ("MAX_CONNECTION_DRAIN_TIME", "0"),
        ("HEALTH_CHECK_INTERVAL", "5000"),
        ("READINESS_CHECK_ENABLED", "false"),
        ("LIVENESS_CHECK_ENABLED", "0"),
        ("PROCESS_MONITORING_ENABLED", "false"),
        ("MEMORY_THRESHOLD_MB", "512"),
        ("CPU_THRESHOLD_PERCENT", "150.5"),
        ("DB_SHUTDOWN_TIMEOUT_MS", "3000"),
        ("DB_FORCE_CLOSE", "false"),
        ("REDIS_SHUTDOWN_TIMEOUT_MS", "4000"),
        ("REDIS_GRACEFUL_CLOSE", "false"),
        ("EXTERNAL_SERVICES_TIMEOUT_MS", "6000"),
        ("PAYMENT_GATEWAY_CLOSE", "false"),
        ("AI_SERVICE_CLOSE", "0"),
        ("FILE_STORAGE_CLOSE", "false"),
        ("DEBUG", "express:*,graceful-shutdown:*"),
        ("GSUP_CONTROL_TOKEN", "  s3cret \n"),
        ("GSUP_CONTROL_SOCKET", "run/gsup.sock"),
    ];
    let loaded = case.ok(&env, &no_flags());
    let c = &loaded.config;
    assert_eq!(c.shutdown.timeout, secs(1));
    assert_eq!(c.shutdown.force_timeout, secs(2));
    assert!(c.shutdown.connection_draining);
    assert_eq!(c.shutdown.max_drain_time, Duration::ZERO);
    assert!(c.dependencies.iter().all(|d| d.interval == secs(5)));
    assert!(!c.http.readiness && !c.http.liveness && !c.monitor.enabled);
    assert_eq!(c.monitor.memory_threshold_mb, 512);
    assert_eq!(c.monitor.cpu_threshold_percent, 150.5);
    assert_eq!(c.phases.database.timeout, secs(3));
    assert!(!c.phases.database.force_close);
    assert_eq!(c.phases.redis.timeout, secs(4));
    assert!(!c.phases.redis.enabled);
    assert_eq!(c.phases.external.timeout, secs(6));
    assert!(!c.phases.external_services.enabled(ExternalService::Payment));
    assert!(!c.phases.external_services.ai && !c.phases.external_services.file_storage);
    assert_eq!(c.log.level.as_deref(), Some("debug"));
    assert_eq!(c.http.token.as_deref(), Some("s3cret"));
    assert_eq!(c.control.socket, Some(case.cwd().join("run/gsup.sock")));
    assert_eq!(
        loaded.source("dependencies[1].interval"),
        &Source::Env("HEALTH_CHECK_INTERVAL".into())
    );
    assert_eq!(loaded.source("log.level"), &Source::Env("DEBUG".into()));
    // Every variable of the table was given above.
    for var in ENV_VARS {
        if var.name != "GSUP_LOG" {
            assert!(env.iter().any(|(name, _)| *name == var.name), "{}", var.name);
        }
    }
}

#[test]
fn gsup_log_wins_over_debug_and_foreign_debug_is_ignored() {
    let case = Case::new();
    let loaded = case.ok(
        &[
            ("DEBUG", "graceful-shutdown:*"),
            ("GSUP_LOG", "warn,gsup::monitor=trace"),
        ],
        &no_flags(),
    );
    assert_eq!(loaded.config.log.level.as_deref(), Some("warn,gsup::monitor=trace"));
    assert_eq!(loaded.source("log.level"), &Source::Env("GSUP_LOG".into()));
    let loaded = case.ok(&[("DEBUG", "express:*")], &no_flags());
    assert_eq!(loaded.config.log.level, None);
    assert_eq!(loaded.source("log.level"), &Source::Default);
    assert_one_error_containing(&case.errors(&[("GSUP_LOG", "loud")], &no_flags()), "GSUP_LOG=loud");
}

#[test]
fn bad_env_values_name_the_variable() {
    let case = Case::new();
    for (name, value) in [
        ("SHUTDOWN_TIMEOUT_MS", "abc"),
        ("SHUTDOWN_TIMEOUT_MS", "-5"),
        ("SHUTDOWN_TIMEOUT_MS", "0"),
        ("SHUTDOWN_TIMEOUT_MS", "30s"),
        ("FORCE_SHUTDOWN_TIMEOUT_MS", "0"),
        ("DB_SHUTDOWN_TIMEOUT_MS", "0"),
        ("REDIS_SHUTDOWN_TIMEOUT_MS", "0"),
        ("EXTERNAL_SERVICES_TIMEOUT_MS", "0"),
        ("HEALTH_CHECK_INTERVAL", "0"),
        ("ENABLE_CONNECTION_DRAINING", "maybe"),
        ("READINESS_CHECK_ENABLED", "yes"),
        ("MEMORY_THRESHOLD_MB", "0"),
        ("CPU_THRESHOLD_PERCENT", "-1"),
        ("GSUP_CONTROL_SOCKET", ""),
    ] {
        let errors = case.errors(&[(name, value)], &no_flags());
        assert_eq!(errors.len(), 1, "{name}={value}: {errors:?}");
        assert!(errors[0].starts_with(&format!("{name}={value}: ")), "{}", errors[0]);
    }
    let errors = case.errors(&[("SHUTDOWN_TIMEOUT_MS", "0")], &no_flags());
    assert!(errors[0].contains("longer than zero"), "{}", errors[0]);
    // Zero allowed here: don't wait for in-flight requests.
    case.ok(&[("MAX_CONNECTION_DRAIN_TIME", "0")], &no_flags());
    // The token never shows in an error.
    let errors = case.errors(&[("GSUP_CONTROL_TOKEN", "  ")], &no_flags());
    assert!(errors[0].starts_with("GSUP_CONTROL_TOKEN=***"), "{}", errors[0]);
}

#[test]
fn all_errors_are_collected() {
    let case = Case::with_file("[shutdown]\ntimeout = 30\n");
    let errors = case.errors(
        &[("SHUTDOWN_TIMEOUT_MS", "abc"), ("ENABLE_CONNECTION_DRAINING", "maybe")],
        &ConfigFlags {
            force_timeout: Some("0s".into()),
            ..no_flags()
        },
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
    let display = ConfigErrors(case.load(&[("SHUTDOWN_TIMEOUT_MS", "abc")], &no_flags()).unwrap_err().0).to_string();
    assert_eq!(display.lines().count(), 2, "{display}");
}

#[test]
fn unknown_keys_name_file_line_and_suggestion() {
    let case = Case::with_file("[shutdown]\ntimeot = \"1s\"\n");
    let errors = case.errors(&[], &no_flags());
    assert_eq!(
        errors,
        ["unknown key `timeot` in supervisor.toml, line 2: did you mean `timeout`?"]
    );
}

#[test]
fn several_unknown_keys_at_once() {
    let case = Case::with_file(
        "[shutdwn]\ntimeout = \"1s\"\n\n[signals]\nforward = \"group\"\n\n[[hooks]]\nphase = \"cleanup\"\nexec = [\"x\"]\ntimout = \"1s\"\n\n[readiness]\nprobe = { htp = \"http://x:1/\" }\n\n[monitor]\nzzzz = 1\n",
    );
    let errors = case.errors(&[], &no_flags());
    for needle in [
        "unknown key `shutdwn` in supervisor.toml, line 1: did you mean `shutdown`?",
        "unknown key `forward` in supervisor.toml, line 5: did you mean `forward_to`?",
        "unknown key `timout` in supervisor.toml, line 10: did you mean `timeout`?",
        "unknown key `htp` in supervisor.toml, line 13: did you mean `http`?",
        "unknown key `zzzz` in supervisor.toml, line 16: expected one of `enabled`",
    ] {
        assert_one_error_containing(&errors, needle);
    }
}

#[test]
fn bare_number_duration_says_write_30s() {
    let case = Case::with_file("[shutdown]\ntimeout = 30\n");
    let errors = case.errors(&[], &no_flags());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("supervisor.toml, line 2: `shutdown.timeout`"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("write \"30s\""), "{}", errors[0]);
    let case = Case::new();
    let errors = case.errors(
        &[],
        &ConfigFlags {
            timeout: Some("30".into()),
            ..no_flags()
        },
    );
    assert!(errors[0].starts_with("--timeout 30: "), "{}", errors[0]);
    assert!(errors[0].contains("write 30s"), "{}", errors[0]);
}

/// Every duration key of the file where zero is refused.
const ZERO_REFUSED: &[(&str, &str)] = &[
    ("shutdown", "timeout"),
    ("shutdown", "force_timeout"),
    ("phases.database", "timeout"),
    ("phases.redis", "timeout"),
    ("phases.external", "timeout"),
    ("phases.cleanup", "timeout"),
    ("restart", "backoff_initial"),
    ("restart", "backoff_max"),
    ("restart", "window"),
    ("restart", "startup_timeout"),
    ("readiness", "interval"),
    ("readiness", "timeout"),
    ("monitor", "interval"),
    ("monitor", "sustain"),
];

#[test]
fn zero_is_refused_per_key_in_the_file() {
    for (table, key) in ZERO_REFUSED {
        let case = Case::with_file(&format!("[{table}]\n{key} = \"0s\"\n"));
        let errors = case.errors(&[], &no_flags());
        assert_eq!(errors.len(), 1, "{table}.{key}: {errors:?}");
        assert!(errors[0].contains(&format!("`{table}.{key}`")), "{}", errors[0]);
        assert!(errors[0].contains("longer than zero"), "{}", errors[0]);
    }
    for text in [
        "[[hooks]]\nphase = \"cleanup\"\nexec = [\"x\"]\ntimeout = \"0s\"\n",
        "[[dependencies]]\ntcp = \"db:1\"\ninterval = \"0s\"\n",
        "[monitor]\nmemory_threshold_mb = 0\n",
        "[monitor]\ncpu_threshold_percent = 0\n",
        "[[listen]]\naddress = \"127.0.0.1:1\"\nbacklog = 0\n",
    ] {
        let errors = Case::with_file(text).errors(&[], &no_flags());
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
    }
}

#[test]
fn zero_is_refused_for_flags() {
    let case = Case::new();
    for flags in [
        ConfigFlags {
            timeout: Some("0s".into()),
            ..no_flags()
        },
        ConfigFlags {
            force_timeout: Some("0ms".into()),
            ..no_flags()
        },
    ] {
        let errors = case.errors(&[], &flags);
        assert_one_error_containing(&errors, "longer than zero");
        assert!(errors[0].starts_with("--"), "{}", errors[0]);
    }
    let loaded = case.ok(
        &[],
        &ConfigFlags {
            drain_delay: Some("0s".into()),
            ..no_flags()
        },
    );
    assert_eq!(
        loaded.source("shutdown.drain_delay"),
        &Source::Flag("drain-delay".into())
    );
}

#[test]
fn zero_is_allowed_for_the_four_keys() {
    let case = Case::with_file(
        "[shutdown]\ndrain_delay = \"0s\"\nmax_drain_time = \"0s\"\n[notify]\nwatchdog = \"0s\"\n[restart]\nmax_restarts = 0\n",
    );
    let loaded = case.ok(&[], &no_flags());
    assert_eq!(loaded.config.shutdown.drain_delay, Duration::ZERO);
    assert_eq!(loaded.config.shutdown.max_drain_time, Duration::ZERO);
    assert_eq!(loaded.config.notify.watchdog, Duration::ZERO);
    assert_eq!(loaded.config.restart.max_restarts, 0);
}

#[test]
fn signals_are_validated() {
    let errors = Case::with_file("[shutdown]\nstop_signal = \"SIGBOGUS\"\n").errors(&[], &no_flags());
    assert_one_error_containing(&errors, "unknown signal `SIGBOGUS`");
    assert_one_error_containing(&errors, "line 2");
    let errors = Case::with_file("[signals]\nrewrite = { NOPE = \"QUIT\" }\nshutdown_on = [\"TERM\", \"WHAT\"]\n")
        .errors(&[], &no_flags());
    assert_eq!(errors.len(), 2, "{errors:?}");
    let errors = Case::new().errors(
        &[],
        &ConfigFlags {
            rewrite: vec!["TERM=NOPE".into()],
            ..no_flags()
        },
    );
    assert!(
        errors[0].starts_with("--rewrite TERM=NOPE: unknown signal"),
        "{}",
        errors[0]
    );

    let loaded = Case::with_file(
        "[signals]\nrewrite = { SIGHUP = \"none\", 10 = 0, INT = \"SIGUSR1\", \"RTMIN+1\" = \"TERM\" }\n",
    )
    .ok(&[], &no_flags());
    let rewrite = &loaded.config.signals.rewrite;
    assert_eq!(rewrite.get(&libc::SIGHUP), Some(&None));
    assert_eq!(rewrite.get(&libc::SIGUSR1), Some(&None));
    assert_eq!(rewrite.get(&libc::SIGINT), Some(&Some(libc::SIGUSR1)));
    assert_eq!(loaded.source("signals.rewrite.HUP"), &file_source());
    assert_eq!(loaded.source("signals.rewrite.RTMIN+1"), &file_source());
    toml::from_str::<toml::Table>(&render_check(&loaded)).unwrap();
}

#[test]
fn rewrite_that_drops_the_stop_signal_is_an_error() {
    let errors = Case::with_file("[signals]\nrewrite = { TERM = \"none\" }\n").errors(&[], &no_flags());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("`signals.rewrite.TERM` (file supervisor.toml)"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("drops the stop signal SIGTERM"), "{}", errors[0]);
    // Dropping TERM is fine when the stop signal is another one.
    Case::with_file("[signals]\nrewrite = { TERM = \"none\" }\n[shutdown]\nstop_signal = \"QUIT\"\n")
        .ok(&[], &no_flags());
    let errors = Case::new().errors(
        &[],
        &ConfigFlags {
            rewrite: vec!["SIGTERM=0".into()],
            ..no_flags()
        },
    );
    assert!(errors[0].contains("(flag --rewrite)"), "{}", errors[0]);
}

#[test]
fn flags_merge_with_the_file() {
    let case = Case::with_file(
        "[signals]\nrewrite = { TERM = \"QUIT\", HUP = \"USR1\" }\n[shutdown]\nexit_code_map = { 143 = 0, 1 = 3 }\n[[listen]]\nname = \"http\"\naddress = \"0.0.0.0:3000\"\nbacklog = 10\n",
    );
    let flags = ConfigFlags {
        rewrite: vec!["HUP=none".into()],
        exit_map: vec!["1=0".into()],
        listen: vec!["http=127.0.0.1:4000".into(), "admin=unix:admin.sock".into()],
        http: Some("off".into()),
        forward_to: Some("child".into()),
        restart: Some("on-failure".into()),
        ready_tcp: Some("127.0.0.1:3000".into()),
        token_file: None,
        control_socket: Some("gsup.sock".into()),
        log_format: Some("json".into()),
        ..no_flags()
    };
    let loaded = case.ok(&[], &flags);
    let c = &loaded.config;
    assert_eq!(c.signals.rewrite.get(&libc::SIGTERM), Some(&Some(libc::SIGQUIT)));
    assert_eq!(c.signals.rewrite.get(&libc::SIGHUP), Some(&None));
    assert_eq!(loaded.source("signals.rewrite.TERM"), &file_source());
    assert_eq!(loaded.source("signals.rewrite.HUP"), &Source::Flag("rewrite".into()));
    assert_eq!(c.map_exit_code(143), 0);
    assert_eq!(c.map_exit_code(1), 0);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(
        c.listen[0].address,
        ListenAddress::Tcp("127.0.0.1:4000".parse().unwrap())
    );
    assert_eq!(c.listen[0].backlog, 10);
    assert_eq!(c.listen[1].address, ListenAddress::Unix(case.cwd().join("admin.sock")));
    assert_eq!(loaded.source("listen[1].address"), &Source::Flag("listen".into()));
    assert_eq!(c.http.listen, None);
    assert_eq!(c.signals.forward_to, ForwardTo::Child);
    assert_eq!(c.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(c.readiness.probe, Some(Probe::Tcp("127.0.0.1:3000".into())));
    assert_eq!(c.control.socket, Some(case.cwd().join("gsup.sock")));
    assert_eq!(c.log.format, LogFormat::Json);

    let errors = Case::new().errors(
        &[],
        &ConfigFlags {
            http: Some("nowhere".into()),
            forward_to: Some("parent".into()),
            restart: Some("sometimes".into()),
            ready_http: Some("localhost:3000".into()),
            listen: vec!["http".into()],
            exit_map: vec!["300=0".into()],
            log_format: Some("xml".into()),
            ..no_flags()
        },
    );
    assert_eq!(errors.len(), 7, "{errors:?}");
}

#[test]
fn missing_named_config_file_is_an_error() {
    let case = Case::new();
    let errors = case.errors(
        &[],
        &ConfigFlags {
            config: Some("nope.toml".into()),
            ..no_flags()
        },
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("cannot read config file nope.toml: "),
        "{}",
        errors[0]
    );
    let errors = case.errors(&[("GSUP_CONFIG", "/nonexistent/gsup.toml")], &no_flags());
    assert!(errors[0].contains("/nonexistent/gsup.toml"), "{}", errors[0]);
}

#[test]
fn config_file_discovery_order() {
    let case = Case::with_file("[shutdown]\ntimeout = \"1s\"\n");
    case.write("env.toml", "[shutdown]\ntimeout = \"2s\"\n");
    case.write("flag.toml", "[shutdown]\ntimeout = \"3s\"\n");
    let flag = ConfigFlags {
        config: Some("flag.toml".into()),
        ..no_flags()
    };
    let env = [("GSUP_CONFIG", "env.toml")];
    assert_eq!(case.ok(&env, &flag).config.shutdown.timeout, secs(3));
    assert_eq!(case.ok(&env, &no_flags()).config.shutdown.timeout, secs(2));
    let loaded = case.ok(&[], &no_flags());
    assert_eq!(loaded.config.shutdown.timeout, secs(1));
    assert_eq!(loaded.file, Some(case.cwd().join("supervisor.toml")));
    assert_eq!(
        case.ok(&env, &no_flags()).source("shutdown.timeout"),
        &Source::File("env.toml".into())
    );
}

#[test]
fn relative_paths_follow_the_file() {
    let case = Case::new();
    std::fs::create_dir(case.cwd().join("etc")).unwrap();
    case.write("etc/token", "tok\n");
    std::fs::set_permissions(
        case.cwd().join("etc/token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    case.write(
        "etc/gsup.toml",
        "[process]\nworkdir = \"app\"\n[http]\ntoken_file = \"token\"\n[shutdown]\nlog = \"/var/log/s.log\"\n",
    );
    let loaded = case.ok(
        &[],
        &ConfigFlags {
            config: Some("etc/gsup.toml".into()),
            ..no_flags()
        },
    );
    let etc = case.cwd().join("etc");
    assert_eq!(loaded.config.process.workdir, Some(etc.join("app")));
    assert_eq!(loaded.config.http.token_file, Some(etc.join("token")));
    assert_eq!(loaded.config.shutdown.log, Some(PathBuf::from("/var/log/s.log")));
    assert_eq!(loaded.config.http.token.as_deref(), Some("tok"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn toml_syntax_error_names_the_file() {
    let errors = Case::with_file("[shutdown\ntimeout = \"1s\"\n").errors(&[], &no_flags());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("supervisor.toml is not valid TOML: line 1"),
        "{}",
        errors[0]
    );
}

#[test]
fn wrong_types_are_collected() {
    let errors = Case::with_file(
        "[signals]\nrepeat_forces = \"yes\"\n[http]\nprestop = 1\nlisten = 9090\n[process]\ncommand = []\nenv = { PORT = 3000 }\n[shutdown]\n",
    )
    .errors(&[], &no_flags());
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn hooks_need_their_required_keys() {
    let errors = Case::with_file(
        "[[hooks]]\nname = \"a\"\nexec = [\"x\"]\n\n[[hooks]]\nphase = \"cleanup\"\n\n[[hooks]]\nphase = \"cleanup\"\nhttp = { method = \"POST\" }\n\n[[hooks]]\nphase = \"later\"\nexec = [\"x\"]\n\n[[hooks]]\nphase = \"database\"\nexec = [\"x\"]\nservice = \"payment\"\n\n[[hooks]]\nphase = \"external\"\nexec = [\"x\"]\nhttp = { url = \"http://h:1/\" }\n",
    )
    .errors(&[], &no_flags());
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert_one_error_containing(&errors, "line 1: `hooks[0]`: missing required key `phase`");
    assert_one_error_containing(&errors, "line 5: `hooks[1]`: missing required key `exec`");
    assert_one_error_containing(&errors, "`hooks[2].http`: missing required key `url`");
    assert_one_error_containing(&errors, "`later` is not one of pre_stop");
    assert_one_error_containing(&errors, "only hooks of phase = \"external\" can name a service");
    assert_one_error_containing(&errors, "not both");
}

#[test]
fn hook_timeouts_are_cut_to_their_phase() {
    let case = Case::with_file(
        "[phases]\ncleanup = { timeout = \"2s\" }\n[[hooks]]\nphase = \"cleanup\"\nexec = [\"x\"]\ntimeout = \"10s\"\n[[hooks]]\nphase = \"pre_stop\"\nhttp = { url = \"http://127.0.0.1:3000/drain\" }\ntimeout = \"1m\"\n",
    );
    let loaded = case.ok(&[], &no_flags());
    assert_eq!(loaded.config.hooks[0].timeout, Some(secs(2)));
    assert_eq!(loaded.config.hooks[0].name, "hook0");
    assert_eq!(loaded.config.hooks[1].timeout, Some(secs(30)));
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("hook `hook0`: timeout 10s"),
        "{}",
        loaded.warnings[0]
    );
}

#[test]
fn probes_dependencies_and_listeners_are_validated() {
    for (text, expected) in [
        ("[readiness]\nprobe = { notify = true }\n", Some(Probe::Notify)),
        (
            "[readiness]\nprobe = { exec = [\"./check\"] }\n",
            Some(Probe::Exec(vec!["./check".into()])),
        ),
        (
            "[readiness]\nprobe = { tcp = \"127.0.0.1:3000\" }\n",
            Some(Probe::Tcp("127.0.0.1:3000".into())),
        ),
    ] {
        assert_eq!(
            Case::with_file(text).ok(&[], &no_flags()).config.readiness.probe,
            expected
        );
    }
    for text in [
        "[readiness]\nprobe = { notify = false }\n",
        "[readiness]\nprobe = {}\n",
        "[readiness]\nprobe = { tcp = \"a:1\", http = \"http://a:1/\" }\n",
        "[readiness]\nprobe = \"http://a:1/\"\n",
        "[[dependencies]]\nname = \"x\"\n",
        "[[dependencies]]\ntcp = \"a:1\"\nhttp = \"http://a:1/\"\n",
        "[[dependencies]]\ntcp = \"nohost\"\n",
        "[[listen]]\nname = \"x\"\n",
        "[[listen]]\naddress = \"localhost:3000\"\n",
        "[[listen]]\naddress = \"unix:/x\"\nmode = 660\n",
        "[[listen]]\naddress = \"unix:/x\"\nmode = \"0999\"\n",
        "[[listen]]\naddress = \"127.0.0.1:1\"\n[[listen]]\nname = \"listen0\"\naddress = \"127.0.0.1:2\"\n",
        "[http]\nlisten = \"localhost\"\n",
        "[http]\nprefix = \"api\"\n",
        "[log]\nformat = \"xml\"\n",
        "[log]\nlevel = \"gsup=loud\"\n",
        "[monitor]\naction = \"panic\"\n",
        "[restart]\npolicy = \"sometimes\"\n",
        "[restart]\nbackoff_initial = \"1m\"\nbackoff_max = \"30s\"\n",
        "[restart]\nmax_restarts = -1\n",
        "[shutdown]\nexit_code_map = { 256 = 0 }\n",
        "[shutdown]\nexit_code_map = { 143 = \"0\" }\n",
        "[signals]\nforward_to = \"parent\"\n",
        "hooks = 3\n",
    ] {
        let errors = Case::with_file(text).errors(&[], &no_flags());
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert!(
            errors[0].starts_with("supervisor.toml, line ") || errors[0].contains("(file supervisor.toml)"),
            "{}",
            errors[0]
        );
    }
    let loaded = Case::with_file(
        "[[dependencies]]\nexec = [\"pg_isready\"]\ncritical = false\n[[listen]]\naddress = \"[::1]:3000\"\nmode = \"0600\"\n",
    )
    .ok(&[], &no_flags());
    assert_eq!(loaded.config.dependencies[0].name, "dependency0");
    assert!(!loaded.config.dependencies[0].critical);
    assert_eq!(loaded.config.listen[0].name, "listen0");
    assert!(loaded.warnings.iter().any(|w| w.contains("`mode` applies to unix")));
}

#[test]
fn listen_sockets_warn_about_a_reload_without_a_per_generation_probe() {
    let listen = "[[listen]]\naddress = \"127.0.0.1:3000\"\n";
    let loaded = Case::with_file(listen).ok(&[], &no_flags());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("without a `readiness.probe`")),
        "{:?}",
        loaded.warnings
    );
    let with_notify = format!("{listen}[readiness]\nprobe = {{ notify = true }}\n");
    let loaded = Case::with_file(&with_notify).ok(&[], &no_flags());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn token_file_rules() {
    let case = Case::with_file("[http]\ntoken_file = \"token\"\n");
    let errors = case.errors(&[], &no_flags());
    assert_one_error_containing(
        &errors,
        "`http.token_file` (file supervisor.toml): cannot read token file",
    );

    let token = case.write("token", "  \n");
    assert_one_error_containing(&case.errors(&[], &no_flags()), "is empty");

    std::fs::write(&token, "abc\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let loaded = case.ok(&[], &no_flags());
    assert_eq!(loaded.config.http.token.as_deref(), Some("abc"));
    assert_eq!(loaded.source("http.token"), &file_source());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("can be read by group or others"))
    );

    let loaded = case.ok(&[("GSUP_CONTROL_TOKEN", "env-token")], &no_flags());
    assert_eq!(loaded.config.http.token.as_deref(), Some("env-token"));

    let flags = ConfigFlags {
        token_file: Some("missing".into()),
        ..no_flags()
    };
    assert_one_error_containing(&Case::new().errors(&[], &flags), "(flag --token-file)");
}

#[test]
fn render_check_round_trips() {
    let loaded = load_example();
    let text = render_check(&loaded);
    toml::from_str::<toml::Table>(&text).unwrap();
    assert!(text.contains("timeout = \"30s\"  # file supervisor.toml"), "{text}");
    assert!(text.contains("# token = \"***\"  # env GSUP_CONTROL_TOKEN"), "{text}");
    assert!(!text.contains("example-token"));
    assert!(
        text.contains("method = \"POST\", expect = 200 }  # file supervisor.toml"),
        "{text}"
    );

    // The output is itself a valid config that yields the same values.
    let again = Case::with_file(&text).ok(&[("GSUP_CONTROL_TOKEN", "example-token")], &no_flags());
    assert_eq!(again.config, loaded.config);

    let defaults = Case::new().ok(&[], &no_flags());
    let text = render_check(&defaults);
    assert!(text.contains("# command is unset  # default"), "{text}");
    let again = Case::with_file(&text).ok(&[], &no_flags());
    assert_eq!(again.config, defaults.config);
}

#[test]
fn render_json_shape_and_redaction() {
    let case = Case::with_file(
        "[process]\nenv = { NODE_ENV = \"production\", DB_PASSWORD = \"hunter2\", api_key = \"k\", DATABASE_URL = \"postgres://u:pw@db:5432/app\" }\n[readiness]\nprobe = { http = \"http://admin:pw@127.0.0.1:3000/healthz\" }\n[[dependencies]]\ntcp = \"db:5432\"\n",
    );
    let loaded = case.ok(
        &[("GSUP_CONTROL_TOKEN", "t0ken"), ("SHUTDOWN_TIMEOUT_MS", "1500")],
        &no_flags(),
    );
    let json = render_json(&loaded);
    let text = json.to_string();
    for secret in ["hunter2", "t0ken", ":pw@", "\"k\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let env = &json["process"]["env"];
    assert_eq!(env["NODE_ENV"]["value"], "production");
    assert_eq!(env["DB_PASSWORD"]["value"], "***");
    assert_eq!(env["api_key"]["value"], "***");
    assert_eq!(env["DATABASE_URL"]["value"], "postgres://u:***@db:5432/app");
    assert_eq!(env["DATABASE_URL"]["source"], "file supervisor.toml");
    assert_eq!(json["http"]["token"]["value"], "***");
    assert_eq!(json["http"]["token"]["source"], "env GSUP_CONTROL_TOKEN");
    assert_eq!(json["shutdown"]["timeout"]["value"], 1.5);
    assert_eq!(json["shutdown"]["timeout"]["source"], "env SHUTDOWN_TIMEOUT_MS");
    assert_eq!(json["shutdown"]["force_timeout"]["value"], 5.0);
    assert_eq!(json["shutdown"]["force_timeout"]["source"], "default");
    assert_eq!(json["shutdown"]["log"]["value"], serde_json::Value::Null);
    assert_eq!(json["phases"]["database"]["timeout"]["value"], 10.0);
    assert_eq!(
        json["readiness"]["probe"]["value"]["http"],
        "http://admin:***@127.0.0.1:3000/healthz"
    );
    assert_eq!(json["dependencies"][0]["tcp"]["value"], "db:5432");
    assert_eq!(json["dependencies"][0]["name"]["source"], "default");
    assert_eq!(json["hooks"], serde_json::json!([]));
    assert_eq!(
        json["signals"]["shutdown_on"]["value"],
        serde_json::json!(["TERM", "INT", "USR2"])
    );
}

// ---- Values nobody expected (issue 12 item 3, issue 15 item 5) ----

/// u64::MAX seconds: humantime takes it, and `now + it` overflows an `Instant`.
const HUGE: &str = "18446744073709551615s";

/// Every duration key of the file, zero allowed or not.
fn duration_keys() -> Vec<(&'static str, &'static str)> {
    let mut keys = ZERO_REFUSED.to_vec();
    keys.extend([
        ("shutdown", "drain_delay"),
        ("shutdown", "max_drain_time"),
        ("notify", "watchdog"),
    ]);
    keys
}

#[test]
fn durations_past_365_days_are_refused_in_the_file() {
    for (table, key) in duration_keys() {
        for value in [HUGE, "366d", "365d 1ms", "2y"] {
            let case = Case::with_file(&format!("[{table}]\n{key} = \"{value}\"\n"));
            let errors = case.errors(&[], &no_flags());
            assert_eq!(errors.len(), 1, "{table}.{key} = {value}: {errors:?}");
            assert!(
                errors[0].starts_with(&format!("supervisor.toml, line 2: `{table}.{key}`: ")),
                "{}",
                errors[0]
            );
            assert!(errors[0].contains("longer than 365 days"), "{}", errors[0]);
        }
    }
    for text in [
        format!("[[hooks]]\nphase = \"cleanup\"\nexec = [\"x\"]\ntimeout = \"{HUGE}\"\n"),
        format!("[[dependencies]]\ntcp = \"db:1\"\ninterval = \"{HUGE}\"\n"),
    ] {
        let errors = Case::with_file(&text).errors(&[], &no_flags());
        assert_eq!(errors.len(), 1, "{text}: {errors:?}");
        assert!(errors[0].contains("longer than 365 days"), "{}", errors[0]);
    }
    let loaded = Case::with_file("[shutdown]\ntimeout = \"365d\"\n").ok(&[], &no_flags());
    assert_eq!(loaded.config.shutdown.timeout, secs(365 * 24 * 60 * 60));
}

#[test]
fn durations_past_365_days_are_refused_in_flags_and_env() {
    let case = Case::new();
    for flags in [
        ConfigFlags {
            timeout: Some(HUGE.into()),
            ..no_flags()
        },
        ConfigFlags {
            force_timeout: Some(HUGE.into()),
            ..no_flags()
        },
        ConfigFlags {
            drain_delay: Some("400d".into()),
            ..no_flags()
        },
    ] {
        let errors = case.errors(&[], &flags);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("--"), "{}", errors[0]);
        assert!(errors[0].contains("longer than 365 days"), "{}", errors[0]);
    }
    let one_day_past = (366u64 * 24 * 60 * 60 * 1000).to_string();
    for var in ENV_VARS
        .iter()
        .filter(|v| v.name.ends_with("_MS") || v.name.ends_with("_TIME") || v.name.ends_with("_INTERVAL"))
    {
        for value in ["18446744073709551615", one_day_past.as_str()] {
            let errors = case.errors(&[(var.name, value)], &no_flags());
            assert_eq!(errors.len(), 1, "{}: {errors:?}", var.name);
            assert!(
                errors[0].starts_with(&format!("{}={value}: ", var.name)),
                "{}",
                errors[0]
            );
            assert!(errors[0].contains("longer than 365 days"), "{}", errors[0]);
        }
    }
    assert!(flag_duration(HUGE).unwrap_err().contains("longer than 365 days"));
}

#[test]
fn zero_is_worded_per_key() {
    let case = Case::new();
    let errors = case.errors(
        &[],
        &ConfigFlags {
            timeout: Some("0s".into()),
            ..no_flags()
        },
    );
    assert_eq!(errors, ["--timeout 0s: must be longer than zero"]);
    // Where a key's feature has a switch, the error names it.
    for (text, switch) in [
        ("[monitor]\ninterval = \"0s\"\n", "`monitor.enabled = false`"),
        ("[phases.redis]\ntimeout = \"0s\"\n", "`phases.redis.enabled = false`"),
        ("[readiness]\ninterval = \"0s\"\n", "leave out `readiness.probe`"),
        ("[restart]\nbackoff_initial = \"0s\"\n", "`restart.policy = \"never\"`"),
    ] {
        let errors = Case::with_file(text).errors(&[], &no_flags());
        assert!(errors[0].contains(switch), "{text}: {}", errors[0]);
    }
    for (text, key) in [
        ("[shutdown]\nforce_timeout = \"0s\"\n", "force_timeout"),
        ("[phases.database]\ntimeout = \"0s\"\n", "database"),
    ] {
        let errors = Case::with_file(text).errors(&[], &no_flags());
        assert!(!errors[0].contains("switch"), "{key}: {}", errors[0]);
    }
}

#[test]
fn duration_errors_say_what_was_expected_in_words() {
    for (text, needle) in [
        ("30 seconds x", "a number is missing before `x`"),
        ("ten seconds", "a number is missing before `ten`"),
        ("5 parsecs", "`parsecs` is not a unit"),
        ("1h 30", "`30` has no unit"),
        ("3$", "`$`"),
        ("", "empty"),
        ("99999999999999999999999s", "longer than 365 days"),
    ] {
        let message = values::duration(text, Zero::Refused).unwrap_err();
        assert!(message.contains(needle), "{text:?}: {message}");
        assert!(!message.contains(" at "), "{text:?}: no byte offset: {message}");
    }
}

#[test]
fn file_errors_come_in_line_order() {
    let case = Case::with_file(
        "[restart]\npolicy = \"sometimes\"\n\n[zzz]\n\n[shutdown]\ntimeout = 30\ntimeot = \"1s\"\n\n[process]\nuser = \"\"\n",
    );
    let errors = case.errors(&[("SHUTDOWN_TIMEOUT_MS", "abc")], &no_flags());
    let lines: Vec<&str> = errors
        .iter()
        .map(|e| {
            e.split(", line ")
                .nth(1)
                .map_or("-", |rest| rest.split(':').next().unwrap_or("-"))
        })
        .collect();
    // The file's errors by line, then the environment's.
    assert_eq!(lines, ["2", "4", "7", "8", "11", "-"], "{errors:#?}");
    assert!(errors[5].starts_with("SHUTDOWN_TIMEOUT_MS=abc"), "{}", errors[5]);
}

#[test]
fn http_listen_takes_localhost() {
    let case = Case::new();
    let loaded = case.ok(
        &[],
        &ConfigFlags {
            http: Some("localhost:9091".into()),
            ..no_flags()
        },
    );
    assert_eq!(loaded.config.http.listen, Some("127.0.0.1:9091".parse().unwrap()));
    let loaded = Case::with_file("[http]\nlisten = \"localhost:0\"\n").ok(&[], &no_flags());
    assert_eq!(loaded.config.http.listen, Some("127.0.0.1:0".parse().unwrap()));
    for bad in [
        "localhost",
        "localhost:",
        "localhost:99999",
        "localhost:x",
        "example.com:80",
    ] {
        let errors = case.errors(
            &[],
            &ConfigFlags {
                http: Some(bad.into()),
                ..no_flags()
            },
        );
        assert!(errors[0].contains("localhost:9090"), "{bad}: {}", errors[0]);
    }
}

#[test]
fn a_non_utf8_env_value_is_an_error_naming_the_variable() {
    let case = Case::new();
    for var in ENV_VARS.iter().filter(|v| v.name != "GSUP_CONTROL_SOCKET") {
        let env = env_of_bytes(&[(var.name, b"12\xff")]);
        let errors: Vec<String> = match load(&no_flags(), &env, case.cwd()) {
            Ok(_) => panic!("{}: a non-UTF-8 value was accepted", var.name),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(errors.len(), 1, "{}: {errors:?}", var.name);
        let shown = if var.name == "GSUP_CONTROL_TOKEN" {
            "***"
        } else {
            "12\\xff"
        };
        assert_eq!(
            errors[0],
            format!(
                "{}={shown}: is not valid UTF-8; gsup's variables take text such as 30000 or true",
                var.name
            )
        );
    }
}

#[test]
fn paths_from_the_environment_are_bytes() {
    let case = Case::new();
    let name = OsStr::from_bytes(b"gsup-\xff.toml");
    std::fs::write(case.cwd().join(name), "[shutdown]\ntimeout = \"7s\"\n").unwrap();
    let env = env_of_bytes(&[
        ("GSUP_CONFIG", b"gsup-\xff.toml"),
        ("GSUP_CONTROL_SOCKET", b"run/\xfe.sock"),
    ]);
    let loaded = load(&no_flags(), &env, case.cwd()).unwrap();
    assert_eq!(loaded.config.shutdown.timeout, secs(7));
    assert_eq!(loaded.file, Some(case.cwd().join(name)));
    assert_eq!(
        loaded.config.control.socket,
        Some(case.cwd().join(OsStr::from_bytes(b"run/\xfe.sock")))
    );
}

#[test]
fn a_file_that_is_not_utf8_names_its_line() {
    let case = Case::new();
    std::fs::write(
        case.cwd().join("supervisor.toml"),
        b"[shutdown]\ntimeout = \"1\xffs\"\n",
    )
    .unwrap();
    let errors = case.errors(&[], &no_flags());
    assert_eq!(
        errors,
        ["supervisor.toml is not valid TOML: line 2: not UTF-8 text (a TOML file is UTF-8)"]
    );
}

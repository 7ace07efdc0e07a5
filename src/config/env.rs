//! The environment layer: one table, variable → key → parser (DESIGN §3). The original
//! design's variables keep their integer milliseconds; a bad value is an error naming
//! the variable, never ignored.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::file::DEPENDENCY_OFF;
use super::model::Config;
use super::values::{self, Zero};
use super::{Builder, Source};

/// Applies a variable's value; `Ok(false)` when the value is not meant for gsup (a
/// `DEBUG` for other libraries), so no source is recorded. The value is as the
/// environment holds it: a path takes its bytes, every other value goes through `text`.
type Apply = fn(&mut Config, &OsStr, &Path) -> Result<bool, String>;

/// A value that must be text: one that is not UTF-8 is an error, never the default
/// (DESIGN §3).
fn text(value: &OsStr) -> Result<&str, String> {
    value
        .to_str()
        .ok_or_else(|| "is not valid UTF-8; gsup's variables take text such as 30000 or true".into())
}

pub struct EnvVar {
    pub name: &'static str,
    /// The key it overrides; `[*]` stands for every entry of an array of tables.
    pub key: &'static str,
    apply: Apply,
}

/// Assigns and reports the value as applied.
macro_rules! set {
    ($field:expr, $value:expr) => {{
        $field = $value;
        Ok(true)
    }};
}

/// Every variable gsup reads as a config override, in the order they are applied (`GSUP_LOG`
/// after `DEBUG`, so the more precise filter wins).
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "SHUTDOWN_TIMEOUT_MS",
        key: "shutdown.timeout",
        apply: |c, v, _| set!(c.shutdown.timeout, values::duration_ms(text(v)?, Zero::Refused)?),
    },
    EnvVar {
        name: "FORCE_SHUTDOWN_TIMEOUT_MS",
        key: "shutdown.force_timeout",
        apply: |c, v, _| set!(c.shutdown.force_timeout, values::duration_ms(text(v)?, Zero::Refused)?),
    },
    EnvVar {
        name: "ENABLE_CONNECTION_DRAINING",
        key: "shutdown.connection_draining",
        apply: |c, v, _| set!(c.shutdown.connection_draining, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "MAX_CONNECTION_DRAIN_TIME",
        key: "shutdown.max_drain_time",
        apply: |c, v, _| set!(c.shutdown.max_drain_time, values::duration_ms(text(v)?, Zero::Allowed)?),
    },
    EnvVar {
        name: "HEALTH_CHECK_INTERVAL",
        key: "dependencies[*].interval",
        apply: |c, v, _| {
            let interval = values::duration_ms(text(v)?, Zero::OffBy(DEPENDENCY_OFF))?;
            for dependency in &mut c.dependencies {
                dependency.interval = interval;
            }
            Ok(true)
        },
    },
    EnvVar {
        name: "READINESS_CHECK_ENABLED",
        key: "http.readiness",
        apply: |c, v, _| set!(c.http.readiness, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "LIVENESS_CHECK_ENABLED",
        key: "http.liveness",
        apply: |c, v, _| set!(c.http.liveness, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "PROCESS_MONITORING_ENABLED",
        key: "monitor.enabled",
        apply: |c, v, _| set!(c.monitor.enabled, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "MEMORY_THRESHOLD_MB",
        key: "monitor.memory_threshold_mb",
        apply: |c, v, _| set!(c.monitor.memory_threshold_mb, values::positive_u64(text(v)?)?),
    },
    EnvVar {
        name: "CPU_THRESHOLD_PERCENT",
        key: "monitor.cpu_threshold_percent",
        apply: |c, v, _| set!(c.monitor.cpu_threshold_percent, values::positive_f64(text(v)?)?),
    },
    EnvVar {
        name: "DB_SHUTDOWN_TIMEOUT_MS",
        key: "phases.database.timeout",
        apply: |c, v, _| set!(c.phases.database.timeout, values::duration_ms(text(v)?, Zero::Refused)?),
    },
    EnvVar {
        name: "DB_FORCE_CLOSE",
        key: "phases.database.force_close",
        apply: |c, v, _| set!(c.phases.database.force_close, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "REDIS_SHUTDOWN_TIMEOUT_MS",
        key: "phases.redis.timeout",
        apply: |c, v, _| {
            let off = Zero::OffBy("set REDIS_GRACEFUL_CLOSE=false");
            set!(c.phases.redis.timeout, values::duration_ms(text(v)?, off)?)
        },
    },
    EnvVar {
        name: "REDIS_GRACEFUL_CLOSE",
        key: "phases.redis.enabled",
        apply: |c, v, _| set!(c.phases.redis.enabled, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "EXTERNAL_SERVICES_TIMEOUT_MS",
        key: "phases.external.timeout",
        apply: |c, v, _| set!(c.phases.external.timeout, values::duration_ms(text(v)?, Zero::Refused)?),
    },
    EnvVar {
        name: "PAYMENT_GATEWAY_CLOSE",
        key: "phases.external.payment",
        apply: |c, v, _| set!(c.phases.external_services.payment, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "AI_SERVICE_CLOSE",
        key: "phases.external.ai",
        apply: |c, v, _| set!(c.phases.external_services.ai, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "FILE_STORAGE_CLOSE",
        key: "phases.external.file_storage",
        apply: |c, v, _| set!(c.phases.external_services.file_storage, values::boolean(text(v)?)?),
    },
    EnvVar {
        name: "DEBUG",
        key: "log.level",
        apply: |c, v, _| {
            // DEBUG is the `debug` npm package's list of namespaces, shared with other
            // libraries: only the original design's namespace means anything to gsup.
            let ours = text(v)?
                .split([',', ' '])
                .any(|ns| ns == "graceful-shutdown:*" || ns == "*");
            if ours {
                c.log.level = Some("debug".into());
            }
            Ok(ours)
        },
    },
    EnvVar {
        name: "GSUP_LOG",
        key: "log.level",
        apply: |c, v, _| set!(c.log.level, Some(values::log_level(text(v)?)?)),
    },
    EnvVar {
        name: "GSUP_CONTROL_TOKEN",
        key: "http.token",
        apply: |c, v, _| {
            let token = text(v)?.trim();
            if token.is_empty() {
                return Err("is set but empty; unset it or give a token".into());
            }
            set!(c.http.token, Some(token.to_string()))
        },
    },
    EnvVar {
        name: "GSUP_CONTROL_SOCKET",
        key: "control.socket",
        apply: |c, v, cwd| {
            // A path: bytes, UTF-8 or not (DESIGN §3).
            if v.is_empty() {
                return Err("is set but empty; unset it or give a socket path".into());
            }
            set!(c.control.socket, Some(cwd.join(v)))
        },
    },
];

pub(super) fn apply(b: &mut Builder, env: &super::Env, cwd: &Path) {
    for var in ENV_VARS {
        let Some(value) = env(var.name) else {
            continue;
        };
        match (var.apply)(&mut b.config, &value, cwd) {
            Ok(false) => {}
            Ok(true) => {
                let source = Source::Env(var.name.to_string());
                // Only `dependencies` has a variable for all of its entries.
                match var.key.split_once("[*]") {
                    Some((array, field)) => {
                        for index in 0..b.config.dependencies.len() {
                            b.set_source(format!("{array}[{index}]{field}"), source.clone());
                        }
                    }
                    None => b.set_source(var.key, source),
                }
            }
            Err(message) => {
                b.error(format!("{}={}", var.name, shown(var.name, &value)), message);
            }
        }
    }
}

/// A value as an error message shows it: bytes that are not UTF-8 escaped (`12\xff`), and
/// never a secret.
fn shown(name: &str, value: &OsString) -> String {
    if name == "GSUP_CONTROL_TOKEN" {
        return "***".into();
    }
    match value.to_str() {
        Some(text) => text.to_string(),
        None => value.as_bytes().escape_ascii().to_string(),
    }
}

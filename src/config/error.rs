//! Config errors. `load` collects all of them before it gives up, so `gsup check` can
//! list every mistake at once (DESIGN §2); each names where the value came from.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("unknown key `{key}` in {file}, line {line}: {hint}")]
    UnknownKey {
        key: String,
        file: String,
        line: usize,
        /// "did you mean `timeout`?" or the list of valid keys.
        hint: String,
    },
    /// A bad value. `at` names the origin: "supervisor.toml, line 4: `shutdown.timeout`",
    /// "SHUTDOWN_TIMEOUT_MS=abc", "--timeout 0s".
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

/// Every error found, in the order found; Display prints one per line.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

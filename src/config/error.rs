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
    /// "SHUTDOWN_TIMEOUT_MS=abc", "--timeout 0s"; `line` is set for the file's.
    #[error("{at}: {message}")]
    Invalid {
        at: String,
        line: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    /// The line of the config file the error is on, for listing them in file order.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::UnknownKey { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. } => *line,
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

/// Where a bad value came from: the text that names it, and its line when it is in the
/// config file.
#[derive(Debug, Clone)]
pub struct At {
    pub text: String,
    pub line: Option<usize>,
}

impl From<String> for At {
    fn from(text: String) -> Self {
        At { text, line: None }
    }
}

impl From<&str> for At {
    fn from(text: &str) -> Self {
        At::from(text.to_string())
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
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

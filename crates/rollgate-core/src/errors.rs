//! Errors of the core crate: configuration that cannot be loaded.

use std::path::PathBuf;
use thiserror::Error;

use crate::exit::ExitCode;

/// Why a configuration could not be loaded. Every variant names the file, and where it can, the
/// line and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no configuration file found (tried {})", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { tried: Vec<PathBuf> },

    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: {}{message}", path.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },

    #[error("{}:{line}: key `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },

    #[error("{}:{line}: key `{key}`: environment variable `{var}` is not set (set it, or write `${{{var}:-default}}`)", path.display())]
    MissingEnv {
        path: PathBuf,
        line: usize,
        key: String,
        var: String,
    },

    /// `detail` reads "layer `L` names unknown component `C` (known components: …)".
    #[error("{}:{line}: key `{key}`: {detail}", path.display())]
    UnknownComponent {
        path: PathBuf,
        line: usize,
        key: String,
        detail: String,
    },

    #[error("{}: mode mismatch: {detail}", path.display())]
    ModeMismatch { path: PathBuf, detail: String },
}

impl ConfigError {
    /// The documented exit code: a mode mismatch is an ambiguous environment (3), everything
    /// else is a configuration error (2).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ConfigError::ModeMismatch { .. } => ExitCode::NotReady,
            _ => ExitCode::Usage,
        }
    }
}

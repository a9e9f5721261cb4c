//! Expected errors of the CLI and the one place they map to documented exit codes.
//!
//! Two tiers (house style): an expected error (bad usage, bad configuration, an environment that
//! is not ready, a busy lock) has its documented exit code; anything else is a bug and exits 1.

use rollgate_core::{ConfigError, ExitCode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// Usage or configuration error; nothing was changed (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Prerequisites degraded or environment ambiguous; nothing was changed (exit 3).
    #[error("{0}")]
    NotReady(String),
    /// Another rollout holds the lock, or an interrupted rollout must be resumed (exit 6).
    #[error("{0}")]
    Busy(String),
    /// A bug, or a failure rollgate has no better classification for (exit 1).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::Usage,
            CliError::Config(e) => e.exit_code(),
            CliError::NotReady(_) => ExitCode::NotReady,
            CliError::Busy(_) => ExitCode::Busy,
            CliError::Internal(_) => ExitCode::Internal,
        }
    }
}

/// What a subcommand returns: the exit code of a completed run (which may be non-zero, e.g. a
/// check that found a problem), or an error.
pub type CmdResult = Result<ExitCode, CliError>;

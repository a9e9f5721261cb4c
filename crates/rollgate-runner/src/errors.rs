//! Errors of the runner: why a rollout, rollback or resume could not run at all.
//!
//! A rollout that runs and fails a gate is not an error: it is a [`crate::report::RolloutReport`]
//! with outcome `rolled_back`. These are the cases where nothing (more) could be done.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunnerError {
    /// The request itself is wrong: unknown layer, nothing to change, two layers at once.
    #[error("{0}")]
    Usage(String),
    /// Another rollout holds the lock, or an interrupted rollout must be resumed first.
    #[error("{0}")]
    Busy(String),
    /// The environment is ambiguous (a config file edited by hand since the baseline): exit 3,
    /// nothing was changed.
    #[error("{0}")]
    Ambiguous(String),
    /// Nothing to act on (no rollout to resume, no baseline to roll back to).
    #[error("{0}")]
    NotFound(String),
    #[error("journal")]
    Journal(#[source] rollgate_journal::JournalError),
    #[error("runtime driver")]
    Driver(#[source] rollgate_runtime::DriverError),
    #[error("{0}")]
    Internal(String),
}

impl From<rollgate_journal::JournalError> for RunnerError {
    fn from(e: rollgate_journal::JournalError) -> Self {
        RunnerError::Journal(e)
    }
}

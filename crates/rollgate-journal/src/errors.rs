//! Errors of the journal and the lock.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to prepare the state directory {}", .path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to use the journal database")]
    Sqlite(#[from] rusqlite::Error),

    /// The file was written by a newer rollgate; refusing protects its data.
    #[error("journal schema version {found} is newer than this rollgate understands ({supported})")]
    TooNew { found: u32, supported: u32 },

    #[error("baseline `{0}` already exists; baselines are immutable")]
    BaselineExists(String),

    #[error("no baseline `{0}` in the journal")]
    NoBaseline(String),

    #[error("rollout `{0}` already exists")]
    RolloutExists(String),

    #[error("no rollout `{0}` in the journal")]
    NoRollout(String),

    /// One rollout at a time: an unfinished one must be resumed or rolled back first.
    #[error("rollout `{0}` is unfinished and must be resumed first")]
    Unfinished(String),

    #[error("rollout `{0}` is already finished")]
    Finished(String),

    #[error("no step {0} in the journal")]
    NoStep(i64),

    #[error("step {0} already has an outcome")]
    OutcomeRecorded(i64),

    /// A stored JSON document does not have the expected shape.
    #[error("failed to read {what} from the journal")]
    Format {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A live process holds the lock (exit code 6).
    #[error(
        "another rollout holds the lock {}: pid {} since {} (last heartbeat {})",
        .path.display(),
        .pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into()),
        .since.as_deref().unwrap_or("unknown"),
        .heartbeat.as_deref().unwrap_or("unknown")
    )]
    Busy {
        pid: Option<u32>,
        since: Option<String>,
        heartbeat: Option<String>,
        path: PathBuf,
    },

    #[error("failed to use the lock file {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

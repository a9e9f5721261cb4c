//! The journal: rollgate's crash-safe memory, and the lock that makes it one writer per node.
//!
//! - [`Journal`] is a SQLite database (`<state_dir>/journal.sqlite`, mode 0600, WAL,
//!   `synchronous=FULL`) holding baselines (immutable), rollouts, their steps written as intent
//!   before each action and outcome after it, gate verdicts with evidence and driver outputs.
//!   The state a caller acts on ([`JournalState`]) is rebuilt from it on every open, so
//!   behaviour after a crash equals behaviour without one.
//! - [`Lock`] allows one rollout per node; a holder that died is detected and reclaimed.
//! - [`snapshots`] records the database snapshots taken before a layer change.
//! - [`report`] renders `rollgate status`, `history` and `show` from the journal.
//!
//! The API is synchronous (rusqlite); async callers wrap it in `spawn_blocking`. Everything
//! written goes through [`redact::Redactor`] first: secrets never reach the file.
#![forbid(unsafe_code)]

pub mod errors;
mod format;
pub mod journal;
pub mod lock;
pub mod model;
pub mod redact;
pub mod report;
pub mod schema;
pub mod snapshots;

pub use errors::{JournalError, LockError};
pub use journal::Journal;
pub use lock::{Holder, Lock, LockGuard, LockStatus, Reclaimed, StaleReason};
pub use model::*;
pub use redact::Redactor;
pub use schema::SCHEMA_VERSION;
pub use snapshots::{NewSnapshot, SnapshotRecord};

//! The async orchestration shared by the CLI and `serve`: checks, baseline freeze, rollout,
//! rollback, resume, bake and watch. Everything that waits, polls or calls a driver lives here;
//! what to conclude from observations is decided by `rollgate_core::engine`.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod bake;
pub mod baseline;
pub mod checks;
pub mod errors;
pub mod journal;
pub mod killswitch;
pub mod monitoring;
pub mod notify;
pub mod observe;
pub mod progress;
pub mod report;
pub mod rollout;
pub mod silence;
pub mod snapshot;
pub mod watch;

pub use errors::RunnerError;
pub use journal::JournalHandle;
pub use progress::{Progress, Silent};
pub use report::RolloutReport;
pub use rollout::{RolloutOptions, Runner};

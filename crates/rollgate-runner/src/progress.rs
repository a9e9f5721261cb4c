//! Live progress while a rollout waits on its gates. The CLI shows it on a terminal; `serve`
//! and tests ignore it.

use std::time::Duration;

use rollgate_core::vocab::GateResult;

/// Receives progress as a rollout runs. Implementations must be cheap and never block.
pub trait Progress: Send + Sync {
    /// A journal step started.
    fn step(&self, _kind: &str, _detail: &str) {}
    /// The gates after one poll: `elapsed` since the change, `deadline` for the pending ones.
    fn gates(&self, _phase: &str, _elapsed: Duration, _deadline: Duration, _gates: &[GateResult]) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

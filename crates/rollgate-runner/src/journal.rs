//! The journal from async code: SQLite runs on a blocking thread, never on the runtime, and
//! every write is followed by the crash hook used by the crash-safety tests.

use std::sync::{Arc, Mutex};

use rollgate_journal::{Journal, JournalError};

use crate::errors::RunnerError;

/// A shared journal whose calls run on tokio's blocking pool.
#[derive(Clone)]
pub struct JournalHandle {
    inner: Arc<Mutex<Journal>>,
}

impl JournalHandle {
    pub fn new(journal: Journal) -> JournalHandle {
        JournalHandle {
            inner: Arc::new(Mutex::new(journal)),
        }
    }

    /// Run `f` with the journal on a blocking thread.
    pub async fn call<R, F>(&self, f: F) -> Result<R, RunnerError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Journal) -> Result<R, JournalError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| RunnerError::Internal(format!("journal task failed: {e}")))?
        .map_err(RunnerError::from)
    }
}

/// Test hook for crash safety: when `ROLLGATE_CRASH_AT` names this journal record
/// (`<step>:intent` or `<step>:outcome`, e.g. `apply:intent`), the process kills itself with
/// SIGKILL right after the record is durable — exactly what a power cut or an OOM kill at that
/// boundary looks like. Documented in docs/design/rollout.md; never set in production.
pub fn crash_point(step: &str, phase: &str) {
    if let Ok(target) = std::env::var("ROLLGATE_CRASH_AT")
        && target == format!("{step}:{phase}")
    {
        eprintln!("rollgate: ROLLGATE_CRASH_AT={target}: killing myself with SIGKILL");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; if delivery were delayed, do not run on.
        std::process::abort();
    }
}

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
/// boundary looks like. It exists only in builds with the `test-hooks` feature (the test
/// suite's); a release build ignores the variable.
/// `<step>:<phase>@N` crashes at the N-th such record of the process (a plan's second step).
#[cfg(feature = "test-hooks")]
pub fn crash_point(step: &str, phase: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let Ok(target) = std::env::var("ROLLGATE_CRASH_AT") else {
        return;
    };
    let (point, nth) = match target.split_once('@') {
        Some((p, n)) => (p, n.parse::<u32>().unwrap_or(1)),
        None => (target.as_str(), 1),
    };
    if point == format!("{step}:{phase}") && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("rollgate: ROLLGATE_CRASH_AT={target}: killing myself with SIGKILL");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; if delivery were delayed, do not run on.
        std::process::abort();
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn crash_point(_step: &str, _phase: &str) {}

/// Test hook for journal failures: when `ROLLGATE_JOURNAL_FAIL_FROM` names a journal record
/// (`<step>:<intent|outcome>`), that write and every later one fails, as on a full or broken
/// disk. Only in builds with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub fn fail_point(step: &str, phase: &str) -> Result<(), RunnerError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FAILING: AtomicBool = AtomicBool::new(false);
    if let Ok(target) = std::env::var("ROLLGATE_JOURNAL_FAIL_FROM")
        && target == format!("{step}:{phase}")
    {
        FAILING.store(true, Ordering::SeqCst);
    }
    if FAILING.load(Ordering::SeqCst) {
        return Err(RunnerError::Internal(format!(
            "journal write of {step}:{phase} failed (ROLLGATE_JOURNAL_FAIL_FROM)"
        )));
    }
    Ok(())
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn fail_point(_step: &str, _phase: &str) -> Result<(), RunnerError> {
    Ok(())
}

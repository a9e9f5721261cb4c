//! The simulated AESM: a unix socket that accepts connections. A probe only needs to connect;
//! bytes sent are read and discarded. [`RunningAesm::cut`] removes the socket (as a stopped
//! aesmd does) and [`RunningAesm::restore`] brings it back at the same path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::errors::SimError;

/// A running AESM socket.
#[derive(Debug)]
pub struct RunningAesm {
    path: PathBuf,
    accepted: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl RunningAesm {
    /// Listens on `path` (its directory is created; a stale socket file is replaced).
    pub fn start(path: impl AsRef<Path>) -> Result<RunningAesm, SimError> {
        let mut aesm = RunningAesm {
            path: path.as_ref().to_owned(),
            accepted: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        aesm.restore()?;
        Ok(aesm)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.task.is_some()
    }

    /// Stops listening and removes the socket file.
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Listens again (no-op when already up).
    pub fn restore(&mut self) -> Result<(), SimError> {
        if self.task.is_some() {
            return Ok(());
        }
        let listener = crate::proxy::bind_unix(&self.path)?;
        self.task = Some(tokio::spawn(accept_loop(listener, self.accepted.clone())));
        tracing::info!(socket = %self.path.display(), "aesm listening");
        Ok(())
    }

    pub fn shutdown(mut self) {
        self.cut();
    }
}

impl Drop for RunningAesm {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept_loop(listener: UnixListener, accepted: Arc<AtomicU64>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "aesm accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

//! Shared plumbing for the HTTP services: bind a listener, serve an axum router until told to
//! stop, and stop in bounded time (a keep-alive client must not keep a "stopped" service alive).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::errors::SimError;

/// How long a graceful stop may take before the server task is aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: &str) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// A running axum server.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `router` on `listener` in a background task.
    pub fn spawn(listener: TcpListener, router: Router) -> Result<Self, SimError> {
        Self::spawn_on(listener, router)
    }

    /// Serves `router` on any axum listener (the PCCS uses a TLS one).
    pub fn spawn_on<L>(listener: L, router: Router) -> Result<Self, SimError>
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let addr = listener.local_addr().map_err(SimError::LocalAddr)?;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%addr, error = %e, "server stopped with an error");
            }
        });
        Ok(HttpServer {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops the server from elsewhere (used by crash-loop versions).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and releases the port.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! The simulated KYC service: `GET /v1/status` with `isHealthy`, backed by the real `kyc`
//! database (it records its start there and checks the database on every status).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db;
use crate::errors::SimError;
use crate::server::HttpServer;
use crate::version::KycVersion;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS kyc_starts (
    id BIGSERIAL PRIMARY KEY,
    version TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// How to run the KYC service.
#[derive(Debug, Clone)]
pub struct KycOptions {
    pub listen: String,
    pub version: KycVersion,
    /// The `kyc` database; created when missing. None runs without one (always "healthy"
    /// database-wise).
    pub database_url: Option<String>,
    pub crash_after: Duration,
    pub dependency_timeout: Duration,
}

impl Default for KycOptions {
    fn default() -> Self {
        KycOptions {
            listen: "127.0.0.1:8090".into(),
            version: KycVersion::V1_0_0,
            database_url: None,
            crash_after: Duration::from_secs(1),
            dependency_timeout: Duration::from_secs(1),
        }
    }
}

struct Inner {
    opts: KycOptions,
    pg: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

/// A running KYC service.
pub struct RunningKyc {
    server: Option<HttpServer>,
    inner: Arc<Inner>,
    background: Vec<JoinHandle<()>>,
    exit: watch::Receiver<Option<i32>>,
}

impl std::fmt::Debug for RunningKyc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningKyc")
            .field("addr", &self.local_addr())
            .field("version", &self.inner.opts.version)
            .finish()
    }
}

impl RunningKyc {
    pub async fn start(opts: KycOptions) -> Result<RunningKyc, SimError> {
        let listener = crate::server::bind(&opts.listen).await?;
        Self::start_on(listener, opts).await
    }

    pub async fn start_on(listener: TcpListener, opts: KycOptions) -> Result<RunningKyc, SimError> {
        let version = opts.version;
        let inner = Arc::new(Inner {
            opts,
            pg: tokio::sync::Mutex::new(None),
        });
        if let Ok(c) = inner.client_checked().await
            && let Some(c) = c.as_ref()
        {
            let _ = c
                .execute(
                    "INSERT INTO kyc_starts (version) VALUES ($1)",
                    &[&version.as_str()],
                )
                .await;
        }
        let router = Router::new()
            .route("/v1/status", get(status))
            .with_state(inner.clone());
        let server = HttpServer::spawn(listener, router)?;
        tracing::info!(addr = %server.local_addr(), %version, "kyc started");
        let (exit_tx, exit) = watch::channel(None);
        let stop = server.stopper();
        let crash_after = inner.opts.crash_after;
        let task = tokio::spawn(async move {
            if version == KycVersion::CrashLoop {
                tokio::time::sleep(crash_after).await;
                tracing::error!("fatal: kyc enclave identity could not be loaded; exiting");
                let _ = stop.send(true);
                let _ = exit_tx.send(Some(1));
            } else {
                exit_tx.closed().await;
            }
        });
        Ok(RunningKyc {
            server: Some(server),
            inner,
            background: vec![task],
            exit,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .map(|s| s.local_addr())
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    pub fn version(&self) -> KycVersion {
        self.inner.opts.version
    }

    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// Waits until the service exits by itself (crash-loop versions); pends otherwise.
    pub async fn wait_exit(&self) -> i32 {
        let mut rx = self.exit.clone();
        match rx.wait_for(|c| c.is_some()).await {
            Ok(code) => code.unwrap_or(1),
            Err(_) => std::future::pending().await,
        }
    }

    pub async fn shutdown(mut self) {
        for t in self.background.drain(..) {
            t.abort();
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for RunningKyc {
    fn drop(&mut self) {
        for t in &self.background {
            t.abort();
        }
    }
}

impl Inner {
    /// Checks the database (reconnecting when needed). `Ok(None)` when none is configured.
    async fn client_checked(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, SimError> {
        let Some(url) = self.opts.database_url.as_deref() else {
            return Ok(self.pg.lock().await);
        };
        let timeout = self.opts.dependency_timeout;
        let mut slot = self.pg.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = None;
            let c = db::connect_pg_creating(url, timeout).await?;
            c.batch_execute(CREATE_TABLE).await?;
            *slot = Some(c);
        }
        let ok = match slot.as_ref() {
            Some(c) => tokio::time::timeout(timeout, c.simple_query("SELECT 1"))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        if !ok {
            *slot = None;
            return Err(SimError::Timeout(timeout));
        }
        Ok(slot)
    }
}

async fn status(State(inner): State<Arc<Inner>>) -> Response {
    let db_ok = match inner.client_checked().await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "kyc database check failed");
            false
        }
    };
    let version = inner.opts.version;
    let healthy = db_ok && version != KycVersion::Unhealthy;
    let body = json!({
        "isHealthy": healthy,
        "version": version.as_str(),
        "database": if db_ok { "ok" } else { "unreachable" },
        "enclave": {"fault": null},
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

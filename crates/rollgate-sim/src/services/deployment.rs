//! The simulated deployment-service: `GET /health`, and the sole writer of the deployment
//! metadata `<APP_CONFIG>/ethereum/addresses.json`. It writes the file on start and leaves it
//! untouched when the content is already identical, so its hash and mtime stay stable across
//! restarts (rollgate's baseline hashes it).

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::errors::SimError;
use crate::server::HttpServer;

/// How to run the deployment-service.
#[derive(Debug, Clone)]
pub struct DeploymentOptions {
    pub listen: String,
    /// `APP_CONFIG`.
    pub app_config: PathBuf,
    pub chain_id: u64,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        DeploymentOptions {
            listen: "127.0.0.1:4040".into(),
            app_config: PathBuf::from("/opt/dexlabs"),
            chain_id: 1337,
        }
    }
}

/// A running deployment-service.
#[derive(Debug)]
pub struct RunningDeployment {
    server: HttpServer,
    metadata: PathBuf,
    wrote: bool,
}

/// Path of the deployment metadata under `app_config`.
pub fn metadata_path(app_config: &Path) -> PathBuf {
    app_config.join("ethereum").join("addresses.json")
}

/// The deterministic metadata content for a chain: contract addresses derived from its id.
pub fn metadata_content(chain_id: u64) -> Vec<u8> {
    let addr = |name: &str| {
        let h = Sha256::digest(format!("{chain_id}/{name}"));
        format!("0x{}", hex::encode(&h[..20]))
    };
    let doc = json!({
        "chainId": chain_id,
        "contracts": {
            "DerivaDEX": addr("DerivaDEX"),
            "Custodian": addr("Custodian"),
            "Registration": addr("Registration"),
            "Collateral": addr("Collateral"),
        },
        "deployedAtBlock": 1,
    });
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

impl RunningDeployment {
    pub async fn start(opts: DeploymentOptions) -> Result<RunningDeployment, SimError> {
        let listener = crate::server::bind(&opts.listen).await?;
        Self::start_on(listener, opts)
    }

    pub fn start_on(
        listener: TcpListener,
        opts: DeploymentOptions,
    ) -> Result<RunningDeployment, SimError> {
        let metadata = metadata_path(&opts.app_config);
        if let Some(dir) = metadata.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SimError::io(format!("create {}", dir.display()), e))?;
        }
        let wrote = crate::services::write_if_changed(&metadata, &metadata_content(opts.chain_id))?;
        let router = Router::new().route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    json!({"status": "ok", "service": "deployment-service"}).to_string(),
                )
                    .into_response()
            }),
        );
        let server = HttpServer::spawn(listener, router)?;
        tracing::info!(addr = %server.local_addr(), metadata = %metadata.display(), wrote, "deployment-service started");
        Ok(RunningDeployment {
            server,
            metadata,
            wrote,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    /// The metadata file it owns.
    pub fn metadata_path(&self) -> &Path {
        &self.metadata
    }

    /// Whether this start wrote the metadata (false when it was already identical).
    pub fn wrote_metadata(&self) -> bool {
        self.wrote
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

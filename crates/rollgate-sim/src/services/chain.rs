//! The simulated chain: Ethereum JSON-RPC 2.0 over HTTP POST `/`, answering `eth_chainId`,
//! an advancing `eth_blockNumber`, `net_version` and `web3_clientVersion`; anything else gets
//! the JSON-RPC "method not found" error. Batches are supported as the spec requires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::errors::SimError;
use crate::server::HttpServer;

/// How to run the chain.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    pub listen: String,
    /// 1337 (`0x539`) by default, as a local dev chain.
    pub chain_id: u64,
    pub block_interval: Duration,
    pub start_block: u64,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            listen: "127.0.0.1:8545".into(),
            chain_id: 1337,
            block_interval: Duration::from_secs(1),
            start_block: 100,
        }
    }
}

struct Inner {
    opts: ChainOptions,
    started: Instant,
}

impl Inner {
    fn block_number(&self) -> u64 {
        let interval = self.opts.block_interval.as_millis().max(1);
        self.opts.start_block + (self.started.elapsed().as_millis() / interval) as u64
    }
}

/// A running chain endpoint.
#[derive(Debug)]
pub struct RunningChain {
    server: HttpServer,
}

impl RunningChain {
    pub async fn start(opts: ChainOptions) -> Result<RunningChain, SimError> {
        let listener = crate::server::bind(&opts.listen).await?;
        Self::start_on(listener, opts)
    }

    pub fn start_on(listener: TcpListener, opts: ChainOptions) -> Result<RunningChain, SimError> {
        let inner = Arc::new(Inner {
            opts,
            started: Instant::now(),
        });
        let router = Router::new().route("/", post(rpc)).with_state(inner);
        let server = HttpServer::spawn(listener, router)?;
        tracing::info!(addr = %server.local_addr(), "chain started");
        Ok(RunningChain { server })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn call(inner: &Inner, req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error(id, -32600, "Invalid Request");
    };
    if req.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return error(id, -32600, "Invalid Request");
    }
    let result = match method {
        "eth_chainId" => json!(format!("0x{:x}", inner.opts.chain_id)),
        "net_version" => json!(inner.opts.chain_id.to_string()),
        "eth_blockNumber" => json!(format!("0x{:x}", inner.block_number())),
        "web3_clientVersion" => json!("rollgate-sim/chain"),
        "eth_syncing" => json!(false),
        _ => return error(id, -32601, "Method not found"),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

async fn rpc(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let reply = match serde_json::from_slice::<Value>(&body) {
        Err(_) => error(Value::Null, -32700, "Parse error"),
        Ok(Value::Array(batch)) if batch.is_empty() => {
            error(Value::Null, -32600, "Invalid Request")
        }
        Ok(Value::Array(batch)) => Value::Array(batch.iter().map(|r| call(&inner, r)).collect()),
        Ok(single) => call(&inner, &single),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
        .into_response()
}

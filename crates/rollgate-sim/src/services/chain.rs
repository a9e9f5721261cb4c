//! The simulated chain: Ethereum JSON-RPC 2.0 over HTTP POST `/`, answering `eth_chainId`,
//! an advancing `eth_blockNumber`, `eth_getBlockByNumber` (`number`, `timestamp`, `hash`,
//! `parentHash`), `eth_syncing`, `net_version` and `web3_clientVersion`; anything else gets
//! the JSON-RPC "method not found" error. Batches are supported as the spec requires, unless
//! `batches` is off (then a batch gets one "invalid request" error, as some providers answer).
//!
//! Blocks come every `block_interval`, until `stall_after` (the latest block then ages, as on a
//! stalled chain). Block `start_block` is `head_age` old when the chain starts; each later
//! block is `block_interval` younger than the one before.

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
    /// Stop making blocks this long after the start (`None`: never).
    pub stall_after: Option<Duration>,
    /// How old block `start_block` is at the start.
    pub head_age: Duration,
    /// Answer JSON-RPC batches (on by default).
    pub batches: bool,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            listen: "127.0.0.1:8545".into(),
            chain_id: 1337,
            block_interval: Duration::from_secs(1),
            start_block: 100,
            stall_after: None,
            head_age: Duration::ZERO,
            batches: true,
        }
    }
}

struct Inner {
    opts: ChainOptions,
    started: Instant,
    /// Unix time of the start, in milliseconds.
    started_unix_ms: u128,
}

impl Inner {
    fn block_number(&self) -> u64 {
        let interval = self.opts.block_interval.as_millis().max(1);
        let mut running = self.started.elapsed();
        if let Some(stall) = self.opts.stall_after {
            running = running.min(stall);
        }
        self.opts.start_block + (running.as_millis() / interval) as u64
    }

    /// Block `n` (at most the head), as `eth_getBlockByNumber` returns it.
    fn block(&self, n: u64) -> Value {
        let o = &self.opts;
        let since_start =
            u128::from(n.saturating_sub(o.start_block)) * o.block_interval.as_millis();
        let before_start =
            u128::from(o.start_block.saturating_sub(n)) * o.block_interval.as_millis();
        let ts_ms = (self.started_unix_ms + since_start)
            .saturating_sub(o.head_age.as_millis() + before_start);
        let hash = |n: u64| format!("0x{:016x}{:048x}", o.chain_id, n);
        json!({
            "number": format!("0x{n:x}"),
            "timestamp": format!("0x{:x}", ts_ms / 1000),
            "hash": hash(n),
            "parentHash": hash(n.saturating_sub(1)),
            "transactions": [],
        })
    }

    /// The block a `eth_getBlockByNumber` tag or hex number names; `None` for a bad tag,
    /// `Some(None)` for a block not made yet.
    fn block_by_tag(&self, tag: &Value) -> Option<Option<Value>> {
        let head = self.block_number();
        let n = match tag.as_str()? {
            "latest" | "pending" | "safe" | "finalized" => head,
            "earliest" => 0,
            hex => {
                let digits = hex.strip_prefix("0x")?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                u64::from_str_radix(digits, 16).ok()?
            }
        };
        Some((n <= head).then(|| self.block(n)))
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
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let inner = Arc::new(Inner {
            opts,
            started: Instant::now(),
            started_unix_ms,
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
        "eth_getBlockByNumber" => match req.pointer("/params/0").map(|t| inner.block_by_tag(t)) {
            Some(Some(block)) => json!(block),
            _ => return error(id, -32602, "Invalid params"),
        },
        _ => return error(id, -32601, "Method not found"),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

async fn rpc(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let reply = match serde_json::from_slice::<Value>(&body) {
        Err(_) => error(Value::Null, -32700, "Parse error"),
        Ok(Value::Array(batch)) if batch.is_empty() || !inner.opts.batches => {
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

//! The simulated operator: the REST surface of the enclave operator (`/v2/status`,
//! `/v2/encryption-key`, `/v2/mark-price`, `/v2/request`, `/metrics`) over a toy sequencer.
//!
//! Only the internal logic is fake. Sequenced requests are real rows in the real Postgres
//! database and real keys in the real Redis, so a dependency outage degrades `health` and stops
//! progression exactly where a real node would show it. The behaviour of each
//! [`OperatorVersion`] is implemented here; `docs/sim.md` has the table.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::{ClusterFile, ClusterView, Heartbeat};
use crate::db;
use crate::errors::SimError;
use crate::server::{HttpServer, now_ms};
use crate::version::OperatorVersion;

/// Rows the operator writes, one per sequenced request.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS operator_requests (
    id BIGSERIAL PRIMARY KEY,
    request_index BIGINT NOT NULL,
    tx_hash TEXT NOT NULL,
    version TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// The migration of `v1.1.0-migrate-schema`: a column older versions do not know.
pub const MIGRATE: &str = "ALTER TABLE operator_requests ADD COLUMN IF NOT EXISTS schema_v2 BOOLEAN NOT NULL DEFAULT false";

/// Whether the table has been migrated by `v1.1.0-migrate-schema`.
const MIGRATED: &str = "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = 'operator_requests' \
     AND column_name = 'schema_v2')";

/// Bytes of payload stored per request by a normal version.
pub const PAYLOAD_BYTES: usize = 512;
/// How many times more `v1.1.0-bloat` stores per request: far enough above the bake's default
/// `max_storage_growth_ratio` (3) that a young database's one-time jumps (new pages, the
/// free-space map) in the baseline window cannot hide it (at 10x a test saw x2.8).
pub const BLOAT_FACTOR: usize = 30;
/// Extra latency of every endpoint of `v1.1.0-slow`.
pub const SLOW_EXTRA: Duration = Duration::from_millis(40);

/// How to run one operator.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// Address to bind, e.g. `127.0.0.1:8080`; port 0 picks a free one.
    pub listen: String,
    pub version: OperatorVersion,
    /// The operator's database (`node0`); created on first start when missing. None runs
    /// without persistence (and without a Postgres health signal).
    pub database_url: Option<String>,
    /// None runs without Redis (and without a Redis health signal).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several simulated nodes can share one Redis.
    pub redis_prefix: String,
    /// `APP_CONFIG`: where `enclave/build-flags.env` is written on start.
    pub app_config: Option<PathBuf>,
    /// Built-in traffic generator; off models an idle node.
    pub traffic: bool,
    pub traffic_interval: Duration,
    /// How long `v1.1.0-slow-start` stays in `Starting`.
    pub slow_start: Duration,
    /// How long `v1.1.0-crash-loop` runs before it exits with status 1.
    pub crash_after: Duration,
    /// How often Postgres and Redis are checked.
    pub health_interval: Duration,
    /// Timeout of each dependency call.
    pub dependency_timeout: Duration,
    /// Whether the oracle delivers mark prices; without them requests answer 503.
    pub mark_price: bool,
    pub node_id: u64,
    /// How the status document spells its values (see [`StatusShape`]).
    pub shape: StatusShape,
    /// Cluster mode: the shared Raft state of the cluster this node belongs to (see
    /// [`crate::cluster`]). The node then heartbeats into it instead of generating its own
    /// traffic, applies the entries the leader commits, and reports the cluster's voter set,
    /// leader and term. None: a cluster of one, this node the leader.
    pub cluster_file: Option<PathBuf>,
    /// How often a cluster node heartbeats (and applies what was committed).
    pub heartbeat_interval: Duration,
}

/// How the status document spells "nothing" and counts: real nodes differ from the
/// simulator's tidy defaults, and the gates must read both the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusShape {
    /// `null` faults, `requestIndex` a small JSON number, a `dependencies` object.
    #[default]
    Tidy,
    /// `false` and `""` for "no fault", `requestIndex` a decimal string counting past 2^64, no
    /// `dependencies` object.
    Terse,
}

impl std::str::FromStr for StatusShape {
    type Err = String;
    fn from_str(s: &str) -> Result<StatusShape, String> {
        match s {
            "tidy" => Ok(StatusShape::Tidy),
            "terse" => Ok(StatusShape::Terse),
            other => Err(format!("unknown status shape `{other}` (tidy, terse)")),
        }
    }
}

impl StatusShape {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusShape::Tidy => "tidy",
            StatusShape::Terse => "terse",
        }
    }
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            listen: "127.0.0.1:8080".into(),
            version: OperatorVersion::V1_0_0,
            database_url: None,
            redis_url: None,
            redis_prefix: "node0".into(),
            app_config: None,
            traffic: true,
            traffic_interval: Duration::from_millis(250),
            slow_start: Duration::from_secs(5),
            crash_after: Duration::from_secs(1),
            health_interval: Duration::from_millis(500),
            dependency_timeout: Duration::from_secs(1),
            mark_price: true,
            node_id: 1,
            shape: StatusShape::Tidy,
            cluster_file: None,
            heartbeat_interval: Duration::from_millis(100),
        }
    }
}

/// Progression state; guarded by a std mutex that is never held across an await.
#[derive(Debug, Default)]
struct Progress {
    request_index: u64,
    last_tx: [u8; 32],
    last_request_ms: u64,
    requests_total: u64,
    rejected_total: u64,
    tx_total: u64,
    bytes_written: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    Disabled,
    Ok,
    Down,
}

impl Dep {
    fn as_str(self) -> &'static str {
        match self {
            Dep::Disabled => "disabled",
            Dep::Ok => "ok",
            Dep::Down => "unreachable",
        }
    }
}

struct Inner {
    opts: OperatorOptions,
    started: Instant,
    starting_for: Duration,
    encryption_key: String,
    progress: Mutex<Progress>,
    deps: Mutex<(Dep, Dep)>,
    pg: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    redis: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Serializes sequencing so indexes and rows stay in order.
    sequencer: tokio::sync::Mutex<()>,
    /// Cluster mode: the shared state and what the last heartbeat said about the cluster.
    cluster: Option<ClusterFile>,
    view: Mutex<Option<ClusterView>>,
}

/// A running operator. Dropping it stops the server at once; prefer [`RunningOperator::shutdown`].
pub struct RunningOperator {
    server: Option<HttpServer>,
    inner: Arc<Inner>,
    background: Vec<JoinHandle<()>>,
    exit: watch::Receiver<Option<i32>>,
}

impl std::fmt::Debug for RunningOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningOperator")
            .field("addr", &self.local_addr())
            .field("version", &self.inner.opts.version)
            .finish()
    }
}

enum Reject {
    NotAccepting,
    Unavailable(String),
}

impl RunningOperator {
    /// Binds `opts.listen` and starts the operator.
    pub async fn start(opts: OperatorOptions) -> Result<RunningOperator, SimError> {
        let listener = crate::server::bind(&opts.listen).await?;
        Self::start_on(listener, opts).await
    }

    /// Starts the operator on an already bound listener.
    pub async fn start_on(
        listener: TcpListener,
        opts: OperatorOptions,
    ) -> Result<RunningOperator, SimError> {
        let version = opts.version;
        if let Some(app_config) = &opts.app_config {
            write_build_flags(app_config, version)?;
        }
        let starting_for = if version == OperatorVersion::SlowStart {
            opts.slow_start
        } else {
            Duration::ZERO
        };
        let inner = Arc::new(Inner {
            encryption_key: encryption_key(opts.node_id),
            started: Instant::now(),
            starting_for,
            progress: Mutex::new(Progress::default()),
            deps: Mutex::new((Dep::Disabled, Dep::Disabled)),
            pg: tokio::sync::Mutex::new(None),
            redis: tokio::sync::Mutex::new(None),
            sequencer: tokio::sync::Mutex::new(()),
            cluster: opts.cluster_file.as_ref().map(ClusterFile::new),
            view: Mutex::new(None),
            opts,
        });
        // Know the dependencies' state and resume the sequence before serving the first status.
        inner.check_dependencies().await;
        inner.restore_progress().await;
        // A cluster node that cannot reach the cluster's state does not start: say why.
        if inner.cluster.is_some() {
            inner.heartbeat().await?;
        }

        let mut router = Router::new()
            .route("/v2/status", get(status))
            .route("/v2/encryption-key", get(encryption_key_handler))
            .route("/v2/mark-price", get(mark_price))
            .route("/v2/request", post(request))
            .route("/metrics", get(metrics))
            .with_state(inner.clone());
        if version == OperatorVersion::Slow {
            router = router.layer(axum::middleware::from_fn(slow_down));
        }
        let server = HttpServer::spawn(listener, router)?;
        tracing::info!(addr = %server.local_addr(), %version, "operator started");

        let (exit_tx, exit) = watch::channel(None);
        let mut background = vec![
            tokio::spawn(health_loop(inner.clone())),
            tokio::spawn(fault_log_loop(inner.clone())),
        ];
        if inner.cluster.is_some() {
            background.push(tokio::spawn(raft_loop(inner.clone())));
        } else if inner.opts.traffic {
            background.push(tokio::spawn(traffic_loop(inner.clone())));
        }
        if version == OperatorVersion::CrashLoop {
            let stop = server.stopper();
            let after = inner.opts.crash_after;
            background.push(tokio::spawn(async move {
                tokio::time::sleep(after).await;
                tracing::error!("fatal: enclave initialization failed: sgx_create_enclave returned SGX_ERROR_UNEXPECTED; exiting");
                let _ = stop.send(true);
                let _ = exit_tx.send(Some(1));
            }));
        } else {
            // Keep the sender alive so `wait_exit` pends until shutdown.
            background.push(tokio::spawn(async move {
                exit_tx.closed().await;
            }));
        }
        Ok(RunningOperator {
            server: Some(server),
            inner,
            background,
            exit,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .map(|s| s.local_addr())
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    pub fn version(&self) -> OperatorVersion {
        self.inner.opts.version
    }

    /// The compressed secp256k1 public key served by `/v2/encryption-key`, `0x`-prefixed hex.
    pub fn encryption_key(&self) -> &str {
        &self.inner.encryption_key
    }

    /// The current `lastRequest.requestIndex`.
    pub fn request_index(&self) -> u64 {
        self.inner.lock_progress().request_index
    }

    /// Some(status) once the operator has exited by itself (crash-loop versions).
    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// Waits until the operator exits by itself and returns its exit status. Pends forever for
    /// versions that do not crash.
    pub async fn wait_exit(&self) -> i32 {
        let mut rx = self.exit.clone();
        match rx.wait_for(|c| c.is_some()).await {
            Ok(code) => code.unwrap_or(1),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops the server and every background task, and releases the port.
    pub async fn shutdown(mut self) {
        for t in self.background.drain(..) {
            t.abort();
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        for t in &self.background {
            t.abort();
        }
    }
}

impl Inner {
    fn lock_progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deps(&self) -> (Dep, Dep) {
        *self.deps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_dep(&self, which: usize, state: Dep) {
        let mut d = self.deps.lock().unwrap_or_else(|e| e.into_inner());
        if which == 0 {
            d.0 = state;
        } else {
            d.1 = state;
        }
    }

    fn is_starting(&self) -> bool {
        self.started.elapsed() < self.starting_for
    }

    fn health(&self) -> &'static str {
        if self.is_starting() {
            return "Starting";
        }
        let (pg, redis) = self.deps();
        if pg == Dep::Down || redis == Dep::Down {
            "Degraded"
        } else {
            "Healthy"
        }
    }

    /// The Postgres client, reconnecting (and creating the schema) when there is none.
    async fn pg(&self) -> Result<Arc<tokio_postgres::Client>, SimError> {
        let url = self
            .opts
            .database_url
            .as_deref()
            .ok_or(SimError::InvalidUrl {
                url: String::new(),
                reason: "no database configured",
            })?;
        let mut slot = self.pg.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let timeout = self.opts.dependency_timeout;
        let client = db::connect_pg_creating(url, timeout).await?;
        if let Err(e) = client.batch_execute(CREATE_TABLE).await {
            // Two starts racing on CREATE TABLE IF NOT EXISTS: the table exists either way.
            if e.code().map(|c| c.code()) != Some("23505") {
                return Err(e.into());
            }
        }
        if self.opts.version == OperatorVersion::MigrateSchema {
            client.batch_execute(MIGRATE).await?;
        } else if client.query_one(MIGRATED, &[]).await?.get::<_, bool>(0) {
            // What a real node does on a schema from a newer release: refuse to run on it.
            tracing::error!(
                "database schema is newer than this version (operator_requests.schema_v2 exists): refusing it"
            );
            return Err(SimError::Localnet(
                "database schema is newer than this version".into(),
            ));
        }
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn redis(&self) -> Result<redis::aio::MultiplexedConnection, SimError> {
        let url = self.opts.redis_url.as_deref().ok_or(SimError::InvalidUrl {
            url: String::new(),
            reason: "no redis configured",
        })?;
        let mut slot = self.redis.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let conn = db::connect_redis(url, self.opts.dependency_timeout).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn check_dependencies(&self) {
        let timeout = self.opts.dependency_timeout;
        if self.opts.database_url.is_some() {
            let ok = match self.pg().await {
                Ok(c) => tokio::time::timeout(timeout, c.simple_query("SELECT 1"))
                    .await
                    .is_ok_and(|r| r.is_ok()),
                Err(e) => {
                    tracing::debug!(error = %e, "postgres check failed");
                    false
                }
            };
            if !ok {
                *self.pg.lock().await = None;
            }
            self.note_dep(0, ok, "postgres");
        }
        if self.opts.redis_url.is_some() {
            let ok = match self.redis().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(e) => {
                    tracing::debug!(error = %e, "redis check failed");
                    false
                }
            };
            if !ok {
                *self.redis.lock().await = None;
            }
            self.note_dep(1, ok, "redis");
        }
    }

    fn note_dep(&self, which: usize, ok: bool, name: &str) {
        let before = if which == 0 {
            self.deps().0
        } else {
            self.deps().1
        };
        let now = if ok { Dep::Ok } else { Dep::Down };
        if before != now {
            if ok {
                tracing::info!("{name} reachable");
            } else {
                tracing::warn!("{name} unreachable: health degraded");
            }
        }
        self.set_dep(which, now);
    }

    /// Resumes the sequence from the last persisted row, as a restarted node does.
    async fn restore_progress(&self) {
        let Ok(c) = self.pg().await else { return };
        let row = c
            .query_opt(
                "SELECT request_index, tx_hash FROM operator_requests ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await;
        if let Ok(Some(row)) = row {
            let index: i64 = row.get(0);
            let tx: String = row.get(1);
            let mut p = self.lock_progress();
            p.request_index = index.max(0) as u64;
            if let Ok(bytes) = hex::decode(tx.trim_start_matches("0x"))
                && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                p.last_tx = arr;
            }
        }
    }

    /// Sequences one request: the path shared by `POST /v2/request` and the traffic generator.
    /// `target`: in cluster mode, the index applied up to (what the leader committed).
    async fn sequence(&self, body: &[u8], target: Option<u64>) -> Result<(u64, String), Reject> {
        if self.is_starting() {
            self.lock_progress().rejected_total += 1;
            return Err(Reject::NotAccepting);
        }
        if !self.opts.mark_price {
            self.lock_progress().rejected_total += 1;
            return Err(Reject::Unavailable("no mark price".into()));
        }
        let _turn = self.sequencer.lock().await;
        let version = self.opts.version;
        let (index, prev_tx) = {
            let p = self.lock_progress();
            (p.request_index, p.last_tx)
        };
        let next_index = if version == OperatorVersion::StallRequest {
            index
        } else {
            target.unwrap_or(index + 1)
        };
        let mut h = Sha256::new();
        h.update(prev_tx);
        h.update(next_index.to_be_bytes());
        h.update(now_ms().to_be_bytes());
        h.update(body);
        let new_tx: [u8; 32] = h.finalize().into();
        let tx = if matches!(
            version,
            OperatorVersion::StallTx | OperatorVersion::MigrateSchema
        ) {
            prev_tx
        } else {
            new_tx
        };
        let tx_hex = format!("0x{}", hex::encode(tx));
        let payload = payload(&new_tx, version);
        let mut written = 0u64;

        if self.opts.database_url.is_some() {
            let result = match self.pg().await {
                Ok(c) => tokio::time::timeout(
                    self.opts.dependency_timeout,
                    c.execute(
                        if version == OperatorVersion::MigrateSchema {
                            "INSERT INTO operator_requests (request_index, tx_hash, version, payload, schema_v2) \
                             VALUES ($1, $2, $3, $4, true)"
                        } else {
                            "INSERT INTO operator_requests (request_index, tx_hash, version, payload) \
                             VALUES ($1, $2, $3, $4)"
                        },
                        &[&(next_index as i64), &tx_hex, &version.as_str(), &payload],
                    ),
                )
                .await
                .map_err(|_| "postgres timed out".to_owned())
                .and_then(|r| r.map_err(|e| format!("postgres: {e}"))),
                Err(e) => Err(format!("postgres: {e}")),
            };
            if let Err(reason) = result {
                *self.pg.lock().await = None;
                self.note_dep(0, false, "postgres");
                self.lock_progress().rejected_total += 1;
                return Err(Reject::Unavailable(reason));
            }
            written = payload.len() as u64 + tx_hex.len() as u64 + 32;
        }
        if self.opts.redis_url.is_some() {
            let prefix = &self.opts.redis_prefix;
            let result = match self.redis().await {
                Ok(mut c) => redis::pipe()
                    .incr(format!("{prefix}:operator:requests_total"), 1)
                    .ignore()
                    .set(format!("{prefix}:operator:last_request"), next_index)
                    .ignore()
                    .set(format!("{prefix}:operator:last_tx"), &tx_hex)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(|e| format!("redis: {e}")),
                Err(e) => Err(format!("redis: {e}")),
            };
            if let Err(reason) = result {
                *self.redis.lock().await = None;
                self.note_dep(1, false, "redis");
                self.lock_progress().rejected_total += 1;
                return Err(Reject::Unavailable(reason));
            }
        }
        let mut p = self.lock_progress();
        p.request_index = next_index;
        p.requests_total += 1;
        if tx != prev_tx {
            p.tx_total += 1;
        }
        p.last_tx = tx;
        p.last_request_ms = now_ms();
        p.bytes_written += written;
        Ok((next_index, tx_hex))
    }

    /// The cluster this node reports: voter set, leader (None when it sees none) and term.
    fn raft_view(&self) -> (Vec<u64>, Option<u64>, u64) {
        let sees_leader = self.opts.version != OperatorVersion::NoLeader;
        let node_id = self.opts.node_id;
        if self.cluster.is_none() {
            return (vec![node_id], sees_leader.then_some(node_id), 1);
        }
        match self.view.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(v) => (
                v.voter_ids.clone(),
                v.leader_id.filter(|_| sees_leader),
                v.term,
            ),
            None => (vec![node_id], None, 0),
        }
    }

    /// Cluster mode: one heartbeat into the shared state, remembering what it said.
    async fn heartbeat(&self) -> Result<ClusterView, SimError> {
        let Some(file) = self.cluster.clone() else {
            return Err(SimError::Cluster("not in cluster mode".into()));
        };
        let version = self.opts.version;
        let hb = Heartbeat {
            node_id: self.opts.node_id,
            applied: self.lock_progress().request_index,
            voter: version != OperatorVersion::LeavesVoters,
            sees_leader: version != OperatorVersion::NoLeader,
        };
        let result = tokio::task::spawn_blocking(move || file.heartbeat(hb))
            .await
            .map_err(|e| SimError::Cluster(format!("heartbeat task: {e}")))?;
        let mut slot = self.view.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(view) => *slot = Some(view.clone()),
            // Cut off from the cluster: keep the last voter set, but know no leader.
            Err(_) => {
                if let Some(v) = slot.as_mut() {
                    v.leader_id = None;
                }
            }
        }
        result
    }

    /// What this node applies up to after a heartbeat: the commit index, less for a lagging
    /// version, nothing for one that sees no leader or is still starting.
    fn apply_target(&self, view: &ClusterView) -> Option<u64> {
        let version = self.opts.version;
        if version == OperatorVersion::NoLeader || view.leader_id.is_none() || self.is_starting() {
            return None;
        }
        let target = if version == OperatorVersion::Lagging {
            view.commit_index
                .saturating_sub(crate::cluster::LAG_ENTRIES)
        } else {
            view.commit_index
        };
        (target > self.lock_progress().request_index).then_some(target)
    }

    /// `POST /v2/request` in cluster mode commits through the leader; `Ok(None)` outside it.
    async fn submit(&self) -> Result<Option<u64>, Reject> {
        let Some(file) = self.cluster.clone() else {
            return Ok(None);
        };
        if self.is_starting() || self.opts.version == OperatorVersion::NoLeader {
            return Err(Reject::NotAccepting);
        }
        let node_id = self.opts.node_id;
        match tokio::task::spawn_blocking(move || file.submit(node_id)).await {
            Ok(Ok(Some(index))) => Ok(Some(index)),
            // No leader (an election, no quorum): a real node answers 421 meanwhile.
            Ok(Ok(None)) => Err(Reject::NotAccepting),
            Ok(Err(e)) => Err(Reject::Unavailable(format!("cluster: {e}"))),
            Err(e) => Err(Reject::Unavailable(format!("cluster: {e}"))),
        }
    }

    fn status_json(&self) -> Value {
        let version = self.opts.version;
        let starting = self.is_starting();
        let (index, last_tx, last_ms) = {
            let p = self.lock_progress();
            (p.request_index, p.last_tx, p.last_request_ms)
        };
        let (pg, redis) = self.deps();
        let node_id = self.opts.node_id;
        let (voters, leader, term) = self.raft_view();
        let attestation_fault = (version == OperatorVersion::AttestationFault).then(|| {
            json!({
                "stage": "Identity",
                "code": "QuoteVerificationFailed",
                "message": ATTESTATION_FAULT,
            })
        });
        let registration_fault = (version == OperatorVersion::RegistrationFault).then(|| {
            json!({
                "stage": "AcquiringRegistrationReport",
                "code": "RegistrationRejected",
                "message": REGISTRATION_FAULT,
            })
        });
        let (raft, last_tx) = if version == OperatorVersion::RenamedField {
            // The contract break this version exists for: a renamed field and a retyped one.
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&last_tx[..6]);
            (
                json!({"nodeId": node_id, "voters": voters, "leaderId": leader, "term": term}),
                json!(u64::from_be_bytes(b)),
            )
        } else {
            (
                json!({"nodeId": node_id, "voterIds": voters, "leaderId": leader, "term": term}),
                json!(format!("0x{}", hex::encode(last_tx))),
            )
        };
        let terse = self.opts.shape == StatusShape::Terse;
        let (attestation_fault, registration_fault, request_index) = if terse {
            (
                attestation_fault.unwrap_or(json!(false)),
                registration_fault.unwrap_or(json!("")),
                json!(((1u128 << 64) + u128::from(index)).to_string()),
            )
        } else {
            (
                attestation_fault.unwrap_or(Value::Null),
                registration_fault.unwrap_or(Value::Null),
                json!(index),
            )
        };
        let attestation_failed = attestation_fault.is_object();
        let registration_failed = registration_fault.is_object();
        let mut doc = json!({
            "runningState": if starting { "Starting" } else { "Running" },
            "health": self.health(),
            "version": version.as_str(),
            "lastRequest": {"requestIndex": request_index, "timestamp": last_ms},
            "lastTx": last_tx,
            "raftMetrics": raft,
            "attestation": {
                "fault": attestation_fault,
                "reportType": "SELF",
                "status": if attestation_failed { "Failed" } else { "Verified" },
            },
            "registration": {
                "fault": registration_fault,
                "status": if registration_failed { "Rejected" } else { "Registered" },
            },
            "dependencies": {"postgres": pg.as_str(), "redis": redis.as_str()},
        });
        if terse && let Some(o) = doc.as_object_mut() {
            o.remove("dependencies");
        }
        doc
    }
}

const ATTESTATION_FAULT: &str =
    "attestation failed: quote verification returned TCB_OUT_OF_DATE for report type SELF";
const REGISTRATION_FAULT: &str =
    "registration rejected: enclave measurement is not in the custodian allow-list";

/// Incompressible payload (a hash chain), so Postgres TOAST compression cannot hide bloat.
fn payload(seed: &[u8; 32], version: OperatorVersion) -> Vec<u8> {
    let len = if version == OperatorVersion::Bloat {
        PAYLOAD_BYTES * BLOAT_FACTOR
    } else {
        PAYLOAD_BYTES
    };
    let mut out = Vec::with_capacity(len);
    let mut block = *seed;
    while out.len() < len {
        block = Sha256::digest(block).into();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

/// A fresh compressed secp256k1 public key. The enclave key changes per start, as a real
/// enclave's sealing-derived key may; only its shape is a contract.
fn encryption_key(node_id: u64) -> String {
    let mut seed = Sha256::new();
    seed.update(b"rollgate-sim operator encryption key");
    seed.update(node_id.to_be_bytes());
    seed.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    seed.update(std::process::id().to_be_bytes());
    let mut bytes: [u8; 32] = seed.finalize().into();
    loop {
        // Almost every 32-byte string is a valid scalar; rehash in the rare other case.
        if let Ok(secret) = k256::SecretKey::from_slice(&bytes) {
            let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &secret.public_key(),
                true,
            );
            return format!("0x{}", hex::encode(point.as_bytes()));
        }
        bytes = Sha256::digest(bytes).into();
    }
}

/// Writes `enclave/build-flags.env`: the flags the enclave artifacts of this version were built
/// with. Left untouched when already identical.
fn write_build_flags(
    app_config: &std::path::Path,
    version: OperatorVersion,
) -> Result<(), SimError> {
    let dir = app_config.join("enclave");
    std::fs::create_dir_all(&dir)
        .map_err(|e| SimError::io(format!("create {}", dir.display()), e))?;
    let content = if version.sgx_debug_build() {
        "SGX_DEBUG=1\nSGX_PRERELEASE=0\n"
    } else {
        "SGX_DEBUG=0\nSGX_PRERELEASE=1\n"
    };
    crate::services::write_if_changed(&dir.join("build-flags.env"), content.as_bytes())?;
    Ok(())
}

async fn slow_down(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    tokio::time::sleep(SLOW_EXTRA).await;
    next.run(req).await
}

async fn health_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(inner.opts.health_interval).await;
        inner.check_dependencies().await;
    }
}

/// Cluster mode: heartbeat, then apply what the leader committed since.
async fn raft_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(inner.opts.heartbeat_interval).await;
        match inner.heartbeat().await {
            Ok(view) => {
                if let Some(target) = inner.apply_target(&view) {
                    let body = format!("{{\"t\":\"Apply\",\"index\":{target}}}");
                    if let Err(Reject::Unavailable(reason)) =
                        inner.sequence(body.as_bytes(), Some(target)).await
                    {
                        tracing::debug!(%reason, "apply failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster heartbeat failed"),
        }
    }
}

async fn traffic_loop(inner: Arc<Inner>) {
    let mut n: u64 = 0;
    loop {
        tokio::time::sleep(inner.opts.traffic_interval).await;
        n += 1;
        let body = format!("{{\"t\":\"Order\",\"seq\":{n}}}");
        if let Err(Reject::Unavailable(reason)) = inner.sequence(body.as_bytes(), None).await {
            tracing::debug!(%reason, "generated request rejected");
        }
    }
}

/// Fault versions keep retrying and keep logging, like a real node stuck on that stage.
async fn fault_log_loop(inner: Arc<Inner>) {
    let line = match inner.opts.version {
        OperatorVersion::AttestationFault => ATTESTATION_FAULT,
        OperatorVersion::RegistrationFault => REGISTRATION_FAULT,
        _ => return,
    };
    loop {
        tracing::error!("{line}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn status(State(inner): State<Arc<Inner>>) -> Response {
    json_response(StatusCode::OK, inner.status_json())
}

async fn encryption_key_handler(State(inner): State<Arc<Inner>>) -> Response {
    json_response(StatusCode::OK, json!(inner.encryption_key))
}

async fn mark_price(State(inner): State<Arc<Inner>>) -> Response {
    if !inner.opts.mark_price {
        return json_response(StatusCode::OK, json!({}));
    }
    // Index prices move about once a second: a slow wave around a plausible level.
    let ms = now_ms();
    let ts = ms - ms % 1000;
    let t = (ts / 1000) as f64;
    let eth = 3000.0 + 50.0 * (t / 60.0).sin();
    let btc = 60000.0 + 500.0 * (t / 90.0).sin();
    json_response(
        StatusCode::OK,
        json!({
            "ETHP": {"price": format!("{eth:.2}"), "timestamp": ts},
            "BTCP": {"price": format!("{btc:.2}"), "timestamp": ts},
        }),
    )
}

async fn request(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let result = match inner.submit().await {
        Ok(target) => inner.sequence(&body, target).await,
        Err(reject) => Err(reject),
    };
    match result {
        Ok((index, tx)) => {
            json_response(StatusCode::OK, json!({"requestIndex": index, "txHash": tx}))
        }
        Err(Reject::NotAccepting) => json_response(
            StatusCode::MISDIRECTED_REQUEST,
            json!({"error": "NotAcceptingRequests"}),
        ),
        Err(Reject::Unavailable(detail)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "ServiceUnavailable", "detail": detail}),
        ),
    }
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let p = {
        let p = inner.lock_progress();
        [
            p.requests_total,
            p.rejected_total,
            p.request_index,
            p.tx_total,
            p.bytes_written,
        ]
    };
    let (pg, redis) = inner.deps();
    let healthy = u8::from(inner.health() == "Healthy");
    let version = inner.opts.version.as_str();
    let requests = if inner.opts.version == OperatorVersion::RenamedMetric {
        "operator_requests_sequenced_total"
    } else {
        "operator_requests_total"
    };
    let errors = if inner.opts.version == OperatorVersion::Errors {
        p[0]
    } else {
        0
    };
    let text = format!(
        "# HELP operator_up Whether the operator process is up.\n\
         # TYPE operator_up gauge\n\
         operator_up 1\n\
         # HELP operator_healthy Whether /v2/status reports health Healthy.\n\
         # TYPE operator_healthy gauge\n\
         operator_healthy {healthy}\n\
         # HELP operator_info Version of the running operator.\n\
         # TYPE operator_info gauge\n\
         operator_info{{version=\"{version}\"}} 1\n\
         # HELP {requests} Requests sequenced.\n\
         # TYPE {requests} counter\n\
         {requests} {}\n\
         # HELP operator_requests_rejected_total Requests rejected (421 or 503).\n\
         # TYPE operator_requests_rejected_total counter\n\
         operator_requests_rejected_total {}\n\
         # HELP operator_errors_total Requests that hit an internal error.\n\
         # TYPE operator_errors_total counter\n\
         operator_errors_total {errors}\n\
         # HELP operator_request_index The last sequenced request index.\n\
         # TYPE operator_request_index gauge\n\
         operator_request_index {}\n\
         # HELP operator_tx_total Transactions produced.\n\
         # TYPE operator_tx_total counter\n\
         operator_tx_total {}\n\
         # HELP operator_db_bytes_written_total Bytes written to Postgres.\n\
         # TYPE operator_db_bytes_written_total counter\n\
         operator_db_bytes_written_total {}\n\
         # HELP operator_dependency_up Whether a dependency answered its last check.\n\
         # TYPE operator_dependency_up gauge\n\
         operator_dependency_up{{dependency=\"postgres\"}} {}\n\
         operator_dependency_up{{dependency=\"redis\"}} {}\n",
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        u8::from(pg != Dep::Down),
        u8::from(redis != Dep::Down),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

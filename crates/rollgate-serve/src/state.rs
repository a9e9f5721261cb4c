//! What the server holds: the journal reader, the token, the runner for actions, the action in
//! progress, the latest light probe, and the documents built from them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rollgate_core::config::Config;
use rollgate_core::vocab::{CheckResult, GateResult, Outcome};
use rollgate_journal::report::ActiveStatus;
use rollgate_journal::{BaselineSummary, HistoryEntry, Journal, JournalError, LockStatus};
use rollgate_runner::Runner;
use rollgate_runner::killswitch::FreezeInfo;
use serde::{Deserialize, Serialize};

use crate::auth::Token;
use crate::errors::{ApiError, ServeError};
use crate::metrics::FactsCache;

/// How to run the server.
#[derive(Clone)]
pub struct ServeOptions {
    /// The node's name, shown on every page and in the metrics.
    pub node: String,
    /// Where the journal, the lock and the freeze file live.
    pub state_dir: PathBuf,
    /// Required by every endpoint that changes something; without one they answer 403.
    pub token: Option<Token>,
    /// When set, required (or the write token) by every endpoint that reads the node's record;
    /// required to listen beyond loopback.
    pub read_token: Option<Token>,
    /// `Host` names served besides this machine's ([`crate::hosts::HostPolicy`]).
    pub allowed_hosts: Vec<String>,
    /// Runs rollouts, rollbacks and resumes for the API; without one those answer 503.
    pub runner: Option<Runner>,
    /// Run the readiness probes this often for `/metrics` and the status page (`None`: never).
    pub probe_interval: Option<Duration>,
    /// After shutdown is requested, wait this long for a running rollout to finish; after it the
    /// rollout is interrupted and `rollgate resume` finishes it.
    pub shutdown_grace: Duration,
    /// How many rollouts the status page lists.
    pub recent: usize,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("node", &self.node)
            .field("state_dir", &self.state_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "read_token",
                &self.read_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("runner", &self.runner.is_some())
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}

impl ServeOptions {
    /// Read-only: status, history, reports and metrics from a journal.
    pub fn new(node: impl Into<String>, state_dir: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            node: node.into(),
            state_dir: state_dir.into(),
            token: None,
            read_token: None,
            allowed_hosts: Vec::new(),
            runner: None,
            probe_interval: None,
            shutdown_grace: Duration::from_secs(30),
            recent: 15,
        }
    }

    /// Everything: the node of `runner`'s configuration, its state directory and the token.
    pub fn for_runner(runner: Runner, token: Option<Token>) -> ServeOptions {
        let mut o = ServeOptions::new(
            runner.config.node.name.clone(),
            runner.config.node.state_dir.clone(),
        );
        o.token = token;
        o.runner = Some(runner);
        o.probe_interval = Some(Duration::from_secs(30));
        o
    }
}

/// What kind of action the API started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Rollout,
    Rollback,
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Running,
    /// The runner returned a decision record (any outcome).
    Finished,
    /// The runner could not run it (busy, unknown layer, …): see `error`.
    Failed,
}

/// The latest action started through the API (`GET /api/v1/action`):
///
/// ```json
/// {"id": 3, "kind": "rollout", "state": "running", "request": {"layer": "operator-image", "value": "…"},
///  "requested_at": "…", "finished_at": null, "rollout_id": "r-…", "step": "verify", "phase": "verify",
///  "gates": [{"name": "readiness:operator", "verdict": "pass", …}], "outcome": null, "reason": null,
///  "error": null}
/// ```
/// `gates` are the live verdicts of the last poll while it runs; the journal has the final ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionStatus {
    pub id: u64,
    pub kind: ActionKind,
    pub state: ActionState,
    pub request: serde_json::Value,
    pub requested_at: String,
    pub finished_at: Option<String>,
    pub rollout_id: Option<String>,
    pub step: Option<String>,
    pub phase: Option<String>,
    pub gates: Vec<GateResult>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub error: Option<String>,
    /// The decision record once finished (what `rollgate rollout --format json` prints).
    pub report: Option<rollgate_runner::RolloutReport>,
    /// The HTTP status a failed action answers with.
    #[serde(skip)]
    pub(crate) error_status: Option<u16>,
}

/// The latest light probe (`[serve]` runs the readiness probes every `probe_interval`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeSnapshot {
    pub at: String,
    pub ok: bool,
    pub checks: Vec<CheckResult>,
}

/// `GET /api/v1/status`:
///
/// ```json
/// {"node": "node0", "version": "0.1.0", "now": "2026-11-28T04:40:02.113Z",
///  "frozen": null,
///  "lock": {"state": "free"},
///  "active_rollout": null,
///  "last_known_good": {"id": "b-…", "node": "node0", "created_at": "…", "mode": "localnet.loopback",
///                      "known_good": true, "known_good_at": "…"},
///  "last_rollout": {"rollout_id": "r-…", "started_at": "…", "layer": "operator-image", "from": "…",
///                   "to": "…", "outcome": "rolled_back", "finished_at": "…", "baseline_id": "b-…"},
///  "action": null,
///  "probes": {"at": "…", "ok": true, "checks": [ …CheckResult… ]}}
/// ```
/// `frozen` is the kill switch (`{"reason", "frozen_at", "by"}`); `active_rollout` is the
/// unfinished rollout with `interrupted` (no live process holds the lock: `rollgate resume`)
/// and `stopped_at_intent`, as in `rollgate status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeStatus {
    pub node: String,
    pub version: String,
    pub now: String,
    pub frozen: Option<FreezeInfo>,
    pub lock: LockStatus,
    pub active_rollout: Option<ActiveStatus>,
    pub last_known_good: Option<BaselineSummary>,
    pub last_rollout: Option<HistoryEntry>,
    pub action: Option<ActionStatus>,
    pub probes: Option<ProbeSnapshot>,
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The shared state of every handler.
pub struct AppState {
    pub(crate) options: ServeOptions,
    journal: Arc<Mutex<Journal>>,
    pub(crate) action: Arc<Mutex<Option<ActionStatus>>>,
    pub(crate) action_task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) probes: RwLock<Option<ProbeSnapshot>>,
    pub(crate) facts: Mutex<FactsCache>,
    pub(crate) next_action: std::sync::atomic::AtomicU64,
    /// Set by [`crate::server::run`] from the bound address; `None` serves every `Host`.
    pub(crate) hosts: Option<crate::hosts::HostPolicy>,
}

impl AppState {
    pub fn new(options: ServeOptions) -> Result<AppState, ServeError> {
        let journal = Journal::open(&options.state_dir).map_err(ServeError::Journal)?;
        Ok(AppState {
            options,
            journal: Arc::new(Mutex::new(journal)),
            action: Arc::new(Mutex::new(None)),
            action_task: tokio::sync::Mutex::new(None),
            probes: RwLock::new(None),
            facts: Mutex::new(HashMap::new()),
            next_action: std::sync::atomic::AtomicU64::new(1),
            hosts: None,
        })
    }

    pub fn config(&self) -> Option<&Arc<Config>> {
        self.options.runner.as_ref().map(|r| &r.config)
    }

    /// Run `f` with the journal on a blocking thread (SQLite never runs on the runtime).
    pub async fn read<R, F>(&self, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Journal) -> Result<R, JournalError> + Send + 'static,
    {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || {
            let guard = journal.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| ApiError::internal(format!("journal task failed: {e}")))?
        .map_err(|e| {
            ApiError::internal(format!(
                "failed to read the journal: {}",
                crate::errors::chain(&e)
            ))
        })
    }

    /// Run blocking work that needs the journal and this state (the metrics cache).
    pub async fn with_journal<R, F>(self: &Arc<Self>, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Journal, &AppState) -> Result<R, JournalError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let guard = me.journal.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard, &me)
        })
        .await
        .map_err(|e| ApiError::internal(format!("journal task failed: {e}")))?
        .map_err(|e| {
            ApiError::internal(format!(
                "failed to read the journal: {}",
                crate::errors::chain(&e)
            ))
        })
    }

    pub fn frozen(&self) -> Option<FreezeInfo> {
        rollgate_runner::killswitch::is_frozen(&self.options.state_dir)
    }

    pub fn action(&self) -> Option<ActionStatus> {
        self.action
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn probes(&self) -> Option<ProbeSnapshot> {
        self.probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The status document.
    pub async fn status(self: &Arc<Self>) -> Result<ServeStatus, ApiError> {
        let dir = self.options.state_dir.clone();
        let (state, lock) = self
            .read(move |j| {
                let state = j.state()?;
                let lock = rollgate_journal::Lock::status(&dir).unwrap_or(LockStatus::Free);
                Ok((state, lock))
            })
            .await?;
        let held = matches!(lock, LockStatus::Held { .. });
        let active_rollout = state.interrupted.map(|rollout| ActiveStatus {
            interrupted: !held,
            stopped_at_intent: rollout.stopped_at_intent(),
            rollout,
        });
        Ok(ServeStatus {
            node: self.options.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            now: now_rfc3339(),
            frozen: self.frozen(),
            lock,
            active_rollout,
            last_known_good: state.last_known_good,
            last_rollout: state.last_finished,
            action: self.action(),
            probes: self.probes(),
        })
    }
}

//! The conductor (`rollgate fleet run|plan|resolve`): drives one wave across the cluster. It
//! holds the cluster's election for as long as it runs, records every decision in `wave` by a
//! compare-and-swap guarded by that leadership, and asks the pure planner
//! (`rollgate_core::fleet`) what to do next from nothing but what etcd records: the wave, the
//! node records and the agents' snapshots. It never touches a node: it takes the disruption lock
//! on the node's agent lease, writes the node's intent, and waits for the agent's outcome.
//!
//! After a node is promoted the cluster gates must hold for `stabilization` (plus `canary_soak`
//! after the first node) and hold again at a re-check: the voter set unchanged and the node still
//! a voter, its request index within `max_lag` of the cluster's highest and advancing, a leader
//! agreed by a majority, no other node unhealthy. A node that fails them is reverted by its agent
//! (`rollgate rollback`) and the wave fails. A conductor killed at any point is replaced by
//! `fleet run --resume`, which re-reads the wave and continues: a node recorded in flight is
//! waited for (its intent written if it was not yet), nodes done are skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::Client;
use rollgate_core::config::Fleet;
use rollgate_core::fleet::{self as planner, Decision, NodeView, Phase, Wave};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::election::{self, Conductorship};
use crate::errors::{FleetError, chain};
use crate::halt::{HaltState, HaltWatch};
use crate::keys::Keys;
use crate::lease::KeptLease;
use crate::node::{self, NodePhase, NodeRecord};
use crate::snapshot::AgentSnapshot;
use crate::store;

/// The conductor's lease: its leadership ends this long after it dies.
pub const CONDUCTOR_LEASE_TTL: Duration = Duration::from_secs(5);
/// How often the conductor re-reads etcd while it waits.
pub const POLL: Duration = Duration::from_millis(250);
/// The shortest window over which "advancing" is judged (agents publish once a second).
const MIN_ADVANCE_WINDOW: Duration = Duration::from_secs(2);

/// How a wave ended (or stands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveOutcome {
    Running,
    Done,
    Failed,
    Halted,
    Stuck,
    Refused,
}

impl WaveOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WaveOutcome::Running => "running",
            WaveOutcome::Done => "done",
            WaveOutcome::Failed => "failed",
            WaveOutcome::Halted => "halted",
            WaveOutcome::Stuck => "stuck",
            WaveOutcome::Refused => "refused",
        }
    }

    /// A wave `fleet run --resume` may continue.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            WaveOutcome::Running | WaveOutcome::Halted | WaveOutcome::Stuck
        )
    }
}

/// `--on-failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Updated nodes keep the new value.
    #[default]
    Stop,
    /// Updated nodes are reverted too, one at a time, in reverse order.
    RollbackAll,
}

/// The wave as recorded at `wave`: enough for any conductor to continue it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveRecord {
    pub wave_id: String,
    pub layer: String,
    pub to: String,
    pub canary: String,
    /// The leader agreed when the wave started.
    pub leader_at_start: String,
    /// `--leader` as given (re-used for every decision).
    #[serde(default)]
    pub leader_given: Option<String>,
    pub allow_degraded: bool,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The voter set at the start: the cluster gates hold it.
    pub voters: Vec<String>,
    pub phases: BTreeMap<String, Phase>,
    /// Each node's value when the wave started (what a revert goes back to).
    pub from: BTreeMap<String, Option<String>>,
    /// The nodes in the order they were stepped.
    pub order: Vec<String>,
    /// Nodes reverted after the failure (`--on-failure rollback-all`, or the cluster gates).
    #[serde(default)]
    pub reverted: Vec<String>,
    /// The node its agent rolled back because the cluster was halted mid-step: the wave is
    /// halted, not failed, and `--resume` steps that node again.
    #[serde(default)]
    pub rolled_back_by_halt: Option<String>,
    pub outcome: WaveOutcome,
    #[serde(default)]
    pub reason: Option<String>,
    pub started_ms: u64,
    pub updated_ms: u64,
    /// Who conducts (or last conducted) it.
    pub conductor: String,
}

impl WaveRecord {
    /// The planner's wave (phases as recorded; the halt is the conductor's to apply).
    pub fn planner_wave(&self) -> Wave {
        Wave {
            to: self.to.clone(),
            canary: self.canary.clone(),
            phases: self.phases.clone(),
            halted: false,
            allow_degraded: self.allow_degraded,
        }
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `LAYER=VALUE`; None with `resume`.
    pub change: Option<(String, String)>,
    pub canary: Option<String>,
    pub leader: Option<String>,
    pub allow_degraded: bool,
    pub on_failure: OnFailure,
    pub resume: bool,
    /// How long a decision may stay `Blocked` before the conductor gives up (exit 6).
    pub blocked_timeout: Duration,
}

/// One node in the report (the contract's JSON).
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub node_id: String,
    pub role: Option<crate::status::Role>,
    /// promoted | rolled_back | rollback_failed | untouched | lost
    pub outcome: String,
    pub rollout_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `fleet run --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct WaveReport {
    pub wave_id: Option<String>,
    pub outcome: WaveOutcome,
    pub layer: String,
    pub to: String,
    pub order: Vec<String>,
    pub nodes: Vec<NodeReport>,
    pub reason: Option<String>,
    /// The failing node's rollback could not be verified (exit 5 rather than 4).
    #[serde(skip)]
    pub rollback_failed: bool,
}

/// Why a conductor-side command could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConductError {
    /// Bad arguments for the recorded state (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Another conductor, a wave in progress, halted (exit 6).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An agent as the conductor reads it: its snapshot and the lease its key is on.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    pub snapshot: AgentSnapshot,
    pub lease: i64,
}

/// Every agent (one prefix read): node id → snapshot and lease.
pub async fn read_agents(
    client: &Client,
    keys: &Keys,
) -> Result<BTreeMap<String, AgentEntry>, FleetError> {
    let resp = store::list(client, &keys.agents()).await?;
    let mut out = BTreeMap::new();
    for kv in resp.kvs() {
        let Some(id) = keys.agent_id(kv.key()) else {
            continue;
        };
        let snapshot: AgentSnapshot =
            serde_json::from_slice(kv.value()).map_err(|e| FleetError::Corrupt {
                key: keys.agent(id),
                message: e.to_string(),
            })?;
        out.insert(
            id.to_string(),
            AgentEntry {
                snapshot,
                lease: kv.lease(),
            },
        );
    }
    Ok(out)
}

/// The planner's view of every node that has an agent or a place in the wave. With `layer`, a
/// value an agent reports for another layer counts as unknown.
pub fn views(
    agents: &BTreeMap<String, AgentEntry>,
    wave: Option<&WaveRecord>,
    layer: Option<&str>,
) -> Vec<NodeView> {
    let mut out: Vec<NodeView> = agents
        .values()
        .map(|a| {
            let mut v = a.snapshot.to_view(true);
            if layer.is_some_and(|l| a.snapshot.layer.as_deref().is_some_and(|m| m != l)) {
                v.value = None;
            }
            v
        })
        .collect();
    if let Some(w) = wave {
        for id in w.phases.keys() {
            if !agents.contains_key(id) {
                out.push(NodeView {
                    id: id.clone(),
                    alive: false,
                    healthy: false,
                    voters: Vec::new(),
                    leader: None,
                    value: None,
                    frozen: false,
                });
            }
        }
    }
    out
}

fn node_num(id: &str) -> Result<u64, FleetError> {
    id.parse().map_err(|_| FleetError::Corrupt {
        key: format!("node {id}"),
        message: "node ids of a fleet are numeric Raft ids".into(),
    })
}

/// A new wave's identity: time-ordered and unique enough across conductors.
fn wave_id() -> String {
    let ms = now_ms();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("w-{ms}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}

/// What `fleet plan` shows: the order the planner would take if every node is promoted and no
/// leadership moves, and the preflight now.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub layer: String,
    pub to: String,
    /// None when the preflight refuses.
    pub order: Vec<String>,
    pub canary: Option<String>,
    pub leader: Option<String>,
    /// Nodes already on the value.
    pub current: Vec<String>,
    pub preflight: Result<(), String>,
    pub gates: Vec<String>,
    pub wave_running: Option<String>,
    pub halt: Option<serde_json::Value>,
}

/// `fleet plan`: read-only.
pub async fn plan(
    client: &Client,
    keys: &Keys,
    fleet: &Fleet,
    opts: &RunOptions,
) -> Result<PlanReport, ConductError> {
    let (layer, to) = opts
        .change
        .clone()
        .ok_or_else(|| ConductError::Usage("fleet plan needs LAYER=VALUE".into()))?;
    let agents = read_agents(client, keys).await?;
    let views = views(&agents, None, Some(&layer));
    let wave = store::read(client, &keys.wave()).await?;
    let running = wave
        .and_then(|v| serde_json::from_value::<WaveRecord>(v.value).ok())
        .filter(|w| w.outcome.resumable())
        .map(|w| w.wave_id);
    let halt = store::halted(client, keys).await?;
    let gates = vec![
        format!(
            "voter set unchanged on every node, the changed node still a voter, held {} then re-checked",
            rollgate_core::units::format_duration(fleet.stabilization)
        ),
        format!(
            "requestIndex within {} of the cluster's highest and advancing",
            fleet.max_lag
        ),
        "a leader agreed by a majority of the voters".into(),
        "no node other than the one changed unhealthy".into(),
    ];
    let mut report = PlanReport {
        layer: layer.clone(),
        to: to.clone(),
        order: Vec::new(),
        canary: None,
        leader: None,
        current: Vec::new(),
        preflight: Ok(()),
        gates,
        wave_running: running,
        halt,
    };
    match planner::start(
        &views,
        &to,
        opts.canary.as_deref(),
        opts.leader.as_deref(),
        opts.allow_degraded,
    ) {
        Err(r) => report.preflight = Err(r.0),
        Ok(mut wave) => {
            report.canary = Some(wave.canary.clone());
            report.leader = planner::agreed_leader(&views, opts.leader.as_deref()).ok();
            report.current = wave
                .phases
                .iter()
                .filter(|(_, p)| **p == Phase::Current)
                .map(|(id, _)| id.clone())
                .collect();
            while let Decision::Step { node } = planner::next(&wave, &views, opts.leader.as_deref())
            {
                report.order.push(node.clone());
                wave.phases.insert(node, Phase::Promoted);
            }
        }
    }
    Ok(report)
}

/// `fleet run`: conducts a wave to its end (or until it cannot go on) and reports it.
/// `say` receives one line per decision for the human output.
pub async fn run(
    client: &Client,
    keys: &Keys,
    fleet: &Fleet,
    opts: &RunOptions,
    who: &str,
    say: &(dyn Fn(String) + Sync),
) -> Result<WaveReport, ConductError> {
    // Cheap refusals before campaigning.
    let existing = read_wave(client, keys).await?;
    match (&existing, opts.resume) {
        (Some((w, _)), false) if w.outcome.resumable() => {
            return Err(ConductError::Busy(format!(
                "wave {} ({}={}) is {}: `rollgate fleet run --resume` continues it",
                w.wave_id,
                w.layer,
                w.to,
                w.outcome.as_str()
            )));
        }
        (None, true) => return Err(ConductError::Usage("no wave to resume".into())),
        (Some((w, _)), true) if !w.outcome.resumable() => {
            return Err(ConductError::Usage(format!(
                "no wave to resume: the last one ({}) is {}",
                w.wave_id,
                w.outcome.as_str()
            )));
        }
        (Some((w, _)), true) => {
            if let Some((l, v)) = &opts.change
                && (l != &w.layer || v != &w.to)
            {
                return Err(ConductError::Usage(format!(
                    "the wave to resume is {}={}, not {l}={v}",
                    w.layer, w.to
                )));
            }
        }
        _ => {}
    }
    if !opts.resume && opts.change.is_none() {
        return Err(ConductError::Usage(
            "fleet run needs LAYER=VALUE (or --resume)".into(),
        ));
    }

    let lease = KeptLease::grant(client, CONDUCTOR_LEASE_TTL).await?;
    let Some(ship) =
        Conductorship::acquire(client, keys, lease, who, campaign_wait(opts.resume)).await?
    else {
        let other = election::current(client, keys)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "another conductor".into());
        return Err(ConductError::Busy(format!(
            "{other} conducts this cluster's wave"
        )));
    };
    let halt = HaltWatch::start(client, keys).await;
    let mut c = Conductor {
        client,
        keys,
        fleet,
        ship: &ship,
        halt,
        who,
        say,
    };
    let result = c.conduct(opts).await;
    drop(c);
    if let Err(e) = ship.resign(client).await {
        tracing::warn!(error = %chain(&e), "could not resign the conductorship");
    }
    result
}

/// How long a conductor campaigns before it reports busy: a resume outwaits the lease of a
/// conductor that was killed (its election key goes with its lease).
fn campaign_wait(resume: bool) -> Duration {
    if resume {
        CONDUCTOR_LEASE_TTL + Duration::from_secs(3)
    } else {
        Duration::from_secs(2)
    }
}

/// The wave record and its revision, if any.
pub async fn read_wave(
    client: &Client,
    keys: &Keys,
) -> Result<Option<(WaveRecord, i64)>, FleetError> {
    let Some(v) = store::read(client, &keys.wave()).await? else {
        return Ok(None);
    };
    let w = serde_json::from_value(v.value).map_err(|e| FleetError::Corrupt {
        key: keys.wave(),
        message: e.to_string(),
    })?;
    Ok(Some((w, v.mod_revision)))
}

/// Every node record of the cluster (one prefix read).
pub async fn read_records(
    client: &Client,
    keys: &Keys,
) -> Result<BTreeMap<String, (NodeRecord, i64)>, FleetError> {
    let resp = store::list(client, &keys.nodes()).await?;
    let mut out = BTreeMap::new();
    for kv in resp.kvs() {
        let Some(id) = keys.node_id(kv.key()) else {
            continue;
        };
        let r: NodeRecord =
            serde_json::from_slice(kv.value()).map_err(|e| FleetError::Corrupt {
                key: keys.node(id),
                message: e.to_string(),
            })?;
        out.insert(id.to_string(), (r, kv.mod_revision()));
    }
    Ok(out)
}

struct Conductor<'a> {
    client: &'a Client,
    keys: &'a Keys,
    fleet: &'a Fleet,
    ship: &'a Conductorship,
    halt: HaltWatch,
    who: &'a str,
    say: &'a (dyn Fn(String) + Sync),
}

/// How a step (or a revert) ended, as the agent recorded it.
struct Ended {
    phase: NodePhase,
    record: NodeRecord,
}

enum Waited {
    Ended(Ended),
    /// The agent's lease went while the step was not recorded.
    Lost(String),
    /// The cluster was halted before the agent took the intent: taken back, nothing ran.
    Withdrawn(String),
}

impl Conductor<'_> {
    fn say(&self, line: String) {
        (self.say)(line)
    }

    async fn conduct(&mut self, opts: &RunOptions) -> Result<WaveReport, ConductError> {
        let (mut wave, mut rev) = match self.begin(opts).await? {
            Ok(w) => w,
            Err(refused) => return Ok(refused),
        };
        let mut blocked_since: Option<(Instant, String)> = None;
        loop {
            self.ship.lease().ensure_alive()?;
            let agents = match read_agents(self.client, self.keys).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "reading the agents failed; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let views = views(&agents, Some(&wave), Some(&wave.layer));
            let decision =
                planner::next(&wave.planner_wave(), &views, wave.leader_given.as_deref());
            match decision {
                Decision::Step { node } => {
                    if let Some(reason) = self.halted() {
                        return self
                            .finish(&mut wave, &mut rev, WaveOutcome::Halted, reason, false)
                            .await;
                    }
                    blocked_since = None;
                    let Some(agent) = agents.get(&node) else {
                        tokio::time::sleep(POLL).await;
                        continue;
                    };
                    if !self.start_step(&mut wave, &mut rev, &node, agent).await? {
                        tokio::time::sleep(POLL).await;
                    }
                }
                Decision::Wait { node } => {
                    blocked_since = None;
                    self.settle(&mut wave, &mut rev, &node).await?;
                }
                Decision::Blocked { reason } => {
                    let (since, _) = blocked_since.get_or_insert_with(|| {
                        (self.say)(format!("waiting: {reason}"));
                        (Instant::now(), reason.clone())
                    });
                    if since.elapsed() >= opts.blocked_timeout {
                        let reason = format!(
                            "blocked for {}: {reason}",
                            rollgate_core::units::format_duration(opts.blocked_timeout)
                        );
                        return self
                            .finish(&mut wave, &mut rev, WaveOutcome::Halted, reason, false)
                            .await;
                    }
                    if let Some(reason) = self.halted() {
                        return self
                            .finish(&mut wave, &mut rev, WaveOutcome::Halted, reason, false)
                            .await;
                    }
                    tokio::time::sleep(POLL * 2).await;
                }
                Decision::Done => {
                    let reason = format!("every node on {}={}", wave.layer, wave.to);
                    return self
                        .finish(&mut wave, &mut rev, WaveOutcome::Done, reason, false)
                        .await;
                }
                Decision::Failed { node } if wave.rolled_back_by_halt.as_deref() == Some(&node) => {
                    let reason = format!(
                        "{}; node {node} was rolled back by its agent (`fleet unhalt`, then `fleet run --resume` steps it again)",
                        self.halted()
                            .unwrap_or_else(|| "cluster halted mid-step".into())
                    );
                    return self
                        .finish(&mut wave, &mut rev, WaveOutcome::Halted, reason, false)
                        .await;
                }
                Decision::Failed { node } => {
                    let failed = wave.phases.get(&node).copied() == Some(Phase::RollbackFailed);
                    let records = read_records(self.client, self.keys).await?;
                    let why = records
                        .get(&node)
                        .filter(|(r, _)| r.wave_id == wave.wave_id)
                        .and_then(|(r, _)| r.reason.clone())
                        .unwrap_or_else(|| "its gates failed".into());
                    let mut reason = format!("node {node} failed: {why}");
                    let mut rollback_failed = failed;
                    if wave.on_failure == OnFailure::RollbackAll {
                        let (ok, what) = self.rollback_all(&mut wave, &mut rev).await?;
                        rollback_failed |= !ok;
                        reason.push_str(&format!("; {what}"));
                    }
                    return self
                        .finish(
                            &mut wave,
                            &mut rev,
                            WaveOutcome::Failed,
                            reason,
                            rollback_failed,
                        )
                        .await;
                }
                Decision::Stuck { node } => {
                    let reason = format!(
                        "node {node} was lost mid-step (its agent's lease expired): look at the node, then `rollgate fleet resolve {node} --as done|rolled-back` and `rollgate fleet run --resume`"
                    );
                    return self
                        .finish(&mut wave, &mut rev, WaveOutcome::Stuck, reason, false)
                        .await;
                }
                Decision::Halted => {
                    return self
                        .finish(
                            &mut wave,
                            &mut rev,
                            WaveOutcome::Halted,
                            "halted".into(),
                            false,
                        )
                        .await;
                }
            }
        }
    }

    /// The halt's reason when no new step may start.
    fn halted(&self) -> Option<String> {
        match self.halt.state() {
            HaltState::Clear => None,
            HaltState::Halted(h) => Some(format!(
                "cluster halted: {}",
                h.get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("no reason given")
            )),
            HaltState::Unreachable(e) => Some(format!("etcd unreachable: {e}")),
        }
    }

    /// The wave to drive: the recorded one (`--resume`), or a new one after the preflight.
    /// `Err(report)`: refused, nothing touched.
    async fn begin(
        &mut self,
        opts: &RunOptions,
    ) -> Result<Result<(WaveRecord, i64), WaveReport>, ConductError> {
        let existing = read_wave(self.client, self.keys).await?;
        if opts.resume {
            let Some((mut w, rev)) = existing.filter(|(w, _)| w.outcome.resumable()) else {
                return Err(ConductError::Usage("no wave to resume".into()));
            };
            self.say(format!(
                "resuming wave {} ({}={}): {}",
                w.wave_id,
                w.layer,
                w.to,
                phases_line(&w)
            ));
            // A node rolled back by a halt is stepped again.
            if let Some(n) = w.rolled_back_by_halt.take() {
                w.phases.insert(n, Phase::Pending);
            }
            w.outcome = WaveOutcome::Running;
            w.reason = None;
            w.conductor = self.who.to_owned();
            let mut rev = rev;
            self.save(&mut w, &mut rev).await?;
            return Ok(Ok((w, rev)));
        }
        let (layer, to) = opts.change.clone().expect("checked by run");
        if let Some(reason) = self.halted() {
            return Err(ConductError::Busy(reason));
        }
        let agents = read_agents(self.client, self.keys).await?;
        let views = views(&agents, None, Some(&layer));
        let refuse = |reason: String| WaveReport {
            wave_id: None,
            outcome: WaveOutcome::Refused,
            layer: layer.clone(),
            to: to.clone(),
            order: Vec::new(),
            nodes: Vec::new(),
            reason: Some(reason),
            rollback_failed: false,
        };
        let start = match planner::start(
            &views,
            &to,
            opts.canary.as_deref(),
            opts.leader.as_deref(),
            opts.allow_degraded,
        ) {
            Ok(s) => s,
            Err(r) => return Ok(Err(refuse(r.0))),
        };
        let leader = planner::agreed_leader(&views, opts.leader.as_deref())
            .map_err(|e| ConductError::Busy(e.to_string()))?;
        let voters = planner::voter_set(&views)
            .map_err(ConductError::Busy)?
            .into_iter()
            .collect();
        let now = now_ms();
        let mut wave = WaveRecord {
            wave_id: wave_id(),
            layer,
            to,
            canary: start.canary.clone(),
            leader_at_start: leader,
            leader_given: opts.leader.clone(),
            allow_degraded: opts.allow_degraded,
            on_failure: opts.on_failure,
            voters,
            phases: start.phases,
            from: agents
                .iter()
                .map(|(id, a)| (id.clone(), a.snapshot.value.clone()))
                .collect(),
            order: Vec::new(),
            reverted: Vec::new(),
            rolled_back_by_halt: None,
            outcome: WaveOutcome::Running,
            reason: None,
            started_ms: now,
            updated_ms: now,
            conductor: self.who.to_owned(),
        };
        let value = serde_json::to_value(&wave).unwrap_or_default();
        let written = match existing {
            None => {
                store::create_if_absent_guarded(
                    self.client,
                    &self.keys.wave(),
                    &value,
                    self.ship.guard(),
                )
                .await?
            }
            Some((_, prev)) => {
                store::update_cas_guarded(
                    self.client,
                    &self.keys.wave(),
                    &value,
                    prev,
                    self.ship.guard(),
                )
                .await?
            }
        };
        let Some(rev) = written else {
            return Err(ConductError::Busy(
                "the wave record changed while this wave was being created".into(),
            ));
        };
        self.say(format!(
            "wave {} {}={}: canary {}, leader {} last; {}",
            wave.wave_id,
            wave.layer,
            wave.to,
            wave.canary,
            wave.leader_at_start,
            phases_line(&wave)
        ));
        wave.updated_ms = now;
        Ok(Ok((wave, rev)))
    }

    /// Writes the wave (CAS on `rev`, guarded by the leadership).
    async fn save(&self, wave: &mut WaveRecord, rev: &mut i64) -> Result<(), ConductError> {
        self.ship.lease().ensure_alive()?;
        wave.updated_ms = now_ms();
        let value = serde_json::to_value(&*wave).unwrap_or_default();
        match store::update_cas_guarded(
            self.client,
            &self.keys.wave(),
            &value,
            *rev,
            self.ship.guard(),
        )
        .await?
        {
            Some(r) => {
                *rev = r;
                Ok(())
            }
            None => Err(ConductError::Busy(format!(
                "the wave record {} changed under this conductor (or it lost the election): stopped",
                self.keys.wave()
            ))),
        }
    }

    /// Takes the disruption lock on the node's agent lease, records the step in the wave, then
    /// writes the intent. False when the lock is held by someone else (wait and re-plan).
    async fn start_step(
        &mut self,
        wave: &mut WaveRecord,
        rev: &mut i64,
        node: &str,
        agent: &AgentEntry,
    ) -> Result<bool, ConductError> {
        let holder = json!({"wave_id": wave.wave_id, "node_id": node, "conductor": self.who, "lease": agent.lease});
        if store::take_lock(self.client, self.keys, &holder, agent.lease)
            .await?
            .is_none()
        {
            let who = store::lock_holder(self.client, self.keys).await?;
            // Left by this wave's earlier conductor after a node it finished (killed before it
            // released it): the wave records that node done, so the lock guards nothing.
            if let Some(h) = &who
                && h.get("wave_id").and_then(|v| v.as_str()) == Some(wave.wave_id.as_str())
                && let Some(n) = h.get("node_id").and_then(|v| v.as_str())
                && wave.phases.get(n).is_some_and(|p| *p != Phase::InFlight)
            {
                self.release(h.get("lease").and_then(|l| l.as_i64())).await;
            } else {
                tracing::info!(holder = ?who, "the disruption lock is held; waiting");
            }
            return Ok(false);
        }
        let role = if node == wave.canary && wave.order.is_empty() {
            "canary"
        } else if agent.snapshot.leader.as_deref() == Some(node) {
            "leader"
        } else {
            "follower"
        };
        self.say(format!("node {node} ({role}): {}={}", wave.layer, wave.to));
        wave.phases.insert(node.to_owned(), Phase::InFlight);
        wave.order.push(node.to_owned());
        self.save(wave, rev).await?;
        self.write_intent(wave, node, false, None).await?;
        Ok(true)
    }

    /// Writes `node/<id>` for this wave (a step, or a revert to the node's value at the start).
    async fn write_intent(
        &self,
        wave: &WaveRecord,
        node: &str,
        revert: bool,
        why: Option<&str>,
    ) -> Result<(), ConductError> {
        let id = node_num(node)?;
        let record = if revert {
            let to = wave.from.get(node).cloned().flatten().unwrap_or_default();
            NodeRecord::revert(&wave.wave_id, &wave.layer, &to, why.unwrap_or("revert"))
        } else {
            NodeRecord::intent(&wave.wave_id, &wave.layer, &wave.to)
        };
        for _ in 0..3 {
            let previous = node::read(self.client, self.keys, id).await?;
            let prev_rev = previous.as_ref().map(|(_, r)| *r);
            if node::write_intent(self.client, self.keys, id, &record, prev_rev)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(ConductError::Busy(format!(
            "{} kept changing while the intent was written",
            self.keys.node(id)
        )))
    }

    /// Waits for the agent's outcome on `node` (recorded in flight), then the cluster gates.
    async fn settle(
        &mut self,
        wave: &mut WaveRecord,
        rev: &mut i64,
        node: &str,
    ) -> Result<(), ConductError> {
        // A revert already under way (a conductor killed mid-revert): wait for it.
        let id = node_num(node)?;
        if let Some((r, _)) = node::read(self.client, self.keys, id).await?
            && r.wave_id == wave.wave_id
            && r.revert
        {
            let lease = r.agent_lease;
            let outcome = self.revert_wait(wave, node).await?;
            wave.phases.insert(node.to_owned(), outcome);
            if !wave.reverted.iter().any(|n| n == node) {
                wave.reverted.push(node.to_owned());
            }
            self.save(wave, rev).await?;
            self.release(lease).await;
            return Ok(());
        }
        let lease = match self.wait_for(wave, node, false).await? {
            Waited::Lost(why) => {
                self.say(format!("node {node} lost: {why}"));
                wave.phases.insert(node.to_owned(), Phase::Lost);
                self.save(wave, rev).await?;
                return Ok(());
            }
            Waited::Withdrawn(why) => {
                // Never started: pending again, and no longer in the order of changed nodes.
                self.say(format!("node {node}: intent withdrawn: {why}"));
                wave.phases.insert(node.to_owned(), Phase::Pending);
                if wave.order.last().map(String::as_str) == Some(node) {
                    wave.order.pop();
                }
                self.save(wave, rev).await?;
                let lock = store::lock_holder(self.client, self.keys).await?;
                self.release(lock.and_then(|h| h.get("lease").and_then(|l| l.as_i64())))
                    .await;
                return Ok(());
            }
            Waited::Ended(ended) => {
                let lease = ended.record.agent_lease;
                let phase = ended.phase;
                let rid = ended.record.rollout_id.clone().unwrap_or_default();
                match phase {
                    NodePhase::Promoted => {
                        self.say(format!("node {node} promoted (rollout {rid})"));
                    }
                    other => {
                        let why = ended.record.reason.clone().unwrap_or_default();
                        self.say(format!(
                            "node {node} {}: {why}",
                            serde_json::to_value(other)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default()
                        ));
                        wave.phases.insert(node.to_owned(), other.planner_phase());
                        if other == NodePhase::RolledBack && self.halted().is_some() {
                            wave.rolled_back_by_halt = Some(node.to_owned());
                        }
                        self.save(wave, rev).await?;
                        self.release(lease).await;
                        return Ok(());
                    }
                }
                lease
            }
        };
        // Promoted by its own gates: now the cluster's.
        let first = wave.order.len() == 1;
        let mut hold = self.fleet.stabilization;
        if first {
            hold += self.fleet.canary_soak;
        }
        match self.cluster_gates(wave, node, hold).await? {
            Ok(()) => {
                self.say(format!(
                    "node {node}: cluster gates held {} and re-checked",
                    rollgate_core::units::format_duration(hold)
                ));
                wave.phases.insert(node.to_owned(), Phase::Promoted);
                self.save(wave, rev).await?;
                self.release(lease).await;
            }
            Err(why) => {
                self.say(format!(
                    "node {node} failed the cluster gates: {why}; reverting it"
                ));
                let outcome = self
                    .revert(wave, node, &format!("cluster gate: {why}"))
                    .await?;
                wave.phases.insert(node.to_owned(), outcome);
                wave.reverted.push(node.to_owned());
                self.save(wave, rev).await?;
                self.release(lease).await;
            }
        }
        Ok(())
    }

    async fn release(&self, lease: Option<i64>) {
        if let Some(l) = lease
            && let Err(e) = store::release_lock(self.client, self.keys, l).await
        {
            tracing::warn!(error = %chain(&e), "could not release the disruption lock (it goes with the agent's lease)");
        }
    }

    /// Writes a revert intent for `node` and waits for it: RolledBack when the agent verified
    /// the node back on its baseline, else RollbackFailed (Lost when the agent went).
    async fn revert(
        &mut self,
        wave: &WaveRecord,
        node: &str,
        why: &str,
    ) -> Result<Phase, ConductError> {
        self.write_intent(wave, node, true, Some(why)).await?;
        self.revert_wait(wave, node).await
    }

    async fn revert_wait(&mut self, wave: &WaveRecord, node: &str) -> Result<Phase, ConductError> {
        Ok(match self.wait_for(wave, node, true).await? {
            Waited::Lost(w) | Waited::Withdrawn(w) => {
                self.say(format!("node {node} lost during its revert: {w}"));
                Phase::Lost
            }
            Waited::Ended(e) if e.phase == NodePhase::RolledBack => {
                self.say(format!("node {node} reverted"));
                Phase::RolledBack
            }
            Waited::Ended(e) => {
                self.say(format!(
                    "node {node}: revert not verified: {}",
                    e.record.reason.unwrap_or_default()
                ));
                Phase::RollbackFailed
            }
        })
    }

    /// Polls `node/<id>` until the agent records a final phase for this wave's intent (of the
    /// given kind); writes the intent if the wave records the step but the intent is missing
    /// (a conductor killed between the two). Lost when the agent's presence is gone while the
    /// record is not final — a lease expiry is never taken as progress.
    async fn wait_for(
        &mut self,
        wave: &WaveRecord,
        node: &str,
        revert: bool,
    ) -> Result<Waited, ConductError> {
        let id = node_num(node)?;
        let mut gone_since: Option<Instant> = None;
        loop {
            self.ship.lease().ensure_alive()?;
            let read = async {
                let record = node::read(self.client, self.keys, id).await?;
                let agents = read_agents(self.client, self.keys).await?;
                Ok::<_, FleetError>((record, agents))
            }
            .await;
            let (record, agents) = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "reading node {node} failed; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let ours = record
                .as_ref()
                .filter(|(r, _)| r.wave_id == wave.wave_id && r.revert == revert);
            let Some((r, rrev)) = ours else {
                // Recorded in the wave, never written: write it now.
                self.write_intent(wave, node, revert, Some("revert"))
                    .await?;
                continue;
            };
            if r.phase.is_final() {
                return Ok(Waited::Ended(Ended {
                    phase: r.phase,
                    record: r.clone(),
                }));
            }
            if r.phase == NodePhase::Intent
                && !revert
                && let HaltState::Halted(_) = self.halt.state()
                && let Some(why) = self.halted()
            {
                // The agent claims nothing while halted: take the intent back (CAS — if it was
                // claimed meanwhile, the step is waited for as usual).
                let mut taken = r.clone();
                taken.phase = NodePhase::Vetoed;
                taken.reason = Some(format!("withdrawn before the agent took it: {why}"));
                if node::finish(self.client, self.keys, id, &taken, *rrev)
                    .await?
                    .is_some()
                {
                    return Ok(Waited::Withdrawn(why));
                }
                continue;
            }
            let agent = agents.get(node);
            let present = match (r.phase, agent) {
                (_, None) => false,
                (NodePhase::InFlight, Some(a)) => Some(a.lease) == r.agent_lease,
                (_, Some(_)) => true,
            };
            if present {
                gone_since = None;
            } else {
                // One more read before calling it: the agent's key is re-put every second.
                let since = gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= POLL * 2 {
                    if r.phase == NodePhase::Intent {
                        // Nobody claimed it: take it back so that no agent runs it later.
                        let mut taken = r.clone();
                        taken.phase = NodePhase::Vetoed;
                        taken.reason = Some("the agent was gone before it took the intent".into());
                        if node::finish(self.client, self.keys, id, &taken, *rrev)
                            .await?
                            .is_none()
                        {
                            continue;
                        }
                    }
                    return Ok(Waited::Lost(format!(
                        "the agent of node {node} is gone (lease expired) while {}",
                        if r.phase == NodePhase::Intent {
                            "its intent waited"
                        } else {
                            "its step ran"
                        }
                    )));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Holds the cluster gates for `hold` after `node` was promoted, then re-checks once.
    async fn cluster_gates(
        &mut self,
        wave: &WaveRecord,
        node: &str,
        hold: Duration,
    ) -> Result<Result<(), String>, ConductError> {
        let started = Instant::now();
        let window = hold.max(MIN_ADVANCE_WINDOW);
        let mut first_index: Option<u128> = None;
        let mut last_index: Option<u128> = None;
        loop {
            self.ship.lease().ensure_alive()?;
            let agents = match read_agents(self.client, self.keys).await {
                Ok(a) => a,
                Err(e) => return Ok(Err(format!("etcd: {}", chain(&e)))),
            };
            if let Err(why) = gate_sample(wave, node, &agents, self.fleet.max_lag) {
                return Ok(Err(why));
            }
            let idx = agents
                .get(node)
                .and_then(|a| a.snapshot.request_index.as_deref())
                .and_then(|s| s.parse::<u128>().ok());
            first_index = first_index.or(idx);
            last_index = idx.or(last_index);
            if started.elapsed() >= window {
                break;
            }
            tokio::time::sleep(POLL * 2).await;
        }
        // The re-check: one more sample after a publish interval, and the index moved.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let agents = read_agents(self.client, self.keys)
            .await
            .map_err(ConductError::from)?;
        if let Err(why) = gate_sample(wave, node, &agents, self.fleet.max_lag) {
            return Ok(Err(format!("at the re-check: {why}")));
        }
        let now = agents
            .get(node)
            .and_then(|a| a.snapshot.request_index.as_deref())
            .and_then(|s| s.parse::<u128>().ok())
            .or(last_index);
        match (first_index, now) {
            (Some(a), Some(b)) if b > a => Ok(Ok(())),
            (Some(a), Some(_)) => Ok(Err(format!(
                "node {node}'s requestIndex did not advance from {a} in {}",
                rollgate_core::units::format_duration(started.elapsed())
            ))),
            _ => Ok(Err(format!("node {node} reports no requestIndex"))),
        }
    }

    /// `--on-failure rollback-all`: every promoted node reverted, newest first, one at a time.
    /// (all verified, what happened)
    async fn rollback_all(
        &mut self,
        wave: &mut WaveRecord,
        rev: &mut i64,
    ) -> Result<(bool, String), ConductError> {
        let promoted: Vec<String> = wave
            .order
            .iter()
            .rev()
            .filter(|n| wave.phases.get(*n) == Some(&Phase::Promoted))
            .cloned()
            .collect();
        let mut all = true;
        for node in &promoted {
            if let Some(reason) = self.halted() {
                return Ok((false, format!("rollback-all stopped: {reason}")));
            }
            // One at a time: the lock on the node's agent lease, as for a step.
            let agents = read_agents(self.client, self.keys).await?;
            let Some(agent) = agents.get(node) else {
                all = false;
                continue;
            };
            let holder = json!({"wave_id": wave.wave_id, "node_id": node, "conductor": self.who, "lease": agent.lease, "revert": true});
            let waited = Instant::now();
            while store::take_lock(self.client, self.keys, &holder, agent.lease)
                .await?
                .is_none()
            {
                if waited.elapsed() > Duration::from_secs(60) {
                    return Ok((
                        false,
                        "rollback-all: the disruption lock stayed held".into(),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
            self.say(format!("rollback-all: reverting node {node}"));
            let phase = self
                .revert(wave, node, "rollback-all after the wave failed")
                .await?;
            self.release(Some(agent.lease)).await;
            all &= phase == Phase::RolledBack;
            wave.phases.insert(node.clone(), phase);
            wave.reverted.push(node.clone());
            self.save(wave, rev).await?;
        }
        Ok((
            all,
            format!(
                "rollback-all: {} node(s) reverted{}",
                promoted.len(),
                if all { "" } else { ", not all verified" }
            ),
        ))
    }

    /// Records how the wave ended and builds the report.
    async fn finish(
        &mut self,
        wave: &mut WaveRecord,
        rev: &mut i64,
        outcome: WaveOutcome,
        reason: String,
        rollback_failed: bool,
    ) -> Result<WaveReport, ConductError> {
        wave.outcome = outcome;
        wave.reason = Some(reason.clone());
        // etcd may be what stopped us: the report is still printed.
        if let Err(e) = self.save(wave, rev).await {
            tracing::warn!(error = %e, "could not record the wave's end");
        }
        self.say(format!(
            "wave {}: {} — {reason}",
            wave.wave_id,
            outcome.as_str()
        ));
        let agents = read_agents(self.client, self.keys)
            .await
            .unwrap_or_default();
        let records = read_records(self.client, self.keys)
            .await
            .unwrap_or_default();
        Ok(report(wave, &agents, &records, rollback_failed))
    }
}

/// One sample of the cluster gates (Err: the first that fails).
fn gate_sample(
    wave: &WaveRecord,
    node: &str,
    agents: &BTreeMap<String, AgentEntry>,
    max_lag: u64,
) -> Result<(), String> {
    let Some(me) = agents.get(node) else {
        return Err(format!("node {node}'s agent is gone"));
    };
    for id in &wave.voters {
        let Some(a) = agents.get(id) else {
            return Err(format!("voter {id} has no live agent"));
        };
        let mut set = a.snapshot.voters.clone();
        set.sort();
        let mut want = wave.voters.clone();
        want.sort();
        if set != want {
            return Err(format!(
                "node {id} reports voters {} where the wave started with {}",
                set.join(","),
                want.join(",")
            ));
        }
        if !a.snapshot.healthy {
            return Err(format!("node {id} is unhealthy"));
        }
    }
    if !me.snapshot.voters.iter().any(|v| v == node) {
        return Err(format!("node {node} is no longer a voter"));
    }
    let views = views(agents, None, None);
    planner::agreed_leader(&views, wave.leader_given.as_deref())?;
    let highest = agents
        .values()
        .filter_map(|a| a.snapshot.request_index.as_deref()?.parse::<u128>().ok())
        .max();
    let mine = me
        .snapshot
        .request_index
        .as_deref()
        .and_then(|s| s.parse::<u128>().ok());
    match (mine, highest) {
        (Some(m), Some(h)) if h.saturating_sub(m) > max_lag as u128 => Err(format!(
            "node {node}'s requestIndex {m} lags the cluster's highest {h} by more than {max_lag}"
        )),
        (None, _) => Err(format!("node {node} reports no requestIndex")),
        _ => Ok(()),
    }
}

fn phases_line(w: &WaveRecord) -> String {
    w.phases
        .iter()
        .map(|(id, p)| format!("{id} {}", p.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The contract's report of a wave, from what etcd records.
pub fn report(
    wave: &WaveRecord,
    agents: &BTreeMap<String, AgentEntry>,
    records: &BTreeMap<String, (NodeRecord, i64)>,
    rollback_failed: bool,
) -> WaveReport {
    let nodes = wave
        .phases
        .iter()
        .map(|(id, phase)| {
            let record = records
                .get(id)
                .filter(|(r, _)| r.wave_id == wave.wave_id)
                .map(|(r, _)| r);
            let role = agents.get(id).map(|a| crate::status::role(&a.snapshot));
            let outcome = match phase {
                Phase::Promoted => "promoted",
                Phase::RolledBack if record.is_some_and(|r| r.phase == NodePhase::Vetoed) => {
                    "untouched"
                }
                Phase::RolledBack => "rolled_back",
                Phase::RollbackFailed => "rollback_failed",
                Phase::Lost => "lost",
                Phase::InFlight => "in_flight",
                Phase::Pending | Phase::Current => "untouched",
            };
            NodeReport {
                node_id: id.clone(),
                role,
                outcome: outcome.to_owned(),
                rollout_id: record.and_then(|r| r.rollout_id.clone()),
                reason: record.and_then(|r| r.reason.clone()),
            }
        })
        .collect();
    WaveReport {
        wave_id: Some(wave.wave_id.clone()),
        outcome: wave.outcome,
        layer: wave.layer.clone(),
        to: wave.to.clone(),
        order: wave.order.clone(),
        nodes,
        reason: wave.reason.clone(),
        rollback_failed: rollback_failed
            || wave.phases.values().any(|p| *p == Phase::RollbackFailed),
    }
}

/// `fleet resolve NODE --as done|rolled-back`: after a human looked at a node lost mid-step.
/// Refused while a conductor runs; the wave stays resumable (`fleet run --resume`).
pub async fn resolve(
    client: &Client,
    keys: &Keys,
    node: &str,
    done: bool,
    reason: &str,
) -> Result<WaveRecord, ConductError> {
    if let Some(who) = election::current(client, keys).await? {
        return Err(ConductError::Busy(format!(
            "{who} conducts the wave: stop it before resolving a node"
        )));
    }
    let Some((mut wave, rev)) = read_wave(client, keys).await? else {
        return Err(ConductError::Usage("no wave recorded".into()));
    };
    let phase = wave.phases.get(node).copied().ok_or_else(|| {
        ConductError::Usage(format!(
            "node {node} is not part of wave {} (nodes: {})",
            wave.wave_id,
            wave.phases.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    if !matches!(phase, Phase::Lost | Phase::InFlight) {
        return Err(ConductError::Usage(format!(
            "node {node} is {} in wave {}: only a node lost mid-step is resolved",
            phase.as_str(),
            wave.wave_id
        )));
    }
    let id = node_num(node)?;
    let as_phase = if done {
        NodePhase::Promoted
    } else {
        NodePhase::RolledBack
    };
    // The node record says what the human decided (CAS: an agent that comes back cannot
    // record over it, and it over no late agent).
    if let Some((mut r, rrev)) = node::read(client, keys, id).await?
        && r.wave_id == wave.wave_id
    {
        r.phase = as_phase;
        r.reason = Some(format!("resolved by hand: {reason}"));
        if node::finish(client, keys, id, &r, rrev).await?.is_none() {
            return Err(ConductError::Busy(format!(
                "{} changed while it was being resolved: look again",
                keys.node(id)
            )));
        }
    }
    wave.phases
        .insert(node.to_owned(), as_phase.planner_phase());
    if wave.outcome == WaveOutcome::Stuck {
        wave.outcome = WaveOutcome::Halted;
        wave.reason = Some(format!(
            "node {node} resolved as {}: `rollgate fleet run --resume` continues",
            if done { "done" } else { "rolled back" }
        ));
    }
    wave.updated_ms = now_ms();
    let value = serde_json::to_value(&wave).unwrap_or_default();
    if store::update_cas(client, &keys.wave(), &value, rev)
        .await?
        .is_none()
    {
        return Err(ConductError::Busy(format!(
            "{} changed while the node was being resolved: look again",
            keys.wave()
        )));
    }
    Ok(wave)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn agent(id: &str, voters: &[&str], leader: &str, index: &str) -> (String, AgentEntry) {
        (
            id.to_owned(),
            AgentEntry {
                snapshot: AgentSnapshot {
                    node_id: id.to_owned(),
                    layer: None,
                    value: Some("v2".into()),
                    healthy: true,
                    frozen: false,
                    voters: voters.iter().map(|v| v.to_string()).collect(),
                    leader: Some(leader.to_owned()),
                    request_index: Some(index.to_owned()),
                },
                lease: 1,
            },
        )
    }

    fn wave() -> WaveRecord {
        WaveRecord {
            wave_id: "w".into(),
            layer: "l".into(),
            to: "v2".into(),
            canary: "2".into(),
            leader_at_start: "1".into(),
            leader_given: None,
            allow_degraded: false,
            on_failure: OnFailure::Stop,
            voters: vec!["1".into(), "2".into(), "3".into()],
            phases: BTreeMap::new(),
            from: BTreeMap::new(),
            order: vec![],
            reverted: vec![],
            rolled_back_by_halt: None,
            outcome: WaveOutcome::Running,
            reason: None,
            started_ms: 0,
            updated_ms: 0,
            conductor: "t".into(),
        }
    }

    #[test]
    fn cluster_gates_name_what_fails() {
        let all = ["1", "2", "3"];
        let good: BTreeMap<_, _> = [
            agent("1", &all, "1", "1000"),
            agent("2", &all, "1", "990"),
            agent("3", &all, "1", "1000"),
        ]
        .into();
        assert_eq!(gate_sample(&wave(), "2", &good, 50), Ok(()));

        // Lagging past max_lag, counted past 2^64.
        let mut lag = good.clone();
        lag.insert("2".into(), agent("2", &all, "1", "18446744073709551616").1);
        lag.insert("1".into(), agent("1", &all, "1", "18446744073709551716").1);
        let e = gate_sample(&wave(), "2", &lag, 50).unwrap_err();
        assert!(e.contains("lags") && e.contains("by more than 50"), "{e}");

        // The node left the voter set (it reports a set without itself).
        let mut left = good.clone();
        left.insert("2".into(), agent("2", &["1", "3"], "1", "1000").1);
        let e = gate_sample(&wave(), "2", &left, 50).unwrap_err();
        assert!(e.contains("reports voters 1,3"), "{e}");

        // Another node unhealthy.
        let mut sick = good.clone();
        sick.get_mut("3").unwrap().snapshot.healthy = false;
        assert_eq!(
            gate_sample(&wave(), "2", &sick, 50).unwrap_err(),
            "node 3 is unhealthy"
        );

        // No leader agreed by a majority.
        let split: BTreeMap<_, _> = [
            agent("1", &all, "1", "1000"),
            agent("2", &all, "2", "1000"),
            agent("3", &all, "3", "1000"),
        ]
        .into();
        assert!(
            gate_sample(&wave(), "2", &split, 50)
                .unwrap_err()
                .contains("no leader")
        );

        // An agent gone.
        let mut gone = good.clone();
        gone.remove("3");
        assert_eq!(
            gate_sample(&wave(), "2", &gone, 50).unwrap_err(),
            "voter 3 has no live agent"
        );
    }

    #[test]
    fn the_wave_record_round_trips_and_reports_the_contract() {
        let mut w = wave();
        w.phases = [
            ("1".to_string(), Phase::Pending),
            ("2".to_string(), Phase::RolledBack),
            ("3".to_string(), Phase::Current),
        ]
        .into();
        w.order = vec!["2".into()];
        w.outcome = WaveOutcome::Failed;
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["phases"]["2"], "rolled_back");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(serde_json::from_value::<WaveRecord>(json).unwrap(), w);
        let all = ["1", "2", "3"];
        let agents: BTreeMap<_, _> =
            [agent("1", &all, "1", "1"), agent("2", &all, "1", "1")].into();
        let mut rec = NodeRecord::intent("w", "l", "v2");
        rec.phase = NodePhase::RolledBack;
        rec.rollout_id = Some("r-1".into());
        let records: BTreeMap<_, _> = [("2".to_string(), (rec, 5))].into();
        let r = report(&w, &agents, &records, false);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["nodes"][1]["outcome"], "rolled_back");
        assert_eq!(j["nodes"][1]["rollout_id"], "r-1");
        assert_eq!(j["nodes"][1]["role"], "follower");
        assert_eq!(j["nodes"][0]["role"], "leader");
        assert_eq!(j["nodes"][0]["outcome"], "untouched");
        assert_eq!(j["nodes"][2]["outcome"], "untouched");
        assert_eq!(j["nodes"][2]["role"], Value::Null);
        assert!(!r.rollback_failed);
    }
}

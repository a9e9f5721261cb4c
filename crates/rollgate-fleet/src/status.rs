//! `rollgate fleet status`: the wave and every node as etcd holds them, in the contract's JSON
//! (`{wave: {…}|null, agents: [{node_id, alive, value, healthy, role, phase}], halt}`). Read-only:
//! one prefix read each for agents and node records, so it stays fast with many agents.

use std::collections::BTreeMap;

use etcd_client::Client;
use serde::Serialize;
use serde_json::Value;

use crate::conductor::{AgentEntry, WaveRecord};
use crate::errors::FleetError;
use crate::keys::Keys;
use crate::node::{NodePhase, NodeRecord};
use crate::snapshot::AgentSnapshot;
use crate::store;

/// A node's role as its own agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    /// Not in the voter set it reports (a learner, or a node that left).
    NonVoter,
}

/// One node: its agent's snapshot (when its lease is alive) and its record (when it has one).
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub node_id: u64,
    pub alive: bool,
    pub value: Option<String>,
    pub healthy: Option<bool>,
    pub role: Option<Role>,
    pub phase: Option<NodePhase>,
    /// The node record (wave, layer, to, rollout id, reason) for the human display.
    #[serde(skip)]
    pub record: Option<NodeRecord>,
    #[serde(skip)]
    pub frozen: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub wave: Option<Value>,
    pub agents: Vec<AgentStatus>,
    /// The cluster kill switch's record when on (`fleet halt`).
    pub halt: Option<Value>,
    /// Who conducts the wave now (the election's value), if anyone.
    pub conductor: Option<String>,
    /// For a wave still running, halted or stuck: what its conductor would do next from what
    /// etcd holds now (`step node 3`, `wait for node 2`, `blocked: …`, `stuck: node 2 lost`).
    pub next: Option<String>,
}

/// A node's role as its own snapshot says.
pub fn role(s: &AgentSnapshot) -> Role {
    if s.leader.as_deref() == Some(s.node_id.as_str()) {
        Role::Leader
    } else if s.voters.contains(&s.node_id) {
        Role::Follower
    } else {
        Role::NonVoter
    }
}

/// Reads the cluster's state. A key holding something that is not our JSON is an error naming it.
pub async fn read(client: &Client, keys: &Keys) -> Result<FleetStatus, FleetError> {
    let wave = store::read(client, &keys.wave()).await?.map(|v| v.value);
    let halt = store::halted(client, keys).await?;
    let mut nodes: BTreeMap<u64, AgentStatus> = BTreeMap::new();
    let blank = |node_id| AgentStatus {
        node_id,
        alive: false,
        value: None,
        healthy: None,
        role: None,
        phase: None,
        record: None,
        frozen: false,
    };
    let mut snapshots: BTreeMap<String, AgentEntry> = BTreeMap::new();
    for (id, value) in store::agents(client, keys).await? {
        let snap: AgentSnapshot =
            serde_json::from_value(value).map_err(|e| FleetError::Corrupt {
                key: keys.agent(id),
                message: e.to_string(),
            })?;
        snapshots.insert(
            id.to_string(),
            AgentEntry {
                snapshot: snap.clone(),
                lease: 0,
            },
        );
        let n = nodes.entry(id).or_insert_with(|| blank(id));
        n.alive = true;
        n.value = snap.value.clone();
        n.healthy = Some(snap.healthy);
        n.role = Some(role(&snap));
        n.frozen = snap.frozen;
    }
    let resp = store::list(client, &keys.nodes()).await?;
    for kv in resp.kvs() {
        let Some(id) = keys.node_id(kv.key()) else {
            continue;
        };
        let record: NodeRecord =
            serde_json::from_slice(kv.value()).map_err(|e| FleetError::Corrupt {
                key: keys.node(id),
                message: e.to_string(),
            })?;
        let n = nodes.entry(id).or_insert_with(|| blank(id));
        n.phase = Some(record.phase);
        n.record = Some(record);
    }
    let conductor = crate::election::current(client, keys).await?;
    let next = wave.as_ref().and_then(|w| next_step(w, &snapshots));
    Ok(FleetStatus {
        wave,
        agents: nodes.into_values().collect(),
        halt,
        conductor,
        next,
    })
}

/// What the planner would decide for a wave that is not over, in words.
fn next_step(wave: &Value, agents: &BTreeMap<String, AgentEntry>) -> Option<String> {
    use rollgate_core::fleet::{Decision, next};
    let w: WaveRecord = serde_json::from_value(wave.clone()).ok()?;
    if !w.outcome.resumable() {
        return None;
    }
    let views = crate::conductor::views(agents, Some(&w), Some(&w.layer));
    Some(
        match next(&w.planner_wave(), &views, w.leader_given.as_deref()) {
            Decision::Step { node } => format!("step node {node}"),
            Decision::Wait { node } => format!("wait for node {node}"),
            Decision::Blocked { reason } => format!("blocked: {reason}"),
            Decision::Done => "done".into(),
            Decision::Failed { node } => format!("failed at node {node}"),
            Decision::Stuck { node } => format!(
                "stuck: node {node} was lost mid-step (`rollgate fleet resolve {node} --as done|rolled-back`)"
            ),
            Decision::Halted => "halted".into(),
        },
    )
}

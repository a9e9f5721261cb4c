//! `node/<id>`: the one channel between the conductor and a node's agent. The conductor writes
//! an intent; the agent claims it (intent → in flight) only while its own presence key is on its
//! live lease, runs the single-node rollout, and records the outcome. Every write is a
//! compare-and-swap on the record's mod revision, so an intent is run at most once, by one
//! agent, and a claim can never be made by an agent whose lease already expired.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use rollgate_core::fleet::Phase;
use serde::{Deserialize, Serialize};

use crate::errors::FleetError;
use crate::keys::Keys;
use crate::store::{self, Versioned};

/// Where a node's record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodePhase {
    /// Written by the conductor; no agent has taken it yet.
    Intent,
    /// Claimed by the agent: the single-node rollout runs.
    InFlight,
    Promoted,
    RolledBack,
    RollbackFailed,
    /// The agent refused: its local freeze vetoes the conductor. Nothing was changed.
    Vetoed,
    /// `fleet resolve NODE --as …` after the node was lost mid-step.
    Resolved,
}

impl NodePhase {
    /// The planner's phase for this record (an intent not yet taken is already a disruption in
    /// progress: the conductor took the lock for it).
    pub fn planner_phase(self) -> Phase {
        match self {
            NodePhase::Intent | NodePhase::InFlight => Phase::InFlight,
            NodePhase::Promoted => Phase::Promoted,
            NodePhase::RolledBack | NodePhase::Vetoed | NodePhase::Resolved => Phase::RolledBack,
            NodePhase::RollbackFailed => Phase::RollbackFailed,
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, NodePhase::Intent | NodePhase::InFlight)
    }
}

/// The record at `node/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub wave_id: String,
    pub layer: String,
    pub to: String,
    pub phase: NodePhase,
    /// The lease of the agent that claimed it (in flight and after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_lease: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A revert: the node passed its own gates but failed the cluster's (or `--on-failure
    /// rollback-all`), so its agent runs `rollgate rollback` of the layer instead of a rollout;
    /// `to` is the value it goes back to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
}

impl NodeRecord {
    pub fn intent(wave_id: &str, layer: &str, to: &str) -> NodeRecord {
        NodeRecord {
            wave_id: wave_id.to_owned(),
            layer: layer.to_owned(),
            to: to.to_owned(),
            phase: NodePhase::Intent,
            agent_lease: None,
            rollout_id: None,
            reason: None,
            revert: false,
        }
    }

    /// An intent to put the node back on `to` (the value it had before the wave).
    pub fn revert(wave_id: &str, layer: &str, to: &str, why: &str) -> NodeRecord {
        NodeRecord {
            revert: true,
            reason: Some(why.to_owned()),
            ..NodeRecord::intent(wave_id, layer, to)
        }
    }
}

fn to_json(r: &NodeRecord) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// The node's record and its revision, if any.
pub async fn read(
    client: &Client,
    keys: &Keys,
    node_id: u64,
) -> Result<Option<(NodeRecord, i64)>, FleetError> {
    let key = keys.node(node_id);
    let Some(Versioned {
        value,
        mod_revision,
    }) = store::read(client, &key).await?
    else {
        return Ok(None);
    };
    let record = serde_json::from_value(value).map_err(|e| FleetError::Corrupt {
        key,
        message: e.to_string(),
    })?;
    Ok(Some((record, mod_revision)))
}

/// Conductor: writes an intent. `previous`: the revision of the record it replaces (a node's
/// record from an earlier wave), None when there is none. None back on a conflict.
pub async fn write_intent(
    client: &Client,
    keys: &Keys,
    node_id: u64,
    intent: &NodeRecord,
    previous: Option<i64>,
) -> Result<Option<i64>, FleetError> {
    let key = keys.node(node_id);
    match previous {
        None => store::create_if_absent(client, &key, &to_json(intent)).await,
        Some(rev) => store::update_cas(client, &key, &to_json(intent), rev).await,
    }
}

/// Agent: takes the intent read at `rev` — only if the record is still at `rev` and the agent's
/// presence key is still on `lease` (a lease that expired cannot claim anything). Returns the
/// claimed record and its new revision; None when the intent moved on or the lease is gone.
pub async fn claim(
    client: &Client,
    keys: &Keys,
    node_id: u64,
    intent: &NodeRecord,
    rev: i64,
    lease: i64,
) -> Result<Option<(NodeRecord, i64)>, FleetError> {
    if intent.phase != NodePhase::Intent {
        return Ok(None);
    }
    let mut claimed = intent.clone();
    claimed.phase = NodePhase::InFlight;
    claimed.agent_lease = Some(lease);
    let key = keys.node(node_id);
    let agent = keys.agent(node_id);
    let txn = Txn::new()
        .when([
            Compare::mod_revision(key.as_str(), CompareOp::Equal, rev),
            Compare::lease(agent.as_str(), CompareOp::Equal, lease),
        ])
        .and_then([TxnOp::put(
            key.as_str(),
            to_json(&claimed).to_string(),
            None,
        )]);
    let resp = client
        .clone()
        .txn(txn)
        .await
        .map_err(FleetError::etcd(format!("claim {key}")))?;
    Ok(resp.succeeded().then(|| {
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        (claimed, rev)
    }))
}

/// Agent: records where its step ended (from the claimed revision). None on a conflict.
pub async fn finish(
    client: &Client,
    keys: &Keys,
    node_id: u64,
    record: &NodeRecord,
    rev: i64,
) -> Result<Option<i64>, FleetError> {
    store::update_cas(client, &keys.node(node_id), &to_json(record), rev).await
}

//! What the fleet records in etcd, as JSON values. Progress is only what is recorded here: the
//! wave is created only if absent and updated by compare-and-swap on its mod revision, so two
//! conductors can never both write a step; presence keys live on their agent's lease.

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde_json::Value;

use crate::errors::FleetError;
use crate::keys::Keys;

/// A JSON value with the mod revision it was read at (the compare-and-swap token).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub value: Value,
    pub mod_revision: i64,
}

fn parse(key: &str, bytes: &[u8]) -> Result<Value, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| FleetError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// The value at `key`, or None.
pub async fn read(client: &Client, key: &str) -> Result<Option<Versioned>, FleetError> {
    let resp = client
        .clone()
        .get(key, None)
        .await
        .map_err(FleetError::etcd(format!("read {key}")))?;
    resp.kvs()
        .first()
        .map(|kv| {
            Ok(Versioned {
                value: parse(key, kv.value())?,
                mod_revision: kv.mod_revision(),
            })
        })
        .transpose()
}

/// Writes `value` at `key` only if the key does not exist. Some(mod revision) when written,
/// None when something was there already (read it and decide again).
pub async fn create_if_absent(
    client: &Client,
    key: &str,
    value: &Value,
) -> Result<Option<i64>, FleetError> {
    create_if_absent_guarded(client, key, value, Vec::new()).await
}

/// [`create_if_absent`], and only while every `guard` holds (the conductor's leadership:
/// [`crate::election::Conductorship::guard`]).
pub async fn create_if_absent_guarded(
    client: &Client,
    key: &str,
    value: &Value,
    guard: Vec<Compare>,
) -> Result<Option<i64>, FleetError> {
    let mut when = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
    when.extend(guard);
    let txn = Txn::new()
        .when(when)
        .and_then([TxnOp::put(key, value.to_string(), None)]);
    commit(client, key, txn, "create").await
}

/// Replaces the value at `key` only if it is still at `mod_revision`. Some(new mod revision)
/// when written, None on a conflict (someone else wrote since: read it and decide again).
pub async fn update_cas(
    client: &Client,
    key: &str,
    value: &Value,
    mod_revision: i64,
) -> Result<Option<i64>, FleetError> {
    update_cas_guarded(client, key, value, mod_revision, Vec::new()).await
}

/// [`update_cas`], and only while every `guard` holds.
pub async fn update_cas_guarded(
    client: &Client,
    key: &str,
    value: &Value,
    mod_revision: i64,
    guard: Vec<Compare>,
) -> Result<Option<i64>, FleetError> {
    let mut when = vec![Compare::mod_revision(key, CompareOp::Equal, mod_revision)];
    when.extend(guard);
    let txn = Txn::new()
        .when(when)
        .and_then([TxnOp::put(key, value.to_string(), None)]);
    commit(client, key, txn, "update").await
}

async fn commit(
    client: &Client,
    key: &str,
    txn: Txn,
    what: &str,
) -> Result<Option<i64>, FleetError> {
    let resp = client
        .clone()
        .txn(txn)
        .await
        .map_err(FleetError::etcd(format!("{what} {key}")))?;
    // A put in a transaction takes the transaction's revision.
    Ok(resp
        .succeeded()
        .then(|| resp.header().map(|h| h.revision()).unwrap_or(0)))
}

/// Publishes an agent's presence and snapshot on its lease: the key vanishes with the lease.
pub async fn publish_agent(
    client: &Client,
    keys: &Keys,
    node_id: u64,
    snapshot: &Value,
    lease: i64,
) -> Result<(), FleetError> {
    let key = keys.agent(node_id);
    client
        .clone()
        .put(
            key.as_str(),
            snapshot.to_string(),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map(|_| ())
        .map_err(FleetError::etcd(format!("publish {key}")))
}

/// Every key under `prefix`, in one read.
pub async fn list(client: &Client, prefix: &str) -> Result<etcd_client::GetResponse, FleetError> {
    client
        .clone()
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(FleetError::etcd(format!("list {prefix}")))
}

/// Every registered agent's snapshot, by node id (keys that are not `agent/<id>` are skipped).
pub async fn agents(client: &Client, keys: &Keys) -> Result<Vec<(u64, Value)>, FleetError> {
    let resp = list(client, &keys.agents()).await?;
    let mut out = Vec::new();
    for kv in resp.kvs() {
        if let Some(id) = keys.agent_id(kv.key()) {
            out.push((id, parse(&keys.agent(id), kv.value())?));
        }
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// The disruption lock's key (`lock/holder`): at most one node is disrupted at a time.
fn lock_key(keys: &Keys) -> String {
    format!("{}holder", keys.lock())
}

/// Takes the disruption lock for `holder` on the agent's `lease` if nobody holds it: a key
/// created only if absent, so it is never waited for (nothing can be left queued) and it
/// disappears with the lease. Some(revision) when taken, None when held by someone (read
/// [`lock_holder`]).
pub async fn take_lock(
    client: &Client,
    keys: &Keys,
    holder: &Value,
    lease: i64,
) -> Result<Option<i64>, FleetError> {
    let key = lock_key(keys);
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            holder.to_string(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    commit(client, &key, txn, "take").await
}

/// Who holds the disruption lock, if anyone.
pub async fn lock_holder(client: &Client, keys: &Keys) -> Result<Option<Value>, FleetError> {
    Ok(read(client, &lock_key(keys)).await?.map(|v| v.value))
}

/// Releases the disruption lock if it is still held on `lease` (never someone else's).
/// Returns whether it was released.
pub async fn release_lock(client: &Client, keys: &Keys, lease: i64) -> Result<bool, FleetError> {
    let key = lock_key(keys);
    let txn = Txn::new()
        .when([Compare::lease(key.as_str(), CompareOp::Equal, lease)])
        .and_then([TxnOp::delete(key.as_str(), None)]);
    Ok(commit(client, &key, txn, "release").await?.is_some())
}

/// The cluster kill switch: `halt` holds `{reason, at_ms}` (no lease: it stays until unhalted).
pub async fn halt(
    client: &Client,
    keys: &Keys,
    reason: &str,
    at_ms: u64,
) -> Result<(), FleetError> {
    let key = keys.halt();
    let value = serde_json::json!({"reason": reason, "at_ms": at_ms});
    client
        .clone()
        .put(key.as_str(), value.to_string(), None)
        .await
        .map(|_| ())
        .map_err(FleetError::etcd(format!("write {key}")))
}

/// Lifts the kill switch; returns whether it was on.
pub async fn unhalt(client: &Client, keys: &Keys) -> Result<bool, FleetError> {
    let key = keys.halt();
    client
        .clone()
        .delete(key.as_str(), None)
        .await
        .map(|r| r.deleted() > 0)
        .map_err(FleetError::etcd(format!("delete {key}")))
}

/// The kill switch's record when it is on.
pub async fn halted(client: &Client, keys: &Keys) -> Result<Option<Value>, FleetError> {
    Ok(read(client, &keys.halt()).await?.map(|v| v.value))
}

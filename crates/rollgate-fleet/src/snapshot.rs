//! What an agent publishes about its node (`agent/<id>`, on its lease): the node's Raft identity
//! read from the operator status document through the `[fleet]` pointers, its health, the
//! layer's value and its local freeze. The conductor turns each into the planner's
//! [`NodeView`]; presence of the key is the agent's liveness.

use rollgate_core::config::Fleet;
use rollgate_core::fleet::NodeView;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the status document keeps the request index (the progression gates read the same).
pub const REQUEST_INDEX_POINTER: &str = "/lastRequest/requestIndex";

/// One node as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    pub node_id: String,
    /// The layer `value` is of: the layer of the last intent the agent saw, else the first
    /// configured one (a conductor counts `value` only for its wave's layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The layer's current value on the node, when the agent could read it.
    pub value: Option<String>,
    /// Green by the node's own readiness checks.
    pub healthy: bool,
    /// `rollgate freeze` is on: the node vetoes the conductor.
    pub frozen: bool,
    pub voters: Vec<String>,
    pub leader: Option<String>,
    /// The node's `requestIndex` as a decimal string (it counts past 2^64 on some nodes).
    pub request_index: Option<String>,
}

/// A Raft id as the planner names nodes: a JSON number or string, as decimal text.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

impl AgentSnapshot {
    /// Reads the node's identity from its operator status document. A pointer that finds
    /// nothing usable is an error naming it: a node that renamed `voterIds` must not look like a
    /// node without voters.
    pub fn from_status(
        status: &Value,
        fleet: &Fleet,
        value: Option<String>,
        healthy: bool,
        frozen: bool,
    ) -> Result<AgentSnapshot, String> {
        let at = |p: &str| status.pointer(p);
        let node_id = at(&fleet.node_id_pointer)
            .and_then(id_text)
            .ok_or_else(|| {
                format!(
                    "no node id at {} of the status document",
                    fleet.node_id_pointer
                )
            })?;
        let voters = at(&fleet.voters_pointer)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(id_text).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                format!(
                    "no list of voter ids at {} of the status document",
                    fleet.voters_pointer
                )
            })?;
        // `null` (or absent) is a node that sees no leader right now, not an error.
        let leader = fleet
            .leader_pointer
            .as_deref()
            .and_then(at)
            .and_then(id_text);
        let request_index = at(REQUEST_INDEX_POINTER).and_then(id_text);
        Ok(AgentSnapshot {
            node_id,
            layer: None,
            value,
            healthy,
            frozen,
            voters,
            leader,
            request_index,
        })
    }

    /// The planner's view of this node; `alive`: its agent's key is present.
    pub fn to_view(&self, alive: bool) -> NodeView {
        NodeView {
            id: self.node_id.clone(),
            alive,
            healthy: self.healthy,
            voters: self.voters.clone(),
            leader: self.leader.clone(),
            value: self.value.clone(),
            frozen: self.frozen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet(leader: bool) -> Fleet {
        Fleet {
            etcd: vec!["http://127.0.0.1:2379".into()],
            cluster: "c".into(),
            node_id_pointer: "/raftMetrics/nodeId".into(),
            voters_pointer: "/raftMetrics/voterIds".into(),
            leader_pointer: leader.then(|| "/raftMetrics/leaderId".into()),
            max_lag: 50,
            stabilization: std::time::Duration::from_secs(15),
            canary_soak: std::time::Duration::ZERO,
            user: None,
            password: None,
            ca_file: None,
        }
    }

    #[test]
    fn reads_tidy_and_terse_status_documents() {
        let tidy = json!({"lastRequest": {"requestIndex": 42},
            "raftMetrics": {"nodeId": 2, "voterIds": [1, 2, 3], "leaderId": 1, "term": 4}});
        let s = AgentSnapshot::from_status(&tidy, &fleet(true), Some("v1".into()), true, false)
            .unwrap();
        assert_eq!(s.node_id, "2");
        assert_eq!(s.voters, ["1", "2", "3"]);
        assert_eq!(s.leader.as_deref(), Some("1"));
        assert_eq!(s.request_index.as_deref(), Some("42"));
        let view = s.to_view(true);
        assert_eq!(
            (view.id.as_str(), view.alive, view.healthy),
            ("2", true, true)
        );

        let terse = json!({"lastRequest": {"requestIndex": "18446744073709551658"},
            "raftMetrics": {"nodeId": "n2", "voterIds": ["n1", "n2"], "leaderId": null}});
        let s = AgentSnapshot::from_status(&terse, &fleet(true), None, true, false).unwrap();
        assert_eq!((s.node_id.as_str(), s.leader), ("n2", None));
        assert_eq!(s.request_index.as_deref(), Some("18446744073709551658"));
        // Without a leader pointer the leader is not read (the conductor needs --leader).
        let s = AgentSnapshot::from_status(&tidy, &fleet(false), None, true, false).unwrap();
        assert_eq!(s.leader, None);
    }

    #[test]
    fn a_renamed_voter_list_is_an_error_naming_the_pointer() {
        let renamed = json!({"raftMetrics": {"nodeId": 2, "voters": [1, 2, 3], "leaderId": 1}});
        let err =
            AgentSnapshot::from_status(&renamed, &fleet(true), None, true, false).unwrap_err();
        assert!(err.contains("/raftMetrics/voterIds"), "{err}");
        let no_id = json!({"raftMetrics": {"voterIds": [1]}});
        let err = AgentSnapshot::from_status(&no_id, &fleet(true), None, true, false).unwrap_err();
        assert!(err.contains("/raftMetrics/nodeId"), "{err}");
    }
}

//! The fleet planner: which node of a Raft cluster a wave changes next (the contract is
//! `docs/fleet.md` of the shared docs; the conductor is `rollgate_fleet::conductor`).
//!
//! Pure, like the engine: the conductor reads every agent's snapshot and the wave's record (from
//! etcd), asks [`next`] what to do, does it, records the result in the wave, and asks again.
//! Nothing here depends on anything that is not recorded — a lock that expired or a step that
//! was merely started is never progress — and the answer does not depend on the order the
//! snapshots were read in, so a conductor killed at any point can be replaced by another that
//! reaches the same decision.
//!
//! The rules, each a property test below:
//! - never more than one voter disrupted: a step starts only when no node is in flight and every
//!   other voter is alive and healthy (`allow_degraded`: an unhealthy node may be the one changed);
//! - canary first, followers next, the node that leads *now* last (roles are re-read before every
//!   step, so leadership that moved to an updated node frees the old leader to go);
//! - nothing after the first failure; a node lost mid-step makes the wave stuck, never done;
//! - a node is changed at most once per wave, and nodes already recorded are skipped on resume.

use std::collections::{BTreeMap, BTreeSet};

/// One node as its agent last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    /// The agent's lease is alive.
    pub alive: bool,
    /// Green by the node's own readiness checks.
    pub healthy: bool,
    /// The voter set this node reports.
    pub voters: Vec<String>,
    /// The leader this node reports, if it sees one.
    pub leader: Option<String>,
    /// The layer's current value on this node.
    pub value: Option<String>,
    /// The node's local kill switch (`rollgate freeze`) is on: it vetoes the conductor.
    pub frozen: bool,
}

/// Where one node stands in a wave (recorded in etcd, `wave` and `node/<id>`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not changed yet.
    Pending,
    /// Already on the wave's value when the wave started: nothing to do.
    Current,
    /// Its agent is running the single-node rollout.
    InFlight,
    Promoted,
    /// The node failed its gates and its agent put it back on its verified baseline.
    RolledBack,
    /// The node failed and its rollback could not be verified.
    RollbackFailed,
    /// The agent's lease expired mid-step: a human looks, then `fleet resolve`.
    Lost,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Current => "current",
            Phase::InFlight => "in_flight",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
            Phase::RollbackFailed => "rollback_failed",
            Phase::Lost => "lost",
        }
    }

    /// Needs nothing more in this wave.
    pub fn is_done(self) -> bool {
        matches!(self, Phase::Current | Phase::Promoted)
    }
}

/// What the wave recorded: enough to re-plan from, by any conductor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub to: String,
    /// The canary chosen at the start (the lowest-id follower, or `--canary`).
    pub canary: String,
    pub phases: BTreeMap<String, Phase>,
    pub halted: bool,
    /// `--allow-degraded`: an unhealthy node may be changed (it goes first) instead of refusing.
    pub allow_degraded: bool,
}

/// What the conductor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Change this node (intent first, then the agent runs the single-node rollout).
    Step {
        node: String,
    },
    /// A node is in flight: wait for its agent's outcome.
    Wait {
        node: String,
    },
    /// Nothing may start now (a voter down, no agreed leader, a frozen node): wait for the cause
    /// to clear or stop the wave; never step around it.
    Blocked {
        reason: String,
    },
    Done,
    /// A node failed; nothing more is changed.
    Failed {
        node: String,
    },
    /// A node was lost mid-step; nothing advances until `fleet resolve`.
    Stuck {
        node: String,
    },
    Halted,
}

/// Why a wave may not start (exit 3, nothing touched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The leader a majority of the voters report, or the operator's `--leader` (which must be a
/// voter). Voters are the set every node reports; without agreement there is no leader.
pub fn agreed_leader(nodes: &[NodeView], given: Option<&str>) -> Result<String, String> {
    let voters = voter_set(nodes)?;
    if let Some(l) = given {
        return if voters.contains(l) {
            Ok(l.to_string())
        } else {
            Err(format!("--leader {l} is not a voter"))
        };
    }
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes.iter().filter(|n| voters.contains(&n.id) && n.alive) {
        if let Some(l) = n.leader.as_deref() {
            *votes.entry(l).or_default() += 1;
        }
    }
    let majority = voters.len() / 2 + 1;
    votes
        .into_iter()
        .find(|(l, v)| *v >= majority && voters.contains(*l))
        .map(|(l, _)| l.to_string())
        .ok_or_else(|| format!("no leader reported by a majority ({majority}) of the voters"))
}

/// The voter set all nodes agree on.
pub fn voter_set(nodes: &[NodeView]) -> Result<BTreeSet<String>, String> {
    let mut sets = nodes.iter().filter(|n| n.alive).map(|n| {
        (
            n.id.as_str(),
            n.voters.iter().cloned().collect::<BTreeSet<_>>(),
        )
    });
    let Some((_, first)) = sets.next() else {
        return Err("no live agent".into());
    };
    for (id, set) in sets {
        if set != first {
            return Err(format!(
                "voter sets differ: {id} reports {} where others report {}",
                join(&set),
                join(&first)
            ));
        }
    }
    Ok(first)
}

/// Start a wave: refuse what the contract refuses, else the recorded start (canary chosen,
/// nodes already on `to` marked current).
pub fn start(
    nodes: &[NodeView],
    to: &str,
    canary: Option<&str>,
    leader: Option<&str>,
    allow_degraded: bool,
) -> Result<Wave, Refusal> {
    let voters = voter_set(nodes).map_err(Refusal)?;
    let by_id: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for v in &voters {
        match by_id.get(v.as_str()) {
            Some(n) if n.alive => {}
            _ => return Err(Refusal(format!("voter {v} has no live agent"))),
        }
    }
    let leader = agreed_leader(nodes, leader).map_err(Refusal)?;
    if let Some(n) = nodes.iter().find(|n| n.frozen) {
        return Err(Refusal(format!(
            "node {} is frozen (its kill switch)",
            n.id
        )));
    }
    let unhealthy: Vec<&str> = nodes
        .iter()
        .filter(|n| !n.healthy)
        .map(|n| n.id.as_str())
        .collect();
    match (unhealthy.as_slice(), allow_degraded) {
        ([], _) => {}
        ([one], true) if *one != leader => {}
        (list, _) => {
            return Err(Refusal(format!(
                "not healthy: {} (--allow-degraded updates one unhealthy follower first)",
                list.join(", ")
            )));
        }
    }
    let canary = match canary {
        Some(c) if c == leader => return Err(Refusal(format!("--canary {c} is the leader"))),
        Some(c) if by_id.contains_key(c) => c.to_string(),
        Some(c) => return Err(Refusal(format!("--canary {c} is not a node"))),
        None => nodes
            .iter()
            .map(|n| n.id.as_str())
            .filter(|id| *id != leader)
            .min()
            .unwrap_or(leader.as_str())
            .to_string(),
    };
    let phases = nodes
        .iter()
        .map(|n| {
            let phase = if n.value.as_deref() == Some(to) {
                Phase::Current
            } else {
                Phase::Pending
            };
            (n.id.clone(), phase)
        })
        .collect();
    Ok(Wave {
        to: to.to_string(),
        canary,
        phases,
        halted: false,
        allow_degraded,
    })
}

/// The next thing to do for `wave`, given the nodes as they report now.
pub fn next(wave: &Wave, nodes: &[NodeView], leader: Option<&str>) -> Decision {
    if wave.halted {
        return Decision::Halted;
    }
    let first = |p: Phase| {
        wave.phases
            .iter()
            .find(|(_, q)| **q == p)
            .map(|(id, _)| id.clone())
    };
    if let Some(node) = first(Phase::Lost) {
        return Decision::Stuck { node };
    }
    if let Some(node) = first(Phase::RollbackFailed).or_else(|| first(Phase::RolledBack)) {
        return Decision::Failed { node };
    }
    if let Some(node) = first(Phase::InFlight) {
        return Decision::Wait { node };
    }
    let pending: BTreeSet<&str> = wave
        .phases
        .iter()
        .filter(|(_, p)| **p == Phase::Pending)
        .map(|(id, _)| id.as_str())
        .collect();
    if pending.is_empty() {
        return Decision::Done;
    }
    let blocked = |reason: String| Decision::Blocked { reason };
    let voters = match voter_set(nodes) {
        Ok(v) => v,
        Err(e) => return blocked(e),
    };
    let leader = match agreed_leader(nodes, leader) {
        Ok(l) => l,
        Err(e) => return blocked(e),
    };
    let by_id: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    if let Some(id) = pending.iter().find(|id| !by_id.contains_key(*id)) {
        return blocked(format!("node {id} has no agent"));
    }
    if let Some(n) = pending.iter().map(|id| by_id[id]).find(|n| n.frozen) {
        return blocked(format!("node {} is frozen (its kill switch)", n.id));
    }
    let down: Vec<&str> = voters
        .iter()
        .map(|v| v.as_str())
        .filter(|v| by_id.get(v).is_none_or(|n| !n.alive || !n.healthy))
        .collect();
    // The node to change: an unhealthy pending node when allowed (it is disrupted already),
    // else the canary, else the lowest-id pending follower, and the leader only when it is all
    // that is left.
    let node = match down.as_slice() {
        [] => pending
            .iter()
            .copied()
            .find(|id| *id == wave.canary && *id != leader)
            .or_else(|| pending.iter().copied().find(|id| *id != leader))
            .unwrap_or(leader.as_str()),
        [one] if wave.allow_degraded && pending.contains(one) && *one != leader => one,
        list => return blocked(format!("voter(s) down or unhealthy: {}", list.join(", "))),
    };
    if !pending.contains(node) {
        // Only the leader may remain, and it is done: the agreed leader is not pending.
        return blocked(format!("the leader {leader} is not part of this wave"));
    }
    Decision::Step {
        node: node.to_string(),
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster(n: usize, leader: usize) -> Vec<NodeView> {
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        ids.iter()
            .map(|id| NodeView {
                id: id.clone(),
                alive: true,
                healthy: true,
                voters: ids.clone(),
                leader: Some(ids[leader].clone()),
                value: Some("v1".into()),
                frozen: false,
            })
            .collect()
    }

    fn set_leader(nodes: &mut [NodeView], leader: &str) {
        for n in nodes {
            n.leader = Some(leader.to_string());
        }
    }

    #[test]
    fn order_is_canary_followers_leader() {
        let nodes = cluster(3, 0);
        let mut wave = start(&nodes, "v2", None, None, false).unwrap();
        assert_eq!(wave.canary, "n2");
        let mut order = vec![];
        while let Decision::Step { node } = next(&wave, &nodes, None) {
            order.push(node.clone());
            wave.phases.insert(node, Phase::Promoted);
        }
        assert_eq!(order, ["n2", "n3", "n1"]);
        assert_eq!(next(&wave, &nodes, None), Decision::Done);
    }

    #[test]
    fn leadership_that_moves_to_an_updated_node_frees_the_old_leader() {
        let mut nodes = cluster(3, 0);
        let mut wave = start(&nodes, "v2", None, None, false).unwrap();
        assert_eq!(
            next(&wave, &nodes, None),
            Decision::Step { node: "n2".into() }
        );
        wave.phases.insert("n2".into(), Phase::Promoted);
        set_leader(&mut nodes, "n2");
        assert_eq!(
            next(&wave, &nodes, None),
            Decision::Step { node: "n1".into() }
        );
        wave.phases.insert("n1".into(), Phase::Promoted);
        assert_eq!(
            next(&wave, &nodes, None),
            Decision::Step { node: "n3".into() }
        );
    }

    #[test]
    fn refusals_name_the_cause() {
        let mut nodes = cluster(3, 0);
        nodes[2].healthy = false;
        let r = start(&nodes, "v2", None, None, false).unwrap_err();
        assert!(
            r.0.contains("n3") && r.0.contains("--allow-degraded"),
            "{r:?}"
        );
        let wave = start(&nodes, "v2", None, None, true).unwrap();
        assert_eq!(
            next(&wave, &nodes, None),
            Decision::Step { node: "n3".into() }
        );
        nodes[2].healthy = true;
        nodes[1].voters.pop();
        assert!(
            start(&nodes, "v2", None, None, false)
                .unwrap_err()
                .0
                .contains("voter sets differ")
        );
        let mut nodes = cluster(3, 0);
        nodes[1].alive = false;
        assert!(
            start(&nodes, "v2", None, None, false)
                .unwrap_err()
                .0
                .contains("n2 has no live agent")
        );
        let mut nodes = cluster(3, 0);
        nodes[1].frozen = true;
        assert!(
            start(&nodes, "v2", None, None, false)
                .unwrap_err()
                .0
                .contains("frozen")
        );
        let mut nodes = cluster(3, 0);
        for n in &mut nodes[1..] {
            n.leader = Some("n3".into());
        }
        nodes[0].leader = None;
        // n3 has two of three votes: a majority.
        assert_eq!(agreed_leader(&nodes, None).unwrap(), "n3");
        nodes[1].leader = Some("n1".into());
        assert!(agreed_leader(&nodes, None).is_err());
        assert!(start(&nodes, "v2", Some("n1"), Some("n1"), false).is_err());
    }

    #[test]
    fn nodes_already_on_the_value_are_skipped() {
        let mut nodes = cluster(3, 0);
        nodes[1].value = Some("v2".into());
        let wave = start(&nodes, "v2", None, None, false).unwrap();
        assert_eq!(wave.phases["n2"], Phase::Current);
        assert_eq!(
            next(&wave, &nodes, None),
            Decision::Step { node: "n3".into() }
        );
    }

    /// What happens to a stepped node, and what moves in the cluster before the next decision.
    #[derive(Debug, Clone)]
    enum Event {
        Outcome(u8),
        LeaderMoves(usize),
        Unhealthy(usize),
        Recover,
        Halt,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            6 => any::<u8>().prop_map(Event::Outcome),
            2 => (0usize..5).prop_map(Event::LeaderMoves),
            1 => (0usize..5).prop_map(Event::Unhealthy),
            2 => Just(Event::Recover),
            1 => Just(Event::Halt),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A wave driven to its end through random outcomes, leadership moves, health flips and
        /// halts keeps every rule of the contract at every decision.
        #[test]
        fn every_decision_keeps_the_rules(
            n in 3usize..=5,
            leader in 0usize..5,
            degraded in any::<bool>(),
            events in proptest::collection::vec(event(), 1..40),
        ) {
            let mut nodes = cluster(n, leader % n);
            let leader_at_start = nodes[0].leader.clone().unwrap();
            let mut wave = start(&nodes, "v2", None, None, degraded).unwrap();
            let mut stepped: Vec<String> = vec![];
            let mut failed = false;
            let mut moved = false;
            for e in events {
                // Re-planning is deterministic and does not depend on the order of the reads.
                let d = next(&wave, &nodes, None);
                let mut shuffled = nodes.clone();
                shuffled.reverse();
                prop_assert_eq!(&d, &next(&wave, &shuffled, None));
                if let Decision::Step { node } = &d {
                    prop_assert!(!failed, "stepped {node} after a failure");
                    prop_assert_eq!(wave.phases[node], Phase::Pending, "{} changed twice", node);
                    let now_leader = agreed_leader(&nodes, None).unwrap();
                    let others_pending = wave.phases.iter().any(|(id, p)| *p == Phase::Pending && id != node);
                    prop_assert!(*node != now_leader || !others_pending, "leader {node} before the others");
                    let down = nodes.iter().filter(|x| (!x.alive || !x.healthy) && x.id != *node).count();
                    prop_assert_eq!(down, 0, "a second voter disrupted while stepping {}", node);
                    if stepped.is_empty() && nodes.iter().all(|x| x.healthy) && wave.canary != now_leader {
                        prop_assert_eq!(node, &wave.canary);
                    }
                    stepped.push(node.clone());
                    wave.phases.insert(node.clone(), Phase::InFlight);
                    prop_assert_eq!(next(&wave, &nodes, None), Decision::Wait { node: node.clone() });
                }
                match e {
                    Event::Outcome(o) => {
                        if let Some(node) = wave.phases.iter().find(|(_, p)| **p == Phase::InFlight).map(|(id, _)| id.clone()) {
                            let p = match o % 10 { 0 => Phase::RolledBack, 1 => Phase::Lost, _ => Phase::Promoted };
                            failed |= p != Phase::Promoted;
                            wave.phases.insert(node.clone(), p);
                            if p == Phase::Promoted {
                                nodes.iter_mut().find(|x| x.id == node).unwrap().value = Some("v2".into());
                            }
                        }
                    }
                    Event::LeaderMoves(i) => {
                        let l = nodes[i % n].id.clone();
                        moved |= l != leader_at_start;
                        set_leader(&mut nodes, &l)
                    }
                    Event::Unhealthy(i) => nodes[i % n].healthy = false,
                    Event::Recover => nodes.iter_mut().for_each(|x| x.healthy = true),
                    Event::Halt => wave.halted = true,
                }
                if wave.halted {
                    prop_assert_eq!(next(&wave, &nodes, None), Decision::Halted);
                    break;
                }
            }
            // A leader that never moved is updated last.
            if !moved && stepped.contains(&leader_at_start) {
                prop_assert_eq!(stepped.last(), Some(&leader_at_start));
            }
        }

        /// Without failures, disruption or halts, every wave finishes with every node promoted,
        /// one at a time; a conductor replaced between any two steps changes nothing.
        #[test]
        fn a_calm_wave_finishes(n in 3usize..=5, leader in 0usize..5, restart_at in 0usize..5) {
            let nodes = cluster(n, leader % n);
            let mut wave = start(&nodes, "v2", None, None, false).unwrap();
            let mut steps = 0;
            loop {
                if steps == restart_at {
                    // A new conductor reads the same record: the same decision.
                    let again = wave.clone();
                    prop_assert_eq!(next(&again, &nodes, None), next(&wave, &nodes, None));
                }
                match next(&wave, &nodes, None) {
                    Decision::Step { node } => { wave.phases.insert(node, Phase::Promoted); steps += 1 }
                    Decision::Done => break,
                    other => prop_assert!(false, "{other:?}"),
                }
            }
            prop_assert_eq!(steps, n);
        }
    }
}

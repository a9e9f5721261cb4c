//! Cluster mode: N simulated operators that share one Raft state — voter set, leader, term and
//! commit index — through one small state file (`--cluster-file`), so each node's
//! `/v2/status` tells the truth about the cluster.
//!
//! Why a file and not a coordinator process: every node is its own operator process (its own
//! port, restarted by its own rollgate), and the state must stay truthful when any of them is
//! SIGKILLed. Each node heartbeats into the file under an exclusive lock (`FILE.lock`); a node
//! whose last heartbeat is older than [`ClusterFile::timeout`] is simply not running, whatever
//! happened to its process. There is no extra process to supervise or to die.
//!
//! The model, kept small on purpose:
//! - **Leader**: kept while it runs and a majority of voters runs; when it stops (or quorum is
//!   lost and regained), the lowest running voter is elected and the term is bumped.
//! - **Commit index**: advanced by the leader, one entry per `tick`; without a leader (no
//!   quorum) it stands still. Each node applies up to it (`requestIndex` = what it applied).
//! - **Voter set**: a node that reports it left is removed; a node that reports it is a member
//!   again rejoins (a rollback heals the set).
//! - A node that sees no leader (partitioned) does not count as running for quorum or election.
//!
//! Writes go to a temporary file renamed over the state, so a node killed mid-write never leaves
//! a half-written state behind; the lock lives on a separate file for the same reason.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errors::SimError;
use crate::server::now_ms;

/// How far behind the commit index a lagging version applies (`v1.1.0-lagging`): far beyond
/// any sensible `max_lag` (rollgate's default is 50).
pub const LAG_ENTRIES: u64 = 200;

/// The shared state, as stored in the file (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// The voter set, sorted.
    pub voter_ids: Vec<u64>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    /// When the commit index last advanced (epoch ms); the leader catches up from there.
    pub commit_ms: u64,
    /// Every node that ever heartbeated, by id.
    pub members: BTreeMap<u64, Member>,
    /// A node silent for longer than this is not running.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The leader commits one entry per tick.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
}

fn default_timeout_ms() -> u64 {
    1000
}

fn default_tick_ms() -> u64 {
    250
}

/// One node's last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Epoch ms of the last heartbeat.
    pub seen_ms: u64,
    /// The index the node has applied.
    pub applied: u64,
    /// False for a node that cannot reach the leader (it does not count as running).
    pub sees_leader: bool,
}

/// What a node tells the cluster on each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub node_id: u64,
    pub applied: u64,
    /// False: the node wants out of the voter set (`v1.1.0-leaves-voters`).
    pub voter: bool,
    /// False: the node never sees a leader (`v1.1.0-no-leader`).
    pub sees_leader: bool,
}

/// What a node learns from a heartbeat: the cluster as it should report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub voter_ids: Vec<u64>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
}

/// The shared state file of one simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    path: PathBuf,
}

/// The timings a cluster is created with (kept in its state).
#[derive(Debug, Clone, Copy)]
pub struct ClusterTimings {
    /// A node silent for longer than this is not running (default 1 s).
    pub timeout: Duration,
    /// One entry is committed per tick while there is a leader (default 250 ms).
    pub tick: Duration,
}

impl Default for ClusterTimings {
    fn default() -> Self {
        ClusterTimings {
            timeout: Duration::from_millis(default_timeout_ms()),
            tick: Duration::from_millis(default_tick_ms()),
        }
    }
}

impl ClusterFile {
    pub fn new(path: impl Into<PathBuf>) -> ClusterFile {
        ClusterFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Creates the cluster with this voter set (no leader until a majority heartbeats).
    /// Refuses to overwrite an existing cluster unless `force`.
    pub fn init(
        &self,
        voters: &[u64],
        timings: ClusterTimings,
        force: bool,
    ) -> Result<(), SimError> {
        if voters.is_empty() {
            return Err(SimError::Cluster("the voter set is empty".into()));
        }
        let _lock = self.lock()?;
        if !force && self.path.exists() {
            return Err(SimError::Cluster(format!(
                "{} already exists (init --force to start over)",
                self.path.display()
            )));
        }
        let mut voter_ids = voters.to_vec();
        voter_ids.sort_unstable();
        voter_ids.dedup();
        self.write(&ClusterState {
            voter_ids,
            timeout_ms: timings.timeout.as_millis() as u64,
            tick_ms: timings.tick.as_millis() as u64,
            ..ClusterState::default()
        })
    }

    /// The state as stored (no heartbeat).
    pub fn read(&self) -> Result<ClusterState, SimError> {
        let text = fs::read_to_string(&self.path)
            .map_err(|e| SimError::io(format!("read {}", self.path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| {
            SimError::Cluster(format!(
                "{} is not a cluster state: {e}",
                self.path.display()
            ))
        })
    }

    /// Records one heartbeat and returns the cluster as the node should now report it.
    /// Blocking (file lock): call it from `spawn_blocking`.
    pub fn heartbeat(&self, hb: Heartbeat) -> Result<ClusterView, SimError> {
        let _lock = self.lock()?;
        let mut state = self.read()?;
        state.apply(hb, now_ms());
        self.write(&state)?;
        Ok(state.view())
    }

    /// Commits one submitted request when `node_id` sees a leader; returns the new index.
    pub fn submit(&self, node_id: u64) -> Result<Option<u64>, SimError> {
        let _lock = self.lock()?;
        let mut state = self.read()?;
        let sees = state.members.get(&node_id).is_some_and(|m| m.sees_leader);
        if state.leader_id.is_none() || !sees {
            return Ok(None);
        }
        state.commit_index += 1;
        self.write(&state)?;
        Ok(Some(state.commit_index))
    }

    fn lock(&self) -> Result<fs::File, SimError> {
        let path = self.lock_path();
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SimError::io(format!("open {}", path.display()), e))?;
        f.lock()
            .map_err(|e| SimError::io(format!("lock {}", path.display()), e))?;
        // Released when the file is closed (dropped), also when the process is killed.
        Ok(f)
    }

    fn write(&self, state: &ClusterState) -> Result<(), SimError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| SimError::Cluster(format!("encode the cluster state: {e}")))?;
        fs::write(&tmp, text).map_err(|e| SimError::io(format!("write {}", tmp.display()), e))?;
        fs::rename(&tmp, &self.path)
            .map_err(|e| SimError::io(format!("rename to {}", self.path.display()), e))
    }
}

impl ClusterState {
    /// Whether `id` counts as a running node at `now`.
    pub fn running(&self, id: u64, now: u64) -> bool {
        self.members
            .get(&id)
            .is_some_and(|m| m.sees_leader && now.saturating_sub(m.seen_ms) <= self.timeout_ms)
    }

    /// The ids of the nodes running at `now`.
    pub fn running_ids(&self, now: u64) -> Vec<u64> {
        self.members
            .keys()
            .copied()
            .filter(|id| self.running(*id, now))
            .collect()
    }

    /// The pure transition of one heartbeat (unit-tested without files).
    pub fn apply(&mut self, hb: Heartbeat, now: u64) {
        self.members.insert(
            hb.node_id,
            Member {
                seen_ms: now,
                applied: hb.applied,
                sees_leader: hb.sees_leader,
            },
        );
        let is_voter = self.voter_ids.contains(&hb.node_id);
        if is_voter && !hb.voter {
            self.voter_ids.retain(|v| *v != hb.node_id);
        } else if !is_voter && hb.voter {
            self.voter_ids.push(hb.node_id);
            self.voter_ids.sort_unstable();
        }
        let running: Vec<u64> = self
            .running_ids(now)
            .into_iter()
            .filter(|id| self.voter_ids.contains(id))
            .collect();
        let quorum = running.len() * 2 > self.voter_ids.len();
        let leader_ok = self.leader_id.is_some_and(|l| running.contains(&l));
        if !quorum {
            self.leader_id = None;
        } else if !leader_ok {
            self.leader_id = running.first().copied();
            self.term += 1;
            self.commit_ms = now;
        }
        if self.leader_id == Some(hb.node_id) {
            let tick = self.tick_ms.max(1);
            let ticks = now.saturating_sub(self.commit_ms) / tick;
            self.commit_index += ticks;
            self.commit_ms += ticks * tick;
        }
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            voter_ids: self.voter_ids.clone(),
            leader_id: self.leader_id,
            term: self.term,
            commit_index: self.commit_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(node_id: u64) -> Heartbeat {
        Heartbeat {
            node_id,
            applied: 0,
            voter: true,
            sees_leader: true,
        }
    }

    fn three() -> ClusterState {
        ClusterState {
            voter_ids: vec![1, 2, 3],
            timeout_ms: 1000,
            tick_ms: 100,
            ..ClusterState::default()
        }
    }

    #[test]
    fn no_leader_until_a_majority_runs_then_the_lowest_running_voter() {
        let mut s = three();
        s.apply(hb(3), 0);
        assert_eq!(s.leader_id, None);
        s.apply(hb(2), 10);
        assert_eq!((s.leader_id, s.term), (Some(2), 1));
        // Node 1 joining later does not depose a running leader.
        s.apply(hb(1), 20);
        assert_eq!((s.leader_id, s.term), (Some(2), 1));
    }

    #[test]
    fn losing_the_leader_elects_the_lowest_running_voter_and_bumps_the_term() {
        let mut s = three();
        for id in [1, 2, 3] {
            s.apply(hb(id), 0);
        }
        assert_eq!(s.leader_id, Some(1));
        // Node 1 falls silent; 2 and 3 keep beating.
        s.apply(hb(3), 900);
        s.apply(hb(2), 1500);
        assert_eq!((s.leader_id, s.term), (Some(2), 2));
        // Two voters silent: no quorum, no leader, the index stands still.
        let before = s.commit_index;
        s.apply(hb(3), 5000);
        assert_eq!(s.leader_id, None);
        s.apply(hb(3), 5100);
        assert_eq!(s.commit_index, before);
    }

    #[test]
    fn the_leader_commits_one_entry_per_tick() {
        let mut s = three();
        for id in [1, 2, 3] {
            s.apply(hb(id), 1000);
        }
        s.apply(hb(1), 1550);
        assert_eq!(s.commit_index, 5);
        // A follower's heartbeat does not commit.
        s.apply(hb(2), 1990);
        assert_eq!(s.commit_index, 5);
        s.apply(hb(1), 1990);
        assert_eq!(s.commit_index, 9);
    }

    #[test]
    fn a_node_that_leaves_the_voter_set_is_removed_and_rejoins_later() {
        let mut s = three();
        for id in [1, 2, 3] {
            s.apply(hb(id), 0);
        }
        s.apply(
            Heartbeat {
                voter: false,
                ..hb(2)
            },
            10,
        );
        assert_eq!(s.voter_ids, vec![1, 3]);
        s.apply(hb(2), 20);
        assert_eq!(s.voter_ids, vec![1, 2, 3]);
    }

    #[test]
    fn a_node_that_sees_no_leader_does_not_count_for_quorum() {
        let mut s = three();
        s.apply(hb(1), 0);
        s.apply(
            Heartbeat {
                sees_leader: false,
                ..hb(2)
            },
            0,
        );
        assert_eq!(s.leader_id, None);
        s.apply(hb(3), 0);
        assert_eq!(s.leader_id, Some(1));
    }

    #[test]
    fn the_file_survives_heartbeats_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let f = ClusterFile::new(dir.path().join("raft.json"));
        let timings = ClusterTimings::default();
        f.init(&[1, 2, 3], timings, false).unwrap();
        assert!(
            f.init(&[1], timings, false).is_err(),
            "init must not overwrite"
        );
        let threads: Vec<_> = (1..=3)
            .map(|id| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        f.heartbeat(hb(id)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = f.read().unwrap();
        assert_eq!(s.members.len(), 3);
        assert_eq!((s.leader_id.is_some(), s.term), (true, 1));
    }
}

//! The history checker: a background thread samples every node's operator status and the
//! cluster's etcd keys every ~200 ms while a wave runs, and [`Timeline::violations`] checks the
//! fleet invariants over what it saw (shared docs, fleet.md "How it is tested"):
//!
//! - at most one voter not running or not ready (`runningState` Running and `health` Healthy)
//!   at any sample;
//! - running voters never below quorum;
//! - a node that led when it was stepped is the last one stepped in its wave (so the leader at
//!   wave start goes last unless its role moved first);
//! - each node changes version at most once per wave (going back to its version at wave start,
//!   a rollback, is part of the same change);
//! - nothing changes after the wave's first failure (a record `rolled_back`/`rollback_failed`, a
//!   revert intent or the wave recorded failed): no node stepped that was not stepped before, no
//!   node moved to anything but its version at wave start.
//!
//! A wave is identified by the `wave_id` of the `wave` record, else of the node records (tests
//! that write intents by hand): the timeline is cut where a new wave id first appears. The
//! analysis is a pure function of the samples ([`analyse`]), unit-tested here on made-up
//! timelines; `tests/cli/cluster.rs` shows it on real clusters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rollgate_fleet::{Client, Keys};
use serde_json::Value;

/// How often the checker samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// `GET http://127.0.0.1:port{path}` and its body as JSON, whatever the HTTP status (a node that
/// is starting answers 421 with its status document). None when unreachable, slow (over a
/// second) or not JSON. HTTP/1.0, so the answer is neither chunked nor kept alive.
pub fn get_json(port: u16, path: &str) -> Option<Value> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&buf[at + 4..]).ok()
}

/// A JSON number or decimal string as u64.
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// What one node's `/v2/status` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub version: String,
    /// `runningState` is `Running`.
    pub running: bool,
    /// `health` is `Healthy`.
    pub healthy: bool,
    pub leader: Option<u64>,
    pub voters: Vec<u64>,
    pub request_index: Option<u64>,
}

impl NodeStatus {
    pub fn parse(doc: &Value) -> Option<NodeStatus> {
        let raft = &doc["raftMetrics"];
        Some(NodeStatus {
            version: doc["version"].as_str()?.to_owned(),
            running: doc["runningState"] == "Running",
            healthy: doc["health"] == "Healthy",
            leader: as_u64(&raft["leaderId"]),
            voters: raft["voterIds"]
                .as_array()
                .map(|a| a.iter().filter_map(as_u64).collect())
                .unwrap_or_default(),
            request_index: as_u64(&doc["lastRequest"]["requestIndex"]),
        })
    }

    /// Running and ready.
    pub fn ready(&self) -> bool {
        self.running && self.healthy
    }

    /// The status of the operator on `port`, None when it does not answer.
    pub fn fetch(port: u16) -> Option<NodeStatus> {
        NodeStatus::parse(&get_json(port, "/v2/status")?)
    }
}

/// A node record (`node/<id>`) as read, kept as JSON so fields the conductor adds (`revert`)
/// are seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub wave_id: String,
    pub phase: String,
    pub to: String,
    pub revert: bool,
    pub mod_revision: i64,
}

impl Record {
    fn parse(v: &Value, mod_revision: i64) -> Record {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Record {
            wave_id: s("wave_id"),
            phase: s("phase"),
            to: s("to"),
            revert: v["revert"] == true,
            mod_revision,
        }
    }

    /// The node's step failed (its own gates, or the conductor asked for a revert).
    fn failed(&self) -> bool {
        self.revert || matches!(self.phase.as_str(), "rolled_back" | "rollback_failed")
    }
}

/// The cluster's keys at one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EtcdView {
    /// The `wave` record.
    pub wave: Option<Value>,
    pub records: BTreeMap<u64, Record>,
    /// Nodes whose `agent/<id>` exists (a live lease).
    pub agents: BTreeSet<u64>,
    /// `lock/holder`.
    pub lock: Option<Value>,
    pub halted: bool,
}

impl EtcdView {
    fn wave_field(&self, k: &str) -> Option<&str> {
        self.wave.as_ref()?.get(k)?.as_str()
    }

    /// The wave in effect: the `wave` record's id, else that of the latest node record.
    fn wave_id(&self) -> Option<&str> {
        self.wave_field("wave_id").or_else(|| {
            self.records
                .values()
                .max_by_key(|r| r.mod_revision)
                .map(|r| r.wave_id.as_str())
        })
    }
}

/// One sample: every node's status (None: no answer) and the etcd keys (None: etcd did not
/// answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Since the checker started.
    pub at: Duration,
    pub nodes: BTreeMap<u64, Option<NodeStatus>>,
    pub etcd: Option<EtcdView>,
}

impl Sample {
    /// The leader a majority of `voters` reports.
    fn agreed_leader(&self, voters: &BTreeSet<u64>) -> Option<u64> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in voters {
            if let Some(Some(s)) = self.nodes.get(id)
                && let Some(l) = s.leader
            {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .find(|(_, n)| *n > voters.len() / 2)
            .map(|(l, _)| l)
    }

    fn status(&self, id: u64) -> Option<&NodeStatus> {
        self.nodes.get(&id)?.as_ref()
    }

    fn version(&self, id: u64) -> Option<&str> {
        self.status(id).map(|s| s.version.as_str())
    }

    /// One line: each node (version, R running+ready / S not ready / - no answer, L leader as it
    /// sees it, request index), then the wave, records, agents, lock.
    fn line(&self) -> String {
        let mut out = format!("{:>7.1}s ", self.at.as_secs_f64());
        for (id, s) in &self.nodes {
            match s {
                None => write!(out, " n{id}[--- down ---]").unwrap(),
                Some(s) => write!(
                    out,
                    " n{id}[{} {}{} L{} i{}]",
                    s.version,
                    if s.ready() { "R" } else { "S" },
                    if s.running { "" } else { "!run" },
                    s.leader.map_or("-".into(), |l| l.to_string()),
                    s.request_index.map_or("-".into(), |i| i.to_string()),
                )
                .unwrap(),
            }
        }
        match &self.etcd {
            None => out.push_str("  etcd: no answer"),
            Some(e) => {
                if let Some(w) = &e.wave {
                    write!(
                        out,
                        "  wave {} {}",
                        w["wave_id"].as_str().unwrap_or("?"),
                        w["outcome"].as_str().unwrap_or("?")
                    )
                    .unwrap();
                }
                for (id, r) in &e.records {
                    write!(
                        out,
                        "  node/{id}={}:{}{}",
                        r.wave_id,
                        r.phase,
                        if r.revert { "(revert)" } else { "" }
                    )
                    .unwrap();
                }
                write!(out, "  agents {:?}", e.agents).unwrap();
                if let Some(l) = &e.lock {
                    write!(out, "  lock {l}").unwrap();
                }
                if e.halted {
                    out.push_str("  HALT");
                }
            }
        }
        out
    }
}

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// More than one voter not running or not ready at once.
    OneVoterDown,
    /// Fewer running voters than a quorum.
    Quorum,
    /// A node that led when it was stepped was not the last one stepped.
    LeaderLast,
    /// A node changed version more than once in a wave.
    OncePerWave,
    /// Something changed after the wave's first failure.
    AfterFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    /// The sample where it shows.
    pub at: usize,
    pub what: String,
}

/// The invariants over `samples`; `voters`: the voter set before anything reported one.
pub fn analyse(samples: &[Sample], voters: &BTreeSet<u64>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut voters = voters.clone();
    let mut voter_sets = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        // The voter set as the nodes that answer report it (a node that left is no voter).
        let reported: BTreeSet<u64> = s
            .nodes
            .values()
            .flatten()
            .flat_map(|st| st.voters.iter().copied())
            .collect();
        if !reported.is_empty() {
            voters = reported;
        }
        let not_ready: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|&id| !s.status(id).is_some_and(NodeStatus::ready))
            .collect();
        if not_ready.len() > 1 {
            out.push(Violation {
                rule: Rule::OneVoterDown,
                at: i,
                what: format!("voters {not_ready:?} not running or not ready at once"),
            });
        }
        let running = voters
            .iter()
            .filter(|&&id| s.status(id).is_some_and(|st| st.running))
            .count();
        if running < voters.len() / 2 + 1 {
            out.push(Violation {
                rule: Rule::Quorum,
                at: i,
                what: format!("{running} of {} voters running: below quorum", voters.len()),
            });
        }
        voter_sets.push(voters.clone());
    }
    for (wave, range) in waves(samples) {
        check_wave(samples, &voter_sets, &wave, range, &mut out);
    }
    out.sort_by_key(|v| v.at);
    out
}

/// Each wave id and the samples it is in effect for: from the sample where it first is the
/// wave in effect to the next wave's (records of waves that ended before the checker started
/// are not waves of this timeline).
fn waves(samples: &[Sample]) -> Vec<(String, std::ops::Range<usize>)> {
    let mut starts: Vec<(String, usize)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let Some(cur) = s.etcd.as_ref().and_then(EtcdView::wave_id) else {
            continue;
        };
        if !starts.iter().any(|(w, _)| w == cur) {
            starts.push((cur.to_owned(), i));
        }
    }
    let mut out = Vec::new();
    for (k, (w, start)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(samples.len(), |(_, e)| *e);
        out.push((w.clone(), *start..end));
    }
    out
}

fn check_wave(
    samples: &[Sample],
    voter_sets: &[BTreeSet<u64>],
    wave: &str,
    range: std::ops::Range<usize>,
    out: &mut Vec<Violation>,
) {
    let ids: BTreeSet<u64> = samples
        .iter()
        .flat_map(|s| s.nodes.keys().copied())
        .collect();
    // Each node's version at wave start: the last it reported before the wave appeared.
    let baseline: BTreeMap<u64, String> = ids
        .iter()
        .filter_map(|&id| {
            let before = samples[..range.start].iter().rev();
            let after = samples[range.clone()].iter();
            before
                .chain(after)
                .find_map(|s| s.version(id))
                .map(|v| (id, v.to_owned()))
        })
        .collect();
    let record = |i: usize, id: u64| -> Option<&Record> {
        samples[i]
            .etcd
            .as_ref()?
            .records
            .get(&id)
            .filter(|r| r.wave_id == wave)
    };
    // When each node was stepped: its first (non-revert) record of this wave, or its version
    // first leaving its baseline, whichever shows first.
    let mut stepped: BTreeMap<u64, usize> = BTreeMap::new();
    for i in range.clone() {
        for &id in &ids {
            let by_record = record(i, id).is_some_and(|r| !r.revert);
            let by_version = samples[i]
                .version(id)
                .is_some_and(|v| Some(v) != baseline.get(&id).map(String::as_str));
            if (by_record || by_version) && !stepped.contains_key(&id) {
                stepped.insert(id, i);
            }
        }
    }
    // Leader last: whoever led just before it was stepped, no node stepped after it.
    for (&id, &at) in &stepped {
        let before = at.saturating_sub(1);
        let leader = samples[before].agreed_leader(&voter_sets[before]);
        if leader != Some(id) {
            continue;
        }
        for (&other, &later) in &stepped {
            if later > at {
                out.push(Violation {
                    rule: Rule::LeaderLast,
                    at: later,
                    what: format!(
                        "wave {wave}: node {other} stepped after node {id}, which led when it \
                         was stepped (sample {at})"
                    ),
                });
            }
        }
    }
    // A node rolled back because the cluster was halted mid-step is not a failure: the wave is
    // halted, and `--resume` steps that node again. Known by the wave record naming it
    // (`rolled_back_by_halt`) while that rolled-back record stood (its revision).
    let halt_rollbacks: BTreeSet<(u64, i64)> = samples[range.clone()]
        .iter()
        .filter_map(|s| s.etcd.as_ref())
        .filter(|e| e.wave_field("wave_id") == Some(wave))
        .filter_map(|e| {
            let id: u64 = e.wave_field("rolled_back_by_halt")?.parse().ok()?;
            let r = e.records.get(&id)?;
            (r.wave_id == wave && r.phase == "rolled_back").then_some((id, r.mod_revision))
        })
        .collect();
    // Once per wave: each node leaves its version at wave start once (plus once more after each
    // halt rollback); coming back to it is the same change, moving on to a third version is not.
    for &id in &ids {
        let Some(base) = baseline.get(&id) else {
            continue;
        };
        let allowed = 1 + halt_rollbacks.iter().filter(|(n, _)| *n == id).count();
        let mut seq = vec![base.as_str()];
        let mut departures = 0;
        for i in range.clone() {
            let Some(v) = samples[i].version(id) else {
                continue;
            };
            let last = *seq.last().unwrap();
            if last == v {
                continue;
            }
            seq.push(v);
            departures += usize::from(last == base);
            if departures > allowed || (last != base && v != base) {
                out.push(Violation {
                    rule: Rule::OncePerWave,
                    at: i,
                    what: format!(
                        "wave {wave}: node {id} changed more than once: {}",
                        seq.join(" -> ")
                    ),
                });
                break;
            }
        }
    }
    // Nothing after the first failure.
    let failed = range.clone().find(|&i| {
        let Some(e) = &samples[i].etcd else {
            return false;
        };
        e.wave_field("wave_id") == Some(wave) && e.wave_field("outcome") == Some("failed")
            || e.records.iter().any(|(&id, r)| {
                r.wave_id == wave && r.failed() && !halt_rollbacks.contains(&(id, r.mod_revision))
            })
    });
    if let Some(f) = failed {
        for (&id, &at) in &stepped {
            if at > f {
                out.push(Violation {
                    rule: Rule::AfterFailure,
                    at,
                    what: format!(
                        "wave {wave}: node {id} stepped after the first failure (sample {f})"
                    ),
                });
            }
        }
        for &id in &ids {
            let base = baseline.get(&id).map(String::as_str);
            let mut last = None;
            for i in range.clone() {
                let Some(v) = samples[i].version(id) else {
                    continue;
                };
                if i > f && last.is_some_and(|l| l != v) && Some(v) != base {
                    out.push(Violation {
                        rule: Rule::AfterFailure,
                        at: i,
                        what: format!(
                            "wave {wave}: node {id} changed to {v} after the first failure \
                             (sample {f})"
                        ),
                    });
                }
                last = Some(v);
            }
        }
    }
}

/// Everything the checker saw.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub samples: Vec<Sample>,
    pub voters: BTreeSet<u64>,
}

impl Timeline {
    pub fn violations(&self) -> Vec<Violation> {
        analyse(&self.samples, &self.voters)
    }

    /// The samples around `at`, one line each, `at` marked.
    pub fn around(&self, at: usize) -> String {
        let from = at.saturating_sub(10);
        let to = (at + 5).min(self.samples.len());
        let mut out = String::new();
        for i in from..to {
            let mark = if i == at { ">>" } else { "  " };
            writeln!(out, "{mark}{i:>5} {}", self.samples[i].line()).unwrap();
        }
        out
    }

    /// Fails the test on the first violation, with the timeline around it.
    pub fn assert_ok(&self) {
        let v = self.violations();
        if let Some(first) = v.first() {
            let all: Vec<String> = v
                .iter()
                .map(|v| format!("  sample {} {:?}: {}", v.at, v.rule, v.what))
                .collect();
            panic!(
                "history checker: {} violation(s)\n{}\ntimeline around sample {}:\n{}",
                v.len(),
                all.join("\n"),
                first.at,
                self.around(first.at)
            );
        }
        assert!(
            self.samples.len() > 2,
            "the checker took {} samples",
            self.samples.len()
        );
    }

    /// Asserts that a violation of `rule` was found, printing the timeline around it; returns it.
    pub fn expect(&self, rule: Rule) -> Violation {
        let v = self.violations();
        let Some(found) = v.iter().find(|v| v.rule == rule) else {
            panic!(
                "the checker did not report {rule:?}; it reported {v:?}\ntimeline:\n{}",
                self.around(self.samples.len().saturating_sub(1))
            );
        };
        eprintln!(
            "the checker reports {rule:?} at sample {}: {}\n{}",
            found.at,
            found.what,
            self.around(found.at)
        );
        found.clone()
    }
}

/// The running checker.
pub struct History {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
    voters: BTreeSet<u64>,
}

impl History {
    /// Starts sampling `ports` (node id → operator port) and the keys of `cluster` in the etcd at
    /// `etcd_url`, every [`SAMPLE_EVERY`]; returns once the first sample is taken.
    pub fn start(ports: BTreeMap<u64, u16>, etcd_url: &str, cluster: &str) -> History {
        let stop = Arc::new(AtomicBool::new(false));
        let voters = ports.keys().copied().collect();
        let flag = stop.clone();
        let url = etcd_url.to_owned();
        let keys = Keys::new(cluster);
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let started = Instant::now();
            let mut client: Option<Client> = None;
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let tick = Instant::now();
                let nodes = ports
                    .iter()
                    .map(|(&id, &port)| (id, NodeStatus::fetch(port)))
                    .collect();
                let etcd = rt.block_on(read_etcd(&mut client, &url, &keys));
                samples.push(Sample {
                    at: tick - started,
                    nodes,
                    etcd,
                });
                if samples.len() == 1 {
                    let _ = first_tx.send(());
                }
                std::thread::sleep(SAMPLE_EVERY.saturating_sub(tick.elapsed()));
            }
            samples
        });
        // The timeline starts before whatever the test does next.
        first_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the history checker took no first sample in 10 s");
        History {
            stop,
            thread: Some(thread),
            voters,
        }
    }

    /// Stops sampling and returns what it saw.
    pub fn finish(mut self) -> Timeline {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self
            .thread
            .take()
            .unwrap()
            .join()
            .expect("the history checker's sampling thread panicked");
        Timeline {
            samples,
            voters: self.voters.clone(),
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One prefix read of the cluster's keys (bounded: a dead etcd is a sample without keys).
async fn read_etcd(client: &mut Option<Client>, url: &str, keys: &Keys) -> Option<EtcdView> {
    let bound = Duration::from_millis(800);
    if client.is_none() {
        *client = tokio::time::timeout(bound, Client::connect([url], None))
            .await
            .ok()?
            .ok();
    }
    let c = client.as_ref()?;
    let resp = tokio::time::timeout(bound, rollgate_fleet::store::list(c, keys.prefix()))
        .await
        .ok()?
        .ok()?;
    let mut view = EtcdView::default();
    for kv in resp.kvs() {
        let value: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
        let key = kv.key();
        if key == keys.wave().as_bytes() {
            view.wave = Some(value);
        } else if key == keys.halt().as_bytes() {
            view.halted = true;
        } else if key.starts_with(keys.lock().as_bytes()) {
            view.lock = Some(value);
        } else if let Some(id) = keys.node_id(key) {
            view.records
                .insert(id, Record::parse(&value, kv.mod_revision()));
        } else if let Some(id) = keys.agent_id(key) {
            view.agents.insert(id);
        }
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    //! The analysis on made-up timelines: each rule passes a good history and fails a bad one.

    use super::*;

    /// A node: version, ready, its leader.
    fn up(version: &str, leader: u64) -> Option<NodeStatus> {
        Some(NodeStatus {
            version: version.into(),
            running: true,
            healthy: true,
            leader: Some(leader),
            voters: vec![1, 2, 3],
            request_index: Some(1),
        })
    }

    /// Builds samples from rows: three node states and the records `(node, wave, phase)`.
    /// Three node states and the records `(node, wave, phase)` of one sample.
    type Row = (
        [Option<NodeStatus>; 3],
        Vec<(u64, &'static str, &'static str)>,
    );

    fn timeline(rows: Vec<Row>) -> Vec<Sample> {
        rows.into_iter()
            .enumerate()
            .map(|(i, (nodes, recs))| Sample {
                at: SAMPLE_EVERY * i as u32,
                nodes: nodes
                    .into_iter()
                    .enumerate()
                    .map(|(k, s)| (k as u64 + 1, s))
                    .collect(),
                etcd: Some(EtcdView {
                    records: recs
                        .into_iter()
                        .enumerate()
                        .map(|(k, (id, w, p))| {
                            let revert = p == "revert";
                            let phase = if revert { "intent" } else { p };
                            (
                                id,
                                Record {
                                    wave_id: w.into(),
                                    phase: phase.into(),
                                    to: "v2".into(),
                                    revert,
                                    // Later rows and later entries are later writes.
                                    mod_revision: (i * 10 + k) as i64,
                                },
                            )
                        })
                        .collect(),
                    ..EtcdView::default()
                }),
            })
            .collect()
    }

    fn rules(samples: &[Sample]) -> Vec<Rule> {
        analyse(samples, &[1, 2, 3].into())
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    const W: &str = "w1";

    /// The good wave: 2, 3, then the leader 1 (leadership moves to 2 when 1 restarts).
    fn good() -> Vec<Sample> {
        timeline(vec![
            ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
            (
                [up("v1", 1), up("v1", 1), up("v1", 1)],
                vec![(2, W, "intent")],
            ),
            ([up("v1", 1), None, up("v1", 1)], vec![(2, W, "in_flight")]),
            (
                [up("v1", 1), up("v2", 1), up("v1", 1)],
                vec![(2, W, "promoted")],
            ),
            (
                [up("v1", 1), up("v2", 1), None],
                vec![(2, W, "promoted"), (3, W, "in_flight")],
            ),
            (
                [up("v1", 1), up("v2", 1), up("v2", 1)],
                vec![(2, W, "promoted"), (3, W, "promoted")],
            ),
            (
                [None, up("v2", 2), up("v2", 2)],
                vec![(2, W, "promoted"), (3, W, "promoted"), (1, W, "in_flight")],
            ),
            (
                [up("v2", 2), up("v2", 2), up("v2", 2)],
                vec![(2, W, "promoted"), (3, W, "promoted"), (1, W, "promoted")],
            ),
        ])
    }

    #[test]
    fn a_good_wave_passes() {
        assert_eq!(rules(&good()), vec![]);
    }

    #[test]
    fn two_voters_down_at_once_is_reported_with_quorum() {
        let mut s = good();
        s[4].nodes.insert(2, None);
        assert_eq!(rules(&s), vec![Rule::OneVoterDown, Rule::Quorum]);
        // Unhealthy counts as not ready, but a running node still counts for quorum.
        let mut s = good();
        let mut starting = up("v2", 1).unwrap();
        starting.healthy = false;
        s[4].nodes.insert(2, Some(starting));
        assert_eq!(rules(&s), vec![Rule::OneVoterDown]);
    }

    #[test]
    fn the_leader_stepped_before_a_follower_is_reported_unless_its_role_moved() {
        let s = timeline(vec![
            ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
            ([None, up("v1", 2), up("v1", 2)], vec![(1, W, "in_flight")]),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![(1, W, "promoted")],
            ),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![(1, W, "promoted"), (3, W, "intent")],
            ),
        ]);
        assert_eq!(rules(&s), vec![Rule::LeaderLast]);
        // Leadership moved to 2 before node 1 was stepped: 1 is a follower then.
        let s = timeline(vec![
            ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
            ([up("v1", 2), up("v1", 2), up("v1", 2)], vec![]),
            ([None, up("v1", 2), up("v1", 2)], vec![(1, W, "in_flight")]),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![(1, W, "promoted")],
            ),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![(1, W, "promoted"), (3, W, "intent")],
            ),
        ]);
        assert_eq!(rules(&s), vec![]);
    }

    fn set_version(s: &mut Sample, id: u64, version: &str) {
        if let Some(Some(st)) = s.nodes.get_mut(&id) {
            st.version = version.into();
        }
    }

    #[test]
    fn a_second_change_in_one_wave_is_reported_a_rollback_is_not() {
        let mut s = good();
        // Node 2 rolled back (v2 -> v1): one change.
        for sample in s.iter_mut().skip(4) {
            set_version(sample, 2, "v1");
        }
        assert_eq!(rules(&s), vec![]);
        // Then forward again: a second one.
        set_version(&mut s[6], 2, "v2");
        assert_eq!(rules(&s), vec![Rule::OncePerWave]);
        // v1 -> v2 -> v3 is two changes.
        let mut s = good();
        set_version(&mut s[5], 2, "v3");
        assert_eq!(rules(&s), vec![Rule::OncePerWave]);
    }

    #[test]
    fn anything_after_the_first_failure_is_reported() {
        let failed = |later: Vec<(u64, &'static str, &'static str)>, n3: &str| {
            timeline(vec![
                ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
                ([up("v1", 1), None, up("v1", 1)], vec![(2, W, "in_flight")]),
                (
                    [up("v1", 1), up("v1", 1), up("v1", 1)],
                    vec![(2, W, "rolled_back")],
                ),
                ([up("v1", 1), up("v1", 1), up(n3, 1)], later),
            ])
        };
        assert_eq!(rules(&failed(vec![(2, W, "rolled_back")], "v1")), vec![]);
        assert_eq!(
            rules(&failed(vec![(2, W, "rolled_back"), (3, W, "intent")], "v1")),
            vec![Rule::AfterFailure]
        );
        // A change seen without any record (a stray hand): reported too.
        assert_eq!(
            rules(&failed(vec![(2, W, "rolled_back")], "v2")),
            vec![Rule::AfterFailure, Rule::AfterFailure]
        );
        // A revert intent is a failure; going back to the baseline after it is fine.
        let s = timeline(vec![
            ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
            (
                [up("v1", 1), up("v2", 1), up("v1", 1)],
                vec![(2, W, "promoted")],
            ),
            (
                [up("v1", 1), up("v2", 1), up("v1", 1)],
                vec![(2, W, "revert")],
            ),
            (
                [up("v1", 1), up("v1", 1), up("v1", 1)],
                vec![(2, W, "revert")],
            ),
        ]);
        assert_eq!(rules(&s), vec![]);
    }

    #[test]
    fn a_node_rolled_back_by_a_halt_may_be_stepped_again() {
        let halted = |by_halt: bool| {
            let mut s = timeline(vec![
                ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
                (
                    [up("v1", 1), up("v2", 1), up("v1", 1)],
                    vec![(2, W, "in_flight")],
                ),
                (
                    [up("v1", 1), up("v1", 1), up("v1", 1)],
                    vec![(2, W, "rolled_back")],
                ),
                (
                    [up("v1", 1), up("v1", 1), up("v1", 1)],
                    vec![(2, W, "rolled_back")],
                ),
                (
                    [up("v1", 1), up("v2", 1), up("v1", 1)],
                    vec![(2, W, "in_flight")],
                ),
                (
                    [up("v1", 1), up("v2", 1), up("v2", 1)],
                    vec![(2, W, "promoted"), (3, W, "intent")],
                ),
            ]);
            for sample in s.iter_mut() {
                let e = sample.etcd.as_mut().unwrap();
                e.wave = Some(serde_json::json!({"wave_id": W, "outcome": "running"}));
            }
            // The same rolled-back record (one revision) in samples 2 and 3.
            let rev = s[2].etcd.as_ref().unwrap().records[&2].mod_revision;
            s[3].etcd
                .as_mut()
                .unwrap()
                .records
                .get_mut(&2)
                .unwrap()
                .mod_revision = rev;
            if by_halt {
                s[3].etcd.as_mut().unwrap().wave = Some(
                    serde_json::json!({"wave_id": W, "outcome": "halted", "rolled_back_by_halt": "2"}),
                );
            }
            s
        };
        assert_eq!(rules(&halted(true)), vec![]);
        // A plain rollback is a failure: the second try and the next node are reported.
        assert_eq!(
            rules(&halted(false)),
            vec![
                Rule::OncePerWave,
                Rule::AfterFailure,
                Rule::AfterFailure,
                Rule::AfterFailure
            ]
        );
    }

    #[test]
    fn waves_are_cut_by_their_ids() {
        // Two waves, each changing node 2 once: not a double change.
        let s = timeline(vec![
            ([up("v1", 1), up("v1", 1), up("v1", 1)], vec![]),
            (
                [up("v1", 1), up("v2", 1), up("v1", 1)],
                vec![(2, "w1", "promoted")],
            ),
            (
                [up("v1", 1), up("v3", 1), up("v1", 1)],
                vec![(2, "w2", "promoted")],
            ),
        ]);
        assert_eq!(rules(&s), vec![]);
        // The first sample already holds the new wave's first intent beside an older wave's
        // record: the new wave starts there (it is the latest write), its leader-first order
        // is reported.
        let old = (2, "w0", "promoted");
        let s = timeline(vec![
            (
                [up("v1", 1), up("v1", 1), up("v1", 1)],
                vec![old, (1, W, "intent")],
            ),
            (
                [None, up("v1", 2), up("v1", 2)],
                vec![old, (1, W, "in_flight")],
            ),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![old, (1, W, "promoted")],
            ),
            (
                [up("v2", 2), up("v1", 2), up("v1", 2)],
                vec![old, (1, W, "promoted"), (3, W, "intent")],
            ),
        ]);
        assert_eq!(rules(&s), vec![Rule::LeaderLast]);
    }
}

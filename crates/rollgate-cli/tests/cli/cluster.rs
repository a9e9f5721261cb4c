//! The cluster harness: one real etcd, one simulated Raft cluster (`rollgate-sim cluster init`,
//! one shared cluster file), N simulated nodes (a localnet each, `--node-id N --cluster-file F`,
//! each with its own rollgate configuration and a `[fleet]` section) and one `rollgate fleet
//! agent` per node — the real binary. Windows are short and the bake is 0 s so a wave of three
//! takes well under a minute.
//!
//! With [`crate::history`] it is what the wave tests stand on; the test here drives intents by
//! hand (the conductor's half written with the library) to show that the checker passes a wave
//! in canary, follower, leader order and reports two voters restarting together and the leader
//! stepped first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rollgate_fleet::node::{self, NodePhase, NodeRecord};
use rollgate_fleet::testenv::EtcdServer;
use rollgate_fleet::{Client, Keys};
use serde_json::Value;

use crate::fixture::{Node, NodeOptions, sim_bin};
use crate::history::{History, NodeStatus, Rule};

/// A multi-threaded runtime for the etcd calls a test makes between its blocking steps.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Whether `agent/<id>` is registered (on a live lease).
pub fn agent_alive(rt: &tokio::runtime::Runtime, client: &Client, keys: &Keys, id: u64) -> bool {
    rt.block_on(rollgate_fleet::store::agents(client, keys))
        .unwrap()
        .iter()
        .any(|(a, _)| *a == id)
}

/// A `rollgate fleet agent` process; SIGKILLed when dropped.
pub struct Agent(pub Child);

impl Agent {
    /// Spawns `rollgate fleet agent` for `node` and waits (20 s at most) until it registered
    /// as `agent/<id>`.
    pub fn start(
        node: &Node,
        rt: &tokio::runtime::Runtime,
        client: &Client,
        keys: &Keys,
        id: u64,
    ) -> Agent {
        let agent = Agent(
            node.rollgate()
                .args(["fleet", "agent"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        while !agent_alive(rt, client, keys, id) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the agent of node {id} never registered"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` (`TERM`, `KILL`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {}", self.pid());
    }

    /// Its exit status, or fails the test with `why` when it runs past `since + limit`.
    pub fn wait_exit(&mut self, since: Instant, limit: Duration, why: &str) -> ExitStatus {
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(since.elapsed() < limit, "{why}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Options for [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Voters 1..=nodes.
    pub nodes: u64,
    /// Each node's windows, bake and extra tables (`sim_args` are the harness's).
    pub node: NodeOptions,
    /// `[fleet] stabilization`.
    pub stabilization: &'static str,
    /// More `[fleet]` keys (`canary_soak`, `max_lag`).
    pub fleet_extra: &'static str,
    /// Start an agent per node.
    pub agents: bool,
    /// The simulated cluster commits one entry per tick (`cluster init --tick-ms`).
    pub tick_ms: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            node: NodeOptions::default(),
            stabilization: "2s",
            fleet_extra: "",
            agents: true,
            tick_ms: 250,
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A running cluster. Fields drop in order: agents, nodes, then etcd.
pub struct Cluster {
    /// `agents[i]` is node `i + 1`'s agent (None when not running).
    pub agents: Vec<Option<Agent>>,
    /// `nodes[i]` is node `i + 1`.
    pub nodes: Vec<Node>,
    pub etcd: EtcdServer,
    pub client: Client,
    pub keys: Keys,
    /// The `[fleet] cluster` name.
    pub name: &'static str,
    /// The simulated cluster's shared state file.
    pub file: PathBuf,
    _dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts etcd, the simulated cluster, its nodes (node 1 first, so it is the first leader)
    /// and their agents, and waits until every node agrees on leader 1 with every voter. None
    /// when a service is missing outside CI.
    pub fn start(opts: ClusterOptions) -> Option<Cluster> {
        let rt = runtime();
        let etcd = rt.block_on(EtcdServer::start())?;
        let dir = tempfile::Builder::new()
            .prefix("rollgate-cluster")
            .tempdir()
            .unwrap();
        let file = dir.path().join("raft.json");
        let voters: Vec<String> = (1..=opts.nodes).map(|i| i.to_string()).collect();
        let init = Command::new(sim_bin())
            .args(["cluster", "init", "--voters", &voters.join(",")])
            .args(["--tick-ms", &opts.tick_ms.to_string()])
            .arg("--file")
            .arg(&file)
            .output()
            .unwrap();
        assert!(init.status.success(), "cluster init: {init:?}");
        let name = "c";
        let extra = leak(format!(
            "{}\n[fleet]\netcd = [\"{}\"]\ncluster = \"{name}\"\nleader_pointer = \
             \"/raftMetrics/leaderId\"\nstabilization = \"{}\"\n{}\n",
            opts.node.extra,
            etcd.url(),
            opts.stabilization,
            opts.fleet_extra
        ));
        let file_arg = leak(file.display().to_string());
        let mut nodes = Vec::new();
        for id in 1..=opts.nodes {
            let sim_args: &'static [&'static str] = Box::leak(
                vec![
                    "--node-id",
                    leak(id.to_string()),
                    "--cluster-file",
                    file_arg,
                ]
                .into_boxed_slice(),
            );
            nodes.push(Node::start(NodeOptions {
                extra,
                sim_args,
                ..opts.node.clone()
            })?);
        }
        let client = rt.block_on(etcd.client());
        let mut c = Cluster {
            agents: Vec::new(),
            nodes,
            etcd,
            client,
            keys: Keys::new(name),
            name,
            file,
            _dir: dir,
            rt,
        };
        c.wait_agreed(Some(1), Duration::from_secs(30));
        for id in 1..=opts.nodes {
            let agent = opts.agents.then(|| c.start_agent_process(id));
            c.agents.push(agent);
        }
        Some(c)
    }

    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Node id → operator port, for the history checker.
    pub fn ports(&self) -> BTreeMap<u64, u16> {
        self.ids()
            .into_iter()
            .map(|id| (id, self.node(id).operator_port))
            .collect()
    }

    /// Starts the history checker on this cluster.
    pub fn history(&self) -> History {
        History::start(self.ports(), &self.etcd.url(), self.name)
    }

    /// Each node's operator status now (None: no answer).
    pub fn statuses(&self) -> BTreeMap<u64, Option<NodeStatus>> {
        self.ports()
            .into_iter()
            .map(|(id, port)| (id, NodeStatus::fetch(port)))
            .collect()
    }

    /// The leader every node reports, when all answer, are ready, agree on it and list every
    /// node as a voter.
    pub fn agreed_leader(&self) -> Option<u64> {
        let all = self.ids();
        let mut leaders = self.statuses().into_values().map(|s| {
            let s = s.filter(|s| s.ready() && s.voters == all)?;
            s.leader
        });
        let first = leaders.next()??;
        leaders.all(|l| l == Some(first)).then_some(first)
    }

    /// Waits until [`Cluster::agreed_leader`] is `leader` (any leader when None); returns it.
    pub fn wait_agreed(&self, leader: Option<u64>, limit: Duration) -> u64 {
        let started = Instant::now();
        loop {
            match self.agreed_leader() {
                Some(l) if leader.is_none_or(|want| want == l) => return l,
                _ => {}
            }
            assert!(
                started.elapsed() < limit,
                "the cluster never agreed on leader {leader:?}: {:#?}",
                self.statuses()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_agent_process(&self, id: u64) -> Agent {
        Agent::start(self.node(id), &self.rt, &self.client, &self.keys, id)
    }

    /// (Re)starts node `id`'s agent and waits until it registered.
    pub fn start_agent(&mut self, id: u64) {
        let agent = self.start_agent_process(id);
        self.agents[id as usize - 1] = Some(agent);
    }

    /// Stops node `id`'s agent (SIGTERM: its presence goes at once) and starts a new one, which
    /// reads the node's configuration afresh.
    pub fn restart_agent(&mut self, id: u64) {
        let agent = self.agent(id);
        agent.signal("TERM");
        let st = agent.wait_exit(
            Instant::now(),
            Duration::from_secs(30),
            "the agent ignored SIGTERM",
        );
        assert_eq!(st.code(), Some(0), "agent {id}: {st:?}");
        self.start_agent(id);
    }

    pub fn agent(&mut self, id: u64) -> &mut Agent {
        self.agents[id as usize - 1]
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} has no agent running"))
    }

    /// A `rollgate` command with node `id`'s configuration (any node's `[fleet]` names the
    /// cluster: this is how a conductor is run), JSON output.
    pub fn rollgate(&self, id: u64) -> Command {
        self.node(id).rollgate()
    }

    /// Runs rollgate with node 1's configuration.
    pub fn run(&self, args: &[&str]) -> (Output, Value) {
        self.node(1).run(args)
    }

    /// Node `id`'s record and its revision.
    pub fn record(&self, id: u64) -> Option<(NodeRecord, i64)> {
        self.rt
            .block_on(node::read(&self.client, &self.keys, id))
            .unwrap()
    }

    /// The `wave` record.
    pub fn wave(&self) -> Option<Value> {
        self.rt
            .block_on(rollgate_fleet::store::read(&self.client, &self.keys.wave()))
            .unwrap()
            .map(|v| v.value)
    }

    /// Writes an intent for node `id` as the conductor would (over its previous record).
    pub fn write_intent(&self, id: u64, wave: &str, layer: &str, to: &str) {
        let previous = self.record(id).map(|(_, rev)| rev);
        let intent = NodeRecord::intent(wave, layer, to);
        self.rt
            .block_on(node::write_intent(
                &self.client,
                &self.keys,
                id,
                &intent,
                previous,
            ))
            .unwrap()
            .expect("intent written");
    }

    /// Waits until node `id`'s record of `wave` reaches a final phase.
    pub fn wait_final(&self, id: u64, wave: &str, limit: Duration) -> NodeRecord {
        let started = Instant::now();
        loop {
            if let Some((r, _)) = self.record(id)
                && r.wave_id == wave
                && r.phase.is_final()
            {
                return r;
            }
            assert!(
                started.elapsed() < limit,
                "node/{id} never reached a final phase of {wave}: {:?}",
                self.record(id)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One intent, waited for: it must end promoted.
    pub fn step(&self, id: u64, wave: &str, to: &str) {
        self.write_intent(id, wave, "operator-image", to);
        let r = self.wait_final(id, wave, Duration::from_secs(120));
        assert_eq!(r.phase, NodePhase::Promoted, "node {id}: {r:?}");
    }

    /// Moves leadership to `to` the way a Raft leadership transfer does — no node stops: the
    /// simulated cluster's state gets the new leader and a new term, written as the nodes write
    /// it (under `FILE.lock`, a temporary file renamed over the state). The nodes report it at
    /// their next heartbeat.
    pub fn transfer_leadership(&self, to: u64) {
        let mut lock_path = self.file.clone().into_os_string();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap();
        lock.lock().unwrap();
        let mut state: Value = serde_json::from_slice(&std::fs::read(&self.file).unwrap()).unwrap();
        let term = state["term"].as_u64().unwrap();
        state["leaderId"] = to.into();
        state["term"] = (term + 1).into();
        let mut tmp = self.file.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
        drop(lock);
    }

    /// The voters other than the current leader, lowest first (the canary is the first).
    pub fn followers(&self) -> (Vec<u64>, u64) {
        let leader = self.wait_agreed(None, Duration::from_secs(30));
        let followers = self.ids().into_iter().filter(|&i| i != leader).collect();
        (followers, leader)
    }
}

/// The history checker against real clusters, with intents written by hand: a wave in canary,
/// follower, leader order passes; two voters restarting together and the leader stepped first
/// are reported.
#[test]
fn the_history_checker_passes_an_ordered_wave_and_reports_two_down_and_leader_first() {
    let Some(c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };

    // In order: canary (lowest follower), the other follower, the leader.
    let (followers, leader) = c.followers();
    let history = c.history();
    for &id in &followers {
        c.step(id, "w1", "v1.1.0");
    }
    c.step(leader, "w1", "v1.1.0");
    c.wait_agreed(None, Duration::from_secs(30));
    let timeline = history.finish();
    timeline.assert_ok();
    for id in c.ids() {
        assert_eq!(c.node(id).current("operator-image"), "v1.1.0");
    }
    let (_, st) = c.run(&["fleet", "status"]);
    for a in st["agents"].as_array().unwrap() {
        assert_eq!(
            (&a["phase"], &a["value"]),
            (&"promoted".into(), &"v1.1.0".into()),
            "{st:#}"
        );
    }

    // Two followers at once, on a version that stays Starting for 5 s: two voters not ready
    // together.
    let (followers, _) = c.followers();
    let history = c.history();
    for &id in &followers {
        c.write_intent(id, "w2", "operator-image", "v1.1.0-slow-start");
    }
    for &id in &followers {
        c.wait_final(id, "w2", Duration::from_secs(120));
    }
    c.wait_agreed(None, Duration::from_secs(30));
    history.finish().expect(Rule::OneVoterDown);

    // The leader first, then a follower.
    let (followers, leader) = c.followers();
    let history = c.history();
    c.step(leader, "w3", "v1.0.0");
    c.step(followers[0], "w3", "v1.0.0");
    c.wait_agreed(None, Duration::from_secs(30));
    let v = history.finish().expect(Rule::LeaderLast);
    assert!(v.what.contains(&format!("after node {leader}")), "{v:?}");
}

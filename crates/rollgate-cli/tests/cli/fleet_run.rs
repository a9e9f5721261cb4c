//! `rollgate fleet run|plan|resolve`, end to end on three simulated nodes in cluster mode (one
//! Raft state), a real etcd, one `rollgate fleet agent` per node and the `rollgate` binary as the
//! conductor: a good wave goes canary, follower, leader; a crash-looping version stops at the
//! canary, rolled back, nothing else touched.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollgate_fleet::testenv::EtcdServer;
use rollgate_fleet::{Client, Keys};
use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, sim_bin};

pub struct Cluster {
    pub _etcd: EtcdServer,
    pub nodes: Vec<Node>,
    pub agents: Vec<Child>,
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    pub keys: Keys,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Cluster {
    /// `n` nodes sharing one cluster file, each with a `[fleet]` section and a running agent;
    /// returns once every agent is registered.
    pub fn start(n: usize, stabilization: &str) -> Option<Cluster> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let etcd = rt.block_on(EtcdServer::start())?;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("raft.json");
        let voters = (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let out = Command::new(sim_bin())
            .args(["cluster", "init", "--file"])
            .arg(&file)
            .args(["--voters", &voters])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra: &'static str = Box::leak(
            format!(
                "\n[fleet]\netcd = [\"{}\"]\ncluster = \"t\"\nleader_pointer = \"/raftMetrics/leaderId\"\nstabilization = \"{stabilization}\"\n",
                etcd.url()
            )
            .into_boxed_str(),
        );
        let file: &'static str = Box::leak(file.display().to_string().into_boxed_str());
        let mut nodes = Vec::new();
        for i in 1..=n {
            let id: &'static str = Box::leak(i.to_string().into_boxed_str());
            let args: &'static [&'static str] =
                Box::leak(vec!["--node-id", id, "--cluster-file", file].into_boxed_slice());
            nodes.push(Node::start(NodeOptions {
                extra,
                traffic: false,
                sim_args: args,
                ..NodeOptions::default()
            })?);
        }
        let client = rt.block_on(etcd.client());
        let mut c = Cluster {
            _etcd: etcd,
            nodes,
            agents: Vec::new(),
            rt,
            client,
            keys: Keys::new("t"),
            _dir: dir,
        };
        for i in 0..n {
            let child = c.nodes[i]
                .rollgate()
                .args(["fleet", "agent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.agents.push(child);
        }
        let started = Instant::now();
        loop {
            let agents =
                c.rt.block_on(rollgate_fleet::store::agents(&c.client, &c.keys))
                    .unwrap();
            if agents.len() == n
                && agents
                    .iter()
                    .all(|(_, v)| v["healthy"] == Value::Bool(true))
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "agents never all registered healthy: {agents:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(c)
    }
}

#[test]
fn a_wave_goes_canary_follower_leader_and_a_bad_version_stops_at_the_canary() {
    let Some(c) = Cluster::start(3, "2s") else {
        return;
    };
    let node = &c.nodes[0];

    let (out, plan) = node.run(&["fleet", "plan", "operator-image=v1.1.0"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(
        plan["order"],
        serde_json::json!(["2", "3", "1"]),
        "{plan:#}"
    );
    assert_eq!(plan["preflight"]["ok"], true, "{plan:#}");

    let (out, wave) = node.run(&["fleet", "run", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(wave["outcome"], "done", "{wave:#}");
    assert_eq!(
        wave["order"],
        serde_json::json!(["2", "3", "1"]),
        "{wave:#}"
    );
    for n in &c.nodes {
        assert_eq!(n.current("operator-image"), "v1.1.0");
    }
    for n in wave["nodes"].as_array().unwrap() {
        assert_eq!(n["outcome"], "promoted", "{wave:#}");
        assert!(n["rollout_id"].is_string(), "{wave:#}");
    }
    // A second run of the same change: nothing to do, done at once.
    let (out, again) = node.run(&["fleet", "run", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(again["order"], serde_json::json!([]), "{again:#}");

    let (out, bad) = node.run(&["fleet", "run", "operator-image=v1.1.0-crash-loop", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(bad["outcome"], "failed", "{bad:#}");
    assert_eq!(bad["order"], serde_json::json!(["2"]), "{bad:#}");
    let by_id = |id: &str| {
        bad["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("2")["outcome"], "rolled_back", "{bad:#}");
    assert_eq!(by_id("1")["outcome"], "untouched", "{bad:#}");
    assert_eq!(by_id("3")["outcome"], "untouched", "{bad:#}");
    for n in &c.nodes {
        assert_eq!(n.current("operator-image"), "v1.1.0");
    }
    // The failed wave is final: no resume; resolve refuses a node that was not lost.
    let (out, _) = node.run(&["fleet", "run", "--resume", "--yes"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let (out, _) = node.run(&["fleet", "resolve", "2", "--as", "done"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
}

//! Agents' snapshots of a real simulated cluster (three `rollgate-sim operator` processes in
//! cluster mode), published on kept leases in a real etcd, read back by a conductor and fed to
//! the planner's preflight.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollgate_core::config::Fleet;
use rollgate_core::fleet;
use rollgate_fleet::testenv::{EtcdServer, in_ci};
use rollgate_fleet::{AgentSnapshot, KeptLease, Keys, store};
use serde_json::Value;

/// `target/debug/rollgate-sim`, next to this test's `deps/` directory (`cargo build -p
/// rollgate-sim`). Missing: skip outside CI, fail under it.
fn sim_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("rollgate-sim");
    if p.is_file() {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "{} missing: cargo build -p rollgate-sim",
        p.display()
    );
    eprintln!("skipping: {} missing", p.display());
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Operator {
    port: u16,
    child: Child,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fleet_config(etcd: &str) -> Fleet {
    Fleet {
        etcd: vec![etcd.to_owned()],
        cluster: "sim".into(),
        node_id_pointer: "/raftMetrics/nodeId".into(),
        voters_pointer: "/raftMetrics/voterIds".into(),
        leader_pointer: Some("/raftMetrics/leaderId".into()),
        max_lag: 50,
        stabilization: Duration::from_secs(1),
        canary_soak: Duration::ZERO,
        user: None,
        password: None,
        ca_file: None,
    }
}

async fn status(port: u16) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}/v2/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// What the conductor sees: every agent key, as planner views.
async fn views(client: &etcd_client::Client, keys: &Keys) -> Vec<fleet::NodeView> {
    store::agents(client, keys)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_value::<AgentSnapshot>(v)
                .unwrap()
                .to_view(true)
        })
        .collect()
}

#[tokio::test]
async fn snapshots_of_a_simulated_cluster_drive_the_preflight() {
    let Some(sim) = sim_bin() else { return };
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raft.json");
    let init = Command::new(&sim)
        .args(["cluster", "init", "--voters", "1,2,3", "--tick-ms", "20"])
        .args(["--timeout-ms", "500", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    // Node 1 serving before the others start: it wins the first election, whatever the load.
    let mut ops: Vec<Operator> = Vec::new();
    for id in 1..=3u64 {
        let port = free_port();
        let child = Command::new(&sim)
            .args(["operator", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--node-id", &id.to_string(), "--heartbeat-ms", "50"])
            .arg("--cluster-file")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ops.push(Operator { port, child });
        if id == 1 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while status(port).await.is_none() {
                assert!(Instant::now() < deadline, "node 1 never served");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    let cfg = fleet_config(&etcd.url());
    let client = rollgate_fleet::connect(&cfg).await.unwrap();
    let keys = Keys::new(&cfg.cluster);
    // Each agent: read its node, publish on its own kept lease (once the cluster has a leader).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut leases = Vec::new();
    for op in &ops {
        let snap = loop {
            if let Some(s) = status(op.port).await
                && !s["raftMetrics"]["leaderId"].is_null()
            {
                break AgentSnapshot::from_status(&s, &cfg, Some("v1.0.0".into()), true, false)
                    .unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no leader in the simulated cluster"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let lease = KeptLease::grant(&client, Duration::from_secs(2))
            .await
            .unwrap();
        let id: u64 = snap.node_id.parse().unwrap();
        store::publish_agent(
            &client,
            &keys,
            id,
            &serde_json::to_value(&snap).unwrap(),
            lease.id(),
        )
        .await
        .unwrap();
        leases.push(lease);
    }

    let v = views(&client, &keys).await;
    assert_eq!(v.len(), 3);
    assert_eq!(fleet::agreed_leader(&v, None).unwrap(), "1");
    let wave = fleet::start(&v, "v1.1.0", None, None, false).unwrap();
    assert_eq!(wave.canary, "2", "the canary is the lowest-id follower");

    // Node 3's agent goes away (its lease revoked): a voter without a live agent refuses.
    let gone = leases.pop().unwrap();
    gone.revoke(&client).await.unwrap();
    let v = views(&client, &keys).await;
    assert_eq!(v.len(), 2);
    let refusal = fleet::start(&v, "v1.1.0", None, None, false).unwrap_err();
    assert!(
        refusal.0.contains("voter 3 has no live agent"),
        "{refusal:?}"
    );
}

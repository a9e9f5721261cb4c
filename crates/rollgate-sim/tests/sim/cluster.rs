//! Cluster mode through the real binary: three operator processes sharing one cluster file,
//! each on its own port, killed and restarted one at a time as a fleet rollout would. Needs no
//! Postgres or Redis (the operators run without persistence).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{LocalnetDown, client, eventually, free_port, sim};

const WAIT: Duration = Duration::from_secs(10);

/// `cluster init` of voters 1, 2, 3 in `dir`, committing one entry per `tick_ms`.
fn init_cluster(dir: &Path, tick_ms: u64) -> PathBuf {
    let file = dir.join("raft.json");
    let init = sim()
        .args(["cluster", "init", "--voters", "1,2,3"])
        .args([
            "--tick-ms",
            &tick_ms.to_string(),
            "--timeout-ms",
            "500",
            "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    file
}

/// One operator process of the cluster; SIGKILLed when dropped.
struct Node {
    id: u64,
    port: u16,
    file: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(id: u64, port: u16, file: &Path, version: &str) -> Node {
        let mut n = Node {
            id,
            port,
            file: file.to_owned(),
            child: None,
        };
        n.restart(version);
        n
    }

    fn restart(&mut self, version: &str) {
        self.kill();
        let child = sim()
            .args(["operator", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--version", version, "--node-id", &self.id.to_string()])
            .arg("--cluster-file")
            .arg(&self.file)
            .args(["--heartbeat-ms", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no goodbye, the cluster must notice the silence.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn status(&self) -> Option<Value> {
        let r = client()
            .get(format!("http://127.0.0.1:{}/v2/status", self.port))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes 1, 2, 3 on v1.0.0, node 1 serving (it has heartbeated) before the others start, so
/// the first election — at the second node's first heartbeat — is won by node 1 whatever the
/// machine's load.
async fn start_three(file: &Path) -> [Node; 3] {
    let n1 = Node::start(1, free_port(), file, "v1.0.0");
    eventually(WAIT, "node 1 serving", || n1.status()).await;
    let n2 = Node::start(2, free_port(), file, "v1.0.0");
    let n3 = Node::start(3, free_port(), file, "v1.0.0");
    [n1, n2, n3]
}

fn raft(s: &Value) -> (Value, Value, u64) {
    let r = &s["raftMetrics"];
    (
        r["voterIds"].clone(),
        r["leaderId"].clone(),
        r["term"].as_u64().unwrap_or(0),
    )
}

fn index(s: &Value) -> u64 {
    s["lastRequest"]["requestIndex"].as_u64().unwrap()
}

/// Waits until every node in `nodes` reports the same `(voters, leader)` and returns the term.
async fn agreed(nodes: &[&Node], voters: Value, leader: Value, what: &str) -> u64 {
    eventually(WAIT, what, || async {
        let mut terms = Vec::new();
        for n in nodes {
            let (v, l, t) = raft(&n.status().await?);
            if v != voters || l != leader {
                return None;
            }
            terms.push(t);
        }
        terms.windows(2).all(|w| w[0] == w[1]).then(|| terms[0])
    })
    .await
}

#[tokio::test]
async fn three_nodes_share_voters_leader_term_and_index_and_elect_on_loss() {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), 20);
    let again = sim()
        .args(["cluster", "init", "--voters", "1", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "init must not overwrite");

    let [mut n1, n2, mut n3] = start_three(&file).await;
    let all = serde_json::json!([1, 2, 3]);
    let term = agreed(&[&n1, &n2, &n3], all.clone(), 1.into(), "leader 1 agreed").await;
    assert!(term >= 1);

    // The request index advances on every node and stays close to the others'.
    let first = index(&n2.status().await.unwrap());
    eventually(WAIT, "index advancing on every node", || async {
        let mut idx = Vec::new();
        for n in [&n1, &n2, &n3] {
            idx.push(index(&n.status().await?));
        }
        let (lo, hi) = (*idx.iter().min()?, *idx.iter().max()?);
        (lo > first + 10 && hi - lo < 50).then_some(())
    })
    .await;

    // The leader is SIGKILLed: the lowest running voter takes over, in a later term.
    n1.kill();
    let t2 = agreed(&[&n2, &n3], all.clone(), 2.into(), "leader 2 after 1 died").await;
    assert!(
        t2 > term,
        "the term must move on an election: {term} -> {t2}"
    );
    let before = index(&n3.status().await.unwrap());
    eventually(WAIT, "progress under the new leader", || async {
        (index(&n3.status().await?) > before + 5).then_some(())
    })
    .await;

    // Node 1 comes back on a new version: it does not depose the leader and catches up.
    n1.restart("v1.1.0");
    agreed(
        &[&n1, &n2, &n3],
        all.clone(),
        2.into(),
        "1 back as follower",
    )
    .await;
    eventually(WAIT, "node 1 caught up", || async {
        let (a, b) = (index(&n1.status().await?), index(&n2.status().await?));
        (a + 50 > b).then_some(())
    })
    .await;

    // Two voters down: no quorum, no leader, no progress.
    n1.kill();
    n3.kill();
    eventually(WAIT, "no leader without quorum", || async {
        n2.status().await?["raftMetrics"]["leaderId"]
            .is_null()
            .then_some(())
    })
    .await;
    let stuck = index(&n2.status().await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(index(&n2.status().await.unwrap()), stuck);
    // Quorum back (1 and 2): a fresh election, won by the lowest running voter. Node 3 starts
    // after it: started together, 2 and 3 could make the quorum first and elect 2.
    n1.restart("v1.0.0");
    agreed(&[&n1, &n2], all.clone(), 1.into(), "quorum back, leader 1").await;
    n3.restart("v1.0.0");
    agreed(&[&n1, &n2, &n3], all, 1.into(), "3 back under leader 1").await;

    let show = sim()
        .args(["cluster", "show", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(doc["running"], serde_json::json!([1, 2, 3]), "{doc}");
}

#[tokio::test]
async fn cluster_versions_lag_leave_the_voters_and_lose_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), 2);
    let [n1, n2, mut n3] = start_three(&file).await;
    let all = serde_json::json!([1, 2, 3]);
    agreed(&[&n1, &n2, &n3], all.clone(), 1.into(), "leader 1").await;

    // Lagging: still advancing, but far behind the others.
    n3.restart("v1.1.0-lagging");
    eventually(WAIT, "node 3 lags by about 200", || async {
        let (a, c) = (index(&n1.status().await?), index(&n3.status().await?));
        (c > 0 && a > c + 150).then_some(())
    })
    .await;

    // Leaves the voter set: every node reports the smaller set.
    n3.restart("v1.1.0-leaves-voters");
    agreed(
        &[&n1, &n2, &n3],
        serde_json::json!([1, 2]),
        1.into(),
        "voters [1, 2] everywhere",
    )
    .await;
    // Rolled back: it rejoins.
    n3.restart("v1.0.0");
    agreed(&[&n1, &n2, &n3], all.clone(), 1.into(), "rejoined").await;

    // Never sees a leader: null leader, index standing still; the others keep theirs.
    n3.restart("v1.1.0-no-leader");
    let s3 = eventually(WAIT, "node 3 sees no leader", || async {
        let s = n3.status().await?;
        s["raftMetrics"]["leaderId"].is_null().then_some(s)
    })
    .await;
    assert_eq!(s3["raftMetrics"]["voterIds"], all);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(index(&n3.status().await.unwrap()), index(&s3));
    agreed(&[&n1, &n2], all, 1.into(), "1 and 2 keep the leader").await;
    assert!(index(&n1.status().await.unwrap()) > index(&s3));
}

#[tokio::test]
async fn a_node_without_its_cluster_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim()
        .args(["operator", "--listen", "127.0.0.1:0", "--cluster-file"])
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.json"), "{err}");
}

/// Node 1 of the cluster as a whole localnet (what rollgate's command driver restarts), nodes 2
/// and 3 as bare operators: `localnet set` + `restart operator` keeps node 1 in the cluster.
#[tokio::test]
async fn a_localnet_node_stays_in_its_cluster_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = init_cluster(dir.path(), 20);
    let net = dir.path().join("node1");
    let op_port = free_port();
    let mut up = sim();
    up.args(["localnet", "up", "--dir"]).arg(&net);
    for flag in [
        "--kyc-port",
        "--chain-port",
        "--deployment-port",
        "--pccs-port",
    ] {
        up.args([flag, &free_port().to_string()]);
    }
    up.args(["--operator-port", &op_port.to_string(), "--node-id", "1"])
        .arg("--cluster-file")
        .arg(&file);
    let out = up.output().unwrap();
    let _down = LocalnetDown(net.clone());
    assert!(out.status.success(), "{out:?}");
    let n1 = Node {
        id: 1,
        port: op_port,
        file: file.clone(),
        child: None,
    };
    let n2 = Node::start(2, free_port(), &file, "v1.0.0");
    let n3 = Node::start(3, free_port(), &file, "v1.0.0");
    let all = serde_json::json!([1, 2, 3]);
    let term = agreed(&[&n1, &n2, &n3], all.clone(), 1.into(), "leader 1").await;

    for args in [
        vec!["localnet", "set", "operator-image", "v1.1.0"],
        vec!["localnet", "restart", "operator"],
    ] {
        let out = sim().args(&args).arg("--dir").arg(&net).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let s1 = n1.status().await.unwrap();
    assert_eq!(s1["version"], "v1.1.0");
    assert_eq!(s1["raftMetrics"]["nodeId"], 1);
    // Node 1 led; its restart may or may not outlast the timeout, but the cluster agrees on a
    // leader again, in a term no older than before, and node 1 is a voter in it.
    let leader = eventually(WAIT, "a leader agreed after the restart", || async {
        let mut leaders = Vec::new();
        for n in [&n1, &n2, &n3] {
            let (v, l, t) = raft(&n.status().await?);
            if v != all || l.is_null() || t < term {
                return None;
            }
            leaders.push(l);
        }
        leaders
            .windows(2)
            .all(|w| w[0] == w[1])
            .then(|| leaders[0].clone())
    })
    .await;
    assert!([1, 2].contains(&leader.as_u64().unwrap()), "{leader}");
}

//! The simulated cluster as three Compose projects (`docker/compose.yml` +
//! `docker/compose.cluster.yml`, one project per node, each a whole localnet with its own ports
//! and databases) whose operators share one cluster file through a bind mount; a real etcd and
//! one `rollgate fleet agent` per node, each with its node's compose-driver configuration, and
//! `rollgate fleet run` as the conductor: a good wave (canary, follower, leader) and a
//! crash-looping image stopped at the canary.
//! Needs `scripts/build-images`, Postgres, Redis and etcd; skips without them outside CI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollgate_fleet::Keys;
use rollgate_fleet::testenv::EtcdServer;
use serde_json::Value;

use crate::cluster::{Agent, runtime};
use crate::compose::{Stack, StackSpec, start_stack_with};
use crate::fixture::{code, explain, sim_bin};

const VOTERS: [u64; 3] = [1, 2, 3];

/// The operator's `/v2/status` through its published port (None while it does not answer).
fn status(stack: &Stack) -> Option<Value> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "2"])
        .arg(format!(
            "http://127.0.0.1:{}/v2/status",
            stack.operator_port
        ))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// `(leaderId, term)` once every node in `nodes` reports the voter set {1,2,3}, the same leader
/// and the same term, and `accept` takes them; fails the test after `limit`.
fn agreement(
    stacks: &[Stack],
    nodes: &[u64],
    limit: Duration,
    accept: impl Fn(u64, u64) -> bool,
) -> (u64, u64) {
    let started = Instant::now();
    loop {
        let seen: Vec<Option<Value>> = nodes
            .iter()
            .map(|id| status(&stacks[*id as usize - 1]).map(|s| s["raftMetrics"].clone()))
            .collect();
        let first = seen[0].clone().unwrap_or(Value::Null);
        let leader = first["leaderId"].as_u64();
        let term = first["term"].as_u64();
        let agreed = seen.iter().zip(nodes).all(|(m, id)| {
            m.as_ref().is_some_and(|m| {
                m["nodeId"] == *id
                    && m["voterIds"] == serde_json::json!(VOTERS)
                    && m["leaderId"].as_u64() == leader
                    && m["term"].as_u64() == term
            })
        });
        if let (true, Some(l), Some(t)) = (agreed, leader, term)
            && accept(l, t)
        {
            return (l, t);
        }
        assert!(
            started.elapsed() < limit,
            "nodes {nodes:?} never agreed: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the cluster file is rewritten within `d` (every running node heartbeats into it
/// every 100 ms, so it is while nothing holds its lock).
fn rewritten_within(file: &Path, d: Duration) -> bool {
    let before = std::fs::read(file).unwrap();
    std::thread::sleep(d);
    std::fs::read(file).unwrap() != before
}

/// The cluster file's lock works across containers: it is the host kernel's flock on the bind
/// mount's inode, so while this process holds `raft.json.lock` no container writes the state,
/// and once it lets go they do again. (Held for less than the cluster's 1 s timeout, so no
/// node counts as stopped.)
fn assert_the_lock_excludes_the_containers(file: &Path) {
    assert!(
        rewritten_within(file, Duration::from_millis(400)),
        "the nodes do not heartbeat into {}",
        file.display()
    );
    let lock_path = file.with_extension("json.lock");
    // Read-only is enough for flock, and the file may be a container's (root's).
    let lock = std::fs::File::open(&lock_path).unwrap();
    lock.lock().unwrap();
    let held = rewritten_within(file, Duration::from_millis(500));
    drop(lock);
    assert!(
        !held,
        "a container rewrote {} while the host held {}",
        file.display(),
        lock_path.display()
    );
    assert!(
        rewritten_within(file, Duration::from_millis(400)),
        "the nodes did not heartbeat again after the lock was released"
    );
}

/// `rollgate-sim cluster show`: the stored state plus the ids running now.
fn cluster_show(file: &Path) -> Value {
    let out = Command::new(sim_bin())
        .args(["cluster", "show", "--file"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", explain(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The image the service's container was created from, as Compose named it.
fn container_image(stack: &Stack, service: &str) -> String {
    let (id, _) = stack.container(service);
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.Config.Image}}", &id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The conductor: `rollgate fleet run operator-image=IMAGE --yes --format json` with the node's
/// configuration (its `[fleet]` section names etcd and the cluster).
fn fleet_run(stack: &Stack, image: &str) -> (std::process::Output, Value) {
    let out = stack
        .rollgate_command()
        .args(["fleet", "run", &format!("operator-image={image}")])
        .args(["--yes", "--format", "json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

#[test]
fn three_compose_projects_form_one_cluster_and_fleet_run_rolls_them() {
    let started = Instant::now();
    let rt = runtime();
    let Some(etcd) = rt.block_on(EtcdServer::start()) else {
        return;
    };
    let cluster_dir = tempfile::Builder::new()
        .prefix("rollgate-cluster")
        .tempdir()
        .unwrap();
    let file = cluster_dir.path().join("raft.json");
    let init = Command::new(sim_bin())
        .args(["cluster", "init", "--voters", "1,2,3", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", explain(&init));
    let extra = format!(
        "\n[fleet]\netcd = [\"{}\"]\ncluster = \"compose\"\nleader_pointer = \"/raftMetrics/leaderId\"\nstabilization = \"1s\"\n",
        etcd.url()
    );
    // One project per node, brought up together.
    let stacks: Option<Vec<Stack>> = std::thread::scope(|s| {
        let handles: Vec<_> = VOTERS
            .iter()
            .map(|id| {
                let spec = StackSpec {
                    extra: extra.clone(),
                    cluster: Some((*id, cluster_dir.path().to_path_buf())),
                    ..StackSpec::default()
                };
                s.spawn(move || start_stack_with(spec))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let Some(stacks) = stacks else {
        return;
    };
    eprintln!("three projects up in {:?}", started.elapsed());

    // One cluster: every node reports the same voters, leader and term, and the file agrees.
    let (leader, term) = agreement(&stacks, &VOTERS, Duration::from_secs(20), |_, _| true);
    let shown = cluster_show(&file);
    assert_eq!(shown["running"], serde_json::json!(VOTERS), "{shown:#}");
    assert_eq!(shown["leaderId"], leader, "{shown:#}");
    assert_the_lock_excludes_the_containers(&file);

    // The leader's operator container stops: the other two elect a new leader in a later term;
    // back, the old leader rejoins as a follower (it does not depose the new one).
    let first = leader;
    let out = stacks[first as usize - 1].compose(&["stop", "operator"]);
    assert!(out.status.success(), "{}", explain(&out));
    let others: Vec<u64> = VOTERS.into_iter().filter(|id| *id != first).collect();
    let (leader, term) = agreement(&stacks, &others, Duration::from_secs(15), |l, t| {
        l != first && t > term
    });
    let out = stacks[first as usize - 1].compose(&["start", "operator"]);
    assert!(out.status.success(), "{}", explain(&out));
    let _ = agreement(&stacks, &VOTERS, Duration::from_secs(20), |l, t| {
        (l, t) == (leader, term)
    });
    eprintln!("leader moved, term {term}: {:?}", started.elapsed());

    // One agent per node, each with its own node's configuration (compose driver).
    let client = rt.block_on(etcd.client());
    let keys = Keys::new("compose");
    let _agents: Vec<Agent> = stacks
        .iter()
        .map(|s| {
            Agent(
                s.rollgate_command()
                    .args(["fleet", "agent"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let since = Instant::now();
    loop {
        let ids: Vec<u64> = rt
            .block_on(rollgate_fleet::store::agents(&client, &keys))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if ids == VOTERS {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "agents registered: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A whole wave through the conductor (the `rollgate` binary with node 1's configuration):
    // canary = the lowest-id follower, then the other follower, the leader last; every node's
    // operator container recreated by its own agent from the new image, still in the cluster.
    let mut followers: Vec<u64> = VOTERS.into_iter().filter(|id| *id != leader).collect();
    followers.sort_unstable();
    let expected = serde_json::json!([
        followers[0].to_string(),
        followers[1].to_string(),
        leader.to_string()
    ]);
    let wave_started = Instant::now();
    let (out, wave) = fleet_run(&stacks[0], "rollgate-sim/operator:v1.1.0");
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(wave["outcome"], "done", "{wave:#}");
    assert_eq!(wave["order"], expected, "{wave:#}");
    for n in wave["nodes"].as_array().unwrap() {
        assert_eq!(n["outcome"], "promoted", "{wave:#}");
    }
    for s in &stacks {
        assert_eq!(
            container_image(s, "operator"),
            "rollgate-sim/operator:v1.1.0"
        );
        assert_eq!(status(s).unwrap()["version"], "v1.1.0");
    }
    // Still one cluster. Leadership moves (a later term) only when the leader's restart outlasts
    // the cluster's 1 s timeout, so either is right; the next canary is the lowest-id follower
    // under whichever leader there is now.
    let (leader, _) = agreement(&stacks, &VOTERS, Duration::from_secs(10), |_, t| t >= term);
    let canary = VOTERS.into_iter().find(|id| *id != leader).unwrap();
    eprintln!(
        "good wave {:?} in {:?} (at {:?})",
        wave["order"],
        wave_started.elapsed(),
        started.elapsed()
    );

    // A crash-looping image stops at the canary: rolled back by its agent, the wave failed
    // (exit 4), no other node touched.
    let untouched: Vec<(u64, String)> = VOTERS
        .iter()
        .filter(|id| **id != canary)
        .map(|id| (*id, stacks[*id as usize - 1].container("operator").0))
        .collect();
    let wave_started = Instant::now();
    let (out, bad) = fleet_run(&stacks[0], "rollgate-sim/operator:v1.1.0-crash-loop");
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(bad["outcome"], "failed", "{bad:#}");
    assert_eq!(
        bad["order"],
        serde_json::json!([canary.to_string()]),
        "{bad:#}"
    );
    for n in bad["nodes"].as_array().unwrap() {
        let want = if n["node_id"] == canary.to_string().as_str() {
            "rolled_back"
        } else {
            "untouched"
        };
        assert_eq!(n["outcome"], want, "{bad:#}");
    }
    for (id, container) in untouched {
        assert_eq!(
            stacks[id as usize - 1].container("operator").0,
            container,
            "node {id}'s operator was touched"
        );
    }
    for s in &stacks {
        assert_eq!(status(s).unwrap()["version"], "v1.1.0");
    }
    let _ = agreement(&stacks, &VOTERS, Duration::from_secs(10), |_, _| true);
    eprintln!(
        "bad wave stopped at node {canary} in {:?} (at {:?})",
        wave_started.elapsed(),
        started.elapsed()
    );

    drop(_agents);
    // Down together.
    std::thread::scope(|s| {
        for stack in stacks {
            s.spawn(move || drop(stack));
        }
    });
    eprintln!("total {:?}", started.elapsed());
}

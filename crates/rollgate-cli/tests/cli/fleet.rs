//! `rollgate fleet agent`, end to end: a real etcd, one simulated node, the agent as the
//! `rollgate` binary. Intents are written by hand with the library (the conductor's half); the
//! agent runs the single-node rollout and records its outcome in `node/<id>`. Also
//! `fleet status` (the contract's JSON) and `fleet halt|unhalt`.

use std::time::{Duration, Instant};

use rollgate_fleet::node::{self, NodePhase, NodeRecord};
use rollgate_fleet::testenv::EtcdServer;
use rollgate_fleet::{Client, Keys};
use serde_json::Value;

use crate::cluster::{Agent, agent_alive, runtime};
use crate::fixture::{Node, NodeOptions, code, explain};

/// Waits until `node/<id>` reaches a final phase (or fails the test after `limit`).
fn wait_final(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    keys: &Keys,
    limit: Duration,
) -> (NodeRecord, i64) {
    let started = Instant::now();
    loop {
        if let Some((r, rev)) = rt.block_on(node::read(client, keys, 1)).unwrap()
            && r.phase.is_final()
        {
            return (r, rev);
        }
        assert!(
            started.elapsed() < limit,
            "node/1 never reached a final phase"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_agent_runs_an_intent_and_records_promoted_rolled_back_and_vetoed() {
    let rt = runtime();
    let Some(mut etcd) = rt.block_on(EtcdServer::start()) else {
        return;
    };
    let extra: &'static str = Box::leak(
        format!("\n[fleet]\netcd = [\"{}\"]\ncluster = \"t\"\nleader_pointer = \"/raftMetrics/leaderId\"\n", etcd.url())
            .into_boxed_str(),
    );
    let Some(node) = Node::start(NodeOptions {
        extra,
        ..NodeOptions::default()
    }) else {
        return;
    };
    let client = rt.block_on(etcd.client());
    let keys = Keys::new("t");

    // Nothing registered yet: status shows no wave and no agent.
    let (out, st) = node.run(&["fleet", "status"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(st["wave"], Value::Null, "{st}");
    assert_eq!(st["agents"], serde_json::json!([]), "{st}");

    let mut agent = Agent::start(&node, &rt, &client, &keys, 1);
    let (_, st) = node.run(&["fleet", "status"]);
    let a = &st["agents"][0];
    assert_eq!(
        (
            &a["node_id"],
            &a["alive"],
            &a["role"],
            &a["healthy"],
            &a["phase"]
        ),
        (
            &Value::from(1),
            &Value::Bool(true),
            &Value::from("leader"),
            &Value::Bool(true),
            &Value::Null
        ),
        "{st:#}"
    );
    assert_eq!(a["value"], "v1.0.0", "{st:#}");

    // A good version: the node is updated and the record says promoted with the rollout id.
    let intent = NodeRecord::intent("w1", "operator-image", "v1.1.0");
    let rev = rt
        .block_on(node::write_intent(&client, &keys, 1, &intent, None))
        .unwrap()
        .expect("intent written");
    let (done, done_rev) = wait_final(&rt, &client, &keys, Duration::from_secs(120));
    assert!(
        done_rev > rev,
        "the outcome is a later write than the intent"
    );
    assert_eq!(done.phase, NodePhase::Promoted, "{done:?}");
    assert!(
        done.agent_lease.is_some() && done.rollout_id.is_some(),
        "{done:?}"
    );
    assert_eq!(node.current("operator-image"), "v1.1.0");
    let (_, show) = node.run(&["show", done.rollout_id.as_deref().unwrap()]);
    assert_eq!(show["outcome"], "promoted", "{show:#}");
    let (_, st) = node.run(&["fleet", "status"]);
    assert_eq!(st["agents"][0]["phase"], "promoted", "{st:#}");

    // A bad version: rolled back by the single-node engine, recorded as such.
    let bad = NodeRecord::intent("w2", "operator-image", "v1.1.0-crash-loop");
    let (_, cur) = rt.block_on(node::read(&client, &keys, 1)).unwrap().unwrap();
    rt.block_on(node::write_intent(&client, &keys, 1, &bad, Some(cur)))
        .unwrap()
        .expect("intent written");
    let (done, _) = wait_final(&rt, &client, &keys, Duration::from_secs(120));
    assert_eq!(done.phase, NodePhase::RolledBack, "{done:?}");
    assert_eq!(done.wave_id, "w2");
    assert_eq!(node.current("operator-image"), "v1.1.0");

    // The local freeze vetoes etcd: nothing runs, the record says why.
    let (out, _) = node.run(&["freeze", "--reason", "exchange maintenance"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (_, cur) = rt.block_on(node::read(&client, &keys, 1)).unwrap().unwrap();
    let frozen = NodeRecord::intent("w3", "operator-image", "v1.0.0");
    rt.block_on(node::write_intent(&client, &keys, 1, &frozen, Some(cur)))
        .unwrap()
        .expect("intent written");
    let (done, _) = wait_final(&rt, &client, &keys, Duration::from_secs(20));
    assert_eq!(done.phase, NodePhase::Vetoed, "{done:?}");
    assert!(
        done.reason
            .unwrap_or_default()
            .contains("exchange maintenance")
    );
    assert_eq!(node.current("operator-image"), "v1.1.0");
    let (_, history) = node.run(&["history"]);
    assert_eq!(
        history["rollouts"].as_array().unwrap().len(),
        2,
        "{history}"
    );

    // The cluster kill switch, shown by status.
    let (out, _) = node.run(&["fleet", "halt", "--reason", "incident 42"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (_, st) = node.run(&["fleet", "status"]);
    assert_eq!(st["halt"]["reason"], "incident 42", "{st:#}");
    let (out, un) = node.run(&["fleet", "unhalt"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(un["reason"], "incident 42");
    let (_, st) = node.run(&["fleet", "status"]);
    assert_eq!(st["halt"], Value::Null, "{st:#}");

    // etcd gone: the lease cannot be renewed, so the agent stops acting — it exits (6) well
    // within the lease's TTL rather than carrying on without a presence.
    etcd.kill();
    let started = Instant::now();
    let status = agent.wait_exit(
        started,
        Duration::from_secs(15),
        "the agent kept running after its lease could not be renewed",
    );
    assert_eq!(status.code(), Some(6), "{status:?}");
}

#[test]
fn fleet_commands_without_a_fleet_are_usage_errors_and_a_dead_etcd_is_busy() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let (out, _) = node.run(&["fleet", "status"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    assert!(explain(&out).contains("[fleet]"), "{}", explain(&out));
    let (out, _) = node.run(&["fleet", "agent"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let (out, _) = node.run(&["fleet", "halt", "--reason", " "]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let dead = format!("http://127.0.0.1:{}", crate::fixture::free_port());
    let (out, _) = node.run(&["fleet", "status", "--etcd", &dead, "--cluster", "t"]);
    assert_eq!(code(&out), 6, "{}", explain(&out));
}

/// The target: `fleet status` with 1,000 registered agents answers in under a second
/// (the whole command: process start, connect, three reads, JSON out). No node needed: the
/// cluster is named with `--etcd`/`--cluster`.
#[test]
fn fleet_status_with_a_thousand_agents_answers_in_under_a_second() {
    let rt = runtime();
    let Some(etcd) = rt.block_on(EtcdServer::start()) else {
        return;
    };
    let client = rt.block_on(etcd.client());
    let keys = Keys::new("big");
    rt.block_on(async {
        let lease = rollgate_fleet::KeptLease::grant(&client, Duration::from_secs(60))
            .await
            .unwrap();
        for id in 1..=1000u64 {
            let snap = serde_json::json!({"node_id": id.to_string(), "value": "v1.0.0",
                "healthy": true, "frozen": false, "voters": ["1", "2", "3"], "leader": "1",
                "request_index": "42"});
            rollgate_fleet::store::publish_agent(&client, &keys, id, &snap, lease.id())
                .await
                .unwrap();
        }
        // Dropped: renewal stops but the keys stay for the 60 s TTL, longer than the test.
        drop(lease);
    });
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let out = std::process::Command::new(crate::fixture::rollgate_bin())
            .args([
                "--json",
                "fleet",
                "status",
                "--etcd",
                &etcd.url(),
                "--cluster",
                "big",
            ])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(code(&out), 0, "{}", explain(&out));
        let st: Value = serde_json::from_slice(&out.stdout).unwrap();
        let agents = st["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 1000);
        assert_eq!(agents[999]["node_id"], 1000);
        assert_eq!(agents[0]["role"], "leader");
        assert_eq!(agents[1]["role"], "follower");
        assert_eq!(agents[3]["role"], "non_voter");
        best = best.min(took);
    }
    eprintln!("fleet status, 1,000 agents: best of 3 = {best:?}");
    assert!(best < Duration::from_secs(1), "fleet status took {best:?}");
}

/// `fleet halt` while a step runs: the agent freezes its node locally, the engine rolls the step
/// back at its next poll, the record says rolled_back, and the agent's own freeze is lifted after.
/// Then SIGTERM: the agent exits 0 with its presence already gone.
#[test]
fn a_fleet_halt_mid_step_rolls_the_node_back_and_lifts_its_freeze() {
    let rt = runtime();
    let Some(etcd) = rt.block_on(EtcdServer::start()) else {
        return;
    };
    let extra: &'static str = Box::leak(
        format!("\n[fleet]\netcd = [\"{}\"]\ncluster = \"h\"\n", etcd.url()).into_boxed_str(),
    );
    let Some(node) = Node::start(NodeOptions {
        bake: "60s",
        extra,
        ..NodeOptions::default()
    }) else {
        return;
    };
    let client = rt.block_on(etcd.client());
    let keys = Keys::new("h");
    let mut agent = Agent::start(&node, &rt, &client, &keys, 1);
    let intent = NodeRecord::intent("w1", "operator-image", "v1.1.0");
    rt.block_on(node::write_intent(&client, &keys, 1, &intent, None))
        .unwrap()
        .expect("intent written");
    // In its 60 s bake, on the new value.
    let started = Instant::now();
    while node.current("operator-image") != "v1.1.0" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the step never applied"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (out, _) = node.run(&["fleet", "halt", "--reason", "incident 7"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let halted = Instant::now();
    let (done, _) = wait_final(&rt, &client, &keys, Duration::from_secs(60));
    assert_eq!(done.phase, NodePhase::RolledBack, "{done:?}");
    assert!(
        halted.elapsed() < Duration::from_secs(40),
        "rolled back by the halt, not at the end of the bake ({:?})",
        halted.elapsed()
    );
    assert!(
        done.reason
            .clone()
            .unwrap_or_default()
            .contains("incident 7"),
        "{done:?}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
    // The agent's own freeze is gone once the step ended; the cluster halt stays.
    let (_, status) = node.run(&["status"]);
    assert_eq!(status["frozen"], Value::Null, "{status:#}");
    let (_, st) = node.run(&["fleet", "status"]);
    assert_eq!(st["halt"]["reason"], "incident 7", "{st:#}");

    // While halted a new intent is not claimed.
    let (_, cur) = rt.block_on(node::read(&client, &keys, 1)).unwrap().unwrap();
    let next = NodeRecord::intent("w2", "operator-image", "v1.1.0");
    rt.block_on(node::write_intent(&client, &keys, 1, &next, Some(cur)))
        .unwrap()
        .expect("intent written");
    std::thread::sleep(Duration::from_secs(3));
    let (r, _) = rt.block_on(node::read(&client, &keys, 1)).unwrap().unwrap();
    assert_eq!(r.phase, NodePhase::Intent, "{r:?}");

    // SIGTERM: exit 0 and the presence revoked at once (not after the lease's 5 s TTL).
    agent.signal("TERM");
    let stopped = Instant::now();
    let status = agent.wait_exit(
        stopped,
        Duration::from_secs(10),
        "the agent ignored SIGTERM",
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        !agent_alive(&rt, &client, &keys, 1),
        "the agent's key outlived its exit"
    );
}

//! Rollouts on the process localnet with the command driver: a good version is promoted, every
//! bad version is rolled back with the baseline re-verified, one rollout at a time, plan files.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain};

/// The gate that failed in a decision record.
fn failed_gate(record: &Value) -> String {
    record["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["verdict"] == "fail"))
        .map(|g| g["name"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Roll out `layer=version`, expect a rollback caused by a gate whose name starts with one of
/// `gates`, the baseline re-verified, and the layer back on its baseline value.
fn expect_rolled_back(layer: &str, version: &str, gates: &[&str]) {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let before = node.current(layer);
    let (out, record) = node.run(&["rollout", &format!("{layer}={version}"), "--yes"]);
    assert_eq!(code(&out), 4, "{version}: {}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back", "{record}");
    let gate = failed_gate(&record);
    assert!(
        gates.iter().any(|g| gate.starts_with(g)),
        "{version}: failing gate {gate:?} not in {gates:?}: {record:#}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert!(
        record["rollback"]["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == format!("restored:{layer}") && g["verdict"] == "pass"),
        "{record:#}"
    );
    assert_eq!(
        node.current(layer),
        before,
        "the layer must be back on its baseline value"
    );
    // The decision record is in the journal, with the failing gate and its evidence.
    let id = record["rollout_id"].as_str().unwrap();
    let (out, shown) = node.run(&["show", id]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let text = shown.to_string();
    assert!(
        text.contains(&gate) && text.contains("rolled_back"),
        "{shown:#}"
    );
}

#[test]
fn good_version_is_promoted_and_becomes_known_good() {
    let Some(node) = Node::start(NodeOptions {
        bake: "2s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let kyc_pid = std::fs::read_to_string(node.sim_dir.join("pids/kyc.pid")).unwrap();
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted");
    assert_eq!(record["layer"], "operator-image");
    assert_eq!(record["from"], "v1.0.0");
    assert_eq!(record["to"], "v1.1.0");
    // No gate failed. Some bake signals are inconclusive here, which does not block a promotion:
    // latency comparisons a 2 s bake has too few samples for (the default `no_data` policy), and
    // restarts and memory, which the command driver cannot observe.
    let gates = record["gates"].as_array().unwrap();
    assert!(gates.iter().all(|g| g["verdict"] != "fail"), "{record:#}");
    assert!(
        gates
            .iter()
            .filter(|g| g["verdict"] == "inconclusive")
            .all(|g| g["name"].as_str().unwrap().starts_with("bake:")),
        "{record:#}"
    );
    assert!(
        record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "stable" && g["verdict"] == "pass"),
        "{record:#}"
    );
    assert!(
        record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"].as_str().unwrap().starts_with("bake:")),
        "{record:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.1.0");
    let promoted = record["promoted_baseline_id"].as_str().unwrap().to_string();
    // The new known-good baseline carries what its bake measured, not the old baseline's trends.
    let (_, old) = node.run(&["baseline", "show", record["baseline_id"].as_str().unwrap()]);
    let (_, new) = node.run(&["baseline", "show", &promoted]);
    assert!(new["trends"]["latency_ms"].is_object(), "{new:#}");
    assert_ne!(new["trends"], old["trends"], "{new:#}");
    let (_, status) = node.run(&["status"]);
    assert_eq!(
        status["last_known_good"]["id"],
        promoted.as_str(),
        "{status:#}"
    );
    let (_, history) = node.run(&["history"]);
    assert_eq!(history["rollouts"][0]["outcome"], "promoted", "{history:#}");
    // Only the operator restarted: the KYC service kept its process.
    assert_eq!(
        std::fs::read_to_string(node.sim_dir.join("pids/kyc.pid")).unwrap(),
        kyc_pid,
        "kyc was restarted"
    );
    // Rolling out the value it already has is refused: nothing to change.
    let (out, _) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
}

#[test]
fn slow_start_within_the_deadline_is_promoted() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-slow-start", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let readiness = record["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "readiness:operator")
        .unwrap()
        .clone();
    let green_at = readiness["evidence"]["green_at_s"].as_f64().unwrap();
    assert!(
        green_at >= 3.0,
        "a slow start is only green after its start-up: {readiness}"
    );
}

#[test]
fn stalled_request_index_rolls_back() {
    expect_rolled_back(
        "operator-image",
        "v1.1.0-stall-request",
        &["progression:requestIndex"],
    );
}

#[test]
fn stalled_last_tx_rolls_back() {
    expect_rolled_back("operator-image", "v1.1.0-stall-tx", &["progression:lastTx"]);
}

#[test]
fn crash_loop_rolls_back() {
    expect_rolled_back(
        "operator-image",
        "v1.1.0-crash-loop",
        &["readiness:", "component:"],
    );
}

#[test]
fn crash_looping_kyc_rolls_back() {
    expect_rolled_back(
        "kyc-image",
        "v1.1.0-crash-loop",
        &["readiness:kyc", "component:"],
    );
}

#[test]
fn new_attestation_fault_rolls_back() {
    expect_rolled_back("operator-image", "v1.1.0-attestation-fault", &["faults"]);
}

#[test]
fn new_registration_fault_rolls_back() {
    expect_rolled_back("operator-image", "v1.1.0-registration-fault", &["faults"]);
}

#[test]
fn sgx_build_flags_differing_from_runtime_roll_back() {
    expect_rolled_back("operator-image", "v1.1.0-sgx-debug", &["environment:sgx"]);
}

#[test]
fn unhealthy_kyc_rolls_back() {
    expect_rolled_back("kyc-image", "v1.1.0-unhealthy", &["readiness:kyc"]);
}

#[test]
fn concurrent_rollout_exits_6_and_interrupted_one_must_be_resumed() {
    let Some(node) = Node::start(NodeOptions {
        bake: "4s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let mut first = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first rollout holds the lock.
    let started = Instant::now();
    loop {
        let (_, status) = node.run(&["status"]);
        if status["active_rollout"].is_object() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "first rollout never started: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, _) = node.run(&["rollout", "kyc-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert!(first.wait().unwrap().success());
}

#[test]
fn plan_with_a_bad_middle_step_stops_there_keeping_earlier_steps() {
    let extra = "\n[layers.operator-binary]\nkind = \"binary\"\ncomponents = [\"operator\"]\n";
    let Some(node) = Node::start(NodeOptions {
        extra,
        ..NodeOptions::default()
    }) else {
        return;
    };
    let plan = node.dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[step]]\nlayer = \"kyc-image\"\nvalue = \"v1.1.0\"\n\n[[step]]\nlayer = \"operator-image\"\nvalue = \"v1.1.0-stall-request\"\n\n[[step]]\nlayer = \"operator-binary\"\nvalue = \"v1.1.0\"\n",
    )
    .unwrap();
    let (out, doc) = node.run(&["rollout", "--plan", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let rollouts = doc["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 2, "the third step must not run: {doc:#}");
    assert_eq!(rollouts[0]["outcome"], "promoted");
    assert_eq!(rollouts[1]["outcome"], "rolled_back");
    // The first step is kept and is the known-good baseline the second rolled back to.
    assert_eq!(node.current("kyc-image"), "v1.1.0");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    assert!(
        rollouts[0]["promoted_baseline_id"].is_string()
            && rollouts[1]["rollback"]["verified"] == true,
        "{doc:#}"
    );

    // A plan step bundling two layers is refused before anything runs.
    std::fs::write(
        &plan,
        "[[step]]\nlayer = \"kyc-image\"\nvalue = \"v1.0.0\"\nconfig = \"x.toml\"\n",
    )
    .unwrap();
    let (out, _) = node.run(&["rollout", "--plan", plan.to_str().unwrap(), "--yes"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    assert_eq!(node.current("kyc-image"), "v1.1.0");
}

#[test]
fn requested_rollback_restores_and_reverifies_the_baseline() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let baseline = record["baseline_id"].as_str().unwrap().to_string();
    let (out, rb) = node.run(&["rollback"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(rb["outcome"], "rolled_back");
    assert_eq!(rb["baseline_id"], baseline.as_str());
    assert_eq!(rb["rollback"]["verified"], true);
    assert_eq!(node.current("operator-image"), "v1.0.0");
    let (out, _) = node.run(&["rollback", "--to", "b-does-not-exist"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
}

#[test]
fn refuses_to_start_from_a_node_that_is_not_ready() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    // Stop the chain: the preflight must refuse and change nothing.
    let pid = std::fs::read_to_string(node.sim_dir.join("pids/chain.pid")).unwrap();
    std::process::Command::new("kill")
        .arg(pid.trim())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert_eq!(record["outcome"], "refused");
    assert!(
        record["reason"].as_str().unwrap().contains("chain"),
        "{record:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

#[test]
fn plan_shows_restart_set_gates_and_checks_and_changes_nothing() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let kyc_pid = std::fs::read_to_string(node.sim_dir.join("pids/kyc.pid")).unwrap();
    let op_pid = std::fs::read_to_string(node.sim_dir.join("pids/operator.pid")).unwrap();
    let (out, plan) = node.run(&["plan", "operator-image=v1.1.0"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(plan["ok"], true, "{plan:#}");
    assert_eq!(plan["from"], "v1.0.0");
    assert_eq!(plan["to"], "v1.1.0");
    assert_eq!(
        plan["restart"],
        serde_json::json!([{"component": "operator", "service": "operator"}]),
        "only the layer's component restarts: {plan:#}"
    );
    let gates: Vec<&str> = plan["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for expected in [
        "readiness:operator",
        "readiness:kyc",
        "progression:requestIndex",
        "progression:lastTx",
        "stable",
        "dependency:*",
        "faults",
    ] {
        assert!(gates.contains(&expected), "{expected} missing: {gates:?}");
    }
    assert!(
        plan["gates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| !g["threshold"].as_str().unwrap().is_empty()),
        "{plan:#}"
    );
    // Every read-only check ran now, each group of them.
    let checks = plan["checks"].as_array().unwrap();
    for group in ["prerequisites", "readiness", "baseline"] {
        assert!(
            checks.iter().any(|c| c["group"] == group),
            "no {group} check: {plan:#}"
        );
    }
    assert!(checks.iter().all(|c| c["status"] != "fail"), "{plan:#}");
    assert!(
        checks.iter().filter(|c| c["status"] == "pass").count() >= 15,
        "{plan:#}"
    );
    // Nothing changed: same value, same processes, nothing journaled.
    assert_eq!(node.current("operator-image"), "v1.0.0");
    for (c, pid) in [("kyc", &kyc_pid), ("operator", &op_pid)] {
        assert_eq!(
            &std::fs::read_to_string(node.sim_dir.join(format!("pids/{c}.pid"))).unwrap(),
            pid,
            "{c} was restarted by a dry run"
        );
    }
    let (_, history) = node.run(&["history"]);
    assert_eq!(
        history["rollouts"].as_array().unwrap().len(),
        0,
        "{history}"
    );
    // Two changes in one plan are refused like in a rollout.
    let (out, _) = node.run(&["plan", "operator-image=v1.1.0", "kyc-image=v1.1.0"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
}

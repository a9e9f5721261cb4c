//! Rollouts with a bake period on the process localnet: versions that pass every readiness gate
//! but are silently worse are caught in the bake and rolled back, with the failing signal and
//! its numbers in the decision record (`rollgate show`); a healthy version passes its bake.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain};

const OPTIONS: NodeOptions = NodeOptions {
    window: "4s",
    bake: "5s",
    readiness_deadline: "15s",
    traffic: true,
    idle_progression: "fail",
    extra: "",
    status_shape: "tidy",
    sim_args: &[],
};

fn start() -> Option<Node> {
    let node = Node::start(OPTIONS)?;
    // A fresh database grows in jumps for its first seconds; a real baseline is frozen on a node
    // that has run for a while.
    node.age_operator_table();
    std::thread::sleep(Duration::from_secs(3));
    Some(node)
}

fn bake_gate<'a>(record: &'a Value, name: &str) -> &'a Value {
    let gates = record["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("no gates: {record:#}"));
    let named = |g: &&Value| g["name"].as_str().is_some_and(|n| n.starts_with(name));
    gates
        .iter()
        .filter(named)
        .find(|g| g["verdict"] == "fail")
        .or_else(|| gates.iter().find(named))
        .unwrap_or_else(|| panic!("no gate {name}: {record:#}"))
}

fn expect_caught_in_bake(version: &str, gate: &str) -> Value {
    let Some(node) = start() else {
        return Value::Null;
    };
    let (out, record) = node.run(&["rollout", &format!("operator-image={version}"), "--yes"]);
    assert_eq!(code(&out), 4, "{version}: {}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("bake: {gate}")),
        "{record:#}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    let g = bake_gate(&record, gate).clone();
    assert_eq!(g["verdict"], "fail", "{g:#}");
    // The readiness gates passed before the bake.
    assert!(
        record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "readiness:operator" && g["verdict"] == "pass"),
        "{record:#}"
    );
    let id = record["rollout_id"].as_str().unwrap();
    let (out, shown) = node.run(&["show", id]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert!(shown.to_string().contains(gate), "{shown:#}");
    g
}

#[test]
fn renamed_field_is_rolled_back_in_the_bake() {
    let g = expect_caught_in_bake("v1.1.0-renamed-field", "bake:alerts:fields");
    if g.is_null() {
        return;
    }
    let detail = g["detail"].as_str().unwrap();
    assert!(
        detail.contains("/raftMetrics/voterIds is missing (was array)"),
        "{detail}"
    );
}

#[test]
fn slow_version_is_rolled_back_in_the_bake() {
    let g = expect_caught_in_bake("v1.1.0-slow", "bake:latency:");
    if g.is_null() {
        return;
    }
    assert!(
        g["evidence"]["comparison"]["ratio"].as_f64().unwrap() > 3.0,
        "{g:#}"
    );
}

#[test]
fn bloat_version_is_rolled_back_in_the_bake() {
    let g = expect_caught_in_bake("v1.1.0-bloat", "bake:storage:postgres:");
    if g.is_null() {
        return;
    }
    assert!(g["evidence"]["ratio"].as_f64().unwrap() > 3.0, "{g:#}");
}

#[test]
fn healthy_version_passes_its_bake_and_is_promoted() {
    let Some(node) = start() else { return };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    let gates = record["gates"].as_array().unwrap();
    assert!(
        gates
            .iter()
            .any(|g| g["name"] == "bake:stability" && g["verdict"] == "pass"),
        "{record:#}"
    );
    assert!(!gates.iter().any(|g| g["verdict"] == "fail"), "{record:#}");
}

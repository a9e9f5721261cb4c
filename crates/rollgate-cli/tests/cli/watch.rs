//! `rollgate watch` on the process localnet: exit 0 on a healthy node, exit 7 with the finding
//! in the JSON document once the operator runs a degraded (8x slower) version. Read-only: the
//! layer keeps its value and no rollout is journaled.

use std::process::Command;
use std::time::Duration;

use crate::fixture::{Node, NodeOptions, code, explain, sim_bin};

#[test]
fn watch_exits_0_when_healthy_and_7_on_a_degraded_node() {
    let Some(node) = Node::start(NodeOptions {
        window: "4s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    // Without a known-good baseline there is nothing to watch against: a usage error.
    let (out, _) = node.run(&["watch", "--for", "1s"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));

    let (out, frozen) = node.run(&["baseline", "freeze"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let baseline_id = frozen["baseline_id"].as_str().unwrap().to_string();

    let (out, report) = node.run(&["watch", "--for", "4s"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["baseline_id"], baseline_id.as_str());
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    assert!(
        report["gates"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["name"] == "bake:latency:readiness:operator")),
        "{report:#}"
    );

    // Degrade the node behind rollgate's back.
    let sim = |args: &[&str]| {
        let out = Command::new(sim_bin())
            .args(args)
            .arg("--dir")
            .arg(&node.sim_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rollgate-sim {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sim(&["localnet", "set", "operator-image", "v1.1.0-slow"]);
    sim(&["localnet", "restart", "operator"]);
    std::thread::sleep(Duration::from_millis(500));

    let (out, report) = node.run(&["watch", "--for", "4s"]);
    assert_eq!(code(&out), 7, "{}", explain(&out));
    assert_eq!(report["ok"], false, "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    let latency = findings
        .iter()
        .find(|g| g["name"] == "bake:latency:readiness:operator")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(latency["verdict"], "fail");
    assert!(
        latency["evidence"]["comparison"]["ratio"].as_f64().unwrap() > 3.0,
        "{latency:#}"
    );
    // Read-only: the layer keeps the value set behind rollgate's back, and no rollout was recorded.
    assert_eq!(node.current("operator-image"), "v1.1.0-slow");
    let (out, history) = node.run(&["history"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(
        history["rollouts"].as_array().map(Vec::len),
        Some(0),
        "{history:#}"
    );
}

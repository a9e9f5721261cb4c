//! Quiet restarts against a real Alertmanager: the rollout's silence exists while the node
//! restarts and verifies, is expired once verify is decided, and a SIGKILL mid-rollout followed
//! by `rollgate resume` leaves no silence behind.

use std::process::Stdio;

use rollgate_sim::monitoring::Alertmanager;
use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

/// The silences Alertmanager holds for `rollout_id` (by the comment rollgate writes), as
/// `(state, matchers)`.
fn silences_of(am: &Alertmanager, rollout_id: &str) -> Vec<(String, Value)> {
    let body = am.get("/api/v2/silences").expect("list silences");
    let list: Vec<Value> = serde_json::from_str(&body).expect("silences JSON");
    list.into_iter()
        .filter(|s| {
            s["comment"]
                .as_str()
                .is_some_and(|c| c.contains(rollout_id))
        })
        .map(|s| {
            (
                s["status"]["state"].as_str().unwrap_or("").to_string(),
                s["matchers"].clone(),
            )
        })
        .collect()
}

fn node_with_alertmanager() -> Option<(Node, Alertmanager)> {
    let node = Node::start(NodeOptions::default())?;
    let am = Alertmanager::start()?;
    node.append_config(&format!(
        r#"
[alertmanager]
url = "{}"
silence = true
matchers = ['node="node0"', 'severity=~"page|warn"']
"#,
        am.url()
    ));
    Some((node, am))
}

/// The id of the active rollout, from `status`.
fn active_rollout(node: &Node) -> String {
    let (_, status) = node.run(&["status"]);
    status["active_rollout"]["rollout_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no active rollout: {status:#}"))
        .to_string()
}

#[test]
fn the_restart_is_silenced_until_verify_is_decided() {
    let Some((node, am)) = node_with_alertmanager() else {
        return;
    };
    let mut child = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    node.wait_for_step("verify", &mut child);
    let id = active_rollout(&node);
    let during = silences_of(&am, &id);
    assert_eq!(during.len(), 1, "{during:?}");
    assert_eq!(during[0].0, "active", "{during:?}");
    let matchers = during[0].1.to_string();
    assert!(
        matchers.contains("\"name\":\"node\"") && matchers.contains("\"value\":\"node0\""),
        "{matchers}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let after = silences_of(&am, &id);
    assert!(
        !after.is_empty() && after.iter().all(|(state, _)| state == "expired"),
        "{after:?}"
    );
    // Both steps are in the journal, before the rollout's end.
    let (_, shown) = node.run(&["show", &id]);
    let kinds = step_kinds(&shown);
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    assert!(pos("silence") < pos("restart"), "{kinds:?}");
    assert!(pos("verify") < pos("unsilence"), "{kinds:?}");
}

/// Kill rollgate at `crash_at` while rolling out `version`, then resume: the silence the
/// killed process left is active in between and expired after, whichever way resume goes.
fn crash_then_resume(version: &str, crash_at: &str, outcome: &str) {
    let Some((node, am)) = node_with_alertmanager() else {
        return;
    };
    node.killed_at(
        &["rollout", &format!("operator-image={version}"), "--yes"],
        crash_at,
    );
    let id = active_rollout(&node);
    let left = silences_of(&am, &id);
    assert!(
        left.iter().any(|(state, _)| state == "active"),
        "{crash_at}: the killed rollout left no active silence: {left:?}"
    );
    let (out, record) = node.run(&["resume"]);
    assert_eq!(record["outcome"], outcome, "{}", explain(&out));
    let after = silences_of(&am, &id);
    assert!(
        after.iter().all(|(state, _)| state == "expired"),
        "{crash_at}: a silence survived the resume: {after:?}"
    );
}

/// Resume restarts the new version (a new silence of its own) and promotes it.
#[test]
fn a_silence_left_by_a_crash_before_the_restart_is_expired_by_resume() {
    crash_then_resume("v1.1.0", "restart:intent", "promoted");
}

/// Resume goes straight to the rollback (verify's failure was recorded): no restart of the new
/// version, so only resume's own clean-up expires the killed process's silence.
#[test]
fn a_silence_left_by_a_crash_after_a_failed_verify_is_expired_by_resume() {
    crash_then_resume("v1.1.0-stall-request", "verify:outcome", "rolled_back");
}

//! Crash safety: rollgate is killed with SIGKILL right after each journal record of a rollout
//! that promotes and of one that rolls back (`ROLLGATE_CRASH_AT=<step>:<intent|outcome>`), then
//! `rollgate resume` runs. Every case must end promoted or on a re-verified baseline (or refused
//! with nothing changed), with no interrupted rollout left and no baseline lost.

use std::os::unix::process::ExitStatusExt;

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

fn baselines(node: &Node) -> Vec<String> {
    let (out, list) = node.run(&["baseline", "list"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let items = list
        .get("baselines")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| list.as_array().cloned())
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect()
}

/// A node with short progression windows, for the crash cases.
fn quick_node() -> Option<Node> {
    Node::start(NodeOptions {
        window: "1500ms",
        ..NodeOptions::default()
    })
}

fn crash_then_resume(version: &str, crash_at: &str) {
    let Some(node) = Node::start(NodeOptions {
        bake: "1s",
        window: "1500ms",
        ..NodeOptions::default()
    }) else {
        return;
    };
    node.killed_at(
        &["rollout", &format!("operator-image={version}"), "--yes"],
        crash_at,
    );
    let before = baselines(&node);

    let (out, record) = node.run(&["resume"]);
    let rc = code(&out);
    if crash_at == "finish:outcome" {
        // The outcome was already durable: nothing to resume, and the history has it.
        assert_eq!(rc, 2, "{}", explain(&out));
        let (_, history) = node.run(&["history"]);
        assert!(history["rollouts"][0]["outcome"].is_string(), "{history:#}");
    } else {
        match record["outcome"].as_str() {
            Some("promoted") => {
                assert_eq!(rc, 0, "{}", explain(&out));
                assert_eq!(node.current("operator-image"), version);
                assert_eq!(version, "v1.1.0", "only the good version may be promoted");
            }
            Some("rolled_back") => {
                assert_eq!(rc, 4, "{}", explain(&out));
                assert_eq!(record["rollback"]["verified"], true, "{record:#}");
                assert_eq!(node.current("operator-image"), "v1.0.0");
            }
            Some("refused") => {
                assert_eq!(rc, 3, "{}", explain(&out));
                assert!(
                    crash_at.starts_with("freeze_baseline"),
                    "{crash_at}: refused after the change: {record:#}"
                );
                assert_eq!(node.current("operator-image"), "v1.0.0");
            }
            other => panic!(
                "{crash_at}: unexpected outcome {other:?}: {}",
                explain(&out)
            ),
        }
    }
    node.assert_no_active_rollout(crash_at);
    let after = baselines(&node);
    for b in &before {
        assert!(after.contains(b), "{crash_at}: baseline {b} was lost");
    }
}

macro_rules! crash_tests {
    ($($name:ident: $version:expr, $at:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_then_resume($version, $at);
        }
    )*};
}

crash_tests! {
    promote_path_freeze_intent: "v1.1.0", "freeze_baseline:intent";
    promote_path_freeze_outcome: "v1.1.0", "freeze_baseline:outcome";
    promote_path_apply_intent: "v1.1.0", "apply:intent";
    promote_path_apply_outcome: "v1.1.0", "apply:outcome";
    promote_path_restart_intent: "v1.1.0", "restart:intent";
    promote_path_restart_outcome: "v1.1.0", "restart:outcome";
    promote_path_verify_intent: "v1.1.0", "verify:intent";
    promote_path_verify_outcome: "v1.1.0", "verify:outcome";
    promote_path_bake_intent: "v1.1.0", "bake:intent";
    promote_path_bake_outcome: "v1.1.0", "bake:outcome";
    promote_path_promote_intent: "v1.1.0", "promote:intent";
    promote_path_promote_outcome: "v1.1.0", "promote:outcome";
    promote_path_finish: "v1.1.0", "finish:outcome";
    rollback_path_verify_outcome: "v1.1.0-stall-request", "verify:outcome";
    rollback_path_restore_intent: "v1.1.0-stall-request", "rollback_restore:intent";
    rollback_path_restore_outcome: "v1.1.0-stall-request", "rollback_restore:outcome";
    rollback_path_restart_intent: "v1.1.0-stall-request", "rollback_restart:intent";
    rollback_path_restart_outcome: "v1.1.0-stall-request", "rollback_restart:outcome";
    rollback_path_verify_rollback_intent: "v1.1.0-stall-request", "rollback_verify:intent";
    rollback_path_verify_rollback_outcome: "v1.1.0-stall-request", "rollback_verify:outcome";
    rollback_path_finish: "v1.1.0-stall-request", "finish:outcome";
}

/// Killed once in the forward path and once more while `resume` rolls back: a second `resume`
/// still ends on the verified baseline.
#[test]
fn crash_during_resume_is_resumed_again() {
    let Some(node) = quick_node() else {
        return;
    };
    node.killed_at(
        &["rollout", "operator-image=v1.1.0-stall-request", "--yes"],
        "verify:outcome",
    );
    node.killed_at(&["resume"], "rollback_restart:intent");
    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Killed inside a requested rollback: resume finishes it on the verified baseline.
#[test]
fn crash_during_a_requested_rollback() {
    let Some(node) = quick_node() else {
        return;
    };
    let (out, _) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    node.killed_at(&["rollback"], "rollback_verify:intent");
    let (out, record) = node.run(&["resume"]);
    assert!(matches!(code(&out), 0 | 4), "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Killed inside the rollback a failed bake started (the alert contract broke).
#[test]
fn crash_during_a_rollback_triggered_by_the_bake() {
    let Some(node) = quick_node() else {
        return;
    };
    node.killed_at(
        &[
            "rollout",
            "operator-image=v1.1.0-renamed-field",
            "--bake",
            "3s",
            "--yes",
        ],
        "rollback_restore:outcome",
    );
    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    let (_, history) = node.run(&["show", record["rollout_id"].as_str().unwrap()]);
    assert!(
        step_kinds(&history).contains(&"bake"),
        "the bake ran first: {history:#}"
    );
}

/// `serve` started the rollout and was killed with it: `rollgate resume` finishes it.
#[test]
fn crash_during_a_serve_started_rollout() {
    use std::io::{Read, Write};
    let Some(node) = Node::start(NodeOptions {
        window: "1500ms",
        extra: "\n[serve]\ntoken = \"crash-test-token\"\n",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = node
        .rollgate()
        .args(["serve", "--listen", &listen])
        .env("ROLLGATE_CRASH_AT", "verify:intent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut stream = loop {
        match std::net::TcpStream::connect(&listen) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(20) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => {
                let _ = serve.kill();
                panic!("serve never listened: {e}");
            }
        }
    };
    let body = r#"{"layer":"operator-image","value":"v1.1.0"}"#;
    write!(
        stream,
        "POST /api/v1/rollouts HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer crash-test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 2"), "{answer}");
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = serve.kill();
            panic!("serve was not killed at verify:intent");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.signal(), Some(9));
    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.1.0");
}

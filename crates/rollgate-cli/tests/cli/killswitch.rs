//! The kill switch and the webhook, end to end: a frozen node refuses rollouts (exit 6), a freeze
//! during a rollout rolls it back at its next poll or step boundary, and the configured webhook
//! hears the start and the decision of a rollout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

#[test]
fn a_frozen_node_refuses_rollouts_and_a_freeze_mid_rollout_rolls_back() {
    let Some(node) = Node::start(NodeOptions {
        bake: "30s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let (out, info) = node.run(&["freeze", "--reason", "exchange maintenance"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(info["reason"], "exchange maintenance");
    let (_, status) = node.run(&["status"]);
    assert_eq!(
        status["frozen"]["reason"], "exchange maintenance",
        "{status:#}"
    );

    // Frozen: refused before anything is journaled or changed.
    let (out, doc) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert!(
        doc.to_string().contains("exchange maintenance"),
        "the refusal names the freeze: {doc}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
    let (_, history) = node.run(&["history"]);
    assert_eq!(
        history["rollouts"].as_array().unwrap().len(),
        0,
        "{history}"
    );

    let (out, _) = node.run(&["unfreeze"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));

    // A rollout in its bake, then a freeze: it rolls back and says why.
    let mut child = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    node.wait_for_step("bake", &mut child);
    // The holder refreshes the lock's heartbeat while it works (every 5 s).
    let started = Instant::now();
    loop {
        let (_, status) = node.run(&["status"]);
        let holder = &status["lock"]["holder"];
        assert_eq!(status["lock"]["state"], "held", "{status:#}");
        if holder["heartbeat"] != holder["since"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the heartbeat never moved: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (out, _) = node.run(&["freeze", "--reason", "incident 4711"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("kill switch:") && reason.contains("incident 4711"),
        "{reason}"
    );
    assert!(
        record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "kill_switch" && g["verdict"] == "fail"),
        "{record:#}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    // A rollback stays possible while frozen; a rollout still does not.
    let (out, _) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 6, "{}", explain(&out));
}

/// A webhook receiver on loopback: every POST body, in order.
fn receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                let _ = tx.send(v);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, rx)
}

#[test]
fn the_webhook_hears_the_start_and_the_decision() {
    let (url, events) = receiver();
    let extra: &'static str = Box::leak(format!("\n[serve]\nwebhook_url = \"{url}\"\n").into());
    let Some(node) = Node::start(NodeOptions {
        extra,
        ..NodeOptions::default()
    }) else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-stall-request", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    // The CLI flushed before exiting: both events are already here.
    let first = events.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first["event"], "rollout_started", "{first:#}");
    assert_eq!(first["rollout_id"], record["rollout_id"]);
    assert_eq!(first["to"], "v1.1.0-stall-request");
    assert_eq!(second["event"], "rolled_back", "{second:#}");
    assert_eq!(second["rollout_id"], record["rollout_id"]);
    assert_eq!(
        second["failing_gate"]["name"], "progression:requestIndex",
        "{second:#}"
    );
    assert_eq!(second["rollback_verified"], true, "{second:#}");
}

#[test]
fn a_freeze_while_the_gates_wait_rolls_back_at_the_next_poll() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    // The slow-start version answers 421 for about 5 s: the gates are still waiting on it.
    let mut child = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0-slow-start", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    node.wait_for_step("verify", &mut child);
    let (out, _) = node.run(&["freeze", "--reason", "incident 4712"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("kill switch: node frozen"),
        "{record:#}"
    );
    // Stopped at the next poll, while the operator was still starting (not at a later step
    // boundary, when it would have been green).
    let operator = record["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "readiness:operator")
        .unwrap();
    assert_eq!(operator["verdict"], "inconclusive", "{record:#}");
    // Stopped while verifying: no bake ran, and the baseline was re-verified.
    let kinds = step_kinds(&record);
    assert!(
        kinds.contains(&"verify") && !kinds.contains(&"bake"),
        "{kinds:?}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

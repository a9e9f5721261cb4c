//! The safety promise under adversarial conditions (issue 11): a rollout ends promoted only when
//! every gate passed on the value that really runs, or back on a verified baseline, and it never
//! hangs. Each test here failed on the code before its fix.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

fn node(opts: NodeOptions) -> Option<Node> {
    Node::start(opts)
}

fn spawn(node: &Node, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = node.rollgate();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn finish(child: Child) -> (std::process::Output, Value) {
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// Wait for a child at most `limit`; kill it and fail when it runs longer (a hang).
fn finish_within(mut child: Child, limit: Duration, what: &str) -> (std::process::Output, Value) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}: still running after {limit:?}: {}", explain(&out));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    finish(child)
}

fn gate<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    record["gates"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)
}

/// Item 1: verify failed (the kill switch stopped it), the process died before the rollback
/// intent. The node is unfrozen and would now pass a second look; resume must still roll back.
#[test]
fn resume_after_a_recorded_verify_failure_rolls_back_without_reverifying() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    let mut child = spawn(
        &node,
        &["rollout", "operator-image=v1.1.0-slow-start", "--yes"],
        &[("ROLLGATE_CRASH_AT", "verify:outcome")],
    );
    node.wait_for_step("verify", &mut child);
    let (out, _) = node.run(&["freeze", "--reason", "incident 11"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (out, _) = finish(child);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{}", explain(&out));
    let (out, _) = node.run(&["unfreeze"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));

    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("verify failed: kill switch"),
        "the recorded verdict is the reason: {record:#}"
    );
    assert!(!step_kinds(&record).contains(&"verify"));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    node.assert_no_active_rollout("after resume");
}

/// Item 1: resume keeps the rollout's `--bake`.
#[test]
fn resume_keeps_the_rollouts_bake() {
    let Some(node) = node(NodeOptions {
        window: "1500ms",
        ..NodeOptions::default()
    }) else {
        return;
    };
    node.killed_at(
        &["rollout", "operator-image=v1.1.0", "--bake", "2s", "--yes"],
        "verify:intent",
    );
    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert!(
        step_kinds(&record).contains(&"bake"),
        "the 2s bake of the interrupted rollout ran: {record:#}"
    );
}

/// Item 1 and the crash matrix: a plan interrupted inside its second step is finished by
/// resume, then its remaining step runs.
#[test]
fn resume_continues_a_plan_from_the_interrupted_step() {
    let Some(node) = node(NodeOptions {
        window: "1500ms",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let plan = node.dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[step]]\nlayer = \"operator-image\"\nvalue = \"v1.1.0\"\n\n[[step]]\nlayer = \"kyc-image\"\nvalue = \"v1.1.0\"\n",
    )
    .unwrap();
    let plan_arg = plan.to_str().unwrap();
    // Killed at the verify intent of the *second* step: the first is promoted, the second is
    // interrupted after its change.
    node.killed_at(
        &["rollout", "--plan", plan_arg, "--yes"],
        "restart:intent@2",
    );
    assert_eq!(node.current("operator-image"), "v1.1.0");

    // A plan whose first step is interrupted goes on with the rest after resume.
    let (out, doc) = node.run(&["resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(node.current("kyc-image"), "v1.1.0", "{doc:#}");
    node.assert_no_active_rollout("after resume");

    let plan2 = node.dir.path().join("plan2.toml");
    std::fs::write(
        &plan2,
        "[[step]]\nlayer = \"kyc-image\"\nvalue = \"v1.0.0\"\n\n[[step]]\nlayer = \"operator-image\"\nvalue = \"v1.0.0\"\n",
    )
    .unwrap();
    node.killed_at(
        &["rollout", "--plan", plan2.to_str().unwrap(), "--yes"],
        "verify:intent",
    );
    let (out, doc) = node.run(&["resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(
        doc["rollouts"].as_array().map(Vec::len),
        Some(2),
        "the resumed step and the plan's remaining one: {doc:#}"
    );
    assert_eq!(node.current("kyc-image"), "v1.0.0");
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Item 4: an apply that "succeeds" without effect is a failed change, not a promotion.
#[test]
fn an_apply_without_effect_is_rolled_back_not_promoted() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    node.edit_config(
        "apply = \"rollgate-sim localnet set\"",
        "apply = \"case \\\"$ROLLGATE_VALUE\\\" in v1.1.0) true ;; *) rollgate-sim localnet set ;; esac\"",
    );
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let g = gate(&record, "applied:operator-image").expect("a read-back gate");
    assert_eq!(g["verdict"], "fail", "{record:#}");
    assert!(
        g["detail"].as_str().unwrap().contains("had no effect"),
        "{g:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Item 10: `baseline freeze` never marks an unverified value known-good.
#[test]
fn baseline_freeze_refuses_while_a_rollout_is_interrupted() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    node.killed_at(
        &["rollout", "operator-image=v1.1.0", "--yes"],
        "verify:intent",
    );
    let (_, before) = node.run(&["baseline", "list"]);
    let (out, _) = node.run(&["baseline", "freeze"]);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert!(explain(&out).contains("resume"), "{}", explain(&out));
    let (_, after) = node.run(&["baseline", "list"]);
    assert_eq!(before, after, "no baseline was added");
}

/// Item 11: the readiness deadline counts from the end of the driver's restart, not from
/// before it (an image pull or a slow stop must not eat into it).
#[test]
fn readiness_deadline_starts_when_the_restart_returns() {
    let Some(node) = node(NodeOptions {
        readiness_deadline: "8s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    // The restart takes 4 s before the operator starts; slow-start then answers 421 for 5 s:
    // 9 s from the change, 5 s from the restart's return.
    node.edit_config(
        "restart = \"rollgate-sim localnet restart\"",
        "restart = \"sleep 4; rollgate-sim localnet restart\"",
    );
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-slow-start", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
}

/// Item 9: a layer whose value cannot be read (a container gone mid-`up`) does not leave
/// `resume` failing with exit 1 for ever: it takes the restore path with the recorded value.
#[test]
fn resume_restores_when_the_current_value_cannot_be_read() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    let marker = node.dir.path().join("unreadable");
    node.edit_config(
        "current = \"rollgate-sim localnet current\"",
        &format!(
            "current = \"if [ -e {m} ]; then rm {m}; echo gone >&2; exit 1; fi; rollgate-sim localnet current\"",
            m = marker.display()
        ),
    );
    node.killed_at(
        &["rollout", "operator-image=v1.1.0-stall-request", "--yes"],
        "restart:outcome",
    );
    std::fs::write(&marker, "").unwrap();
    let (out, record) = node.run(&["resume"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");

    // The same for a requested rollback.
    let (out, _) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    std::fs::write(&marker, "").unwrap();
    let (out, record) = node.run(&["rollback"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Item 9: a restore that fails is exit 5 at once: nothing is restarted and no gate is waited
/// out on a state nobody knows.
#[test]
fn a_failed_restore_reports_exit_5_at_once() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    node.edit_config(
        "apply = \"rollgate-sim localnet set\"",
        "apply = \"case \\\"$ROLLGATE_VALUE\\\" in v1.0.0) echo disk full >&2; exit 1 ;; *) rollgate-sim localnet set ;; esac\"",
    );
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-stall-request", "--yes"]);
    assert_eq!(code(&out), 5, "{}", explain(&out));
    let kinds = step_kinds(&record);
    assert!(kinds.contains(&"rollback_restore"), "{kinds:?}");
    assert!(
        !kinds.contains(&"rollback_restart") && !kinds.contains(&"rollback_verify"),
        "no restart, no gates after a failed restore: {kinds:?}"
    );
    assert!(
        record["rollback"]["reason"]
            .as_str()
            .unwrap()
            .contains("restore of operator-image failed"),
        "{record:#}"
    );
}

/// Item 9: a journal that cannot be written during a rollback does not stop the rollback; the
/// node is restored and the outcome is exit 5 (the record is incomplete).
#[test]
fn a_journal_failure_during_the_rollback_still_restores_and_exits_5() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    let out = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0-stall-request", "--yes"])
        .env("ROLLGATE_JOURNAL_FAIL_FROM", "rollback_restore:intent")
        .output()
        .unwrap();
    assert_eq!(code(&out), 5, "{}", explain(&out));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("journal write failed"),
        "{record:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Item 2: every wait has a deadline. A driver whose log command hangs cannot hold a rollout:
/// the runner enforces the engine's deadline plus a grace on the wall clock.
#[test]
fn a_hanging_poll_cannot_hold_a_rollout() {
    let Some(node) = node(NodeOptions {
        readiness_deadline: "3s",
        window: "1500ms",
        ..NodeOptions::default()
    }) else {
        return;
    };
    // From the change on, every read of the logs hangs (longer than the driver's timeout).
    let marker = node.dir.path().join("hang");
    node.edit_config("timeout = \"60s\"", "timeout = \"600s\"");
    node.edit_config(
        "logs = \"awk",
        &format!(
            "logs = \"if [ -e {} ]; then sleep 300; fi; awk",
            marker.display()
        ),
    );
    node.edit_config(
        "apply = \"rollgate-sim localnet set\"",
        &format!(
            "apply = \"touch {}; rollgate-sim localnet set\"",
            marker.display()
        ),
    );
    let child = spawn(&node, &["rollout", "operator-image=v1.1.0", "--yes"], &[]);
    let (out, record) = finish_within(child, Duration::from_secs(90), "rollout");
    assert!(
        matches!(code(&out), 4 | 5),
        "rolled back on the deadline: {}",
        explain(&out)
    );
    assert_ne!(record["outcome"], "promoted", "{record:#}");
    node.assert_no_active_rollout("after the deadline");
}

/// Item 12: verify's gate polls are latency samples of the new version. A bake too short to
/// sample latency by itself (1 s at 500 ms) still catches a version that is 40 ms slower on every
/// answer, instead of calling latency inconclusive and promoting it.
#[test]
fn a_short_bake_judges_latency_with_verifys_samples() {
    let Some(node) = node(NodeOptions {
        window: "4s",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let (out, record) = node.run(&[
        "rollout",
        "operator-image=v1.1.0-slow",
        "--bake",
        "1s",
        "--yes",
    ]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("bake: bake:latency:readiness:operator"),
        "{record:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

/// Item 6: one meaning per fact, on a node whose status document is not the simulator's tidy
/// shape: `false` and `""` for "no fault", `requestIndex` a decimal string counting past 2^64.
/// A good version is promoted (no "new fault" from `false`, the counter seen to increase), and a
/// stalled one is still rolled back.
#[test]
fn a_node_with_terse_status_values_is_judged_the_same_way() {
    let Some(node) = node(NodeOptions {
        status_shape: "terse",
        ..NodeOptions::default()
    }) else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let progression = gate(&record, "progression:requestIndex").expect("gate");
    assert_eq!(progression["verdict"], "pass", "{progression:#}");
    let first = progression["evidence"]["first"]
        .as_str()
        .unwrap_or_default();
    assert!(
        first.starts_with("1844674407370955"),
        "the counter is past 2^64: {progression:#}"
    );
    assert_eq!(gate(&record, "faults").unwrap()["verdict"], "pass");

    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-stall-request", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("progression:requestIndex"),
        "{record:#}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
}

/// Item 4: what is promoted is what was verified. The layer changed during the bake (someone
/// set another version by hand): the rollout rolls back instead of promoting either value.
#[test]
fn a_layer_changed_during_the_bake_is_not_promoted() {
    let Some(node) = node(NodeOptions::default()) else {
        return;
    };
    let mut child = spawn(
        &node,
        &["rollout", "operator-image=v1.1.0", "--bake", "3s", "--yes"],
        &[],
    );
    node.wait_for_step("bake", &mut child);
    let set = std::process::Command::new(crate::fixture::sim_bin())
        .args(["localnet", "set", "operator-image", "v1.1.0-slow", "--dir"])
        .arg(&node.sim_dir)
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", explain(&set));
    let (out, record) = finish(child);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("promote: operator-image changed while it was verified"),
        "{record:#}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");
}

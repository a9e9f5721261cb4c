//! The fault matrix (docs/rollout.md, "Fault matrix"): each dependency of the node — Postgres,
//! Redis, chain RPC, deployment service, PCCS, AESM — stopped for rollgate
//!
//! - (a) during verify: rolled back (exit 4) on `dependency:NAME`, never promoted;
//! - (b) during the bake: rolled back (exit 4) on `bake:dependency:NAME`;
//! - (c) during the rollback's verification, and kept down: exit 5, the record saying the
//!   rollback failed verification on `dependency:NAME`;
//! - (d) for a single poll (within the tolerance of `dependency_failures` = 2): promoted.
//!
//! Every dependency is reached through a fault proxy the node owns ([`crate::outage`]), and
//! the outages are placed on gate polls ([`NodeFaults::poll_ticks`]): stopped right after one
//! poll's checks, so the next polls see it down from their start. (a) and (b) bring the
//! dependency back once the gate has failed, so the rollback can verify the baseline.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Node, NodeFaults, NodeOptions, code, explain};
use crate::outage::Dependency;

/// Longest wait for one thing to happen in a rollout.
const PATIENCE: Duration = Duration::from_secs(45);

fn node() -> Option<Node> {
    Node::start_with_faults(
        NodeOptions {
            window: "1500ms",
            ..NodeOptions::default()
        },
        NodeFaults {
            proxied: &Dependency::ALL,
            poll_ticks: true,
        },
    )
}

/// A `rollgate rollout --json` running in the background, its output in files.
struct Rollout {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Rollout {
    fn start(node: &Node, value: &str, bake: Option<&str>) -> Rollout {
        // Create the journal first: two processes opening a fresh journal at once can both run
        // its first migration, and one then fails ("table baselines already exists"); the
        // status polls below would race the rollout's own open.
        let (out, _) = node.run(&["status"]);
        assert_eq!(code(&out), 0, "{}", explain(&out));
        let stdout = node.dir.path().join("rollout.out");
        let stderr = node.dir.path().join("rollout.err");
        let mut cmd = node.rollgate();
        cmd.args(["rollout", &format!("operator-image={value}"), "--yes"]);
        if let Some(b) = bake {
            cmd.args(["--bake", b]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn rollgate rollout");
        Rollout {
            child: Some(child),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    fn output(&self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: std::fs::read(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read(&self.stderr).unwrap_or_default(),
        }
    }

    /// Panics (with what rollgate said) when the rollout already ended or `PATIENCE` is over.
    fn check_running(&mut self, waiting_for: &str) {
        let child = self.child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the rollout ended while waiting for {waiting_for}: {}",
                explain(&self.output(status))
            );
        }
        if self.started.elapsed() > PATIENCE {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "no {waiting_for} after {PATIENCE:?}: {}",
                explain(&self.output(status))
            );
        }
    }

    /// Wait for the journal's current step to satisfy `want`; returns it.
    fn wait_step(&mut self, node: &Node, what: &str, want: impl Fn(&str) -> bool) -> String {
        loop {
            self.check_running(what);
            let (_, status) = node.run(&["status"]);
            if let Some(kind) = status["active_rollout"]["last_step"]["kind"].as_str()
                && want(kind)
            {
                return kind.to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the gates completed `n` polls in all.
    fn wait_polls(&mut self, node: &Node, n: u64) {
        while node.polls() < n {
            self.check_running(&format!("gate poll {n}"));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for the next gate poll to complete; the polls so far.
    fn next_poll(&mut self, node: &Node) -> u64 {
        let n = node.polls() + 1;
        self.wait_polls(node, n);
        node.polls()
    }

    /// The exit and the decision record.
    fn finish(mut self) -> (Output, Value) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "the rollout did not end within {PATIENCE:?} of its last fault: {}",
                    explain(&self.output(status))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.output(status);
        let record = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, record)
    }
}

impl Drop for Rollout {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn gate<'a>(gates: &'a Value, name: &str) -> Option<&'a Value> {
    gates.as_array()?.iter().find(|g| g["name"] == name)
}

fn failed_gates(gates: &Value) -> Vec<String> {
    gates
        .as_array()
        .map(|g| {
            g.iter()
                .filter(|g| g["verdict"] == "fail")
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A rollback verified on the baseline: exit 4, `failed` among the failed gates, the layer back.
fn assert_rolled_back_on(node: &Node, cell: &str, out: &Output, record: &Value, failed: &str) {
    assert_eq!(code(out), 4, "{cell}: {}", explain(out));
    assert_eq!(record["outcome"], "rolled_back", "{cell}: {record:#}");
    let gate = gate(&record["gates"], failed)
        .unwrap_or_else(|| panic!("{cell}: no gate {failed}: {record:#}"));
    assert_eq!(gate["verdict"], "fail", "{cell}: {gate:#}");
    assert!(
        gate["detail"]
            .as_str()
            .is_some_and(|d| d.contains("in a row") || d.contains("during the bake")),
        "{cell}: the gate says how long the dependency was down: {gate:#}"
    );
    assert_eq!(
        record["rollback"]["verified"], true,
        "{cell}: the baseline must be re-verified once the dependency is back: {record:#}"
    );
    assert_eq!(
        node.current("operator-image"),
        "v1.0.0",
        "{cell}: back on the baseline"
    );
}

/// Stop `dep` right after a gate poll of `step` and keep it down for the next two polls (the
/// second fails the gate), then bring it back: the rollout must roll back on `gate`.
fn down_for_two_polls(
    cell: &str,
    node: &Node,
    dep: Dependency,
    (version, bake): (&str, Option<&str>),
    step: &str,
    gate: &str,
) -> Value {
    let mut rollout = Rollout::start(node, version, bake);
    rollout.wait_step(node, step, |s| s == step);
    let at = rollout.next_poll(node);
    node.outages().stop(dep);
    rollout.wait_polls(node, at + 2);
    let refused = node.outages().restore(dep);
    let (out, record) = rollout.finish();
    assert_rolled_back_on(node, cell, &out, &record, gate);
    assert_ne!(refused, Some(0), "{cell}: the outage was never probed");
    record
}

/// (a) Stopped during verify, two polls in a row: rolled back, never promoted.
fn down_during_verify(dep: Dependency) {
    let cell = format!("{} down during verify", dep.name());
    let Some(node) = node() else { return };
    // The slow start keeps verify open for 5 s: the outage cannot miss it.
    down_for_two_polls(
        &cell,
        &node,
        dep,
        ("v1.1.0-slow-start", None),
        "verify",
        &format!("dependency:{}", dep.name()),
    );
}

/// (b) Stopped during the bake, two polls in a row: rolled back.
fn down_during_bake(dep: Dependency) {
    let cell = format!("{} down during the bake", dep.name());
    let Some(node) = node() else { return };
    let record = down_for_two_polls(
        &cell,
        &node,
        dep,
        ("v1.1.0", Some("6s")),
        "bake",
        &format!("bake:dependency:{}", dep.name()),
    );
    assert!(
        gate(&record["gates"], &format!("dependency:{}", dep.name()))
            .is_some_and(|g| g["verdict"] == "pass"),
        "{cell}: verify passed before the outage: {record:#}"
    );
}

/// (c) Stopped when the rollback starts and kept down: the baseline cannot be verified, exit 5.
fn down_during_rollback_verify(dep: Dependency) {
    let cell = format!("{} down during the rollback's verification", dep.name());
    let Some(node) = node() else { return };
    let mut rollout = Rollout::start(&node, "v1.1.0-stall-request", None);
    rollout.wait_step(&node, "the rollback", |s| s.starts_with("rollback"));
    node.outages().stop(dep);
    let (out, record) = rollout.finish();
    let refused = node.outages().restore(dep);
    let name = dep.name();
    assert_eq!(code(&out), 5, "{cell}: {}", explain(&out));
    assert_eq!(record["outcome"], "rollback_failed", "{cell}: {record:#}");
    // The change itself failed on its own gate, before the outage.
    assert_eq!(
        failed_gates(&record["gates"]),
        ["progression:requestIndex"],
        "{cell}: {record:#}"
    );
    let rollback = &record["rollback"];
    assert_eq!(rollback["verified"], false, "{cell}: {record:#}");
    let dep_gate = gate(&rollback["gates"], &format!("dependency:{name}"))
        .unwrap_or_else(|| panic!("{cell}: no dependency:{name} gate: {record:#}"));
    assert_eq!(dep_gate["verdict"], "fail", "{cell}: {dep_gate:#}");
    assert!(
        failed_gates(&rollback["gates"])
            .iter()
            .all(|g| g == &format!("dependency:{name}")),
        "{cell}: only the stopped dependency fails the baseline: {record:#}"
    );
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("FAILED verification") && reason.contains(name),
        "{cell}: the reason names the failed verification and the dependency: {reason}"
    );
    // The restore itself worked: only its verification failed.
    assert_eq!(node.current("operator-image"), "v1.0.0", "{cell}");
    let (out, history) = node.run(&["history"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(
        history["rollouts"][0]["outcome"], "rollback_failed",
        "{cell}: {history:#}"
    );
    assert_ne!(refused, Some(0), "{cell}: the outage was never probed");
}

/// (d) Down for exactly one poll during verify, then back: tolerated, promoted.
fn back_within_tolerance(dep: Dependency) {
    let cell = format!("{} down for one poll", dep.name());
    let Some(node) = node() else { return };
    let mut rollout = Rollout::start(&node, "v1.1.0-slow-start", None);
    rollout.wait_step(&node, "verify", |s| s == "verify");
    let at = rollout.next_poll(&node);
    node.outages().stop(dep);
    rollout.wait_polls(&node, at + 1);
    let refused = node.outages().restore(dep);
    let (_, status) = node.run(&["status"]);
    assert_eq!(
        status["active_rollout"]["last_step"]["kind"], "verify",
        "{cell}: the outage must fall within verify: {status:#}"
    );
    let (out, record) = rollout.finish();
    assert_eq!(code(&out), 0, "{cell}: {}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{cell}: {record:#}");
    let gate = gate(&record["gates"], &format!("dependency:{}", dep.name()))
        .unwrap_or_else(|| panic!("{cell}: no gate: {record:#}"));
    assert_eq!(gate["verdict"], "pass", "{cell}: {gate:#}");
    assert_eq!(node.current("operator-image"), "v1.1.0-slow-start");
    // The poll in between really saw it down (for a unix socket, the whole poll ran without it).
    assert_ne!(refused, Some(0), "{cell}: the outage was never probed");
}

macro_rules! fault_matrix {
    ($($module:ident: $dep:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn down_during_verify_rolls_back() {
                down_during_verify($dep);
            }

            #[test]
            fn down_during_bake_rolls_back() {
                down_during_bake($dep);
            }

            #[test]
            fn down_during_rollback_verify_exits_5() {
                down_during_rollback_verify($dep);
            }

            #[test]
            fn back_within_tolerance_is_promoted() {
                back_within_tolerance($dep);
            }
        }
    )*};
}

fault_matrix! {
    postgres: Dependency::Postgres;
    redis: Dependency::Redis;
    chain: Dependency::Chain;
    deployment_service: Dependency::DeploymentService;
    pccs: Dependency::Pccs;
    aesm: Dependency::Aesm;
}

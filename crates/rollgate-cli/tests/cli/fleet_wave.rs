//! The scenario matrix of `rollgate fleet run`: the real binary as the conductor over the
//! cluster harness ([`crate::cluster`]: a real etcd, simulated nodes sharing one Raft state, a
//! real `rollgate fleet agent` per node), every wave watched by the history checker
//! ([`crate::history`]): at most one voter down, quorum kept, the leader last or after its role
//! moved, each node changed once, nothing after the first failure.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, ClusterOptions};
use crate::fixture::{NodeOptions, code, explain, sim_bin};
use crate::history::{History, Timeline};

const LAYER: &str = "operator-image";

/// Polls `done` every 100 ms; fails the test with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `fleet run ARGS --yes` with node 1's configuration (any node's `[fleet]` names the cluster),
/// JSON out; the output and its document.
fn run(c: &Cluster, args: &[&str]) -> (Output, Value) {
    let mut full = vec!["fleet", "run"];
    full.extend_from_slice(args);
    full.push("--yes");
    c.run(&full)
}

/// `fleet run ARGS --yes` in the background.
fn spawn_run(c: &Cluster, args: &[&str]) -> Child {
    c.rollgate(1)
        .args(["fleet", "run"])
        .args(args)
        .arg("--yes")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A background conductor's output (waits for it, 180 s at most).
fn finish(mut child: Child) -> (Output, Value) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// The wave JSON's nodes as `(node_id, outcome)`.
fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["nodes"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap_or("?").to_owned(),
                n["outcome"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn outcome_of(report: &Value, id: u64) -> String {
    outcomes(report)
        .into_iter()
        .find(|(n, _)| *n == id.to_string())
        .map(|(_, o)| o)
        .unwrap_or_else(|| panic!("node {id} is not in the report: {report:#}"))
}

fn order(report: &Value) -> Vec<String> {
    report["order"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|v| v.as_str().unwrap_or("?").to_owned())
        .collect()
}

fn ids(v: &[u64]) -> Vec<String> {
    v.iter().map(u64::to_string).collect()
}

/// Every node's version of the layer, by id.
fn versions(c: &Cluster) -> Vec<String> {
    c.ids()
        .into_iter()
        .map(|id| c.node(id).current(LAYER))
        .collect()
}

/// Node `id`'s record phase in the current wave ("" when it has none of it).
fn phase(c: &Cluster, id: u64, wave: &str) -> String {
    c.record(id)
        .filter(|(r, _)| r.wave_id == wave)
        .and_then(|(r, _)| serde_json::to_value(r.phase).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The history checker, then a background conductor for `args`, and the wave id it records.
fn start_wave(c: &Cluster, args: &[&str]) -> (History, Child, String) {
    let h = c.history();
    let conductor = spawn_run(c, args);
    (h, conductor, wave_id(c))
}

/// The wave id recorded in etcd once a conductor created it.
fn wave_id(c: &Cluster) -> String {
    let mut id = String::new();
    wait_until(Duration::from_secs(30), "the wave record", || {
        id = c
            .wave()
            .and_then(|w| w["wave_id"].as_str().map(String::from))
            .unwrap_or_default();
        !id.is_empty()
    });
    id
}

/// How many rollouts node `id`'s journal holds.
fn rollouts(c: &Cluster, id: u64) -> usize {
    let (_, h) = c.node(id).run(&["history"]);
    h["rollouts"].as_array().map_or(0, Vec::len)
}

/// Checks the history and prints how long the wave took.
fn checked(timeline: Timeline, what: &str) {
    timeline.assert_ok();
    let took = timeline.samples.last().map(|s| s.at).unwrap_or_default();
    eprintln!(
        "{what}: {} samples over {took:?}, history checker passed",
        timeline.samples.len()
    );
}

/// Three nodes, all good: exit 0, canary (lowest follower) → follower → leader, the contract's
/// JSON, each node promoted once with a rollout its own journal shows; then a crash-looping
/// version stops at the canary: exit 4, the canary back on its version, nothing else touched.
#[test]
fn three_nodes_all_good_then_a_bad_version_stops_at_the_canary() {
    let Some(c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let h = c.history();
    let started = Instant::now();
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "3 nodes, good");
    eprintln!("a good wave of 3 nodes: {took:?}");
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(
        (&report["layer"], &report["to"]),
        (&LAYER.into(), &"v1.1.0".into())
    );
    assert!(
        report["wave_id"].as_str().is_some_and(|w| !w.is_empty()),
        "{report:#}"
    );
    assert_eq!(order(&report), ids(&[2, 3, 1]), "{report:#}");
    assert!(report.get("reason").is_some(), "{report:#}");
    for n in report["nodes"].as_array().unwrap() {
        let id = n["node_id"].as_str().unwrap();
        assert_eq!(n["outcome"], "promoted", "{report:#}");
        let role = if id == "1" { "leader" } else { "follower" };
        assert_eq!(n["role"], role, "{report:#}");
        let rollout = n["rollout_id"].as_str().expect("a rollout id");
        let node = c.node(id.parse().unwrap());
        let (_, show) = node.run(&["show", rollout]);
        assert_eq!(show["outcome"], "promoted", "node {id}: {show:#}");
    }
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
    let w = c.wave().unwrap();
    assert_eq!(w["outcome"], "done", "{w:#}");

    // A version that crash-loops: only the canary is touched, and it is back on v1.1.0.
    let (followers, _) = c.followers();
    let canary = followers[0];
    let h = c.history();
    let (out, report) = run(&c, &["operator-image=v1.1.0-crash-loop"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    checked(h.finish(), "3 nodes, bad at the canary");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(order(&report), ids(&[canary]), "{report:#}");
    assert_eq!(outcome_of(&report, canary), "rolled_back", "{report:#}");
    for id in c.ids().into_iter().filter(|&i| i != canary) {
        assert_eq!(outcome_of(&report, id), "untouched", "{report:#}");
        assert_eq!(rollouts(&c, id), 1, "node {id} ran a second rollout");
    }
    assert!(
        report["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
}

/// A version bad on the second follower only (its own gates pin the version it runs: a readiness
/// check that only v1.0.0 passes): the canary is promoted, the second follower rolled back,
/// exit 4, the leader untouched.
#[test]
fn a_bad_version_at_the_second_follower_leaves_the_leader_untouched() {
    let Some(mut c) = Cluster::start(ClusterOptions {
        agents: false,
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let port = c.node(3).operator_port;
    c.node(3).append_config(&format!(
        "\n[readiness.pinned]\nurl = \"http://127.0.0.1:{port}/v2/status\"\n\
         expect = [ {{ pointer = \"/version\", equals = \"v1.0.0\" }} ]\n"
    ));
    for id in c.ids() {
        c.start_agent(id);
    }
    let h = c.history();
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    checked(h.finish(), "bad at the second follower");
    assert_eq!(order(&report), ids(&[2, 3]), "{report:#}");
    assert_eq!(
        outcomes(&report),
        vec![
            ("1".into(), "untouched".into()),
            ("2".into(), "promoted".into()),
            ("3".into(), "rolled_back".into())
        ],
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.0.0", "v1.1.0", "v1.0.0"]);
    assert_eq!(rollouts(&c, 1), 0, "the leader was touched");
}

/// Five nodes, all good: 2, 3, 4, 5, then the leader 1.
#[test]
fn five_nodes_all_good() {
    let Some(c) = Cluster::start(ClusterOptions {
        nodes: 5,
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let h = c.history();
    let started = Instant::now();
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "5 nodes, good");
    eprintln!("a good wave of 5 nodes: {took:?}");
    assert_eq!(order(&report), ids(&[2, 3, 4, 5, 1]), "{report:#}");
    assert!(
        outcomes(&report).iter().all(|(_, o)| o == "promoted"),
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.1.0"; 5]);
}

/// Leadership moves mid-wave (from 1 to 3, as a Raft leadership transfer: no node stops) once
/// the canary is done: the wave still finishes, with node 3 — the leader now — last.
#[test]
fn the_leader_changes_mid_wave_and_the_new_leader_goes_last() {
    let Some(c) = Cluster::start(ClusterOptions {
        stabilization: "4s",
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let (h, conductor, wave) = start_wave(&c, &["operator-image=v1.1.0"]);
    wait_until(Duration::from_secs(90), "the canary promoted", || {
        phase(&c, 2, &wave) == "promoted"
    });
    c.transfer_leadership(3);
    c.wait_agreed(Some(3), Duration::from_secs(10));
    let (out, report) = finish(conductor);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "leader moved mid-wave");
    assert_eq!(order(&report), ids(&[2, 1, 3]), "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
}

/// The canary's agent SIGKILLed mid-step (the node already on the new version): the wave is
/// stuck (exit 6) and never advances by itself; a human finishes the node's rollout
/// (`rollgate resume`), `fleet resolve 2 --as done`, and `fleet run --resume` finishes the wave.
#[test]
fn an_agent_killed_mid_step_leaves_the_wave_stuck_until_resolved() {
    let Some(mut c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let (h, conductor, wave) = start_wave(&c, &["operator-image=v1.1.0"]);
    wait_until(
        Duration::from_secs(60),
        "the canary on v1.1.0 mid-step",
        || phase(&c, 2, &wave) == "in_flight" && c.node(2).current(LAYER) == "v1.1.0",
    );
    c.agent(2).signal("KILL");
    let (out, report) = finish(conductor);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert_eq!(report["outcome"], "stuck", "{report:#}");
    // Never advances by itself: nothing else is touched while it is stuck.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(phase(&c, 3, &wave), "");
    assert_eq!(phase(&c, 1, &wave), "");
    let (out, _) = run(&c, &["--resume"]);
    assert_eq!(code(&out), 6, "resumed while stuck: {}", explain(&out));

    // The human: finish the node's interrupted rollout, restart its agent, resolve.
    let (out, resumed) = c.node(2).run(&["resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(resumed["outcome"], "promoted", "{resumed:#}");
    c.start_agent(2);
    let (out, _) = c.run(&[
        "fleet",
        "resolve",
        "2",
        "--as",
        "done",
        "--reason",
        "resumed by hand",
    ]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (out, report) = run(&c, &["--resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "agent killed, resolved, resumed");
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
    assert_eq!(rollouts(&c, 2), 1, "node 2 was stepped again");
}

/// The conductor SIGKILLed while the second node is in flight: a new `fleet run --resume`
/// continues the same wave once the dead conductor's election lease is gone, skips the nodes
/// already done, and finishes.
#[test]
fn a_conductor_killed_mid_wave_is_replaced_by_resume() {
    let Some(c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let (h, mut conductor, wave) = start_wave(&c, &["operator-image=v1.1.0"]);
    wait_until(Duration::from_secs(90), "the second node in flight", || {
        matches!(phase(&c, 3, &wave).as_str(), "intent" | "in_flight")
    });
    conductor.kill().unwrap();
    conductor.wait().unwrap();
    let started = Instant::now();
    let (out, report) = loop {
        let (out, report) = run(&c, &["--resume"]);
        // The dead conductor's election key lives until its lease (5 s) expires: busy until then.
        if code(&out) != 6 || started.elapsed() > Duration::from_secs(20) {
            break (out, report);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "conductor killed, resumed");
    assert_eq!(report["wave_id"], wave.as_str(), "{report:#}");
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
    for id in c.ids() {
        assert_eq!(rollouts(&c, id), 1, "node {id} was stepped twice");
    }
}

/// `fleet halt` while the canary bakes: its agent freezes the node, the engine rolls it back,
/// the wave is halted (exit 6) with nothing else touched. After `fleet unhalt`, `fleet run
/// --resume` steps the canary again and finishes (the one case where a node may change twice in
/// a wave: the checker knows it from the wave record's `rolled_back_by_halt`).
#[test]
fn a_fleet_halt_mid_step_rolls_the_canary_back_and_halts_the_wave() {
    let Some(mut c) = Cluster::start(ClusterOptions {
        node: NodeOptions {
            bake: "30s",
            ..NodeOptions::default()
        },
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let (h, conductor, wave) = start_wave(&c, &["operator-image=v1.1.0"]);
    wait_until(Duration::from_secs(60), "the canary baking", || {
        c.node(2).current(LAYER) == "v1.1.0"
    });
    std::thread::sleep(Duration::from_secs(2));
    let (out, _) = c.run(&["fleet", "halt", "--reason", "incident 9"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let halted = Instant::now();
    let (out, report) = finish(conductor);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert!(
        halted.elapsed() < Duration::from_secs(25),
        "{:?}",
        halted.elapsed()
    );
    assert_eq!(report["outcome"], "halted", "{report:#}");
    assert_eq!(phase(&c, 2, &wave), "rolled_back");
    assert_eq!(versions(&c), ["v1.0.0"; 3]);
    assert_eq!(rollouts(&c, 1) + rollouts(&c, 3), 0);
    let (out, _) = run(&c, &["--resume"]);
    assert_eq!(code(&out), 6, "resumed while halted: {}", explain(&out));

    // Unhalted (and the bake shortened, agents restarted to read it): the wave resumes.
    let (out, _) = c.run(&["fleet", "unhalt"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    for id in c.ids() {
        c.node(id).edit_config("bake = \"30s\"", "bake = \"0s\"");
        c.restart_agent(id);
    }
    let (out, report) = run(&c, &["--resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "halted mid-step, unhalted, resumed");
    assert_eq!(report["wave_id"], wave.as_str(), "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
}

/// etcd SIGKILLed while the canary is in flight: no new step starts (the conductor stops, exit
/// 6), the canary's rollout ends on the node by itself (promoted or rolled back, never left
/// half-way), its agent stops acting (exit 6) and no other node is touched.
#[test]
fn etcd_killed_mid_wave_starts_no_new_step_and_the_step_ends_locally() {
    let Some(mut c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let (h, conductor, wave) = start_wave(&c, &["operator-image=v1.1.0"]);
    wait_until(Duration::from_secs(60), "the canary in flight", || {
        phase(&c, 2, &wave) == "in_flight"
    });
    c.etcd.kill();
    let killed = Instant::now();
    let (out, _) = finish(conductor);
    let conductor_out = killed.elapsed();
    assert_eq!(code(&out), 6, "{}", explain(&out));
    let now = Instant::now();
    let st = c
        .agent(2)
        .wait_exit(now, Duration::from_secs(60), "agent 2 kept running");
    assert_eq!(st.code(), Some(6), "{st:?}");
    // The step ended on the node: no interrupted rollout, the node on one of the two values.
    wait_until(
        Duration::from_secs(60),
        "the canary's rollout ended",
        || {
            let (_, s) = c.node(2).run(&["status"]);
            s["active_rollout"].is_null()
        },
    );
    checked(h.finish(), "etcd killed mid-wave");
    let v = versions(&c);
    assert!(v[1] == "v1.0.0" || v[1] == "v1.1.0", "{v:?}");
    assert_eq!((v[0].as_str(), v[2].as_str()), ("v1.0.0", "v1.0.0"));
    assert_eq!(rollouts(&c, 1) + rollouts(&c, 3), 0);
    let (_, st) = c.node(2).run(&["status"]);
    eprintln!(
        "etcd killed mid-step: the canary ended on {} ({}), conductor out after {:?}",
        v[1], st["last_rollout"]["outcome"], conductor_out
    );

    // etcd back: nothing was recorded as progress — the wave still has the canary in flight
    // (its agent could not record the end), no other node has a record: a human resolves it.
    let etcd = &mut c.etcd;
    c.rt.block_on(etcd.restart());
    let w = c.wave().unwrap();
    assert_eq!(w["phases"]["2"], "in_flight", "{w:#}");
    assert_eq!(phase(&c, 2, &wave), "in_flight");
    assert!(c.record(1).is_none() && c.record(3).is_none());
}

/// A follower unhealthy at the start (its KYC stopped, so its own `rollgate check` is red):
/// refused with exit 3 and nothing touched; with `--allow-degraded` it goes first.
#[test]
fn an_unhealthy_follower_is_refused_or_goes_first_with_allow_degraded() {
    let Some(c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let stop = Command::new(sim_bin())
        .args(["localnet", "stop", "kyc", "--dir"])
        .arg(&c.node(3).sim_dir)
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    // Its agent publishes the red snapshot within a second or two.
    std::thread::sleep(Duration::from_secs(3));
    let h = c.history();
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert_eq!(report["outcome"], "refused", "{report:#}");
    assert!(order(&report).is_empty(), "{report:#}");
    assert_eq!(versions(&c), ["v1.0.0"; 3]);
    assert!(c.ids().into_iter().all(|id| rollouts(&c, id) == 0));

    // It goes first — and its own engine refuses a red node before changing anything (the
    // single-node rollout never starts from an unverified baseline), so the wave fails there.
    let (out, report) = run(&c, &["operator-image=v1.1.0", "--allow-degraded"]);
    checked(h.finish(), "unhealthy follower");
    assert_eq!(order(&report), ids(&[3]), "{report:#}");
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not ready")),
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.0.0"; 3]);
    assert_eq!(rollouts(&c, 1) + rollouts(&c, 2), 0);
}

/// A node's local freeze vetoes the conductor: frozen before the wave → refused at preflight
/// (exit 3, nothing touched); frozen while the canary is in flight → the wave never steps it:
/// blocked until `--blocked-timeout` (exit 6, resumable), then after `rollgate unfreeze`,
/// `fleet run --resume` finishes.
#[test]
fn a_local_freeze_vetoes_the_wave() {
    let Some(c) = Cluster::start(ClusterOptions::default()) else {
        return;
    };
    let h = c.history();
    let (out, _) = c
        .node(3)
        .run(&["freeze", "--reason", "exchange maintenance"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    std::thread::sleep(Duration::from_secs(2));
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert_eq!(report["outcome"], "refused", "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.0.0"; 3]);
    let (out, _) = c.node(3).run(&["unfreeze"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    std::thread::sleep(Duration::from_secs(2));

    let conductor = spawn_run(&c, &["operator-image=v1.1.0", "--blocked-timeout", "8s"]);
    let wave = wave_id(&c);
    wait_until(Duration::from_secs(60), "the canary in flight", || {
        phase(&c, 2, &wave) == "in_flight"
    });
    let (out, _) = c
        .node(3)
        .run(&["freeze", "--reason", "exchange maintenance"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let (out, report) = finish(conductor);
    assert_eq!(code(&out), 6, "{}", explain(&out));
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("frozen")),
        "{report:#}"
    );
    assert_eq!(outcome_of(&report, 2), "promoted", "{report:#}");
    assert_eq!(outcome_of(&report, 3), "untouched", "{report:#}");
    assert_eq!(versions(&c), ["v1.0.0", "v1.1.0", "v1.0.0"]);
    assert_eq!(rollouts(&c, 3), 0);

    let (out, _) = c.node(3).run(&["unfreeze"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    std::thread::sleep(Duration::from_secs(2));
    let (out, report) = run(&c, &["--resume"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    checked(h.finish(), "frozen follower");
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
}

/// `v1.1.0-lagging` passes the canary's own gates (its request index advances) but applies 200
/// entries behind the cluster: the cluster gates (`max_lag`) fail, the conductor asks for a
/// revert, the agent rolls the node back, exit 4, nothing else touched.
///
/// Timings: the restarted node resumes from the index it had applied, so it stands still until
/// the commit index is 200 past it — 4 s at one entry per 20 ms, inside a 6 s progression
/// window. Agents publish once a second, so healthy nodes' snapshots differ by up to ~50
/// entries: `max_lag = 120` tells them from a node 200 behind.
#[test]
fn a_lagging_version_is_promoted_locally_then_reverted_by_the_cluster_gates() {
    let Some(c) = Cluster::start(ClusterOptions {
        tick_ms: 20,
        fleet_extra: "max_lag = 120",
        node: NodeOptions {
            window: "6s",
            ..NodeOptions::default()
        },
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let h = c.history();
    let (out, report) = run(&c, &["operator-image=v1.1.0-lagging"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    checked(h.finish(), "lagging canary");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(order(&report), ids(&[2]), "{report:#}");
    assert_eq!(outcome_of(&report, 2), "rolled_back", "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("lag") || r.contains("behind")),
        "{report:#}"
    );
    assert_eq!(versions(&c), ["v1.0.0"; 3]);
    // Promoted by its own rollout, then rolled back on the conductor's request.
    assert!(rollouts(&c, 2) >= 1);
}

/// A busy cluster (one entry committed every 10 ms: 100 requests a second) and a good version:
/// every node is healthy and within `max_lag` (50) of the others at any instant, so the wave must
/// finish. The agents publish their request index once a second, each on its own phase, so two
/// snapshots can be up to a second — here up to ~100 entries — apart in time.
///
/// Failed before the fix: the conductor's lag gate compared those snapshots as if taken at one
/// instant and reverted the healthy canary ("node 2's requestIndex 499 lags the cluster's highest
/// 579 by more than 50") while the checker, reading every node within milliseconds, saw them at
/// most 14 to 35 entries apart. The gate now compares a node's index only with the snapshots
/// other agents published before it (etcd revision order).
#[test]
fn a_good_wave_on_a_busy_cluster_is_not_failed_by_the_lag_gate() {
    let Some(c) = Cluster::start(ClusterOptions {
        tick_ms: 10,
        ..ClusterOptions::default()
    }) else {
        return;
    };
    let h = c.history();
    let (out, report) = run(&c, &["operator-image=v1.1.0"]);
    let timeline = h.finish();
    let (spread, at) = timeline.max_index_spread();
    eprintln!(
        "busy cluster: ready nodes at most {spread} entries apart at one instant (sample {at}); \
         the conductor said: {}",
        report["reason"]
    );
    checked(timeline, "busy cluster, good");
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(versions(&c), ["v1.1.0"; 3]);
}

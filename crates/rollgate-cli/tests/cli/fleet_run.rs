//! `rollgate fleet plan|run|status|resolve` details the scenario matrix (`fleet_wave.rs`) does
//! not cover: the plan's JSON, `--on-failure rollback-all`, what `fleet status` says after a
//! wave (no conductor, nothing next), and the usage errors of a finished wave. Three simulated
//! nodes in one Raft cluster, a real etcd, one agent each (`cluster.rs`).

use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterOptions};
use crate::fixture::{code, explain};

fn outcome_of(wave: &Value, id: &str) -> Value {
    wave["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id)
        .map(|n| n["outcome"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn rollback_all_reverts_the_canary_when_the_second_follower_fails() {
    let Some(mut c) = Cluster::start(ClusterOptions {
        agents: false,
        ..ClusterOptions::default()
    }) else {
        return;
    };
    // Node 3 turns `v1.1.0` into the crash-looping build (its own apply command), so the wave
    // fails at the second follower while the canary is already promoted.
    c.node(3).edit_config(
        "apply = \"rollgate-sim localnet set\"",
        "apply = \"case \\\"$ROLLGATE_VALUE\\\" in v1.1.0) ROLLGATE_VALUE=v1.1.0-crash-loop; export ROLLGATE_VALUE;; esac; rollgate-sim localnet set\"",
    );
    for id in c.ids() {
        c.start_agent(id);
    }

    let (out, plan) = c.run(&["fleet", "plan", "operator-image=v1.1.0"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(plan["order"], json!(["2", "3", "1"]), "{plan:#}");
    assert_eq!(
        (&plan["canary"], &plan["leader"], &plan["preflight"]["ok"]),
        (&json!("2"), &json!("1"), &json!(true)),
        "{plan:#}"
    );

    let (out, wave) = c.run(&[
        "fleet",
        "run",
        "operator-image=v1.1.0",
        "--on-failure",
        "rollback-all",
        "--yes",
    ]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(wave["order"], json!(["2", "3"]), "{wave:#}");
    assert_eq!(outcome_of(&wave, "1"), "untouched", "{wave:#}");
    assert_eq!(outcome_of(&wave, "2"), "rolled_back", "{wave:#}");
    assert_eq!(outcome_of(&wave, "3"), "rolled_back", "{wave:#}");
    assert!(
        wave["reason"]
            .as_str()
            .unwrap()
            .contains("rollback-all: 1 node(s) reverted"),
        "{wave:#}"
    );
    for id in c.ids() {
        assert_eq!(c.node(id).current("operator-image"), "v1.0.0", "node {id}");
    }

    // The conductor resigned and the wave is over: nothing next.
    let (out, st) = c.run(&["fleet", "status"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(st["wave"]["outcome"], "failed", "{st:#}");
    assert_eq!(st["wave"]["reverted"], json!(["2"]), "{st:#}");
    assert_eq!(st["conductor"], Value::Null, "{st:#}");
    assert_eq!(st["next"], Value::Null, "{st:#}");

    // A failed wave is final: nothing to resume, and only a lost node is resolved.
    let (out, _) = c.run(&["fleet", "run", "--resume", "--yes"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let (out, _) = c.run(&["fleet", "resolve", "2", "--as", "done"]);
    assert_eq!(code(&out), 2, "{}", explain(&out));
}

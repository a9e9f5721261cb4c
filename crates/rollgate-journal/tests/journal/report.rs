//! `status`, `history` and `show` documents built from a journal.

use std::collections::BTreeMap;

use rollgate_core::vocab::{GateResult, Outcome, Verdict};
use rollgate_journal::report::{LayerStatus, StatusReport, history_human, show_human};
use rollgate_journal::{Holder, Journal, LockStatus};
use serde_json::json;

use crate::support::{baseline, image, rollout};

fn holder() -> Holder {
    Holder {
        pid: 4242,
        start_time: Some(1),
        boot_id: "b".into(),
        since: "2026-11-28T04:22:10Z".into(),
        heartbeat: "2026-11-28T04:23:10Z".into(),
    }
}

#[test]
fn status_shows_an_interrupted_rollout_and_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.insert_baseline(&baseline("b1")).unwrap();
    j.mark_known_good("b1").unwrap();
    j.begin_rollout(&rollout("r1", Some("b1"))).unwrap();
    j.record_intent("r1", "restart", json!({"components": ["operator"]}))
        .unwrap();
    let layers = BTreeMap::from([
        (
            "operator-image".to_string(),
            LayerStatus::Value(image(
                "rollgate-sim/operator:v1.1.0",
                "sha256:0123456789abcdef",
            )),
        ),
        (
            "operator-config".to_string(),
            LayerStatus::Error {
                error: "not supported".into(),
            },
        ),
    ]);

    let st = StatusReport::new(
        "node0",
        layers.clone(),
        j.state().unwrap(),
        LockStatus::Free,
    );
    assert!(st.busy());
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(v["active_rollout"]["rollout_id"], "r1");
    assert_eq!(v["active_rollout"]["interrupted"], true);
    assert_eq!(v["active_rollout"]["stopped_at_intent"], true);
    assert_eq!(v["active_rollout"]["last_step"]["kind"], "restart");
    assert_eq!(v["lock"]["state"], "free");
    assert_eq!(v["last_known_good"]["id"], "b1");
    assert_eq!(
        v["layers"]["operator-image"]["digest"],
        "sha256:0123456789abcdef"
    );
    assert_eq!(v["layers"]["operator-config"]["error"], "not supported");
    let human = st.to_human();
    assert!(
        human.contains("INTERRUPTED") && human.contains("restart (intent written, no outcome)"),
        "{human}"
    );
    assert!(
        human.contains("rollgate-sim/operator:v1.1.0 (0123456789ab)"),
        "{human}"
    );

    // Held by a live process: running, not interrupted.
    let st = StatusReport::new(
        "node0",
        layers,
        j.state().unwrap(),
        LockStatus::Held { holder: holder() },
    );
    assert_eq!(
        serde_json::to_value(&st).unwrap()["active_rollout"]["interrupted"],
        false
    );
    assert!(st.to_human().contains("lock: held by pid 4242"));
}

#[test]
fn history_and_show_render() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        history_human(&j.history(10).unwrap().into()),
        "no rollouts recorded\n"
    );
    j.begin_rollout(&rollout("r1", None)).unwrap();
    let s = j
        .record_intent("r1", "apply", json!({"value": "v1.1.0"}))
        .unwrap();
    j.record_outcome(s, true, json!({})).unwrap();
    j.record_gate(
        "r1",
        &GateResult {
            name: "readiness:operator".into(),
            verdict: Verdict::Pass,
            detail: "Healthy".into(),
            evidence: json!({"health": "Healthy"}),
        },
    )
    .unwrap();
    j.finish_rollout("r1", Outcome::Promoted, "all gates passed")
        .unwrap();
    j.begin_rollout(&rollout("r2", None)).unwrap();

    let h = history_human(&j.history(10).unwrap().into());
    let lines: Vec<&str> = h.lines().collect();
    assert_eq!(lines.len(), 3, "{h}");
    assert!(
        lines[0].starts_with("ROLLOUT")
            && lines[1].starts_with("r2")
            && lines[1].ends_with("unfinished")
            && lines[2].ends_with("promoted"),
        "{h}"
    );

    let show = show_human(&j.rollout("r1").unwrap().unwrap());
    assert!(show.starts_with("rollout r1: promoted\n"), "{show}");
    assert!(
        show.contains("reason    all gates passed")
            && show.contains("PASS          readiness:operator: Healthy"),
        "{show}"
    );
    assert!(
        show.contains("evidence: {\"health\":\"Healthy\"}"),
        "{show}"
    );
}

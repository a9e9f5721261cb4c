//! Baselines, rollouts, steps, gates and driver outputs: what goes in comes back.

use rollgate_core::vocab::{GateResult, Outcome, Verdict};
use rollgate_journal::{DriverOutputRecord, History, Journal, JournalError};
use serde_json::json;

use crate::support::{baseline, rollout};

#[test]
fn baselines_are_immutable_and_promotions_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.insert_baseline(&baseline("b1")).unwrap();
    j.insert_baseline(&baseline("b2")).unwrap();
    assert!(
        matches!(j.insert_baseline(&baseline("b1")), Err(JournalError::BaselineExists(id)) if id == "b1")
    );
    assert_eq!(j.baseline("b1").unwrap().unwrap(), baseline("b1"));
    assert!(j.baseline("nope").unwrap().is_none());
    assert!(j.last_known_good().unwrap().is_none());

    j.mark_known_good("b1").unwrap();
    assert!(matches!(
        j.mark_known_good("nope"),
        Err(JournalError::NoBaseline(_))
    ));
    let list = j.list_baselines().unwrap();
    assert_eq!(
        list.iter()
            .map(|b| (b.id.as_str(), b.known_good))
            .collect::<Vec<_>>(),
        [("b2", false), ("b1", true)]
    );
    assert_eq!(j.last_known_good().unwrap().unwrap().id, "b1");
    j.mark_known_good("b2").unwrap();
    assert_eq!(j.last_known_good().unwrap().unwrap().id, "b2");

    // Even raw SQL cannot change or delete a baseline.
    let conn = rusqlite::Connection::open(j.path()).unwrap();
    let err = conn
        .execute("UPDATE baselines SET node = 'x' WHERE id = 'b1'", [])
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    assert!(conn.execute("DELETE FROM baselines", []).is_err());
}

#[test]
fn a_full_decision_record_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.insert_baseline(&baseline("b1")).unwrap();
    j.begin_rollout(&rollout("r1", None)).unwrap();
    assert!(
        matches!(j.begin_rollout(&rollout("r2", None)), Err(JournalError::Unfinished(id)) if id == "r1")
    );
    j.set_baseline("r1", "b1").unwrap();
    assert!(matches!(
        j.set_baseline("r1", "nope"),
        Err(JournalError::NoBaseline(_))
    ));

    let s1 = j
        .record_intent(
            "r1",
            "apply",
            json!({"value": "rollgate-sim/operator:v1.1.0"}),
        )
        .unwrap();
    let out = DriverOutputRecord {
        command: "pin image".into(),
        stdout: String::new(),
        stderr: "ok\n".into(),
        exit_code: Some(0),
        duration_ms: 4,
    };
    j.record_driver_output(s1, &out).unwrap();
    j.record_outcome(s1, true, json!({})).unwrap();
    assert!(matches!(
        j.record_outcome(s1, false, json!({})),
        Err(JournalError::OutcomeRecorded(_))
    ));
    let s2 = j
        .record_intent("r1", "gate", json!({"gates": ["progression:requestIndex"]}))
        .unwrap();
    let gate = GateResult {
        name: "progression:requestIndex".into(),
        verdict: Verdict::Fail,
        detail: "requestIndex did not increase in 10s".into(),
        evidence: json!({"samples": [[0, 118], [10000, 118]]}),
    };
    j.record_gate("r1", &gate).unwrap();
    j.record_outcome(s2, false, json!({"failed": "progression:requestIndex"}))
        .unwrap();
    j.finish_rollout(
        "r1",
        Outcome::RolledBack,
        "gate progression:requestIndex failed",
    )
    .unwrap();
    assert!(matches!(
        j.record_intent("r1", "x", json!(null)),
        Err(JournalError::Finished(_))
    ));
    assert!(matches!(
        j.finish_rollout("r1", Outcome::Promoted, ""),
        Err(JournalError::Finished(_))
    ));
    assert!(matches!(
        j.record_intent("nope", "x", json!(null)),
        Err(JournalError::NoRollout(_))
    ));
    assert!(matches!(
        j.begin_rollout(&rollout("r1", None)),
        Err(JournalError::RolloutExists(_))
    ));

    let d = j.rollout("r1").unwrap().unwrap();
    assert_eq!(d.outcome, Some(Outcome::RolledBack));
    assert_eq!(d.baseline_id.as_deref(), Some("b1"));
    assert_eq!(
        d.reason.as_deref(),
        Some("gate progression:requestIndex failed")
    );
    assert_eq!(d.steps.len(), 2);
    assert_eq!(d.steps[0].driver_outputs, vec![out]);
    assert_eq!(d.steps[1].ok, Some(false));
    assert_eq!(d.gates.len(), 1);
    assert_eq!(d.gates[0].evidence, gate.evidence);
    assert_eq!(
        d.plan,
        Some(json!({"layer": "operator-image", "restart": ["operator"]}))
    );
    assert!(j.rollout("nope").unwrap().is_none());

    let h = serde_json::to_value(History::from(j.history(10).unwrap())).unwrap();
    assert_eq!(h["rollouts"][0]["rollout_id"], "r1");
    assert_eq!(h["rollouts"][0]["from"], "rollgate-sim/operator:v1.0.0");
    assert_eq!(h["rollouts"][0]["to"], "rollgate-sim/operator:v1.1.0");
    assert_eq!(h["rollouts"][0]["outcome"], "rolled_back");
    assert_eq!(h["rollouts"][0]["started_at"], "2026-11-28T04:22:11Z");
    assert_eq!(h["rollouts"][0]["layer"], "operator-image");
}

#[test]
fn a_crash_after_an_intent_leaves_an_interrupted_rollout() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(dir.path()).unwrap();
        j.begin_rollout(&rollout("r1", None)).unwrap();
        let s = j
            .record_intent("r1", "apply", json!({"value": "v2"}))
            .unwrap();
        j.record_outcome(s, true, json!({})).unwrap();
        j.record_intent("r1", "restart", json!({"components": ["operator"]}))
            .unwrap();
        // The process dies here: no outcome, no finish.
    }
    let mut j = Journal::open(dir.path()).unwrap();
    let st = j.state().unwrap();
    let a = st.interrupted.expect("an unfinished rollout");
    assert_eq!(a.rollout_id, "r1");
    assert_eq!(a.steps, 2);
    let last = a.last_step.as_ref().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.outcome_recorded),
        ("restart", false)
    );
    assert!(a.stopped_at_intent());
    assert!(matches!(
        j.begin_rollout(&rollout("r2", None)),
        Err(JournalError::Unfinished(_))
    ));
    assert_eq!(j.history(10).unwrap()[0].outcome, None);
}

#[test]
fn large_driver_output_keeps_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.begin_rollout(&rollout("r1", None)).unwrap();
    let s = j.record_intent("r1", "restart", json!({})).unwrap();
    let big = "x".repeat(200_000) + "\nthe real error\n";
    let out = DriverOutputRecord {
        command: "c".into(),
        stdout: String::new(),
        stderr: big,
        exit_code: Some(1),
        duration_ms: 1,
    };
    j.record_driver_output(s, &out).unwrap();
    let d = j.rollout("r1").unwrap().unwrap();
    let stored = &d.steps[0].driver_outputs[0].stderr;
    assert!(
        stored.len() < 70_000 && stored.starts_with("[… ") && stored.ends_with("the real error\n")
    );
}

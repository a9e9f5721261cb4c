//! Tests of the gate engine: time is a parameter, so windows and deadlines are exercised
//! exactly, without sleeping.

use super::*;
use proptest::prelude::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn plan(idle: bool, policy: IdlePolicy) -> GatePlan {
    GatePlan {
        readiness_deadline: secs(10.0),
        readiness: vec!["operator".into(), "kyc".into()],
        progression: vec![ProgressionGate {
            name: "requestIndex".into(),
            mode: ProgressionMode::Increases,
            window: secs(5.0),
            baseline_idle: idle,
            baseline_rate_per_s: Some(if idle { 0.0 } else { 4.0 }),
        }],
        idle_policy: policy,
        dependencies: vec!["postgres".into()],
        baseline_faults: ["/attestation/fault=\"old\"".to_string()]
            .into_iter()
            .collect(),
        dependency_failures: 2,
        // Most tests are about other gates; `min_healthy_holds_promotion_back` sets it.
        min_healthy: Duration::ZERO,
    }
}

/// An observation at `at` seconds: both readiness entries green or `ready`, requestIndex `idx`.
fn obs(at: f64, ready: Reading, idx: i64) -> Observation {
    Observation {
        at: secs(at),
        readiness: [
            ("operator".to_string(), ready.clone()),
            ("kyc".to_string(), Reading::Pass("ok".into())),
        ]
        .into_iter()
        .collect(),
        progression: [("requestIndex".to_string(), Some(json!(idx)))]
            .into_iter()
            .collect(),
        dependencies: [("postgres".to_string(), Reading::Pass("ok".into()))]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn green() -> Reading {
    Reading::Pass("Healthy".into())
}

fn run(plan: &GatePlan, seq: &[Observation]) -> Decision {
    decide(plan, seq, Duration::MAX)
}

fn failed_gate(d: &Decision) -> &GateResult {
    match d {
        Decision::RollBack { gates, .. } => {
            gates.iter().find(|g| g.verdict == Verdict::Fail).unwrap()
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
}

#[test]
fn healthy_and_progressing_promotes() {
    let p = plan(false, IdlePolicy::Fail);
    let d = run(&p, &[obs(1.0, green(), 10), obs(2.0, green(), 14)]);
    let Decision::Promote { gates } = d else {
        panic!("{d:?}")
    };
    assert!(
        gates.iter().all(|g| g.verdict == Verdict::Pass),
        "{gates:?}"
    );
}

#[test]
fn waits_while_progression_window_is_open() {
    let p = plan(false, IdlePolicy::Fail);
    let d = run(&p, &[obs(1.0, green(), 10), obs(3.0, green(), 10)]);
    let Decision::Wait { pending, deadline } = d else {
        panic!("{d:?}")
    };
    assert_eq!(pending, vec!["progression:requestIndex"]);
    assert_eq!(deadline, secs(6.0));
}

#[test]
fn healthy_but_stalled_rolls_back_when_the_window_closes() {
    let p = plan(false, IdlePolicy::Fail);
    let d = run(
        &p,
        &[
            obs(1.0, green(), 10),
            obs(5.9, green(), 10),
            obs(6.0, green(), 10),
        ],
    );
    let g = failed_gate(&d);
    assert_eq!(g.name, "progression:requestIndex");
    assert!(
        g.detail.contains("healthy but not progressing"),
        "{}",
        g.detail
    );
    assert!(g.detail.contains("baseline rate 4.00/s"), "{}", g.detail);
    assert_eq!(g.evidence["first"], json!(10));
}

#[test]
fn window_counts_from_readiness_not_from_the_change() {
    let p = plan(false, IdlePolicy::Fail);
    let start = Reading::Transient("421 NotAcceptingRequests".into());
    // Not ready until 8s; the index does not move before that, which must not count.
    let seq = [
        obs(1.0, start.clone(), 10),
        obs(7.0, start, 10),
        obs(8.0, green(), 10),
        obs(12.9, green(), 10),
    ];
    assert!(matches!(run(&p, &seq), Decision::Wait { .. }));
    let mut seq = seq.to_vec();
    seq.push(obs(13.0, green(), 11));
    assert!(matches!(run(&p, &seq), Decision::Promote { .. }));
}

#[test]
fn min_healthy_holds_promotion_back() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(3.0);
    // Green at 1s and progressing at 2s, but readiness has held for 1s only.
    let d = run(&p, &[obs(1.0, green(), 10), obs(2.0, green(), 14)]);
    let Decision::Wait { pending, deadline } = d else {
        panic!("{d:?}")
    };
    assert_eq!(pending, vec!["stable"]);
    assert_eq!(deadline, secs(6.0));
    // Held for 3s: promoted, and the record says how long it held.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 10),
            obs(2.0, green(), 14),
            obs(4.0, green(), 15),
        ],
    );
    let Decision::Promote { gates } = d else {
        panic!("{d:?}")
    };
    let stable = gates.iter().find(|g| g.name == "stable").unwrap();
    assert_eq!(stable.verdict, Verdict::Pass);
    assert_eq!(stable.evidence["held_s"], json!(3.0));
    // A version that answers once and then dies inside the hold is rolled back.
    let died = Reading::Transient("connection refused".into());
    let d = run(
        &p,
        &[
            obs(1.0, green(), 10),
            obs(2.0, green(), 14),
            obs(2.5, died, 14),
        ],
    );
    assert_eq!(failed_gate(&d).name, "readiness:operator");
}

#[test]
fn transient_errors_are_tolerated_until_the_deadline_only() {
    let p = plan(false, IdlePolicy::Fail);
    let t = Reading::Transient("421 NotAcceptingRequests".into());
    assert!(matches!(
        run(&p, &[obs(9.9, t.clone(), 1)]),
        Decision::Wait { .. }
    ));
    let d = run(&p, &[obs(9.9, t.clone(), 1), obs(10.0, t, 1)]);
    let g = failed_gate(&d);
    assert_eq!(g.name, "readiness:operator");
    assert!(
        g.detail.contains("not green within 10s") && g.detail.contains("421"),
        "{}",
        g.detail
    );
}

#[test]
fn a_plain_failure_before_the_deadline_is_start_up_but_after_green_is_final() {
    let p = plan(false, IdlePolicy::Fail);
    let degraded = Reading::Fail("/health is \"Starting\"".into());
    assert!(matches!(
        run(&p, &[obs(1.0, degraded.clone(), 1)]),
        Decision::Wait { .. }
    ));
    let d = run(&p, &[obs(1.0, green(), 1), obs(2.0, degraded, 2)]);
    assert!(
        failed_gate(&d).detail.starts_with("was green, then"),
        "{d:?}"
    );
}

#[test]
fn idle_baseline_follows_the_policy() {
    let seq = [obs(1.0, green(), 10), obs(6.0, green(), 10)];
    let d = run(&plan(true, IdlePolicy::Fail), &seq);
    assert!(failed_gate(&d).detail.contains("idle_progression = fail"));
    for (policy, verdict) in [
        (IdlePolicy::Inconclusive, Verdict::Inconclusive),
        (IdlePolicy::Pass, Verdict::Pass),
    ] {
        let Decision::Promote { gates } = run(&plan(true, policy), &seq) else {
            panic!()
        };
        let g = gates
            .iter()
            .find(|g| g.name == "progression:requestIndex")
            .unwrap();
        assert_eq!(g.verdict, verdict);
        assert!(g.detail.contains("baseline was idle"), "{}", g.detail);
        assert_eq!(g.evidence["idle_policy"], json!(policy.as_str()));
    }
    // An idle baseline whose new version does progress simply passes.
    assert!(matches!(
        run(
            &plan(true, IdlePolicy::Fail),
            &[obs(1.0, green(), 1), obs(2.0, green(), 2)]
        ),
        Decision::Promote { .. }
    ));
}

#[test]
fn only_new_faults_fail() {
    let p = plan(false, IdlePolicy::Fail);
    let mut a = obs(1.0, green(), 1);
    a.faults.insert("/attestation/fault=\"old\"".into());
    let mut b = obs(2.0, green(), 2);
    b.faults.insert("/attestation/fault=\"old\"".into());
    assert!(matches!(run(&p, &[a.clone(), b]), Decision::Promote { .. }));
    let mut c = obs(2.0, green(), 2);
    c.faults.insert("/registration/fault=\"rejected\"".into());
    let d = run(&p, &[a.clone(), c]);
    assert_eq!(failed_gate(&d).name, "faults");
    let mut l = obs(2.0, green(), 2);
    l.log_faults
        .push("attestation failed: quote rejected".into());
    assert!(
        failed_gate(&run(&p, &[a, l]))
            .detail
            .contains("attestation failed")
    );
}

#[test]
fn one_dependency_blip_is_tolerated_two_are_not() {
    let p = plan(false, IdlePolicy::Fail);
    let down = |at, idx| {
        let mut o = obs(at, green(), idx);
        o.dependencies.insert(
            "postgres".into(),
            Reading::Fail("connection refused".into()),
        );
        o
    };
    let d = run(
        &p,
        &[obs(1.0, green(), 1), down(1.5, 1), obs(2.0, green(), 2)],
    );
    assert!(matches!(d, Decision::Promote { .. }), "{d:?}");
    let d = run(&p, &[obs(1.0, green(), 1), down(1.5, 1), down(2.0, 1)]);
    assert_eq!(failed_gate(&d).name, "dependency:postgres");
    // The engine does not promote while the latest dependency reading is a failure.
    assert!(matches!(
        run(&p, &[obs(1.0, green(), 1), down(2.0, 2)]),
        Decision::Wait { .. }
    ));
}

#[test]
fn a_crashed_component_fails_at_once() {
    let p = plan(false, IdlePolicy::Fail);
    let mut o = obs(0.5, Reading::Transient("connection refused".into()), 0);
    o.crashed.insert(
        "operator".into(),
        "exited with code 1, restarted 2 times".into(),
    );
    assert_eq!(failed_gate(&run(&p, &[o])).name, "component:operator");
}

#[test]
fn numeric_readings() {
    assert_eq!(numeric(&json!("0x1f")), Some(31.0));
    assert_eq!(numeric(&json!("12")), Some(12.0));
    assert_eq!(numeric(&json!(3)), Some(3.0));
    assert_eq!(numeric(&json!("abc")), None);
    assert!(moved(
        ProgressionMode::Changes,
        &json!("0xaa"),
        &json!("0xab")
    ));
    assert!(!moved(ProgressionMode::Increases, &json!(5), &json!(4)));
}

fn arb_reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        3 => Just(Reading::Pass("ok".into())),
        1 => Just(Reading::Transient("421".into())),
        1 => Just(Reading::Fail("bad".into())),
    ]
}

fn arb_obs() -> impl Strategy<Value = (u64, Reading, Reading, i64, bool, bool)> {
    (
        0u64..3000,
        arb_reading(),
        arb_reading(),
        0i64..4,
        any::<bool>(),
        prop::bool::weighted(0.05),
    )
}

proptest! {
    /// No sequence of observations promotes past a failed gate, a final decision never changes,
    /// and the fold (`decide`) agrees with stepping.
    #[test]
    fn never_promotes_past_a_failed_gate(steps in prop::collection::vec(arb_obs(), 1..60), idle in any::<bool>()) {
        let p = plan(idle, IdlePolicy::Inconclusive);
        let mut engine = GateEngine::new(p.clone());
        let mut t = 0u64;
        let mut idx = 0i64;
        let mut seen_fail = false;
        let mut final_decision: Option<Decision> = None;
        let mut seq = Vec::new();
        let mut last = None;
        for (dt, op, dep, inc, fault, crash) in steps {
            t += dt;
            idx += inc;
            let mut o = obs(t as f64 / 1000.0, op, idx);
            o.dependencies.insert("postgres".into(), dep);
            if fault { o.faults.insert("/attestation/fault=\"old\"".into()); }
            if crash { o.crashed.insert("operator".into(), "exited".into()); }
            seq.push(o.clone());
            let d = engine.step(&o);
            if let Some(f) = &final_decision {
                prop_assert_eq!(&d, f);
            }
            if seen_fail {
                prop_assert!(!matches!(d, Decision::Promote { .. }), "promoted after a failed gate: {:?}", d);
            }
            if let Decision::Promote { gates } = &d {
                prop_assert!(gates.iter().all(|g| g.verdict != Verdict::Fail));
            }
            if engine.gates().iter().any(|g| g.verdict == Verdict::Fail) {
                seen_fail = true;
                let rolled_back = matches!(d, Decision::RollBack { .. });
                prop_assert!(rolled_back, "a failed gate did not roll back: {:?}", d);
            }
            if d.is_final() && final_decision.is_none() {
                final_decision = Some(d.clone());
            }
            last = Some(d);
        }
        prop_assert_eq!(run(&p, &seq), last.unwrap());
    }
}

//! Tests of the gate engine: time is a parameter, so windows and deadlines are exercised
//! exactly, without sleeping.

use super::*;
use proptest::prelude::*;

use crate::analysis::Sample;
use crate::config::NoDataPolicy;

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
        analysis: Vec::new(),
        monitoring: None,
        alert_gate: false,
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
    // A version that answers once and then dies inside the hold is rolled back (two failed
    // polls: one is tolerated as a blip).
    let died = Reading::Transient("connection refused".into());
    let d = run(
        &p,
        &[
            obs(1.0, green(), 10),
            obs(2.0, green(), 14),
            obs(2.5, died.clone(), 14),
            obs(3.0, died, 14),
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
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            obs(2.0, degraded.clone(), 2),
            obs(3.0, degraded, 2),
        ],
    );
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

/// An observation like [`obs`] whose progression signal could not be read.
fn unreadable(at: f64) -> Observation {
    let mut o = obs(at, green(), 0);
    o.progression.insert("requestIndex".into(), None);
    o
}

#[test]
fn a_signal_never_readable_after_readiness_fails_when_its_window_closes() {
    let p = plan(false, IdlePolicy::Fail);
    let seq: Vec<Observation> = (1..=5).map(|s| unreadable(s as f64)).collect();
    assert!(matches!(run(&p, &seq), Decision::Wait { .. }));
    let mut seq = seq;
    seq.push(unreadable(6.0));
    let d = run(&p, &seq);
    let g = failed_gate(&d);
    assert_eq!(g.name, "progression:requestIndex");
    assert!(
        g.detail.contains("unreadable after readiness"),
        "{}",
        g.detail
    );
    // A missing reading (the key absent) is unreadable too.
    let mut missing = obs(6.0, green(), 0);
    missing.progression.clear();
    let d = run(&p, &[unreadable(1.0), missing]);
    assert!(
        failed_gate(&d)
            .detail
            .contains("unreadable after readiness"),
        "{d:?}"
    );
}

#[test]
fn a_signal_that_becomes_unreadable_fails_whatever_the_idle_policy() {
    // The baseline was idle and the policy would pass a still signal, but a signal that cannot
    // be read is not still: it is unreadable.
    for policy in [IdlePolicy::Pass, IdlePolicy::Inconclusive, IdlePolicy::Fail] {
        let p = plan(true, policy);
        let d = run(
            &p,
            &[obs(1.0, green(), 10), unreadable(3.0), unreadable(6.0)],
        );
        let g = failed_gate(&d);
        assert_eq!(g.name, "progression:requestIndex", "{policy:?}");
        assert!(
            g.detail.contains("unreadable after readiness") && g.detail.contains("10"),
            "{}",
            g.detail
        );
    }
}

#[test]
fn a_dependency_never_observed_fails_at_the_readiness_deadline() {
    let p = plan(false, IdlePolicy::Fail);
    let blind = |at: f64, idx| {
        let mut o = obs(at, green(), idx);
        o.dependencies.clear();
        o
    };
    let d = run(&p, &[blind(1.0, 1), blind(2.0, 2), blind(9.9, 3)]);
    assert!(matches!(d, Decision::Wait { .. }), "{d:?}");
    let d = run(&p, &[blind(1.0, 1), blind(2.0, 2), blind(10.0, 3)]);
    let g = failed_gate(&d);
    assert_eq!(g.name, "dependency:postgres");
    assert!(g.detail.contains("not observed"), "{}", g.detail);
    // Observed once, early: that is enough (dependencies may be polled every n-th poll).
    let d = run(&p, &[obs(1.0, green(), 1), blind(2.0, 2)]);
    assert!(matches!(d, Decision::Promote { .. }), "{d:?}");
}

#[test]
fn a_readiness_check_never_observed_fails_at_the_deadline() {
    let p = plan(false, IdlePolicy::Fail);
    let blind = |at: f64| {
        let mut o = obs(at, green(), 1);
        o.readiness.remove("kyc");
        o
    };
    assert!(matches!(run(&p, &[blind(9.0)]), Decision::Wait { .. }));
    let d = run(&p, &[blind(9.0), blind(10.0)]);
    let g = failed_gate(&d);
    assert_eq!(g.name, "readiness:kyc");
    assert!(g.detail.contains("not observed"), "{}", g.detail);
}

#[test]
fn one_readiness_blip_after_green_is_tolerated_two_are_not() {
    let p = plan(false, IdlePolicy::Fail);
    let blip = Reading::Transient("timed out after 5s".into());
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            obs(2.0, blip.clone(), 1),
            obs(3.0, green(), 2),
        ],
    );
    assert!(matches!(d, Decision::Promote { .. }), "{d:?}");
    // While the latest poll is a tolerated failure, the engine does not promote.
    let d = run(&p, &[obs(1.0, green(), 1), obs(2.0, blip.clone(), 2)]);
    let Decision::Wait { pending, .. } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(pending, &vec!["readiness:operator".to_string()]);
    // Two in a row fail, whatever their kind.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            obs(2.0, blip.clone(), 1),
            obs(3.0, Reading::Fail("/health is \"Degraded\"".into()), 1),
        ],
    );
    let g = failed_gate(&d);
    assert_eq!(g.name, "readiness:operator");
    assert!(
        g.detail.starts_with("was green, then") && g.detail.contains("Degraded"),
        "{}",
        g.detail
    );
    // A Pass in between resets the count.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            obs(2.0, blip.clone(), 1),
            obs(3.0, green(), 1),
            obs(4.0, blip.clone(), 1),
            obs(5.0, green(), 2),
        ],
    );
    assert!(matches!(d, Decision::Promote { .. }), "{d:?}");
    // With dependency_failures = 1 the first failed poll after green fails, as before.
    let mut strict = p.clone();
    strict.dependency_failures = 1;
    let d = run(&strict, &[obs(1.0, green(), 1), obs(2.0, blip, 1)]);
    assert_eq!(failed_gate(&d).name, "readiness:operator");
}

#[test]
fn a_tolerated_readiness_blip_does_not_restart_the_stable_hold() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(3.0);
    let blip = Reading::Transient("timed out".into());
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            obs(2.0, blip, 2),
            obs(4.0, green(), 3),
        ],
    );
    let Decision::Promote { gates } = d else {
        panic!("{d:?}")
    };
    let stable = gates.iter().find(|g| g.name == "stable").unwrap();
    assert_eq!(stable.evidence["held_s"], json!(3.0));
}

#[test]
fn counters_past_sixteen_hex_digits_still_increase() {
    let a = json!("0x1234567890abcdef0000");
    let b = json!("0x1234567890abcdef0001");
    assert!(moved(ProgressionMode::Increases, &a, &b));
    assert!(!moved(ProgressionMode::Increases, &b, &a));
    assert!(moved(
        ProgressionMode::Increases,
        &json!("18446744073709551616"),
        &json!("18446744073709551617")
    ));
    // Through the engine: a 20-digit counter moving by one passes its gate.
    let p = plan(false, IdlePolicy::Fail);
    let mut o1 = obs(1.0, green(), 0);
    o1.progression.insert("requestIndex".into(), Some(a));
    let mut o2 = obs(2.0, green(), 0);
    o2.progression.insert("requestIndex".into(), Some(b));
    assert!(matches!(run(&p, &[o1, o2]), Decision::Promote { .. }));
}

#[test]
fn green_only_after_the_deadline_is_too_late() {
    let p = plan(false, IdlePolicy::Fail);
    let t = Reading::Transient("421 NotAcceptingRequests".into());
    let d = run(&p, &[obs(9.0, t, 1), obs(10.5, green(), 1)]);
    let g = failed_gate(&d);
    assert_eq!(g.name, "readiness:operator");
    assert!(g.detail.contains("green only at 10.5s"), "{}", g.detail);
    // Exactly at the deadline is in time.
    assert!(matches!(
        run(&p, &[obs(10.0, green(), 1)]),
        Decision::Wait { .. }
    ));
}

#[test]
fn the_hard_deadline_bounds_every_wait() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(2.0);
    let engine = GateEngine::new(p.clone());
    assert_eq!(engine.hard_deadline(), secs(17.0));
    assert_eq!(engine.next_deadline(), secs(10.0));
    // Green at 9s: the window and the hold close at 14s.
    let mut engine = GateEngine::new(p.clone());
    let d = engine.step(&obs(9.0, green(), 1));
    assert_eq!(
        d,
        Decision::Wait {
            pending: vec!["progression:requestIndex".into(), "stable".into()],
            deadline: secs(14.0)
        }
    );
    // A dependency blip keeps the engine waiting past that, up to the bound only.
    p.dependency_failures = 3;
    let mut engine = GateEngine::new(p);
    let blip = |at: f64, idx| {
        let mut o = obs(at, green(), idx);
        o.dependencies
            .insert("postgres".into(), Reading::Fail("timed out".into()));
        o
    };
    engine.step(&obs(9.0, green(), 1));
    let d = engine.step(&blip(13.0, 2));
    let pending = vec!["dependency:postgres".to_string()];
    assert_eq!(
        d,
        Decision::Wait {
            pending: pending.clone(),
            deadline: secs(14.0)
        }
    );
    let d = engine.step(&blip(16.0, 3));
    assert_eq!(
        d,
        Decision::Wait {
            pending,
            deadline: secs(17.0)
        }
    );
    // Not observed on the poll at the bound (polled every n-th time): still undecided.
    let mut late = obs(17.0, green(), 4);
    late.dependencies.clear();
    let d = engine.step(&late);
    let g = failed_gate(&d);
    assert_eq!(g.name, "dependency:postgres");
    assert!(
        g.detail.starts_with("not decided by its deadline"),
        "{}",
        g.detail
    );
    assert!(
        g.detail.contains("2 failed poll(s) in a row"),
        "{}",
        g.detail
    );
}

#[test]
fn expire_fails_every_pending_gate_and_never_promotes() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(3.0);
    // Everything but `stable` has passed; the observations then stop arriving.
    let mut engine = GateEngine::new(p.clone());
    assert!(!engine.step(&obs(1.0, green(), 1)).is_final());
    assert!(!engine.step(&obs(2.0, green(), 2)).is_final());
    let d = engine.expire(secs(30.0));
    let Decision::RollBack { gates, reason } = &d else {
        panic!("{d:?}")
    };
    let stable = gates.iter().find(|g| g.name == "stable").unwrap();
    assert_eq!(stable.verdict, Verdict::Fail);
    assert!(
        stable.detail.starts_with("not decided by its deadline"),
        "{}",
        stable.detail
    );
    assert!(reason.starts_with("stable: not decided"), "{reason}");
    assert_eq!(stable.evidence["pending"], json!(false));
    // The decision is final.
    assert_eq!(engine.step(&obs(31.0, green(), 3)), d);
    // Before any observation: every readiness check fails.
    let mut engine = GateEngine::new(p.clone());
    let d = engine.expire(secs(30.0));
    assert_eq!(failed_gate(&d).name, "readiness:kyc");
    // After a promotion, expire changes nothing.
    let mut engine = GateEngine::new(plan(false, IdlePolicy::Fail));
    engine.step(&obs(1.0, green(), 1));
    let promoted = engine.step(&obs(2.0, green(), 2));
    assert!(matches!(promoted, Decision::Promote { .. }));
    assert_eq!(engine.expire(secs(30.0)), promoted);
}

/// How a generated node behaves.
#[derive(Debug, Clone, Copy)]
enum Noise {
    /// Rarely fails: often promotes.
    Calm,
    /// Blips (timeouts, polls without a reading) but no faults: tolerated failures pending at
    /// the bound.
    Flaky,
    /// Anything, often.
    Noisy,
}

/// A reading, or none at all (the check was not observed on this poll).
fn arb_maybe_reading(noise: Noise) -> impl Strategy<Value = Option<Reading>> {
    let (pass, transient, fail, none) = match noise {
        Noise::Calm => (40, 1, 1, 1),
        Noise::Flaky => (12, 1, 0, 1),
        Noise::Noisy => (3, 1, 1, 1),
    };
    prop_oneof![
        pass => Just(Some(Reading::Pass("ok".into()))),
        transient => Just(Some(Reading::Transient("421".into()))),
        fail => Just(Some(Reading::Fail("bad".into()))),
        none => Just(None),
    ]
}

/// How a progression signal reads on one poll.
#[derive(Debug, Clone)]
enum Sig {
    /// Readable; the counter moves by this much.
    Read(i64),
    /// Present but unreadable (`None`).
    Unreadable,
    /// Absent from the observation.
    Missing,
}

fn arb_sig(noise: Noise) -> impl Strategy<Value = Sig> {
    let (read, unreadable) = match noise {
        Noise::Calm => (40, 1),
        Noise::Flaky => (1, 0),
        Noise::Noisy => (8, 1),
    };
    prop_oneof![
        read => (0i64..3).prop_map(Sig::Read),
        unreadable => Just(Sig::Unreadable),
        unreadable => Just(Sig::Missing),
    ]
}

fn error_rate(failure_limit: u32, no_data: NoDataPolicy) -> Analysis {
    Analysis {
        name: "error-rate".into(),
        query: "sum(rate(operator_errors_total[30s]))".into(),
        success: "< 0.01".parse().unwrap(),
        interval: secs(1.0),
        failure_limit,
        inconclusive_limit: 0,
        no_data,
    }
}

fn with_rate(mut o: Observation, v: Option<f64>) -> Observation {
    o.analysis.insert(
        "error-rate".into(),
        match v {
            Some(value) => Sampled::Values(vec![Sample {
                labels: String::new(),
                value,
            }]),
            None => Sampled::Unavailable("prometheus: connection refused".into()),
        },
    );
    o
}

#[test]
fn analysis_is_measured_after_readiness_and_holds_promotion_until_measured() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(3.0);
    p.analysis = vec![error_rate(0, NoDataPolicy::Fail)];
    let mut engine = GateEngine::new(p);
    assert!(
        engine.analysis_due(secs(0.5)).is_empty(),
        "measured before readiness"
    );
    // Before readiness a measurement is ignored, even a failing one.
    engine.step(&with_rate(
        obs(0.5, Reading::Transient("421".into()), 1),
        Some(9.0),
    ));
    engine.step(&obs(1.0, green(), 2));
    assert_eq!(
        engine.analysis_due(secs(2.0)),
        vec!["error-rate".to_string()]
    );
    engine.step(&with_rate(obs(2.0, green(), 3), Some(0.0)));
    assert!(
        engine.analysis_due(secs(2.5)).is_empty(),
        "interval not over"
    );
    // The hold is over at 4.0 and the gate measured: promote.
    let d = engine.step(&with_rate(obs(4.0, green(), 4), Some(0.001)));
    let Decision::Promote { gates } = d else {
        panic!("{d:?}")
    };
    let g = gates
        .iter()
        .find(|g| g.name == "analysis:error-rate")
        .unwrap();
    assert_eq!(g.verdict, Verdict::Pass, "{g:?}");
    assert_eq!(g.evidence["measured"], json!(2));
    assert_eq!(
        g.evidence["measurements"][0]["samples"][0]["value"],
        json!(0.0)
    );

    // Without a measurement the hold alone does not promote.
    let mut p = plan(false, IdlePolicy::Fail);
    p.analysis = vec![error_rate(0, NoDataPolicy::Fail)];
    let d = run(&p, &[obs(1.0, green(), 2), obs(2.0, green(), 3)]);
    assert!(
        matches!(d, Decision::Wait { ref pending, .. } if pending.contains(&"analysis:error-rate".to_string())),
        "{d:?}"
    );
}

#[test]
fn analysis_fails_once_failures_pass_the_limit() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(10.0);
    p.analysis = vec![error_rate(1, NoDataPolicy::Fail)];
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            with_rate(obs(2.0, green(), 2), Some(0.5)),
            with_rate(obs(3.0, green(), 3), Some(0.0)),
        ],
    );
    assert!(
        !d.is_final(),
        "one failure is within failure_limit = 1: {d:?}"
    );
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            with_rate(obs(2.0, green(), 2), Some(0.5)),
            with_rate(obs(3.0, green(), 3), Some(0.0)),
            with_rate(obs(4.0, green(), 4), Some(0.2)),
        ],
    );
    let g = failed_gate(&d);
    assert_eq!(g.name, "analysis:error-rate");
    assert!(
        g.detail
            .contains("2 failed measurement(s), more than failure_limit = 1"),
        "{}",
        g.detail
    );
    assert!(g.detail.contains("0.2 not < 0.01"), "{}", g.detail);
}

#[test]
fn analysis_without_data_follows_no_data_and_says_so() {
    for (policy, expect) in [
        (NoDataPolicy::Fail, Verdict::Fail),
        (NoDataPolicy::Inconclusive, Verdict::Inconclusive),
        (NoDataPolicy::Pass, Verdict::Pass),
    ] {
        let mut p = plan(false, IdlePolicy::Fail);
        p.analysis = vec![error_rate(0, policy)];
        let d = run(
            &p,
            &[obs(1.0, green(), 1), with_rate(obs(2.0, green(), 2), None)],
        );
        assert!(d.is_final(), "{d:?}");
        let gates = match &d {
            Decision::Promote { gates } | Decision::RollBack { gates, .. } => gates,
            _ => unreachable!(),
        };
        let g = gates
            .iter()
            .find(|g| g.name == "analysis:error-rate")
            .unwrap();
        assert_eq!(g.verdict, expect, "{policy:?}: {g:?}");
        assert!(g.detail.contains("connection refused"), "{}", g.detail);
        assert!(g.detail.contains("no_data = "), "{}", g.detail);
        assert_eq!(
            expect == Verdict::Fail,
            matches!(d, Decision::RollBack { .. })
        );
    }
}

/// One poll: the time since the previous one (at most a second), what it saw.
#[derive(Debug, Clone)]
struct Poll {
    dt_ms: u64,
    operator: Option<Reading>,
    kyc: Option<Reading>,
    index: Sig,
    hash: Sig,
    dep: Option<Reading>,
    old_fault: bool,
    new_fault: bool,
    log_fault: bool,
    crash: bool,
    /// The analysis query's value on this poll: `None` unmeasured, `Some(None)` no data.
    error_rate: Option<Option<f64>>,
    /// What Prometheus said: `None` not asked, `Some(None)` unreachable, else (series of the
    /// rule, a new alert firing).
    prom: Option<Option<(u64, bool)>>,
}

fn arb_poll(noise: Noise) -> impl Strategy<Value = Poll> {
    let rare = match noise {
        Noise::Calm => 0.002,
        Noise::Flaky => 0.0,
        Noise::Noisy => 0.03,
    };
    (
        (
            0u64..=1000,
            arb_maybe_reading(noise),
            arb_maybe_reading(noise),
        ),
        (arb_sig(noise), arb_sig(noise), arb_maybe_reading(noise)),
        (
            any::<bool>(),
            prop::bool::weighted(rare),
            prop::bool::weighted(rare),
            prop::bool::weighted(rare),
        ),
        (
            prop::option::of(prop::option::of(prop_oneof![
                8 => Just(0.0),
                1 => Just(0.5),
                1 => Just(f64::NAN),
            ])),
            prop::option::of(prop::option::of((0u64..2, prop::bool::weighted(0.2)))),
        ),
    )
        .prop_map(
            |(
                (dt_ms, operator, kyc),
                (index, hash, dep),
                (old_fault, new_fault, log_fault, crash),
                (error_rate, prom),
            )| Poll {
                error_rate,
                prom,
                dt_ms,
                operator,
                kyc,
                index,
                hash,
                dep,
                old_fault,
                new_fault,
                log_fault,
                crash,
            },
        )
}

/// Polls of a calm, flaky or noisy node.
fn arb_polls(max: usize) -> impl Strategy<Value = Vec<Poll>> {
    prop_oneof![Just(Noise::Calm), Just(Noise::Flaky), Just(Noise::Noisy)]
        .prop_flat_map(move |noise| prop::collection::vec(arb_poll(noise), 1..max))
}

fn arb_policy() -> impl Strategy<Value = IdlePolicy> {
    prop_oneof![
        Just(IdlePolicy::Fail),
        Just(IdlePolicy::Inconclusive),
        Just(IdlePolicy::Pass),
    ]
}

/// Any plan of the shape the runner builds: two readiness checks, an `increases` counter and a
/// `changes` hash with their own windows and idle baselines, one dependency, a known fault.
fn arb_plan() -> impl Strategy<Value = GatePlan> {
    (
        1u64..15,
        (1u64..10, any::<bool>(), 1u64..10, any::<bool>()),
        arb_policy(),
        0u64..8,
        1u32..=3,
        prop::option::of(arb_analysis()),
        any::<bool>(),
    )
        .prop_map(
            |(
                deadline,
                (w1, idle1, w2, idle2),
                idle_policy,
                min_healthy,
                dependency_failures,
                analysis,
                monitored,
            )| {
                GatePlan {
                    readiness_deadline: secs(deadline as f64),
                    readiness: vec!["operator".into(), "kyc".into()],
                    progression: vec![
                        ProgressionGate {
                            name: "requestIndex".into(),
                            mode: ProgressionMode::Increases,
                            window: secs(w1 as f64),
                            baseline_idle: idle1,
                            baseline_rate_per_s: Some(if idle1 { 0.0 } else { 1.0 }),
                        },
                        ProgressionGate {
                            name: "lastTx".into(),
                            mode: ProgressionMode::Changes,
                            window: secs(w2 as f64),
                            baseline_idle: idle2,
                            baseline_rate_per_s: None,
                        },
                    ],
                    idle_policy,
                    dependencies: vec!["postgres".into()],
                    baseline_faults: ["/attestation/fault=\"old\"".to_string()]
                        .into_iter()
                        .collect(),
                    dependency_failures,
                    min_healthy: secs(min_healthy as f64),
                    analysis: analysis.into_iter().collect(),
                    monitoring: monitored.then(monitoring_baseline),
                    alert_gate: monitored,
                }
            },
        )
}

/// An analysis gate `error-rate < 0.01` with any limits, interval and no-data policy.
fn arb_analysis() -> impl Strategy<Value = Analysis> {
    (0u32..3, 0u32..3, 1u64..4, 0usize..3).prop_map(
        |(failure_limit, inconclusive_limit, interval, nd)| Analysis {
            name: "error-rate".into(),
            query: "rate(errors[1m])".into(),
            success: "< 0.01".parse().unwrap(),
            interval: secs(interval as f64),
            failure_limit,
            inconclusive_limit,
            no_data: [
                NoDataPolicy::Fail,
                NoDataPolicy::Inconclusive,
                NoDataPolicy::Pass,
            ][nd],
        },
    )
}

/// The bound by which the engine must have decided, computed here from the plan alone.
fn bound(p: &GatePlan) -> Duration {
    p.readiness_deadline
        + p.progression
            .iter()
            .map(|g| g.window)
            .max()
            .unwrap_or_default()
        + p.min_healthy
}

/// Turn polls into observations; `idx` and `tx` carry the signals' values across polls.
fn observation(t_ms: u64, poll: &Poll, idx: &mut i64, tx: &mut i64) -> Observation {
    let mut o = Observation {
        at: Duration::from_millis(t_ms),
        ..Default::default()
    };
    for (name, r) in [("operator", &poll.operator), ("kyc", &poll.kyc)] {
        if let Some(r) = r {
            o.readiness.insert(name.into(), r.clone());
        }
    }
    for (name, sig, value) in [
        ("requestIndex", &poll.index, &mut *idx),
        ("lastTx", &poll.hash, &mut *tx),
    ] {
        match sig {
            Sig::Read(inc) => {
                *value += inc;
                let v = if name == "lastTx" {
                    json!(format!("0x{:x}", *value))
                } else {
                    json!(*value)
                };
                o.progression.insert(name.into(), Some(v));
            }
            Sig::Unreadable => {
                o.progression.insert(name.into(), None);
            }
            Sig::Missing => {}
        }
    }
    if let Some(d) = &poll.dep {
        o.dependencies.insert("postgres".into(), d.clone());
    }
    if poll.old_fault {
        o.faults.insert("/attestation/fault=\"old\"".into());
    }
    if poll.new_fault {
        o.faults.insert("/registration/fault=\"rejected\"".into());
    }
    if poll.log_fault {
        o.log_faults.push("operator: attestation failed".into());
    }
    if poll.crash {
        o.crashed.insert("operator".into(), "exited".into());
    }
    if let Some(v) = poll.error_rate {
        let sampled = match v {
            Some(v) => Sampled::Values(vec![crate::analysis::Sample {
                labels: String::new(),
                value: v,
            }]),
            None => Sampled::Unavailable("connection refused".into()),
        };
        o.analysis.insert("error-rate".into(), sampled);
    }
    if let Some(p) = poll.prom {
        o.monitoring = Some(match p {
            None => Err("connection refused".into()),
            Some((series, alert)) => Ok(monitoring_now(series, alert)),
        });
    }
    o
}

/// A baseline with one recording rule returning one series, no firing alert.
fn monitoring_baseline() -> MonitoringRecord {
    monitoring_now(1, false)
}

fn monitoring_now(series: u64, alert: bool) -> MonitoringRecord {
    MonitoringRecord {
        rules: vec![crate::monitoring::RuleRecord {
            group: "node".into(),
            name: "node:requests:sum".into(),
            kind: "recording".into(),
            query: "sum(operator_requests_total)".into(),
            healthy: true,
            last_error: None,
            series: Some(series),
        }],
        firing: if alert {
            vec!["OperatorDown{node=\"node0\"}".into()]
        } else {
            vec![]
        },
    }
}

#[test]
fn rules_are_judged_at_the_end_of_the_hold_and_alerts_on_two_in_a_row() {
    let mut p = plan(false, IdlePolicy::Fail);
    p.min_healthy = secs(3.0);
    p.monitoring = Some(monitoring_baseline());
    p.alert_gate = true;
    let with = |mut o: Observation, series: u64, alert: bool| {
        o.monitoring = Some(Ok(monitoring_now(series, alert)));
        o
    };
    // Series missing right after readiness (no scrape yet), back by the end: passes; one
    // firing of the restart's own alert is tolerated.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            with(obs(1.5, green(), 2), 0, true),
            with(obs(2.5, green(), 3), 1, false),
            with(obs(4.0, green(), 4), 1, false),
        ],
    );
    assert!(matches!(d, Decision::Promote { .. }), "{d:?}");
    // Series still missing at the end: a renamed metric. Rolled back by `rules`.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            with(obs(2.0, green(), 2), 0, false),
            with(obs(4.0, green(), 4), 0, false),
        ],
    );
    let g = failed_gate(&d);
    assert_eq!(g.name, "rules");
    assert!(g.detail.contains("none now"), "{}", g.detail);
    // A new alert on two measurements in a row: rolled back by `alerts` before the hold ends.
    let d = run(
        &p,
        &[
            obs(1.0, green(), 1),
            with(obs(1.5, green(), 2), 1, true),
            with(obs(2.5, green(), 3), 1, true),
        ],
    );
    assert_eq!(failed_gate(&d).name, "alerts");
    // Prometheus unreachable: both inconclusive (recorded), not a rollback.
    let mut o = obs(4.0, green(), 4);
    o.monitoring = Some(Err("connection refused".into()));
    let d = run(&p, &[obs(1.0, green(), 1), o]);
    let Decision::Promote { gates } = d else {
        panic!("{d:?}")
    };
    for name in ["rules", "alerts"] {
        let g = gates.iter().find(|g| g.name == name).unwrap();
        assert_eq!(g.verdict, Verdict::Inconclusive, "{g:?}");
        assert!(g.detail.contains("connection refused"), "{g:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Safety: no sequence of observations promotes past a failed gate, a final decision never
    /// changes, a promotion carries no failed gate, and the fold (`decide`) agrees with stepping.
    #[test]
    fn never_promotes_past_a_failed_gate(p in arb_plan(), polls in arb_polls(80)) {
        let mut engine = GateEngine::new(p.clone());
        let (mut t, mut idx, mut tx) = (0u64, 0i64, 0i64);
        let mut seen_fail = false;
        let mut final_decision: Option<Decision> = None;
        let mut seq = Vec::new();
        let mut last = None;
        for poll in &polls {
            t += poll.dt_ms;
            let o = observation(t, poll, &mut idx, &mut tx);
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
                prop_assert!(!gates.iter().any(is_pending), "promoted with a pending gate: {:?}", gates);
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

    /// Liveness: whatever the node answers, as long as it is polled at least every second the
    /// engine's decision is final by `readiness_deadline + longest window + min_healthy`.
    /// With `silent`, the dependency blips once after the generated polls and is then never
    /// observed again (polled every n-th time, or gone from the configuration).
    #[test]
    fn always_decides_by_the_bound(p in arb_plan(), polls in arb_polls(40), silent in any::<bool>()) {
        let bound = bound(&p);
        let mut engine = GateEngine::new(p.clone());
        let (mut t, mut idx, mut tx) = (0u64, 0i64, 0i64);
        // Cycle through the generated polls until time runs past the bound.
        for (i, poll) in polls.iter().cycle().enumerate() {
            let mut poll = poll.clone();
            if silent && i >= polls.len() {
                poll.dep = (i == polls.len()).then(|| Reading::Fail("timed out".into()));
            }
            t += poll.dt_ms.max(1);
            let o = observation(t, &poll, &mut idx, &mut tx);
            let d = engine.step(&o);
            prop_assert_eq!(engine.hard_deadline(), bound);
            if let Decision::Wait { deadline, .. } = &d {
                prop_assert!(*deadline <= bound, "deadline {:?} past the bound {:?}", deadline, bound);
            }
            if o.at >= bound {
                prop_assert!(d.is_final(), "still waiting at {:?} (bound {:?}): {:?}", o.at, bound, d);
                break;
            }
        }
    }
}

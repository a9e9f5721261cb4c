//! Progression during the bake: each signal keeps moving, no slower than the baseline.
//!
//! Two rules. The **stall rule** ([`judge_stall`]) runs on every trend sample: a signal that has
//! not moved for its `[[progression]] window` fails the bake at once (the idle policy decides
//! when the baseline was idle too), and so movement within the last window before the end is
//! needed to promote. The **rate rule** ([`judge_progression`]) compares the whole period's
//! rate with the baseline's when the period ends.

use std::collections::BTreeMap;

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::{Config, IdlePolicy, Progression, ProgressionMode};
use rollgate_core::engine::moved;
use rollgate_core::units::format_duration;
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};

use super::{gate, no_data, no_data_name};

/// Where a progression signal stands in its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct LastMove {
    /// Seconds (on the readings' clock) of the reading that last moved it; the first reading's
    /// when none did.
    pub at_s: f64,
    /// Whether any reading moved it.
    pub moved: bool,
    /// Seconds of the last reading, and its value.
    pub last_read_s: f64,
    pub value: Value,
}

/// The last movement in `(seconds, value)` readings taken in order; `None` without readings.
///
/// A reading moves the signal when [`moved`] says so against the reference value: for
/// `increases` the highest value so far (a dip and its recovery are not progress), for `changes`
/// the previous value. A reading that cannot be compared with the reference (not a number)
/// becomes the new reference without counting as a move.
pub fn last_move(mode: ProgressionMode, readings: &[(f64, Value)]) -> Option<LastMove> {
    let ((t0, first), rest) = readings.split_first()?;
    let mut reference = first;
    let mut at_s = *t0;
    let mut any = false;
    for (t, v) in rest {
        if moved(mode, reference, v) {
            reference = v;
            at_s = *t;
            any = true;
        } else if !moved(mode, v, reference) && v != reference {
            reference = v;
        }
    }
    let (last_read_s, value) = readings.last()?;
    Some(LastMove {
        at_s,
        moved: any,
        last_read_s: *last_read_s,
        value: value.clone(),
    })
}

/// The stall rule for one signal at `now_s` (the readings' clock): `Some` when it has not moved
/// for its window, counted from its last move (or its first reading). The verdict is `fail`,
/// or `rollout.idle_progression` when the baseline was idle too. `None` while it is within its
/// window, and without readings (the end of the bake judges that by `bake.no_data`).
///
/// The readings see the value *at* each sample, so the real standstill is at least as long as
/// the measured one: sampling never makes a moving signal look stalled.
pub fn judge_stall(
    config: &Config,
    baseline: &Baseline,
    p: &Progression,
    readings: &[(f64, Value)],
    now_s: f64,
) -> Option<GateResult> {
    let last = last_move(p.mode, readings)?;
    let still_s = now_s - last.at_s;
    let window_s = p.window.as_secs_f64();
    if still_s.is_nan() || still_s < window_s {
        return None;
    }
    let verb = match p.mode {
        ProgressionMode::Increases => "increased",
        ProgressionMode::Changes => "changed",
    };
    let baseline_idle = baseline
        .progression
        .iter()
        .any(|r| r.name == p.name && r.idle);
    let since = if last.moved {
        format!("last moved {:.1}s into the bake", last.at_s)
    } else {
        "not once during the bake".to_string()
    };
    let unread_s = now_s - last.last_read_s;
    let unreadable = if unread_s >= window_s {
        format!("; unreadable for the last {unread_s:.1}s")
    } else {
        String::new()
    };
    let what = format!(
        "{} has not {verb} for {still_s:.1}s (window {}; {since}; stays at {}{unreadable})",
        p.name,
        format_duration(p.window),
        last.value
    );
    let policy = config.rollout.idle_progression;
    let evidence = json!({
        "pointer": p.pointer, "still_s": still_s, "window_s": window_s,
        "last_moved_at_s": if last.moved { json!(last.at_s) } else { Value::Null },
        "value": last.value, "last_read_at_s": last.last_read_s, "at_s": now_s,
        "baseline_idle": baseline_idle,
    });
    let (verdict, detail) = match (baseline_idle, policy) {
        (true, IdlePolicy::Inconclusive | IdlePolicy::Pass) => (
            if policy == IdlePolicy::Pass {
                Verdict::Pass
            } else {
                Verdict::Inconclusive
            },
            format!(
                "{what}; the baseline was idle too, idle_progression = {}",
                policy.as_str()
            ),
        ),
        _ => (
            Verdict::Fail,
            format!("progression stalled during the bake: {what}"),
        ),
    };
    Some(gate(
        &format!("bake:progression:{}", p.name),
        verdict,
        detail,
        evidence,
    ))
}

/// [`judge_stall`] for every configured signal at `now_s`: the stalled ones.
pub fn judge_stalls(
    config: &Config,
    baseline: &Baseline,
    readings: &BTreeMap<String, Vec<(f64, Value)>>,
    now_s: f64,
) -> Vec<GateResult> {
    config
        .progression
        .iter()
        .filter_map(|p| {
            let r = readings.get(&p.name).map(Vec::as_slice).unwrap_or(&[]);
            judge_stall(config, baseline, p, r, now_s)
        })
        .collect()
}

/// The end of the bake: the rate rule's gates, each replaced by its stall gate when the signal
/// stood still for its last window (unless the rate rule already found something worse).
pub fn merge_stalls(mut gates: Vec<GateResult>, stalls: Vec<GateResult>) -> Vec<GateResult> {
    let rank = |v: Verdict| match v {
        Verdict::Fail => 2,
        Verdict::Inconclusive => 1,
        Verdict::Pass => 0,
    };
    for s in stalls {
        match gates.iter_mut().find(|g| g.name == s.name) {
            Some(g) if rank(s.verdict) >= rank(g.verdict) => *g = s,
            Some(_) => {}
            None => gates.push(s),
        }
    }
    gates
}

/// Progression keeps moving, and no slower than `min_progression_ratio` times the baseline.
pub fn judge_progression(config: &Config, baseline: &Baseline, now: &Trends) -> Vec<GateResult> {
    let policy = &config.bake;
    let mut out = Vec::new();
    for p in &config.progression {
        let name = format!("bake:progression:{}", p.name);
        let Some(t) = now.progression.get(&p.name).filter(|t| t.samples >= 2) else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{}: fewer than 2 readings during the bake (no_data = {})",
                    p.name,
                    no_data_name(policy.no_data)
                ),
                json!({"pointer": p.pointer}),
            ));
            continue;
        };
        let did_move = moved(p.mode, &t.first, &t.last)
            || (p.mode == ProgressionMode::Changes && t.changes > 0);
        let recorded = baseline.progression.iter().find(|r| r.name == p.name);
        let baseline_idle = recorded.map(|r| r.idle).unwrap_or(false);
        let base_trend = baseline
            .trends
            .as_ref()
            .and_then(|b| b.progression.get(&p.name));
        let mut evidence = json!({"first": t.first, "last": t.last, "samples": t.samples, "changes": t.changes,
                                   "rate_per_s": t.rate_per_s, "baseline_idle": baseline_idle, "min_progression_ratio": policy.min_progression_ratio});
        if !did_move {
            let (verdict, detail) = if baseline_idle {
                let v = match config.rollout.idle_progression {
                    IdlePolicy::Fail => Verdict::Fail,
                    IdlePolicy::Inconclusive => Verdict::Inconclusive,
                    IdlePolicy::Pass => Verdict::Pass,
                };
                (
                    v,
                    format!(
                        "{} did not move during the bake; the baseline was idle too, idle_progression = {}",
                        p.name,
                        config.rollout.idle_progression.as_str()
                    ),
                )
            } else {
                (
                    Verdict::Fail,
                    format!(
                        "progression stalled during the bake: {} stayed at {}",
                        p.name, t.first
                    ),
                )
            };
            out.push(gate(&name, verdict, detail, evidence));
            continue;
        }
        // The baseline's rate in the same cadence (its trends), else the freeze's sampled rate
        // for numeric signals. A `changes` rate cannot exceed one change per sample, so both
        // sides are capped at what the coarser sampler could see.
        let now_interval = now.interval_ms.max(1) as f64 / 1000.0;
        let base_rate = match (base_trend, p.mode) {
            (Some(b), ProgressionMode::Changes) => {
                let cap = 1.0
                    / now_interval.max(
                        baseline
                            .trends
                            .as_ref()
                            .map(|b| b.interval_ms.max(1) as f64 / 1000.0)
                            .unwrap_or(now_interval),
                    );
                Some((b.rate_per_s.min(cap), t.rate_per_s.min(cap)))
            }
            (Some(b), ProgressionMode::Increases) => Some((b.rate_per_s, t.rate_per_s)),
            (None, ProgressionMode::Increases) => recorded.map(|r| (r.rate_per_s, t.rate_per_s)),
            (None, ProgressionMode::Changes) => None,
        };
        match base_rate {
            Some((b, n)) if b > 0.0 && b.is_finite() => {
                let ratio = n / b;
                evidence["baseline_rate_per_s"] = json!(b);
                evidence["ratio"] = json!(ratio);
                let numbers = format!(
                    "{n:.2}/s vs {b:.2}/s in the baseline (x{ratio:.2}; min_progression_ratio {})",
                    policy.min_progression_ratio
                );
                if ratio < policy.min_progression_ratio {
                    out.push(gate(
                        &name,
                        Verdict::Fail,
                        format!("{} progresses slower than the baseline: {numbers}", p.name),
                        evidence,
                    ));
                } else {
                    out.push(gate(
                        &name,
                        Verdict::Pass,
                        format!("{} kept moving: {numbers}", p.name),
                        evidence,
                    ));
                }
            }
            _ => out.push(gate(
                &name,
                Verdict::Pass,
                format!(
                    "{} kept moving during the bake ({} → {}); no baseline rate to compare with",
                    p.name, t.first, t.last
                ),
                evidence,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;
    use rollgate_core::baseline::{ProgressionRate, ProgressionTrend};
    use std::time::Duration;

    use super::super::gate;

    fn progression(samples: usize, first: u64, last: u64, rate: f64) -> ProgressionTrend {
        ProgressionTrend {
            samples,
            changes: (samples - 1) as u64,
            first: json!(first),
            last: json!(last),
            rate_per_s: rate,
        }
    }

    #[test]
    fn progression_rate_against_the_baseline() {
        let config = config();
        let mut base = trends(10_000);
        base.progression
            .insert("requestIndex".into(), progression(20, 0, 100, 10.0));
        let baseline = baseline(Some(base));
        let mut now = trends(10_000);
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 120, 2.0));
        let g = &judge_progression(&config, &baseline, &now)[0];
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        assert!(
            g.detail
                .contains("2.00/s vs 10.00/s in the baseline (x0.20; min_progression_ratio 0.5)"),
            "{}",
            g.detail
        );
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 190, 9.0));
        assert_eq!(
            judge_progression(&config, &baseline, &now)[0].verdict,
            Verdict::Pass
        );
        let mut stalled = progression(20, 100, 100, 0.0);
        stalled.changes = 0;
        now.progression.insert("requestIndex".into(), stalled);
        let g = &judge_progression(&config, &baseline, &now)[0];
        assert!(
            g.verdict == Verdict::Fail && g.detail.contains("stalled"),
            "{g:#?}"
        );
        // Without trends, the freeze's sampled rate is the reference for a numeric signal.
        let mut old = self::baseline(None);
        old.progression.push(ProgressionRate {
            name: "requestIndex".into(),
            first: json!(0),
            last: json!(40),
            window_ms: 10_000,
            rate_per_s: 4.0,
            idle: false,
        });
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 110, 1.0));
        assert_eq!(
            judge_progression(&config, &old, &now)[0].verdict,
            Verdict::Fail
        );
        // Never read: no_data.
        now.progression.clear();
        assert_eq!(
            judge_progression(&config, &baseline, &now)[0].verdict,
            Verdict::Inconclusive
        );
    }

    /// A counter that increases once a second for the first half of a 12 s bake, then stays.
    fn half_then_flat() -> Vec<(f64, Value)> {
        (0..=12)
            .map(|t| (t as f64, json!(100 + t.min(6) * 10)))
            .collect()
    }

    #[test]
    fn last_move_of_known_readings() {
        assert_eq!(last_move(ProgressionMode::Increases, &[]), None);
        let m = last_move(ProgressionMode::Increases, &half_then_flat()).unwrap();
        assert_eq!((m.at_s, m.moved, m.last_read_s), (6.0, true, 12.0));
        assert_eq!(m.value, json!(160));
        // A dip and its recovery to the old high are not progress; hex strings compare as numbers.
        let dip = [
            (0.0, json!(5)),
            (1.0, json!(3)),
            (2.0, json!(5)),
            (3.0, json!(6)),
        ];
        assert_eq!(
            last_move(ProgressionMode::Increases, &dip).unwrap().at_s,
            3.0
        );
        let dip = [(0.0, json!(5)), (1.0, json!(3)), (2.0, json!(5))];
        let m = last_move(ProgressionMode::Increases, &dip).unwrap();
        assert!(!m.moved && m.at_s == 0.0, "{m:?}");
        let hex = [(0.0, json!("0x0a")), (1.0, json!("0x0b"))];
        assert!(last_move(ProgressionMode::Increases, &hex).unwrap().moved);
        // `changes`: any different value moves it, back and forth included.
        let tx = [
            (0.0, json!("a")),
            (1.0, json!("b")),
            (2.0, json!("a")),
            (3.0, json!("a")),
        ];
        assert_eq!(last_move(ProgressionMode::Changes, &tx).unwrap().at_s, 2.0);
        // Not a number at first: the first number becomes the reference without a move.
        let odd = [(0.0, json!("n/a")), (1.0, json!(7)), (2.0, json!(7))];
        assert!(!last_move(ProgressionMode::Increases, &odd).unwrap().moved);
    }

    /// issue 11 item 5: judged by the whole-bake average the half-then-flat counter passes (it
    /// moved, at over half the baseline's rate); the stall rule fails it, a window after its
    /// last move, with the signal and how long it stood still.
    #[test]
    fn a_signal_that_stops_halfway_through_the_bake_fails() {
        let mut config = config();
        config.progression[0].window = Duration::from_secs(5);
        let mut base = trends(12_000);
        base.progression
            .insert("requestIndex".into(), progression(13, 0, 120, 10.0));
        let baseline = baseline(Some(base));
        let readings = BTreeMap::from([("requestIndex".to_string(), half_then_flat())]);
        let mut now = trends(12_000);
        now.progression
            .insert("requestIndex".into(), progression(13, 100, 160, 5.5));
        let by_rate = judge_progression(&config, &baseline, &now);
        assert_eq!(by_rate[0].verdict, Verdict::Pass, "{by_rate:#?}");

        // Within its window at 10.9 s, stalled at 11 s: the bake stops there.
        assert_eq!(
            judge_stall(
                &config,
                &baseline,
                &config.progression[0],
                &readings["requestIndex"],
                10.9
            ),
            None
        );
        let stalls = judge_stalls(&config, &baseline, &readings, 11.0);
        assert_eq!(stalls.len(), 1);
        let g = &stalls[0];
        assert_eq!(g.name, "bake:progression:requestIndex");
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        assert!(
            g.detail.contains(
                "progression stalled during the bake: requestIndex has not increased for 5.0s (window 5s; last moved 6.0s into the bake; stays at 160)"
            ),
            "{}",
            g.detail
        );
        assert_eq!(g.evidence["still_s"], 5.0);
        // At the end of the bake the stall replaces the rate rule's pass.
        let end = merge_stalls(by_rate, judge_stalls(&config, &baseline, &readings, 12.0));
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].verdict, Verdict::Fail, "{end:#?}");
        assert!(end[0].detail.contains("for 6.0s"), "{}", end[0].detail);
    }

    #[test]
    fn a_stall_follows_the_idle_policy_when_the_baseline_was_idle() {
        let mut config = config();
        config.progression[0].window = Duration::from_secs(5);
        let mut idle = baseline(None);
        idle.progression.push(ProgressionRate {
            name: "requestIndex".into(),
            first: json!(3),
            last: json!(3),
            window_ms: 10_000,
            rate_per_s: 0.0,
            idle: true,
        });
        let flat: Vec<(f64, Value)> = (0..=12).map(|t| (t as f64, json!(3))).collect();
        let p = &config.progression[0];
        config.rollout.idle_progression = IdlePolicy::Inconclusive;
        let g = judge_stall(&config, &idle, p, &flat, 12.0).unwrap();
        assert_eq!(g.verdict, Verdict::Inconclusive, "{g:#?}");
        assert!(
            g.detail.contains("not once during the bake")
                && g.detail.contains("idle_progression = inconclusive"),
            "{}",
            g.detail
        );
        config.rollout.idle_progression = IdlePolicy::Fail;
        let g = judge_stall(&config, &idle, p, &flat, 12.0).unwrap();
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        // Readings that stop count as standing still, and say so.
        let g = judge_stall(&config, &idle, p, &half_then_flat()[..4], 12.0).unwrap();
        assert!(
            g.detail.contains("unreadable for the last 9.0s"),
            "{}",
            g.detail
        );
        // Never read: the end of the bake judges it by no_data, not the stall rule.
        assert_eq!(judge_stall(&config, &idle, p, &[], 100.0), None);
    }

    #[test]
    fn merge_keeps_the_worse_verdict() {
        let g = |v: Verdict, d: &str| gate("bake:progression:x", v, d.into(), Value::Null);
        let out = merge_stalls(
            vec![g(Verdict::Fail, "slow")],
            vec![g(Verdict::Inconclusive, "idle")],
        );
        assert_eq!(out[0].detail, "slow");
        let out = merge_stalls(
            vec![g(Verdict::Pass, "ok")],
            vec![g(Verdict::Inconclusive, "idle")],
        );
        assert_eq!(out[0].detail, "idle");
    }
}

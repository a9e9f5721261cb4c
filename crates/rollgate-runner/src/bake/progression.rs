//! Progression during the bake: each signal keeps moving, no slower than the baseline.

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::{Config, IdlePolicy, ProgressionMode};
use rollgate_core::engine::moved;
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::json;

use super::{gate, no_data, no_data_name};

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
}

//! Latency per timed endpoint against the baseline's: significantly and substantially slower.

use rollgate_core::baseline::Trends;
use rollgate_core::config::BakePolicy;
use rollgate_core::stats::{EXACT_MAX_N, LatencyJudgement, LatencyPolicy, compare_latency, median};
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};

use super::{gate, no_data, no_data_name};

/// A median slowdown smaller than this is never a latency degradation, whatever the ratio:
/// sub-millisecond loopback answers double from scheduler noise alone.
pub const MIN_LATENCY_DELTA_MS: f64 = 5.0;

fn summary(xs: &[f64]) -> Value {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v[((v.len() - 1) as f64 * p).round() as usize])
        }
    };
    json!({"n": v.len(), "min": q(0.0), "median": median(&v), "p90": q(0.9), "max": q(1.0)})
}

/// One gate per timed endpoint: degraded when significantly *and* substantially slower.
pub fn judge_latency(policy: &BakePolicy, base: Option<&Trends>, now: &Trends) -> Vec<GateResult> {
    let lp = LatencyPolicy {
        min_samples: policy.min_samples,
        significance: policy.significance,
        max_ratio: policy.max_latency_ratio,
        min_delta_ms: MIN_LATENCY_DELTA_MS,
    };
    let mut names: Vec<&String> = now.latency_ms.keys().collect();
    if let Some(b) = base {
        names.extend(
            b.latency_ms
                .keys()
                .filter(|k| !now.latency_ms.contains_key(*k)),
        );
    }
    names.sort();
    let empty = Vec::new();
    names
        .into_iter()
        .map(|endpoint| {
            let before = base.and_then(|b| b.latency_ms.get(endpoint)).unwrap_or(&empty);
            let after = now.latency_ms.get(endpoint).unwrap_or(&empty);
            let name = format!("bake:latency:{endpoint}");
            let mut evidence = json!({
                "baseline_ms": summary(before), "bake_ms": summary(after),
                "max_latency_ratio": lp.max_ratio, "significance": lp.significance,
                "min_delta_ms": lp.min_delta_ms,
                "test": format!("mann-whitney-u one-sided (exact up to {EXACT_MAX_N} pooled samples, else normal approximation, tie-corrected)"),
            });
            match compare_latency(before, after, &lp) {
                LatencyJudgement::TooFewSamples { baseline, current, needed, smallest_p } => {
                    let why = if baseline < needed || current < needed {
                        format!("min_samples {needed}")
                    } else {
                        format!(
                            "even fully separated samples would give p = {smallest_p:.2e}, not below significance {}",
                            lp.significance
                        )
                    };
                    evidence["smallest_p_value"] = json!(smallest_p);
                    gate(
                        &name,
                        no_data(policy.no_data),
                        format!(
                            "{endpoint}: too few latency samples to compare ({baseline} in the baseline, {current} in the bake; {why}; no_data = {})",
                            no_data_name(policy.no_data)
                        ),
                        evidence,
                    )
                }
                LatencyJudgement::Degraded(c) | LatencyJudgement::Within(c) => {
                    evidence["comparison"] = json!({
                        "u": c.test.u, "z": c.test.z, "p_value": c.test.p_value, "exact": c.test.exact,
                        "median_baseline_ms": c.median_baseline_ms, "median_bake_ms": c.median_current_ms,
                        "ratio": if c.ratio.is_finite() { json!(c.ratio) } else { Value::Null },
                        "significant": c.significant, "large": c.large,
                    });
                    let numbers = format!(
                        "median {:.1} ms vs {:.1} ms in the baseline (x{:.1}; max_latency_ratio {}), Mann-Whitney p = {:.2e} (significance {}; {} vs {} samples)",
                        c.median_current_ms, c.median_baseline_ms, c.ratio, lp.max_ratio, c.test.p_value, lp.significance, c.test.n_current, c.test.n_baseline
                    );
                    if c.significant && c.large {
                        gate(&name, Verdict::Fail, format!("{endpoint} is slower than the baseline: {numbers}"), evidence)
                    } else {
                        gate(&name, Verdict::Pass, format!("{endpoint}: {numbers}"), evidence)
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;

    #[test]
    fn latency_without_a_baseline_sample_is_no_data() {
        let config = config();
        let mut now = trends(10_000);
        now.latency_ms
            .insert("readiness:operator".into(), vec![1.0; 20]);
        let gates = judge_latency(&config.bake, None, &now);
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].verdict, Verdict::Inconclusive);
        assert!(
            gates[0]
                .detail
                .contains("0 in the baseline, 20 in the bake"),
            "{}",
            gates[0].detail
        );
    }

    /// issue 11 item 12: 8 s progression windows and a 12 s bake, sampled every 2 s (the
    /// default); every answer of the new version takes ~400 ms instead of ~1 ms. The baseline
    /// window must give the test its samples by default, and 4 or 5 baseline samples against 6
    /// must decide (the exact test) instead of "too few samples" (inconclusive, promoted).
    #[test]
    fn gross_slowdown_with_few_samples_fails() {
        let text =
            CONFIG.replace("window = \"10s\"", "window = \"8s\"") + "\n[rollout]\nbake = \"12s\"\n";
        let config = config_from(&text);
        let interval = config.bake.sample_interval.as_secs_f64();
        let base_n = (config.rollout.baseline_window.as_secs_f64() / interval).floor() as usize;
        let bake_n = (config.rollout.bake.as_secs_f64() / interval).floor() as usize;
        assert_eq!(bake_n, 6);
        assert!(
            base_n >= 5,
            "baseline_window {:?}",
            config.rollout.baseline_window
        );
        let endpoint = "readiness:operator".to_string();
        for before in [vec![0.9, 1.0, 1.1, 1.2], vec![0.9, 1.0, 1.1, 1.2, 0.8]] {
            let mut base = trends(8_000);
            base.latency_ms.insert(endpoint.clone(), before);
            let mut now = trends(12_000);
            now.latency_ms.insert(
                endpoint.clone(),
                vec![398.0, 399.0, 400.0, 401.0, 402.0, 405.0],
            );
            let gates = judge_latency(&config.bake, Some(&base), &now);
            let g = &gates[0];
            assert_eq!(g.name, "bake:latency:readiness:operator");
            assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
            assert!(g.detail.contains("median 400.5 ms vs"), "{}", g.detail);
            assert_eq!(g.evidence["comparison"]["exact"], true, "{}", g.evidence);
        }
    }
}

//! Latency per timed endpoint against the baseline's: significantly and substantially slower.

use rollgate_core::baseline::Trends;
use rollgate_core::config::BakePolicy;
use rollgate_core::stats::{LatencyJudgement, LatencyPolicy, compare_latency, median};
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
                "min_delta_ms": lp.min_delta_ms, "test": "mann-whitney-u one-sided (normal approximation, tie-corrected)",
            });
            match compare_latency(before, after, &lp) {
                LatencyJudgement::TooFewSamples { baseline, current, needed } => gate(
                    &name,
                    no_data(policy.no_data),
                    format!(
                        "{endpoint}: too few latency samples to compare ({baseline} in the baseline, {current} in the bake; min_samples {needed}; no_data = {})",
                        no_data_name(policy.no_data)
                    ),
                    evidence,
                ),
                LatencyJudgement::Degraded(c) | LatencyJudgement::Within(c) => {
                    evidence["comparison"] = json!({
                        "u": c.test.u, "z": c.test.z, "p_value": c.test.p_value,
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
}

//! The error rate of the probe requests during the bake.

use rollgate_core::baseline::Trends;
use rollgate_core::config::BakePolicy;
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::json;

use super::{gate, no_data, no_data_name};

/// The share of probe requests that failed (421/503 counted apart) against `max_error_rate`.
pub fn judge_errors(policy: &BakePolicy, now: &Trends) -> GateResult {
    let total: u64 = now.requests.values().map(|c| c.total).sum();
    let errors: u64 = now.requests.values().map(|c| c.errors).sum();
    let unavailable: u64 = now.requests.values().map(|c| c.unavailable).sum();
    let evidence = json!({"requests": now.requests, "total": total, "errors": errors, "unavailable": unavailable, "max_error_rate": policy.max_error_rate});
    if total < policy.min_samples.max(1) as u64 {
        return gate(
            "bake:errors",
            no_data(policy.no_data),
            format!(
                "too few probe requests to judge the error rate ({total}, min_samples {}; no_data = {})",
                policy.min_samples,
                no_data_name(policy.no_data)
            ),
            evidence,
        );
    }
    let rate = errors as f64 / total as f64;
    let detail = format!(
        "{errors} of {total} probe requests failed ({:.1}%, of which {unavailable} answered 421/503); max_error_rate {:.1}%",
        rate * 100.0,
        policy.max_error_rate * 100.0
    );
    if rate > policy.max_error_rate {
        gate(
            "bake:errors",
            Verdict::Fail,
            format!("error rate too high during the bake: {detail}"),
            evidence,
        )
    } else {
        gate("bake:errors", Verdict::Pass, detail, evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;
    use rollgate_core::baseline::RequestCounts;
    use rollgate_core::config::NoDataPolicy;

    #[test]
    fn error_rate_and_no_data() {
        let config = config();
        let mut now = trends(10_000);
        now.requests.insert(
            "readiness:operator".into(),
            RequestCounts {
                total: 100,
                errors: 10,
                unavailable: 8,
            },
        );
        let g = judge_errors(&config.bake, &now);
        assert_eq!(g.verdict, Verdict::Fail);
        assert!(g.detail.contains("10 of 100 probe requests failed (10.0%, of which 8 answered 421/503); max_error_rate 5.0%"), "{}", g.detail);
        now.requests.insert(
            "readiness:operator".into(),
            RequestCounts {
                total: 100,
                errors: 2,
                unavailable: 0,
            },
        );
        assert_eq!(judge_errors(&config.bake, &now).verdict, Verdict::Pass);
        now.requests.insert(
            "readiness:operator".into(),
            RequestCounts {
                total: 3,
                errors: 0,
                unavailable: 0,
            },
        );
        assert_eq!(
            judge_errors(&config.bake, &now).verdict,
            Verdict::Inconclusive
        );
        let mut strict = config.bake.clone();
        strict.no_data = NoDataPolicy::Fail;
        assert_eq!(judge_errors(&strict, &now).verdict, Verdict::Fail);
    }
}

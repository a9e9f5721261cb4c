//! The statistics of the bake period: comparing latency distributions against the baseline,
//! and turning storage samples into growth rates and a projected time to exhaustion.
//!
//! Pure functions of numbers; `docs/bake.md` explains the choices.
//!
//! **Latency** is compared with the Mann–Whitney U test, one-sided (H1: latencies during the
//! bake are stochastically *greater* than the baseline's), with the normal approximation, a
//! continuity correction of 0.5 and the tie correction of the variance. It makes no assumption
//! about the shape of the distributions (latencies are skewed and heavy-tailed, so a t-test
//! would be wrong) and is robust to a few outliers. A significant result alone never fails a
//! gate: the effect must also be large ([`LatencyPolicy::max_ratio`] on the medians, and
//! [`LatencyPolicy::min_delta_ms`] in absolute terms), so a tiny-but-significant slowdown
//! from a large sample passes.
//!
//! **Growth** is the least-squares slope of `(seconds, bytes)` samples, which uses every sample
//! rather than only the first and last, so one noisy reading moves it little.

use std::time::Duration;

/// The median; `None` for no samples. NaNs are ignored.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The upper tail of the standard normal distribution, `P(Z > z)`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, fractional error below
/// 1.2e-7 everywhere: far finer than any significance level anyone configures).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The result of a one-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankTest {
    pub n_baseline: usize,
    pub n_current: usize,
    /// U of the current sample: how many (baseline, current) pairs have the current one larger
    /// (ties count one half).
    pub u: f64,
    /// The normal approximation's statistic (with continuity and tie corrections).
    pub z: f64,
    /// `P(U >= u)` under "no difference": small means the current sample is larger.
    pub p_value: f64,
}

/// One-sided Mann–Whitney U test that `current` is stochastically greater than `baseline`.
///
/// `None` when either sample is empty (nothing to compare). With one sample on a side the
/// approximation is poor, which is why callers require [`LatencyPolicy::min_samples`]. When
/// every value is tied the variance is zero and there is no evidence of a difference: the
/// p-value is 1.
pub fn mann_whitney_greater(baseline: &[f64], current: &[f64]) -> Option<RankTest> {
    let baseline: Vec<f64> = baseline.iter().copied().filter(|x| !x.is_nan()).collect();
    let current: Vec<f64> = current.iter().copied().filter(|x| !x.is_nan()).collect();
    let (n1, n2) = (baseline.len(), current.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Rank the pooled sample, averaging ranks over ties.
    let mut pooled: Vec<(f64, bool)> = baseline
        .iter()
        .map(|&x| (x, false))
        .chain(current.iter().map(|&x| (x, true)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut rank_sum_current = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_current += rank * pooled[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let (f1, f2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_current - f2 * (f2 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let variance = if n > 1 {
        f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))
    } else {
        0.0
    };
    let (z, p_value) = if variance <= 0.0 {
        (0.0, 1.0)
    } else {
        let z = (u - mean - 0.5) / variance.sqrt();
        (z, normal_sf(z).clamp(0.0, 1.0))
    };
    Some(RankTest {
        n_baseline: n1,
        n_current: n2,
        u,
        z,
        p_value,
    })
}

/// When a latency difference is a degradation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPolicy {
    /// Fewer samples than this on either side: no verdict (`bake.no_data` decides).
    pub min_samples: usize,
    /// The test's significance level (`bake.significance`).
    pub significance: f64,
    /// Median during the bake / median of the baseline above which the effect is large.
    pub max_ratio: f64,
    /// A slowdown of the median below this many milliseconds is never a degradation, whatever
    /// the ratio: sub-millisecond loopback latencies double from scheduler noise alone.
    pub min_delta_ms: f64,
}

/// The numbers behind a latency judgement, for the decision record.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencyComparison {
    pub test: RankTest,
    pub median_baseline_ms: f64,
    pub median_current_ms: f64,
    /// `median_current / median_baseline` (infinite when the baseline median is 0 and the
    /// current one is not; serialized as null then).
    pub ratio: f64,
    pub significant: bool,
    pub large: bool,
}

/// A latency judgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyJudgement {
    TooFewSamples {
        baseline: usize,
        current: usize,
        needed: usize,
    },
    /// Significant and large: degraded.
    Degraded(LatencyComparison),
    /// Not significant, or not large enough to matter.
    Within(LatencyComparison),
}

/// Compare two latency samples (milliseconds) under a policy.
pub fn compare_latency(
    baseline: &[f64],
    current: &[f64],
    policy: &LatencyPolicy,
) -> LatencyJudgement {
    let needed = policy.min_samples.max(1);
    let (Some(test), true) = (
        mann_whitney_greater(baseline, current),
        baseline.len() >= needed && current.len() >= needed,
    ) else {
        return LatencyJudgement::TooFewSamples {
            baseline: baseline.len(),
            current: current.len(),
            needed,
        };
    };
    let mb = median(baseline).unwrap_or(0.0);
    let mc = median(current).unwrap_or(0.0);
    let ratio = if mb > 0.0 {
        mc / mb
    } else if mc > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let significant = test.p_value < policy.significance;
    let large = ratio > policy.max_ratio && (mc - mb) >= policy.min_delta_ms;
    let cmp = LatencyComparison {
        test,
        median_baseline_ms: mb,
        median_current_ms: mc,
        ratio,
        significant,
        large,
    };
    if significant && large {
        LatencyJudgement::Degraded(cmp)
    } else {
        LatencyJudgement::Within(cmp)
    }
}

/// The least-squares slope of `(seconds, value)` samples: value units per second.
///
/// `None` with fewer than two samples or when every sample has the same time (no rate can be
/// measured from one instant).
pub fn linear_rate(samples: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mt) * (p.0 - mt)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    Some(sxy / sxx)
}

/// How many times faster something grows now than in the baseline.
///
/// Rates below `floor` (the measurement's noise: one database page, one filesystem block, per
/// window) count as `floor`, so a baseline that did not measurably grow does not make any
/// growth an infinite ratio, and two idle periods compare as 1. Shrinking counts as no growth.
pub fn growth_ratio(current_rate: f64, baseline_rate: f64, floor: f64) -> f64 {
    let floor = floor.max(f64::MIN_POSITIVE);
    current_rate.max(floor) / baseline_rate.max(floor)
}

/// How long until `remaining` headroom is used up at `consumption_per_s`.
///
/// `Some(ZERO)` when none remains; `None` when nothing is being consumed (never, at this rate).
pub fn time_to_exhaustion(remaining: f64, consumption_per_s: f64) -> Option<Duration> {
    if remaining <= 0.0 {
        return Some(Duration::ZERO);
    }
    if !consumption_per_s.is_finite() || consumption_per_s <= 0.0 {
        return None;
    }
    let secs = remaining / consumption_per_s;
    Some(if secs >= Duration::MAX.as_secs_f64() {
        Duration::MAX
    } else {
        Duration::from_secs_f64(secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn median_of_known_inputs() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn normal_tail() {
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.959_964), 0.025, 1e-6));
        assert!(close(normal_sf(-1.959_964), 0.975, 1e-6));
        assert!(close(normal_sf(2.326_348), 0.01, 1e-6));
        assert!(normal_sf(40.0) >= 0.0 && normal_sf(40.0) < 1e-300);
    }

    #[test]
    fn mann_whitney_separated_samples() {
        // U = 25, mean 12.5, variance 25 * 11 / 12; z = (25 - 12.5 - 0.5) / 4.787 = 2.5067.
        let t =
            mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(t.u, 25.0);
        assert!(close(t.z, 2.5067, 1e-3), "{t:?}");
        assert!(close(t.p_value, 0.006_09, 1e-4), "{t:?}");
        // The other direction is not significant at all.
        let t =
            mann_whitney_greater(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(t.u, 0.0);
        assert!(t.p_value > 0.99, "{t:?}");
    }

    #[test]
    fn mann_whitney_with_ties() {
        // Pooled ranks: 1,1 → 1.5; 2,2,2 → 4; 3,3,3 → 7. Current rank sum 25, U = 15, mean 8.
        // Tie term 6 + 24 + 24 = 54; variance 16/12 * (9 - 54/56) = 10.714; z = 6.5 / 3.2733.
        let t = mann_whitney_greater(&[1.0, 1.0, 2.0, 2.0], &[2.0, 3.0, 3.0, 3.0]).unwrap();
        assert_eq!(t.u, 15.0);
        assert!(close(t.z, 1.985_77, 1e-3), "{t:?}");
        assert!(close(t.p_value, 0.023_53, 1e-3), "{t:?}");
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        assert_eq!(mann_whitney_greater(&[], &[1.0]), None);
        assert_eq!(mann_whitney_greater(&[1.0], &[]), None);
        assert_eq!(mann_whitney_greater(&[], &[]), None);
        // One sample each: defined, but never significant at any sensible level.
        let t = mann_whitney_greater(&[1.0], &[2.0]).unwrap();
        assert_eq!(t.u, 1.0);
        assert!(t.p_value > 0.2, "{t:?}");
        // Everything tied: no evidence of a difference.
        let t = mann_whitney_greater(&[3.0, 3.0], &[3.0, 3.0, 3.0]).unwrap();
        assert_eq!(t.p_value, 1.0);
        let t = mann_whitney_greater(&[3.0], &[3.0]).unwrap();
        assert_eq!(t.p_value, 1.0);
    }

    const POLICY: LatencyPolicy = LatencyPolicy {
        min_samples: 8,
        significance: 0.01,
        max_ratio: 3.0,
        min_delta_ms: 5.0,
    };

    fn spread(base: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| base + (i % 5) as f64 * 0.1 * base).collect()
    }

    #[test]
    fn latency_eight_times_slower_is_degraded() {
        let before = spread(5.0, 20);
        let after = spread(45.0, 20);
        match compare_latency(&before, &after, &POLICY) {
            LatencyJudgement::Degraded(c) => {
                assert!(c.ratio > 8.0 && c.ratio < 10.0, "{c:?}");
                assert!(c.test.p_value < 1e-6, "{c:?}");
            }
            other => panic!("expected degraded, got {other:?}"),
        }
    }

    #[test]
    fn significant_but_small_is_within() {
        // 10% slower on every sample: highly significant, far below the 3x effect size.
        let before = spread(10.0, 40);
        let after: Vec<f64> = before.iter().map(|x| x * 1.1).collect();
        match compare_latency(&before, &after, &POLICY) {
            LatencyJudgement::Within(c) => {
                assert!(c.significant, "{c:?}");
                assert!(!c.large, "{c:?}");
            }
            other => panic!("expected within, got {other:?}"),
        }
        // 4x slower but by less than min_delta_ms (sub-millisecond loopback noise).
        let before = spread(0.3, 40);
        let after: Vec<f64> = before.iter().map(|x| x * 4.0).collect();
        assert!(
            matches!(compare_latency(&before, &after, &POLICY), LatencyJudgement::Within(c) if c.significant && !c.large)
        );
    }

    #[test]
    fn large_but_not_significant_is_within() {
        // A few samples with one huge outlier: the median moves, the ranks do not say "slower".
        let before = vec![10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0];
        let after = vec![9.0, 10.5, 11.5, 12.5, 60.0, 61.0, 62.0, 8.0];
        let j = compare_latency(&before, &after, &POLICY);
        assert!(
            matches!(j, LatencyJudgement::Within(c) if !c.significant),
            "{j:?}"
        );
    }

    #[test]
    fn too_few_samples() {
        assert_eq!(
            compare_latency(&[], &spread(1.0, 10), &POLICY),
            LatencyJudgement::TooFewSamples {
                baseline: 0,
                current: 10,
                needed: 8
            }
        );
        assert_eq!(
            compare_latency(&[1.0], &[100.0], &POLICY),
            LatencyJudgement::TooFewSamples {
                baseline: 1,
                current: 1,
                needed: 8
            }
        );
        assert_eq!(
            compare_latency(&spread(1.0, 10), &[], &POLICY),
            LatencyJudgement::TooFewSamples {
                baseline: 10,
                current: 0,
                needed: 8
            }
        );
    }

    #[test]
    fn linear_rate_of_known_inputs() {
        assert_eq!(linear_rate(&[]), None);
        assert_eq!(linear_rate(&[(0.0, 5.0)]), None);
        assert_eq!(linear_rate(&[(1.0, 5.0), (1.0, 9.0)]), None);
        assert_eq!(linear_rate(&[(0.0, 100.0), (2.0, 300.0)]), Some(100.0));
        let r = linear_rate(&[(0.0, 0.0), (1.0, 1000.0), (2.0, 2000.0), (3.0, 3000.0)]).unwrap();
        assert!(close(r, 1000.0, 1e-9));
        // One noisy reading barely moves a slope fitted to many.
        let mut pts: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 8192.0 * i as f64)).collect();
        pts[10].1 += 8192.0;
        assert!(close(linear_rate(&pts).unwrap(), 8192.0, 120.0));
        // Shrinking is a negative rate.
        assert_eq!(linear_rate(&[(0.0, 10.0), (5.0, 0.0)]), Some(-2.0));
    }

    #[test]
    fn growth_ratio_uses_the_noise_floor() {
        assert!(close(growth_ratio(50_000.0, 5_000.0, 1_000.0), 10.0, 1e-9));
        // Neither grew measurably: 1.
        assert!(close(growth_ratio(0.0, 0.0, 1_000.0), 1.0, 1e-9));
        assert!(close(growth_ratio(-300.0, 200.0, 1_000.0), 1.0, 1e-9));
        // A flat baseline: compared with the floor, not divided by zero.
        assert!(close(growth_ratio(8_000.0, 0.0, 1_000.0), 8.0, 1e-9));
        assert!(growth_ratio(1.0, 0.0, 0.0).is_finite());
    }

    #[test]
    fn time_to_exhaustion_of_known_inputs() {
        assert_eq!(
            time_to_exhaustion(1000.0, 10.0),
            Some(Duration::from_secs(100))
        );
        assert_eq!(time_to_exhaustion(0.0, 10.0), Some(Duration::ZERO));
        assert_eq!(time_to_exhaustion(-5.0, 0.0), Some(Duration::ZERO));
        assert_eq!(time_to_exhaustion(1000.0, 0.0), None);
        assert_eq!(time_to_exhaustion(1000.0, -3.0), None);
        assert_eq!(time_to_exhaustion(1000.0, f64::NAN), None);
        assert_eq!(time_to_exhaustion(1e300, 1e-300), Some(Duration::MAX));
        // 2 GiB at 50 KB/s: about 11.9 hours, inside a 24h horizon.
        let t = time_to_exhaustion(2.0 * 1024.0 * 1024.0 * 1024.0, 50_000.0).unwrap();
        assert!(t < Duration::from_secs(24 * 3600) && t > Duration::from_secs(11 * 3600));
    }
}

//! The statistics of the bake period: comparing latency distributions against the baseline,
//! and turning storage samples into growth rates and a projected time to exhaustion.
//!
//! Pure functions of numbers; `docs/bake.md` explains the choices.
//!
//! **Latency** is compared with the Mann–Whitney U test, one-sided (H1: latencies during the
//! bake are stochastically *greater* than the baseline's). Up to [`EXACT_MAX_N`] pooled samples
//! the p-value is exact: the permutation distribution of the rank sum, counted by dynamic
//! programming (mid-ranks for ties, so it is exact conditionally on the ties). Above that, the
//! normal approximation with a continuity correction of 0.5 and the tie correction of the
//! variance. Small samples are therefore judged by the test itself: 4 baseline against 6 bake
//! samples, fully separated, give p = 1/C(10,4) = 1/210. It makes no assumption
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

/// Pooled sample sizes up to this get the exact p-value; larger ones the normal approximation.
/// (Counts stay below 2^53, so the exact sums in `f64` are exact: C(40, 20) ≈ 1.4e11.)
pub const EXACT_MAX_N: usize = 40;

/// The number of ways to choose `k` of `n`, as a float (exact below 2^53; infinite when huge).
pub fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The smallest p-value the one-sided rank test can give with these sample sizes (no ties):
/// `1 / C(n_baseline + n_current, n_current)`, every bake sample above every baseline sample.
/// When it is not below the significance level, no outcome can be significant: the samples are
/// too few to decide. 1 when either side is empty.
pub fn smallest_p_value(n_baseline: usize, n_current: usize) -> f64 {
    if n_baseline == 0 || n_current == 0 {
        return 1.0;
    }
    (1.0 / binomial(n_baseline + n_current, n_current)).min(1.0)
}

/// The smallest `n` (at least `min_samples`, at least 1) for which `n` against `n` samples can
/// reach `significance`: the samples a comparison needs on each side to be decidable.
/// 5 at the default 0.01 (1/C(10,5) = 1/252), 4 at 0.05; capped at 1000.
pub fn samples_to_decide(significance: f64, min_samples: usize) -> usize {
    let mut n = min_samples.max(1);
    while n < 1000 && smallest_p_value(n, n) >= significance {
        n += 1;
    }
    n
}

/// `P(S >= observed)` for the sum `S` of `k` scores drawn without replacement from `scores`
/// (all arrangements equally likely), counted exactly. Scores are small non-negative integers
/// (doubled mid-ranks).
fn exact_upper_tail(scores: &[usize], k: usize, observed: usize) -> f64 {
    let max: usize = {
        let mut v = scores.to_vec();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.iter().take(k).sum()
    };
    // ways[j][s]: subsets of j of the scores seen so far with sum s.
    let mut ways = vec![vec![0.0f64; max + 1]; k + 1];
    ways[0][0] = 1.0;
    for (i, &w) in scores.iter().enumerate() {
        for j in (1..=k.min(i + 1)).rev() {
            let (lower, upper) = ways.split_at_mut(j);
            let (from, to) = (&lower[j - 1], &mut upper[0]);
            for s in (w..=max).rev() {
                to[s] += from[s - w];
            }
        }
    }
    let total: f64 = ways[k].iter().sum();
    if total <= 0.0 {
        return 1.0;
    }
    let tail: f64 = ways[k].iter().skip(observed).sum();
    (tail / total).clamp(0.0, 1.0)
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
    /// Whether `p_value` is exact (at most [`EXACT_MAX_N`] pooled samples) rather than the
    /// normal approximation.
    pub exact: bool,
}

/// One-sided Mann–Whitney U test that `current` is stochastically greater than `baseline`.
///
/// `None` when either sample is empty (nothing to compare). The p-value is exact up to
/// [`EXACT_MAX_N`] pooled samples (ties by mid-ranks), else the normal approximation; `z` is
/// always the approximation's statistic, for the record. When every value is tied there is no
/// evidence of a difference: the p-value is 1.
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
    // Doubled mid-ranks (integers) of every value, and the current sample's sum of them.
    let mut scores: Vec<usize> = Vec::with_capacity(n);
    let mut score_current = 0usize;
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
        let in_current = pooled[i..=j].iter().filter(|p| p.1).count();
        rank_sum_current += rank * in_current as f64;
        scores.extend(std::iter::repeat_n(i + j + 2, j - i + 1));
        score_current += (i + j + 2) * in_current;
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
    let exact = n <= EXACT_MAX_N;
    let (z, p_value) = if variance <= 0.0 {
        (0.0, 1.0)
    } else {
        let z = (u - mean - 0.5) / variance.sqrt();
        let p = if exact {
            exact_upper_tail(&scores, n2, score_current)
        } else {
            normal_sf(z).clamp(0.0, 1.0)
        };
        (z, p)
    };
    Some(RankTest {
        n_baseline: n1,
        n_current: n2,
        u,
        z,
        p_value,
        exact,
    })
}

/// When a latency difference is a degradation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPolicy {
    /// Fewer samples than this on either side: no verdict (`bake.no_data` decides). Samples
    /// that cannot reach `significance` at all ([`smallest_p_value`]) are too few as well.
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
    /// Fewer than `needed` on a side, or so few that even full separation could not be
    /// significant (`smallest_p` is not below the significance level).
    TooFewSamples {
        baseline: usize,
        current: usize,
        needed: usize,
        smallest_p: f64,
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
    let smallest_p = smallest_p_value(baseline.len(), current.len());
    let (Some(test), true) = (
        mann_whitney_greater(baseline, current),
        baseline.len() >= needed && current.len() >= needed && smallest_p < policy.significance,
    ) else {
        return LatencyJudgement::TooFewSamples {
            baseline: baseline.len(),
            current: current.len(),
            needed,
            smallest_p,
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
        // Exact: only 1 of the C(10,5) = 252 arrangements is as extreme.
        let t =
            mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert_eq!(t.u, 25.0);
        assert!(close(t.z, 2.5067, 1e-3), "{t:?}");
        assert!(t.exact);
        assert!(close(t.p_value, 1.0 / 252.0, 1e-12), "{t:?}");
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
        // Exact, given the ties: a rank sum of 25 needs all three 3s and one of the three 2s,
        // 3 of the C(8,4) = 70 arrangements (the normal approximation says 0.0235).
        assert!(close(t.p_value, 3.0 / 70.0, 1e-12), "{t:?}");
    }

    /// issue 11 item 12: four baseline answers of ~1 ms against six of ~400 ms. The exact test
    /// decides (p = 1/C(10,4) = 1/210 < 0.01); a floor of 8 samples called it "no data".
    #[test]
    fn four_against_six_separated_samples_are_significant() {
        let before = [0.9, 1.0, 1.1, 1.2];
        let after = [398.0, 399.0, 400.0, 401.0, 402.0, 405.0];
        let t = mann_whitney_greater(&before, &after).unwrap();
        assert!(t.exact && t.u == 24.0, "{t:?}");
        assert!(close(t.p_value, 1.0 / 210.0, 1e-12), "{t:?}");
        let policy = LatencyPolicy {
            min_samples: 4,
            ..POLICY
        };
        match compare_latency(&before, &after, &policy) {
            LatencyJudgement::Degraded(c) => assert!(c.ratio > 300.0, "{c:?}"),
            other => panic!("expected degraded, got {other:?}"),
        }
        // One more overlap and it is no longer significant at 0.01 (2/210).
        let t = mann_whitney_greater(&before, &[1.15, 399.0, 400.0, 401.0, 402.0, 405.0]).unwrap();
        assert!(close(t.p_value, 2.0 / 210.0, 1e-12), "{t:?}");
        // 3 against 6 cannot reach 0.01 whatever the values (1/84): too few, not "within".
        assert!(matches!(
            compare_latency(&before[..3], &after, &policy),
            LatencyJudgement::TooFewSamples { smallest_p, .. } if close(smallest_p, 1.0 / 84.0, 1e-12)
        ));
    }

    #[test]
    fn exact_distribution_against_brute_force() {
        // Every arrangement of a small pooled sample with ties, enumerated.
        let pooled = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0];
        let n2 = 3;
        let observed: Vec<f64> = vec![4.0, 4.0, 5.0];
        let rest: Vec<f64> = vec![1.0, 2.0, 2.0, 3.0, 4.0];
        let t = mann_whitney_greater(&rest, &observed).unwrap();
        let mut at_least = 0;
        let mut total = 0;
        for mask in 0u32..(1 << pooled.len()) {
            if mask.count_ones() as usize != n2 {
                continue;
            }
            let cur: Vec<f64> = (0..pooled.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| pooled[i])
                .collect();
            let base: Vec<f64> = (0..pooled.len())
                .filter(|i| mask & (1 << i) == 0)
                .map(|i| pooled[i])
                .collect();
            total += 1;
            if mann_whitney_greater(&base, &cur).unwrap().u >= t.u - 1e-9 {
                at_least += 1;
            }
        }
        assert!(
            close(t.p_value, at_least as f64 / total as f64, 1e-12),
            "{t:?} {at_least}/{total}"
        );
    }

    #[test]
    fn large_samples_use_the_normal_approximation() {
        let before: Vec<f64> = (0..25).map(f64::from).collect();
        let after: Vec<f64> = (25..50).map(f64::from).collect();
        let t = mann_whitney_greater(&before, &after).unwrap();
        assert!(!t.exact);
        assert_eq!(t.p_value, normal_sf(t.z));
        assert!(t.p_value < 1e-8, "{t:?}");
    }

    #[test]
    fn decidable_sample_sizes() {
        assert_eq!(binomial(10, 4), 210.0);
        assert_eq!(binomial(40, 20), 137_846_528_820.0);
        assert_eq!(binomial(3, 5), 0.0);
        assert!(close(smallest_p_value(4, 6), 1.0 / 210.0, 1e-15));
        assert_eq!(smallest_p_value(0, 6), 1.0);
        assert_eq!(samples_to_decide(0.01, 4), 5);
        assert_eq!(samples_to_decide(0.05, 1), 4);
        assert_eq!(samples_to_decide(0.01, 8), 8);
        assert_eq!(samples_to_decide(0.001, 0), 7);
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
                needed: 8,
                smallest_p: 1.0
            }
        );
        assert_eq!(
            compare_latency(&[1.0], &[100.0], &POLICY),
            LatencyJudgement::TooFewSamples {
                baseline: 1,
                current: 1,
                needed: 8,
                smallest_p: 0.5
            }
        );
        assert_eq!(
            compare_latency(&spread(1.0, 10), &[], &POLICY),
            LatencyJudgement::TooFewSamples {
                baseline: 10,
                current: 0,
                needed: 8,
                smallest_p: 1.0
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

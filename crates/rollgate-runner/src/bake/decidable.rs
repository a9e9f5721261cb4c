//! Whether a configuration lets the bake's signals decide: enough samples on both sides for
//! their tests. `rollgate check` and `rollgate plan` print [`undecidable_warnings`], naming the
//! keys to change, so an undecidable signal is found before a rollout rather than recorded as
//! `no_data` after it.

use std::time::Duration;

use rollgate_core::config::Config;
use rollgate_core::stats::smallest_p_value;
use rollgate_core::units::format_duration;

use super::no_data_name;

/// The fewest samples a sampler running every `every` for `period` takes: `period / every`,
/// rounded down (it samples at 0, `every`, 2·`every`, …, and a slow tick only delays the next).
pub fn expected_samples(period: Duration, every: Duration) -> usize {
    if every.is_zero() {
        return usize::MAX;
    }
    let n = period.as_secs_f64() / every.as_secs_f64();
    if n.is_finite() && n >= 0.0 {
        n.floor().min(usize::MAX as f64) as usize
    } else {
        0
    }
}

/// Memory growth compares the first and the last third of the readings: at least four.
const MEMORY_READINGS: usize = 4;

/// One line per bake signal the configuration leaves undecidable, naming the keys: too few
/// samples in the bake (`rollout.bake` / `bake.sample_interval`) or in the baseline
/// (`rollout.baseline_window` / `bake.sample_interval`) for `bake.min_samples`, or sample counts
/// with which even fully separated latencies cannot be significant at `bake.significance`.
/// Empty when every signal can decide, or when the bake is off (`rollout.bake = "0s"`).
pub fn undecidable_warnings(config: &Config) -> Vec<String> {
    let b = &config.bake;
    let r = &config.rollout;
    if r.bake.is_zero() {
        return Vec::new();
    }
    let every = b.sample_interval.max(Duration::from_millis(10));
    let n_bake = expected_samples(r.bake, every);
    let n_base = expected_samples(r.baseline_window, every);
    let no_data = format!("bake.no_data = {}", no_data_name(b.no_data));
    let bake_ratio = format!(
        "rollout.bake ({}) / bake.sample_interval ({}) gives about {n_bake} sample(s)",
        format_duration(r.bake),
        format_duration(b.sample_interval)
    );
    let base_ratio = format!(
        "rollout.baseline_window ({}) / bake.sample_interval ({}) gives about {n_base} sample(s)",
        format_duration(r.baseline_window),
        format_duration(b.sample_interval)
    );
    let mut out = Vec::new();
    if n_bake < b.min_samples {
        out.push(format!(
            "bake:latency:*, bake:errors undecidable: {bake_ratio}, fewer than bake.min_samples ({}); they would be judged by {no_data}",
            b.min_samples
        ));
    }
    if n_base < b.min_samples {
        out.push(format!(
            "bake:latency:* undecidable: the baseline's {base_ratio}, fewer than bake.min_samples ({}); it would be judged by {no_data}",
            b.min_samples
        ));
    }
    if n_bake >= b.min_samples && n_base >= b.min_samples {
        let p = smallest_p_value(n_base, n_bake);
        if p >= b.significance {
            out.push(format!(
                "bake:latency:* undecidable: {n_base} baseline against {n_bake} bake samples (rollout.baseline_window, rollout.bake / bake.sample_interval) cannot reach bake.significance ({}) even when fully separated (smallest p = {p:.2e}); it would be judged by {no_data}",
                b.significance
            ));
        }
    }
    if n_bake < MEMORY_READINGS {
        out.push(format!(
            "bake:memory:* undecidable: {bake_ratio}, fewer than the {MEMORY_READINGS} memory readings growth needs; judged by {no_data}"
        ));
    }
    if n_bake < 2 {
        out.push(format!(
            "bake:progression:* rates and bake:storage:* undecidable: {bake_ratio}, fewer than 2 readings; judged by {no_data}"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;

    fn with(extra: &str) -> Config {
        config_from(&(CONFIG.replace("window = \"10s\"", "window = \"8s\"") + extra))
    }

    #[test]
    fn expected_samples_of_known_periods() {
        let s = Duration::from_secs;
        assert_eq!(expected_samples(s(12), s(2)), 6);
        assert_eq!(expected_samples(s(9), s(2)), 4);
        assert_eq!(expected_samples(s(0), s(2)), 0);
        assert_eq!(expected_samples(s(1), Duration::ZERO), usize::MAX);
    }

    /// issue 11 item 12 (c): 8 s windows, a 12 s bake and the old floor of 8 samples leave
    /// latency undecidable; the warning names the keys. The defaults decide.
    #[test]
    fn undecidable_configurations_are_named() {
        let ok = with("\n[rollout]\nbake = \"12s\"\n");
        assert_eq!(undecidable_warnings(&ok), Vec::<String>::new());

        let old = with(
            "\n[rollout]\nbake = \"12s\"\nbaseline_window = \"8s\"\n\n[bake]\nmin_samples = 8\n",
        );
        let w = undecidable_warnings(&old);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w[0].contains("rollout.bake (12s) / bake.sample_interval (2s) gives about 6 sample(s), fewer than bake.min_samples (8)"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("bake.no_data = inconclusive"), "{}", w[0]);
        assert!(
            w[1].contains(
                "rollout.baseline_window (8s) / bake.sample_interval (2s) gives about 4 sample(s)"
            ),
            "{}",
            w[1]
        );

        // Enough samples for min_samples, too few for the significance level.
        let few = with(
            "\n[rollout]\nbake = \"8s\"\nbaseline_window = \"6s\"\n\n[bake]\nmin_samples = 3\n",
        );
        let w = undecidable_warnings(&few);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].contains("3 baseline against 4 bake samples")
                && w[0].contains("bake.significance (0.01)"),
            "{}",
            w[0]
        );

        // A very short bake: memory and rates too.
        let short = with("\n[rollout]\nbake = \"2s\"\n");
        let w = undecidable_warnings(&short);
        assert!(w.iter().any(|l| l.starts_with("bake:memory:*")), "{w:#?}");
        assert!(
            w.iter().any(|l| l.starts_with("bake:progression:*")),
            "{w:#?}"
        );

        // No bake, nothing to warn about.
        assert!(undecidable_warnings(&with("\n[rollout]\nbake = \"0s\"\n")).is_empty());
    }
}

//! Progression sampling: read one JSON pointer of a status document repeatedly over a window
//! and say whether, and how fast, it moved.
//!
//! `increases` signals are numbers, numeric strings or hex strings (`"0x1f"`) that must grow
//! (compared exactly, whatever their size: [`rollgate_core::facts`]);
//! `changes` signals are any value that must differ. The sampler runs on tokio time, so windows
//! are tested with paused time, and takes the fetch as a closure so tests need no server.

use std::future::Future;
use std::time::Duration;

use rollgate_core::baseline::ProgressionRate;
use rollgate_core::config::{Progression, ProgressionMode};
use rollgate_core::facts::{counter, increased};
use rollgate_core::redact::redact_url;
use serde_json::{Value, json};

use crate::errors::{ProbeError, humanize};
use crate::http::HttpClient;
use crate::outcome::{Outcome, show_value};

/// An `f64` reading of a signal (numbers, decimal strings and `0x` hex strings), for rates
/// only: whether a counter moved is decided exactly by [`rollgate_core::facts::increased`], the
/// same comparison as the gate engine's.
pub use rollgate_core::facts::numeric;

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub window: Duration,
    pub interval: Duration,
    /// Stop at the first movement (a gate waiting for progress) instead of measuring a rate
    /// over the whole window (a baseline).
    pub until_moved: bool,
}

/// Sample `progression` with `fetch` returning the status document.
pub async fn sample_with<F, Fut>(
    progression: &Progression,
    sampling: Sampling,
    mut fetch: F,
) -> Result<ProgressionRate, ProbeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, ProbeError>>,
{
    let endpoint = redact_url(&progression.url);
    let pointer = &progression.pointer;
    let read = |doc: &Value| -> Result<Value, ProbeError> {
        let v = doc
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| ProbeError::Invalid {
                endpoint: endpoint.clone(),
                message: format!("{pointer} is missing"),
            })?;
        if progression.mode == ProgressionMode::Increases && counter(&v).is_none() {
            return Err(ProbeError::Invalid {
                endpoint: endpoint.clone(),
                message: format!(
                    "{pointer} is {}, expected a number (mode = \"increases\")",
                    show_value(&v, 60)
                ),
            });
        }
        Ok(v)
    };
    let start = tokio::time::Instant::now();
    let first = read(&fetch().await?)?;
    let mut last = first.clone();
    let mut changes = 0u64;
    let mut last_at = start;
    let mut last_error = None;
    let interval = progression_interval(sampling);
    while start.elapsed() < sampling.window {
        tokio::time::sleep(
            interval
                .min(sampling.window.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(1)),
        )
        .await;
        match fetch().await.and_then(|doc| read(&doc)) {
            Ok(v) => {
                if v != last {
                    changes += 1;
                }
                last = v;
                last_at = tokio::time::Instant::now();
                last_error = None;
            }
            // A failed sample inside the window is tolerated; the window's end decides.
            Err(e) => last_error = Some(e),
        }
        if sampling.until_moved && moved(progression.mode, &first, &last, changes) {
            break;
        }
    }
    if let Some(e) = last_error
        && last_at == start
    {
        return Err(e);
    }
    let window = last_at.duration_since(start);
    let secs = window.as_secs_f64().max(1e-3);
    let rate = match progression.mode {
        ProgressionMode::Increases => {
            (numeric(&last).unwrap_or(0.0) - numeric(&first).unwrap_or(0.0)) / secs
        }
        ProgressionMode::Changes => changes as f64 / secs,
    };
    Ok(ProgressionRate {
        name: progression.name.clone(),
        idle: !moved(progression.mode, &first, &last, changes),
        first,
        last,
        window_ms: window.as_millis() as u64,
        rate_per_s: if rate.is_finite() { rate } else { 0.0 },
    })
}

fn progression_interval(s: Sampling) -> Duration {
    if s.interval.is_zero() {
        Duration::from_millis(100)
    } else {
        s.interval
    }
}

fn moved(mode: ProgressionMode, first: &Value, last: &Value, changes: u64) -> bool {
    match mode {
        ProgressionMode::Increases => increased(first, last),
        ProgressionMode::Changes => changes > 0,
    }
}

/// Sample a progression signal over HTTP.
pub async fn sample_progression(
    http: &HttpClient,
    progression: &Progression,
    sampling: Sampling,
) -> Result<ProgressionRate, ProbeError> {
    sample_with(progression, sampling, || http.get_json(&progression.url)).await
}

/// The check form: pass when the signal moved, warn when it was idle (an idle localnet is not
/// broken by itself; the idle policy judges it at freeze), fail when it cannot be read.
pub async fn probe_progression(
    http: &HttpClient,
    progression: &Progression,
    sampling: Sampling,
) -> Outcome {
    match sample_progression(http, progression, sampling).await {
        Err(e) => e.into(),
        Ok(rate) => {
            let observed = json!(rate);
            let endpoint = redact_url(&progression.url);
            if rate.idle {
                Outcome::warn(
                    format!(
                        "{endpoint}{}: idle: stayed at {} for {}",
                        progression.pointer,
                        show_value(&rate.last, 40),
                        humanize(Duration::from_millis(rate.window_ms))
                    ),
                    observed,
                )
            } else {
                Outcome::pass(
                    format!(
                        "{endpoint}{}: {} → {} in {} ({:.2}/s)",
                        progression.pointer,
                        show_value(&rate.first, 24),
                        show_value(&rate.last, 24),
                        humanize(Duration::from_millis(rate.window_ms)),
                        rate.rate_per_s
                    ),
                    observed,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn prog(mode: ProgressionMode) -> Progression {
        Progression {
            name: "requestIndex".into(),
            url: "http://x/v2/status".into(),
            pointer: "/lastRequest/requestIndex".into(),
            mode,
            window: Duration::from_secs(10),
        }
    }

    fn sampling(until_moved: bool) -> Sampling {
        Sampling {
            window: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            until_moved,
        }
    }

    #[test]
    fn numeric_forms() {
        assert_eq!(numeric(&json!(5)), Some(5.0));
        assert_eq!(numeric(&json!("12")), Some(12.0));
        assert_eq!(numeric(&json!("0x1f")), Some(31.0));
        assert_eq!(numeric(&json!("0x")), None);
        assert_eq!(numeric(&json!("abc")), None);
        assert_eq!(numeric(&json!(null)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn increasing_counter_has_a_rate() {
        let n = Arc::new(AtomicU64::new(100));
        let rate =
            sample_with(&prog(ProgressionMode::Increases), sampling(false), || {
                let n = n.clone();
                async move {
                    Ok(json!({"lastRequest": {"requestIndex": n.fetch_add(2, Ordering::SeqCst)}}))
                }
            })
            .await
            .unwrap();
        assert!(!rate.idle);
        assert_eq!(rate.first, json!(100));
        assert_eq!(rate.last, json!(120));
        assert_eq!(rate.window_ms, 10_000);
        assert!((rate.rate_per_s - 2.0).abs() < 1e-9, "{}", rate.rate_per_s);
    }

    #[tokio::test(start_paused = true)]
    async fn still_counter_is_idle_and_until_moved_stops_early() {
        let rate = sample_with(
            &prog(ProgressionMode::Increases),
            sampling(false),
            || async { Ok(json!({"lastRequest": {"requestIndex": "7"}})) },
        )
        .await
        .unwrap();
        assert!(rate.idle);
        assert_eq!(rate.rate_per_s, 0.0);
        let n = Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now();
        let rate = sample_with(&prog(ProgressionMode::Increases), sampling(true), || {
            let n = n.clone();
            async move {
                Ok(json!({"lastRequest": {"requestIndex": n.fetch_add(1, Ordering::SeqCst) / 3}}))
            }
        })
        .await
        .unwrap();
        assert!(!rate.idle);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn counters_past_u64_increase_exactly() {
        // f64 cannot tell 2^64 from 2^64 + 1; the comparison is exact, as in the gate engine.
        for (a, b) in [
            ("18446744073709551616", "18446744073709551617"),
            ("0x1234567890abcdef0000", "0x1234567890abcdef0001"),
        ] {
            let n = Arc::new(AtomicU64::new(0));
            let rate = sample_with(&prog(ProgressionMode::Increases), sampling(false), || {
                let v = if n.fetch_add(1, Ordering::SeqCst) < 3 {
                    a
                } else {
                    b
                };
                async move { Ok(json!({"lastRequest": {"requestIndex": v}})) }
            })
            .await
            .unwrap();
            assert!(!rate.idle, "{a} → {b} judged idle");
            assert_eq!(rate.last, json!(b));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn changes_mode_counts_changes() {
        let n = Arc::new(AtomicU64::new(0));
        let mut p = prog(ProgressionMode::Changes);
        p.pointer = "/lastTx".into();
        let rate =
            sample_with(&p, sampling(false), || {
                let n = n.clone();
                async move {
                    Ok(json!({"lastTx": format!("0x{:x}", n.fetch_add(1, Ordering::SeqCst) / 2)}))
                }
            })
            .await
            .unwrap();
        assert!(!rate.idle);
        assert!((rate.rate_per_s - 0.5).abs() < 1e-9, "{}", rate.rate_per_s);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_type_and_missing_pointer_fail() {
        let err = sample_with(
            &prog(ProgressionMode::Increases),
            sampling(false),
            || async { Ok(json!({"lastRequest": {"requestIndex": {"n": 1}}})) },
        )
        .await
        .unwrap_err();
        assert!(
            err.detail().contains("expected a number"),
            "{}",
            err.detail()
        );
        let err = sample_with(&prog(ProgressionMode::Changes), sampling(false), || async {
            Ok(json!({}))
        })
        .await
        .unwrap_err();
        assert!(
            err.detail()
                .contains("/lastRequest/requestIndex is missing"),
            "{}",
            err.detail()
        );
    }
}

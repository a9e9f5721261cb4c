//! Step 6, the bake period: after the gates pass, keep watching for `bake` and fail on any
//! regression against the baseline. A failure rolls back like any other gate. `rollgate watch`
//! runs the same thing on demand ([`crate::watch`]). `docs/bake.md` is the user-facing account.
//!
//! Three loops run side by side until the period ends or one of them finds a failure:
//! - **stability** ([`Observer`]): readiness stays green (a failed expectation twice in a row,
//!   or 421/503/unreachable three times in a row, fails), no new fault in the status or the
//!   logs, dependencies stay healthy;
//! - **trends** ([`TrendSampler`], every `bake.sample_interval`): probe latencies and errors,
//!   progression, database sizes and free disk space, the alert-contract document (a broken
//!   field fails at once), the exported metric names, and the stall rule (a progression signal
//!   that has not moved for its window fails at once, [`judge_stall`]);
//! - **runtime** (the [`rollgate_runtime::RuntimeDriver`]): a component that exits or restarts
//!   more than `bake.max_restarts` times fails at once; memory is sampled where the runtime
//!   exposes it;
//! - **analysis** (`[[analysis]]`, the operator's Prometheus): each query every `interval`; a
//!   gate past its `failure_limit` fails at once; with `alert_selectors`, a new alert for this
//!   node firing on two answers in a row fails at once (`bake:alerts`) ([`analysis`]).
//!
//! When the period ends the trends are judged against the baseline's ([`Baseline::trends`],
//! sampled the same way while freezing): latency (Mann–Whitney U and an effect size, see
//! [`rollgate_core::stats`]), error rate, progression rate (and movement within the last
//! window), storage growth rate and the
//! projected time until the headroom limit, the metric contract, memory growth. A signal with too
//! few samples is judged by `bake.no_data`.

mod alerts;
mod analysis;
mod decidable;
mod errors;
mod latency;
mod progression;
mod runtime;
mod storage;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::{Config, NoDataPolicy};
use rollgate_core::engine::Reading;
use rollgate_core::units::format_duration;
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::observe::Observer;
use crate::progress::Progress;
use crate::watch::TrendSampler;

pub use alerts::{baseline_alert_document, judge_fields};
pub use decidable::{expected_samples, undecidable_warnings};
pub use errors::judge_errors;
pub use latency::{MIN_LATENCY_DELTA_MS, judge_latency};
pub use progression::{
    LastMove, judge_progression, judge_stall, judge_stalls, last_move, merge_stalls,
};
pub use storage::{StorageContext, judge_storage};

use alerts::{fields_failure, judge_metrics};
use runtime::{judge_memory, judge_restarts, runtime_loop};
use storage::data_dir_free;

/// The bake's verdicts, one gate per signal.
#[derive(Debug, Clone, Default)]
pub struct BakeVerdict {
    pub gates: Vec<GateResult>,
    /// What the bake sampled, in the baseline's terms: a promoted baseline can record these as
    /// its own trends. `None` when the bake stopped at an early failure.
    pub trends: Option<Trends>,
}

impl BakeVerdict {
    pub fn failed(&self) -> Option<&GateResult> {
        self.gates.iter().find(|g| g.verdict == Verdict::Fail)
    }
}

/// Watch the node for `duration`, sampling every `[bake].sample_interval`; stop early at the
/// first failure that needs no statistics (readiness, faults, crashes, the alert fields).
pub async fn bake(
    config: &Config,
    baseline: &Baseline,
    observer: &mut Observer,
    duration: Duration,
    progress: &dyn Progress,
) -> BakeVerdict {
    let interval = config
        .bake
        .sample_interval
        .min(duration.max(Duration::from_millis(100)));
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let driver = observer.driver().clone();
    let components = observer.components().to_vec();
    let shared = Arc::new(config.clone());
    // Verify's gate polls timed the new version's readiness answers: they are bake samples too.
    let verify_latency = observer.latency_samples().clone();

    let (trend, stability, runtime, analysis) = tokio::join!(
        trend_loop(shared, baseline, &verify_latency, started, duration, &stop),
        stability_loop(
            config, baseline, observer, started, duration, interval, &stop, progress
        ),
        runtime_loop(
            driver.as_ref(),
            &components,
            config.bake.max_restarts,
            started,
            duration,
            interval,
            &stop
        ),
        analysis::analysis_loop(config, baseline, started, duration, &stop),
    );

    let mut failures: Vec<GateResult> = Vec::new();
    failures.extend(stability.failures.iter().cloned());
    failures.extend(trend.failures.iter().cloned());
    failures.extend(runtime.failures.iter().cloned());
    failures.extend(analysis.failures.iter().cloned());
    if !failures.is_empty() {
        failures.truncate(8);
        return BakeVerdict {
            gates: failures,
            trends: None,
        };
    }
    let Some(sampler) = trend.sampler else {
        let mut gates = vec![stability_gate(&stability, duration)];
        gates.extend(analysis::judge_analysis(config, &analysis));
        gates.push(gate(
            "bake:trends",
            no_data(config.bake.no_data),
            format!(
                "the trends could not be sampled: {}",
                trend.error.unwrap_or_default()
            ),
            Value::Null,
        ));
        return BakeVerdict {
            gates,
            trends: None,
        };
    };
    let now = sampler.trends();
    let base = baseline.trends.as_ref();
    let policy = &config.bake;

    let mut gates = vec![stability_gate(&stability, duration)];
    gates.extend(judge_fields(
        config,
        baseline,
        now.alert_document
            .as_ref()
            .or(trend.last_alert_document.as_ref()),
    ));
    gates.extend(judge_metrics(config, &sampler, base));
    gates.extend(judge_latency(policy, base, &now));
    gates.push(judge_errors(policy, &now));
    gates.extend(merge_stalls(
        judge_progression(config, baseline, &now),
        judge_stalls(
            config,
            baseline,
            sampler.progression_readings(),
            now.window_ms as f64 / 1000.0,
        ),
    ));
    let data_dir_free = data_dir_free(config).await;
    let disks: BTreeMap<String, u64> = config
        .headroom
        .disk
        .iter()
        .filter_map(|d| {
            let key = format!("disk:{}", d.path.display());
            sampler.disk_total(&key).map(|t| (key, t))
        })
        .collect();
    gates.extend(judge_storage(
        config,
        baseline,
        &now,
        &StorageContext {
            disk_total: disks,
            data_dir_free,
            errors: sampler.storage_errors.clone(),
        },
    ));
    gates.extend(judge_restarts(&runtime, config.bake.max_restarts));
    gates.extend(judge_memory(policy, &runtime));
    gates.extend(analysis::judge_analysis(config, &analysis));
    BakeVerdict {
        gates,
        trends: Some(now),
    }
}

// ---------------------------------------------------------------------------------------------
// The loops.

struct TrendOutcome {
    sampler: Option<TrendSampler>,
    error: Option<String>,
    failures: Vec<GateResult>,
    last_alert_document: Option<Value>,
}

async fn trend_loop(
    config: Arc<Config>,
    baseline: &Baseline,
    seed_latency: &BTreeMap<String, Vec<f64>>,
    started: Instant,
    duration: Duration,
    stop: &AtomicBool,
) -> TrendOutcome {
    let mut sampler = match TrendSampler::new(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            return TrendOutcome {
                sampler: None,
                error: Some(e),
                failures: vec![],
                last_alert_document: None,
            };
        }
    };
    sampler.add_latency_samples(seed_latency);
    let baseline_doc = baseline_alert_document(&config, baseline);
    let mut failures = Vec::new();
    let mut last_alert_document = None;
    let mut ticks = tokio::time::interval(sampler.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let tick = sampler.sample().await;
        if let (Some(doc), Some(base)) = (&tick.alert_document, &baseline_doc)
            && !config.alerts.fields.is_empty()
        {
            let report = rollgate_probe::alerts::check_fields(&config.alerts.fields, base, doc);
            if !report.broken.is_empty() {
                failures.push(fields_failure(&config, &report, started.elapsed()));
                stop.store(true, Ordering::Relaxed);
                break;
            }
        }
        if tick.alert_document.is_some() {
            last_alert_document = tick.alert_document;
        }
        // The stall rule: a signal that stood still for its window stops the bake now.
        let now_s = sampler.elapsed().as_secs_f64();
        if let Some(g) = judge_stalls(&config, baseline, sampler.progression_readings(), now_s)
            .into_iter()
            .find(|g| g.verdict == Verdict::Fail)
        {
            failures.push(g);
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if started.elapsed() + sampler.interval() / 2 >= duration {
            break;
        }
    }
    TrendOutcome {
        sampler: Some(sampler),
        error: None,
        failures,
        last_alert_document,
    }
}

struct StabilityOutcome {
    failures: Vec<GateResult>,
    polls: u32,
    transient: BTreeMap<String, u32>,
}

#[allow(clippy::too_many_arguments)]
async fn stability_loop(
    config: &Config,
    baseline: &Baseline,
    observer: &mut Observer,
    started: Instant,
    duration: Duration,
    interval: Duration,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> StabilityOutcome {
    let mut failures: Vec<GateResult> = Vec::new();
    let mut polls = 0u32;
    let mut fail_streak: BTreeMap<String, u32> = BTreeMap::new();
    let mut transient_streak: BTreeMap<String, u32> = BTreeMap::new();
    let mut transient_total: BTreeMap<String, u32> = BTreeMap::new();
    let mut dep_streak: BTreeMap<String, u32> = BTreeMap::new();
    let _ = config;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(f) = observer.frozen() {
            failures.push(f.as_gate());
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let obs = observer.observe().await;
        polls += 1;
        let at_s = started.elapsed().as_secs_f64();
        for (name, r) in &obs.readiness {
            match r {
                Reading::Pass(_) => {
                    fail_streak.remove(name);
                    transient_streak.remove(name);
                }
                Reading::Fail(d) => {
                    let n = fail_streak.entry(name.clone()).or_default();
                    *n += 1;
                    if *n >= 2 {
                        failures.push(gate(
                            &format!("bake:readiness:{name}"),
                            Verdict::Fail,
                            format!("readiness lost during the bake ({n} polls in a row): {d}"),
                            json!({"at_s": at_s, "consecutive_polls": n}),
                        ));
                    }
                }
                Reading::Transient(d) => {
                    *transient_total.entry(name.clone()).or_default() += 1;
                    let n = transient_streak.entry(name.clone()).or_default();
                    *n += 1;
                    if *n >= 3 {
                        failures.push(gate(
                            &format!("bake:readiness:{name}"),
                            Verdict::Fail,
                            format!("unavailable for {n} polls in a row during the bake (421/503 or no answer persists): {d}"),
                            json!({"at_s": at_s, "consecutive_polls": n}),
                        ));
                    }
                }
            }
        }
        for f in &obs.faults {
            if !baseline.faults.contains(f) {
                failures.push(gate(
                    "bake:faults",
                    Verdict::Fail,
                    format!("new fault during the bake: {f}"),
                    json!({"fault": f, "at_s": at_s}),
                ));
            }
        }
        for line in obs.log_faults.iter().take(1) {
            failures.push(gate(
                "bake:faults",
                Verdict::Fail,
                format!("fault in the logs during the bake: {line}"),
                json!({"line": line, "at_s": at_s}),
            ));
        }
        for (name, r) in &obs.dependencies {
            let streak = dep_streak.entry(name.clone()).or_default();
            if let Reading::Fail(d) = r {
                *streak += 1;
                if *streak >= 2 {
                    // `name` is the observer's key: `dependency:NAME` or `environment:NAME`.
                    failures.push(gate(
                        &format!("bake:{name}"),
                        Verdict::Fail,
                        format!("{name} degraded during the bake: {d}"),
                        json!({"at_s": at_s}),
                    ));
                }
            } else {
                *streak = 0;
            }
        }
        progress.gates("bake", started.elapsed(), duration, &failures);
        if !failures.is_empty() {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if started.elapsed() >= duration {
            break;
        }
        let remaining = duration.saturating_sub(started.elapsed());
        tokio::time::sleep(interval.min(remaining)).await;
        if started.elapsed() >= duration {
            break;
        }
    }
    StabilityOutcome {
        failures,
        polls,
        transient: transient_total,
    }
}

fn stability_gate(s: &StabilityOutcome, duration: Duration) -> GateResult {
    gate(
        "bake:stability",
        Verdict::Pass,
        format!(
            "readiness, faults and dependencies held for {} ({} polls{})",
            format_duration(Duration::from_secs(duration.as_secs().max(1))),
            s.polls,
            if s.transient.is_empty() {
                String::new()
            } else {
                format!(
                    ", brief unavailability: {}",
                    s.transient
                        .iter()
                        .map(|(k, v)| format!("{k} {v}x"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        json!({"polls": s.polls, "transient": s.transient}),
    )
}

// ---------------------------------------------------------------------------------------------
// Judgements: pure functions of the baseline and what the bake sampled.

fn gate(name: &str, verdict: Verdict, detail: String, evidence: Value) -> GateResult {
    GateResult {
        name: name.to_string(),
        verdict,
        detail,
        evidence,
    }
}

/// The verdict of a signal without enough data.
pub fn no_data(policy: NoDataPolicy) -> Verdict {
    match policy {
        NoDataPolicy::Pass => Verdict::Pass,
        NoDataPolicy::Inconclusive => Verdict::Inconclusive,
        NoDataPolicy::Fail => Verdict::Fail,
    }
}

fn no_data_name(policy: NoDataPolicy) -> &'static str {
    rollgate_core::analysis::no_data_str(policy)
}

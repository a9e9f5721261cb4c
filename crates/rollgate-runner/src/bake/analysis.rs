//! The analysis gates during the bake: each `[[analysis]]` query measured every `interval` for
//! the whole period, counted against the same limits as in verify ([`Tally`]). A gate whose
//! failures pass `failure_limit` stops the bake at once (`bake:analysis:NAME`); at the end each
//! gate is passed, or inconclusive past `inconclusive_limit`, or judged by its `no_data` policy
//! when it could not be measured at all.
//!
//! With `[prometheus] alert_selectors` and a baseline that recorded the node's firing alerts,
//! the same loop asks for the alerts every second: one absent from the baseline firing on two
//! answers in a row stops the bake (`bake:alerts`), as in verify.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollgate_core::analysis::Tally;
use rollgate_core::baseline::Baseline;
use rollgate_core::config::Config;
use rollgate_core::monitoring::new_alerts;
use rollgate_core::vocab::{GateResult, Verdict};
use tokio::time::Instant;

use super::{gate, no_data, no_data_name};
use crate::checks::ProbeClients;

/// What the analysis loop measured: every gate's tally, and the failures that stopped it.
pub(super) struct AnalysisOutcome {
    pub tallies: BTreeMap<String, Tally>,
    pub failures: Vec<GateResult>,
    /// Alert answers: (asked, answered), when the bake watched the node's alerts.
    pub alerts: Option<(u32, u32)>,
}

/// Measure the due analysis gates until `duration` is over or a gate fails.
pub(super) async fn analysis_loop(
    config: &Config,
    baseline: &Baseline,
    started: Instant,
    duration: Duration,
    stop: &AtomicBool,
) -> AnalysisOutcome {
    let mut tallies: BTreeMap<String, Tally> = config
        .analysis
        .iter()
        .map(|a| (a.name.clone(), Tally::default()))
        .collect();
    let mut failures = Vec::new();
    let watch_alerts = config
        .prometheus
        .as_ref()
        .is_some_and(|p| !p.alert_selectors.is_empty())
        .then_some(baseline.monitoring.as_ref())
        .flatten();
    let mut alerts = watch_alerts.map(|_| (0u32, 0u32));
    let tick = config
        .analysis
        .iter()
        .map(|a| a.interval)
        .chain(watch_alerts.map(|_| Duration::from_secs(1)))
        .min();
    let Some(tick) = tick else {
        return AnalysisOutcome {
            tallies,
            failures,
            alerts,
        };
    };
    let clients = match ProbeClients::new(config) {
        Ok(c) => c,
        // No HTTP client at all: every gate is judged by no_data at the end.
        Err(_) => {
            return AnalysisOutcome {
                tallies,
                failures,
                alerts,
            };
        }
    };
    let mut streak: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        if stop.load(Ordering::Relaxed) || started.elapsed() >= duration {
            break;
        }
        let now = started.elapsed();
        let due: Vec<String> = config
            .analysis
            .iter()
            .filter(|a| tallies.get(&a.name).is_some_and(|t| t.due(a.interval, now)))
            .map(|a| a.name.clone())
            .collect();
        let measured = crate::analysis::measure(config, &clients, &due).await;
        for a in &config.analysis {
            if let (Some(sampled), Some(t)) = (measured.get(&a.name), tallies.get_mut(&a.name)) {
                t.add(a, now, sampled);
                if let Some((Verdict::Fail, detail)) = t.verdict(a, false) {
                    failures.push(gate(
                        &format!("bake:analysis:{}", a.name),
                        Verdict::Fail,
                        format!("during the bake: {detail}"),
                        t.evidence(a, false),
                    ));
                }
            }
        }
        if let (Some(base), Some((asked, answered))) = (watch_alerts, alerts.as_mut()) {
            *asked += 1;
            if let Ok(now_seen) = crate::monitoring::snapshot(config, &clients).await {
                *answered += 1;
                let new = new_alerts(base, &now_seen);
                streak.retain(|a, _| new.contains(a));
                for a in new {
                    let n = streak.entry(a.clone()).or_default();
                    *n += 1;
                    if *n >= 2 {
                        failures.push(gate(
                            "bake:alerts",
                            Verdict::Fail,
                            format!("new alert firing on 2 answers in a row during the bake: {a}"),
                            serde_json::json!({"alert": a, "at_s": started.elapsed().as_secs_f64(), "baseline_firing": base.firing}),
                        ));
                        break;
                    }
                }
            }
        }
        if !failures.is_empty() {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        let remaining = duration.saturating_sub(started.elapsed());
        tokio::time::sleep(tick.min(remaining)).await;
    }
    AnalysisOutcome {
        tallies,
        failures,
        alerts,
    }
}

/// The analysis gates at the end of a bake that did not stop early.
pub(super) fn judge_analysis(config: &Config, outcome: &AnalysisOutcome) -> Vec<GateResult> {
    let alerts = outcome.alerts.map(|(asked, answered)| {
        if answered == 0 {
            gate(
                "bake:alerts",
                Verdict::Inconclusive,
                format!("firing alerts unknown: Prometheus did not answer ({asked} attempt(s))"),
                serde_json::json!({"asked": asked, "answered": answered}),
            )
        } else {
            gate(
                "bake:alerts",
                Verdict::Pass,
                format!("no new firing alert for this node ({answered} answer(s))"),
                serde_json::json!({"asked": asked, "answered": answered}),
            )
        }
    });
    config
        .analysis
        .iter()
        .map(|a| {
            let untracked = Tally::default();
            let t = outcome.tallies.get(&a.name).unwrap_or(&untracked);
            let name = format!("bake:analysis:{}", a.name);
            match t.verdict(a, true) {
                Some((verdict, detail)) => gate(&name, verdict, detail, t.evidence(a, false)),
                None => gate(
                    &name,
                    no_data(a.no_data),
                    format!(
                        "not measured during the bake; no_data = {}",
                        no_data_name(a.no_data)
                    ),
                    t.evidence(a, false),
                ),
            }
        })
        .chain(alerts)
        .collect()
}

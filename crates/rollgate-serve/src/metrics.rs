//! `GET /metrics`: the Prometheus text exposition, computed from the journal at every scrape
//! (so it is right across restarts of `serve` and counts rollouts run by the CLI too), plus the
//! latest light probe. Every metric is described and recorded here, in one place.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `rollgate_build_info` | gauge | `version`, `node` | always 1 |
//! | `rollgate_journal_up` | gauge | | 1 when the journal could be read for this scrape |
//! | `rollgate_rollouts_total` | counter | `outcome`, `cause` | finished rollouts by outcome and cause: the deciding gate (`progression:requestIndex`, `bake:faults`, …), `step:<kind>`, `requested`, `preflight`, `interrupted`, `none` (promoted) |
//! | `rollgate_gate_verdicts_total` | counter | `gate`, `verdict` | every gate verdict recorded |
//! | `rollgate_rollout_active` | gauge | | 1 while a rollout is unfinished |
//! | `rollgate_rollout_interrupted` | gauge | | 1 when it is unfinished and no live process holds the lock (`rollgate resume`) |
//! | `rollgate_rollout_step` | gauge | `step` | 1 for the step the unfinished rollout is at, 0 for the others |
//! | `rollgate_rollout_steps` | gauge | | journal steps of the unfinished rollout so far |
//! | `rollgate_rollout_active_duration_seconds` | gauge | | since the unfinished rollout started |
//! | `rollgate_lock_held` | gauge | | 1 while a live process holds the rollout lock |
//! | `rollgate_frozen` | gauge | | 1 while the kill switch is on |
//! | `rollgate_last_rollout_outcome` | gauge | `outcome` | 1 for the outcome of the latest finished rollout |
//! | `rollgate_last_rollout_finished_timestamp_seconds` | gauge | | when it finished |
//! | `rollgate_last_rollout_duration_seconds` | gauge | | how long it took |
//! | `rollgate_last_rollout_gate` | gauge | `gate`, `phase`, `verdict` | 1 for each verdict of the latest finished rollout |
//! | `rollgate_last_known_good_timestamp_seconds` | gauge | | when the current known-good baseline was marked |
//! | `rollgate_last_known_good_age_seconds` | gauge | | time since then |
//! | `rollgate_progression_rate_per_second` | gauge | `signal`, `source` | progression rate of the known-good baseline (`source="baseline"`) and of the latest rollout's verification (`source="last_rollout"`) |
//! | `rollgate_progression_last_value` | gauge | `signal` | the last numeric value sampled in the latest rollout |
//! | `rollgate_probe_up` | gauge | `probe`, `source` | 1 when the probe passed: the light probe (`source="live"`) or the known-good baseline's checks (`source="baseline"`) |
//! | `rollgate_probe_latency_seconds` | gauge | `probe`, `source` | that probe's latency |
//! | `rollgate_probe_last_run_timestamp_seconds` | gauge | | when the light probe last ran |
//! | `rollgate_serve_action_running` | gauge | | 1 while an action started through the API runs |

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use rollgate_core::baseline::Baseline;
use rollgate_core::engine::numeric;
use rollgate_core::vocab::{CheckStatus, Outcome, Verdict};
use rollgate_journal::{Journal, JournalError, JournalState, LockStatus, RolloutDetail};
use serde_json::Value;

use crate::analysis::{Analysis, phase_gates, seconds_between};
use crate::html::{epoch_secs, parse_ts};
use crate::state::ProbeSnapshot;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What is remembered of a finished rollout (finished rollouts never change).
#[derive(Debug, Clone)]
pub struct RolloutFacts {
    pub outcome: Outcome,
    pub cause: String,
    pub gates: Vec<(String, Verdict)>,
}

pub type FactsCache = HashMap<String, RolloutFacts>;

/// The latest finished rollout, for the `rollgate_last_rollout_*` metrics.
#[derive(Debug, Clone)]
pub struct LastRollout {
    pub outcome: Outcome,
    pub finished_at: Option<f64>,
    pub duration_s: Option<f64>,
    pub gates: Vec<(String, String, Verdict)>,
    /// (signal, rate per second, last numeric value)
    pub progression: Vec<(String, Option<f64>, Option<f64>)>,
}

/// Everything read from the journal for one scrape.
#[derive(Debug, Clone)]
pub struct JournalFacts {
    pub state: JournalState,
    pub lock_held: bool,
    pub outcomes: BTreeMap<(String, String), u64>,
    pub gate_verdicts: BTreeMap<(String, String), u64>,
    pub last: Option<LastRollout>,
    pub known_good: Option<(Option<f64>, Baseline)>,
}

/// Read the journal (blocking). Finished rollouts are read once and remembered in `cache`.
pub fn gather(
    j: &Journal,
    state_dir: &Path,
    cache: &mut FactsCache,
) -> Result<JournalFacts, JournalError> {
    let state = j.state()?;
    let lock_held = matches!(
        rollgate_journal::Lock::status(state_dir),
        Ok(LockStatus::Held { .. })
    );
    let history = j.history(usize::MAX)?;
    let mut outcomes = BTreeMap::new();
    let mut gate_verdicts = BTreeMap::new();
    for h in &history {
        let Some(outcome) = h.outcome else { continue };
        if !cache.contains_key(&h.rollout_id) {
            let Some(d) = j.rollout(&h.rollout_id)? else {
                continue;
            };
            let gates = phase_gates(&d);
            let a = Analysis::new(&d, &gates);
            let facts = RolloutFacts {
                outcome,
                cause: a.cause(),
                gates: d
                    .gates
                    .iter()
                    .map(|g| (g.name.clone(), g.verdict))
                    .collect(),
            };
            cache.insert(h.rollout_id.clone(), facts);
        }
        let f = &cache[&h.rollout_id];
        *outcomes
            .entry((f.outcome.as_str().to_string(), f.cause.clone()))
            .or_insert(0) += 1;
        for (name, v) in &f.gates {
            *gate_verdicts
                .entry((name.clone(), v.as_str().to_string()))
                .or_insert(0) += 1;
        }
    }
    let last = match &state.last_finished {
        Some(h) => j.rollout(&h.rollout_id)?.and_then(|d| last_rollout(&d)),
        None => None,
    };
    let known_good = match &state.last_known_good {
        Some(s) => j.baseline(&s.id)?.map(|b| {
            (
                s.known_good_at
                    .as_deref()
                    .and_then(parse_ts)
                    .map(epoch_secs),
                b,
            )
        }),
        None => None,
    };
    Ok(JournalFacts {
        state,
        lock_held,
        outcomes,
        gate_verdicts,
        last,
        known_good,
    })
}

fn last_rollout(d: &RolloutDetail) -> Option<LastRollout> {
    let outcome = d.outcome?;
    let gates = phase_gates(d);
    let mut progression = Vec::new();
    for g in gates.iter().filter(|g| !g.in_rollback()) {
        let Some(signal) = g.gate.name.strip_prefix("progression:") else {
            continue;
        };
        let samples: Vec<(f64, &Value)> = g
            .gate
            .evidence
            .get("samples")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?)))
                    .collect()
            })
            .unwrap_or_default();
        let rate = match (samples.first(), samples.last()) {
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => match (numeric(v0), numeric(v1)) {
                (Some(a), Some(b)) => Some((b - a) / ((t1 - t0) / 1000.0)),
                _ => None,
            },
            _ => None,
        };
        progression.push((
            signal.to_string(),
            rate,
            samples.last().and_then(|(_, v)| numeric(v)),
        ));
    }
    Some(LastRollout {
        outcome,
        finished_at: d.finished_at.as_deref().and_then(parse_ts).map(epoch_secs),
        duration_s: d
            .finished_at
            .as_deref()
            .and_then(|f| seconds_between(&d.started_at, Some(f), SystemTime::now())),
        gates: gates
            .iter()
            .map(|g| (g.gate.name.clone(), g.phase.clone(), g.gate.verdict))
            .collect(),
        progression,
    })
}

/// Everything one scrape shows.
#[derive(Debug, Clone)]
pub struct MetricsInput<'a> {
    pub node: &'a str,
    /// `None` when the journal could not be read.
    pub journal: Option<&'a JournalFacts>,
    pub frozen: bool,
    pub probes: Option<&'a ProbeSnapshot>,
    pub action_running: bool,
    pub now: SystemTime,
}

/// The exposition text.
pub fn render(input: &MetricsInput<'_>) -> String {
    // A fresh recorder per scrape: every value is recomputed from the journal, and series that
    // no longer apply (an old step, a gate of an older rollout) simply disappear.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        record(input);
    });
    handle.render()
}

fn describe() {
    describe_gauge!("rollgate_build_info", "rollgate build and node (always 1)");
    describe_gauge!(
        "rollgate_journal_up",
        "1 when the journal could be read for this scrape"
    );
    describe_counter!(
        "rollgate_rollouts_total",
        "Finished rollouts by outcome and cause (the deciding gate, step:<kind>, requested, preflight, interrupted, none)"
    );
    describe_counter!(
        "rollgate_gate_verdicts_total",
        "Gate verdicts recorded in the journal"
    );
    describe_gauge!("rollgate_rollout_active", "1 while a rollout is unfinished");
    describe_gauge!(
        "rollgate_rollout_interrupted",
        "1 when the unfinished rollout has no live process: run rollgate resume"
    );
    describe_gauge!(
        "rollgate_rollout_step",
        "1 for the step the unfinished rollout is at"
    );
    describe_gauge!(
        "rollgate_rollout_steps",
        "Journal steps of the unfinished rollout so far"
    );
    describe_gauge!(
        "rollgate_rollout_active_duration_seconds",
        Unit::Seconds,
        "Time since the unfinished rollout started"
    );
    describe_gauge!(
        "rollgate_lock_held",
        "1 while a live process holds the rollout lock"
    );
    describe_gauge!(
        "rollgate_frozen",
        "1 while the kill switch (rollgate freeze) is on"
    );
    describe_gauge!(
        "rollgate_last_rollout_outcome",
        "1 for the outcome of the latest finished rollout"
    );
    describe_gauge!(
        "rollgate_last_rollout_finished_timestamp_seconds",
        Unit::Seconds,
        "When the latest finished rollout finished"
    );
    describe_gauge!(
        "rollgate_last_rollout_duration_seconds",
        Unit::Seconds,
        "How long the latest finished rollout took"
    );
    describe_gauge!(
        "rollgate_last_rollout_gate",
        "1 for each gate verdict of the latest finished rollout"
    );
    describe_gauge!(
        "rollgate_last_known_good_timestamp_seconds",
        Unit::Seconds,
        "When the current known-good baseline was marked known-good"
    );
    describe_gauge!(
        "rollgate_last_known_good_age_seconds",
        Unit::Seconds,
        "Time since the current known-good baseline was marked"
    );
    describe_gauge!(
        "rollgate_progression_rate_per_second",
        "Progression rate of a signal (increase per second)"
    );
    describe_gauge!(
        "rollgate_progression_last_value",
        "Last numeric value of a progression signal sampled in the latest rollout"
    );
    describe_gauge!("rollgate_probe_up", "1 when the probe passed");
    describe_gauge!(
        "rollgate_probe_latency_seconds",
        Unit::Seconds,
        "Probe latency"
    );
    describe_gauge!(
        "rollgate_probe_last_run_timestamp_seconds",
        Unit::Seconds,
        "When the light probe last ran"
    );
    describe_gauge!(
        "rollgate_serve_action_running",
        "1 while an action started through the API runs"
    );
}

const OUTCOMES: [Outcome; 4] = [
    Outcome::Promoted,
    Outcome::RolledBack,
    Outcome::RollbackFailed,
    Outcome::Refused,
];

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn record(input: &MetricsInput<'_>) {
    gauge!("rollgate_build_info", "version" => env!("CARGO_PKG_VERSION"), "node" => input.node.to_string()).set(1.0);
    gauge!("rollgate_journal_up").set(flag(input.journal.is_some()));
    gauge!("rollgate_frozen").set(flag(input.frozen));
    gauge!("rollgate_serve_action_running").set(flag(input.action_running));
    let now = epoch_secs(input.now);

    if let Some(p) = input.probes {
        if let Some(t) = parse_ts(&p.at) {
            gauge!("rollgate_probe_last_run_timestamp_seconds").set(epoch_secs(t));
        }
        for c in &p.checks {
            if c.status == CheckStatus::Skip {
                continue;
            }
            gauge!("rollgate_probe_up", "probe" => c.name.clone(), "source" => "live")
                .set(flag(c.status != CheckStatus::Fail));
            gauge!("rollgate_probe_latency_seconds", "probe" => c.name.clone(), "source" => "live")
                .set(c.latency_ms as f64 / 1000.0);
        }
    }

    let Some(j) = input.journal else { return };
    for ((outcome, cause), n) in &j.outcomes {
        counter!("rollgate_rollouts_total", "outcome" => outcome.clone(), "cause" => cause.clone())
            .absolute(*n);
    }
    for ((gate, verdict), n) in &j.gate_verdicts {
        counter!("rollgate_gate_verdicts_total", "gate" => gate.clone(), "verdict" => verdict.clone()).absolute(*n);
    }

    let active = j.state.interrupted.as_ref();
    gauge!("rollgate_rollout_active").set(flag(active.is_some()));
    gauge!("rollgate_rollout_interrupted").set(flag(active.is_some() && !j.lock_held));
    gauge!("rollgate_lock_held").set(flag(j.lock_held));
    let current = active
        .and_then(|a| a.last_step.as_ref())
        .map(|s| s.kind.as_str());
    for step in rollgate_runner::rollout::step::ALL {
        gauge!("rollgate_rollout_step", "step" => step).set(flag(current == Some(step)));
    }
    gauge!("rollgate_rollout_steps").set(active.map(|a| f64::from(a.steps)).unwrap_or(0.0));
    gauge!("rollgate_rollout_active_duration_seconds").set(
        active
            .and_then(|a| seconds_between(&a.started_at, None, input.now))
            .unwrap_or(0.0),
    );

    if let Some(last) = &j.last {
        for o in OUTCOMES {
            gauge!("rollgate_last_rollout_outcome", "outcome" => o.as_str())
                .set(flag(last.outcome == o));
        }
        if let Some(t) = last.finished_at {
            gauge!("rollgate_last_rollout_finished_timestamp_seconds").set(t);
        }
        if let Some(d) = last.duration_s {
            gauge!("rollgate_last_rollout_duration_seconds").set(d);
        }
        for (gate, phase, verdict) in &last.gates {
            gauge!("rollgate_last_rollout_gate", "gate" => gate.clone(), "phase" => phase.clone(), "verdict" => verdict.as_str()).set(1.0);
        }
        for (signal, rate, value) in &last.progression {
            if let Some(r) = rate {
                gauge!("rollgate_progression_rate_per_second", "signal" => signal.clone(), "source" => "last_rollout").set(*r);
            }
            if let Some(v) = value {
                gauge!("rollgate_progression_last_value", "signal" => signal.clone()).set(*v);
            }
        }
    }

    if let Some((at, baseline)) = &j.known_good {
        if let Some(at) = at {
            gauge!("rollgate_last_known_good_timestamp_seconds").set(*at);
            gauge!("rollgate_last_known_good_age_seconds").set((now - at).max(0.0));
        }
        for p in &baseline.progression {
            gauge!("rollgate_progression_rate_per_second", "signal" => p.name.clone(), "source" => "baseline").set(p.rate_per_s);
        }
        for c in baseline
            .checks
            .iter()
            .filter(|c| c.status != CheckStatus::Skip)
        {
            gauge!("rollgate_probe_up", "probe" => c.name.clone(), "source" => "baseline")
                .set(flag(c.status != CheckStatus::Fail));
            gauge!("rollgate_probe_latency_seconds", "probe" => c.name.clone(), "source" => "baseline").set(c.latency_ms as f64 / 1000.0);
        }
    }
}

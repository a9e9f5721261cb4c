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
//!   field fails at once) and the exported metric names;
//! - **runtime** (the [`rollgate_runtime::RuntimeDriver`]): a component that exits or restarts
//!   more than `bake.max_restarts` times fails at once; memory is sampled where the runtime
//!   exposes it.
//!
//! When the period ends the trends are judged against the baseline's ([`Baseline::trends`],
//! sampled the same way while freezing): latency (Mann–Whitney U and an effect size, see
//! [`rollgate_core::stats`]), error rate, progression rate, storage growth rate and the
//! projected time until the headroom limit, the metric contract, memory growth. A signal with too
//! few samples is judged by `bake.no_data`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::{
    BakePolicy, Component, Config, IdlePolicy, NoDataPolicy, ProgressionMode,
};
use rollgate_core::engine::{Reading, moved};
use rollgate_core::stats::{
    LatencyJudgement, LatencyPolicy, compare_latency, growth_ratio, median, time_to_exhaustion,
};
use rollgate_core::units::{format_duration, format_size};
use rollgate_core::vocab::{GateResult, Verdict};
use rollgate_runtime::{ComponentState, RunStatus, RuntimeDriver};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::observe::Observer;
use crate::progress::Progress;
use crate::watch::{TrendSampler, alert_url};

/// A median slowdown smaller than this is never a latency degradation, whatever the ratio:
/// sub-millisecond loopback answers double from scheduler noise alone.
pub const MIN_LATENCY_DELTA_MS: f64 = 5.0;

/// The granularity of `pg_database_size`: one 8 KiB page.
const DATABASE_QUANTUM: f64 = 8192.0;
/// Free space of a filesystem moves with every writer sharing it (logs, backups, package
/// caches), not only the node: changes below 64 MiB over the window are treated as noise, neither
/// compared with the baseline nor projected. Over a 10-minute bake that still catches a leak of
/// a few hundred KiB per second.
const FILESYSTEM_QUANTUM: f64 = 64.0 * 1024.0 * 1024.0;

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

    let (trend, stability, runtime) = tokio::join!(
        trend_loop(shared, baseline, started, duration, &stop),
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
    );

    let mut failures: Vec<GateResult> = Vec::new();
    failures.extend(stability.failures.iter().cloned());
    failures.extend(trend.failures.iter().cloned());
    failures.extend(runtime.failures.iter().cloned());
    if !failures.is_empty() {
        failures.truncate(8);
        return BakeVerdict {
            gates: failures,
            trends: None,
        };
    }
    let Some(sampler) = trend.sampler else {
        let mut gates = vec![stability_gate(&stability, duration)];
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
    gates.extend(judge_progression(config, baseline, &now));
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

/// What the runtime said about the watched components.
#[derive(Debug, Default)]
struct RuntimeOutcome {
    failures: Vec<GateResult>,
    /// Restart counts at the start and the end, per component (`None`: the runtime cannot tell).
    restarts: BTreeMap<String, (Option<u32>, Option<u32>)>,
    memory: BTreeMap<String, Vec<(f64, u64)>>,
    /// Why memory could not be read, per component.
    memory_unobservable: BTreeMap<String, String>,
    state_errors: BTreeMap<String, String>,
}

async fn runtime_loop(
    driver: &dyn RuntimeDriver,
    components: &[Component],
    max_restarts: u32,
    started: Instant,
    duration: Duration,
    interval: Duration,
    stop: &AtomicBool,
) -> RuntimeOutcome {
    let mut out = RuntimeOutcome::default();
    if components.is_empty() {
        return out;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = started.elapsed().as_secs_f64();
        for c in components {
            let state = match driver.state(c).await {
                Ok(s) => s,
                Err(e) => {
                    out.state_errors
                        .insert(c.name.clone(), rollgate_probe::errors::chain(&e));
                    continue;
                }
            };
            if matches!(
                state.status,
                RunStatus::Exited | RunStatus::Dead | RunStatus::Restarting
            ) {
                out.failures.push(gate(
                    &format!("bake:component:{}", c.name),
                    Verdict::Fail,
                    format!(
                        "{} is {} during the bake (exit code {})",
                        c.name,
                        state.status.as_str(),
                        state
                            .exit_code
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "-".into())
                    ),
                    json!({"state": state, "at_s": at}),
                ));
            }
            let entry = out
                .restarts
                .entry(c.name.clone())
                .or_insert((state.restart_count, state.restart_count));
            entry.1 = state.restart_count;
            if let (Some(a), Some(b)) = *entry
                && b.saturating_sub(a) > max_restarts
            {
                out.failures.push(gate(
                    &format!("bake:restarts:{}", c.name),
                    Verdict::Fail,
                    format!("{} restarted {} time(s) during the bake, more than max_restarts {max_restarts}", c.name, b - a),
                    json!({"restarts_at_start": a, "restarts_now": b, "max_restarts": max_restarts, "at_s": at}),
                ));
            }
            if !out.memory_unobservable.contains_key(&c.name) {
                match memory_bytes(&state).await {
                    Ok(bytes) => out
                        .memory
                        .entry(c.name.clone())
                        .or_default()
                        .push((at, bytes)),
                    Err(why) => {
                        out.memory_unobservable.insert(c.name.clone(), why);
                    }
                }
            }
        }
        if !out.failures.is_empty() {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if started.elapsed() + interval / 2 >= duration {
            break;
        }
    }
    out
}

/// The memory a component's container uses now: its cgroup's counter when visible (v2, then
/// v1), else `docker stats`. Components without a container (the command driver) have none.
async fn memory_bytes(state: &ComponentState) -> Result<u64, String> {
    let Some(id) = state.container_id.as_deref().filter(|s| !s.is_empty()) else {
        return Err(
            "the runtime reports no container for it (memory is read from a container's cgroup)"
                .into(),
        );
    };
    let candidates = [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current"),
        format!("/sys/fs/cgroup/docker/{id}/memory.current"),
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"),
    ];
    for path in &candidates {
        if let Ok(text) = tokio::fs::read_to_string(path).await
            && let Ok(n) = text.trim().parse::<u64>()
        {
            return Ok(n);
        }
    }
    let run = tokio::process::Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.MemUsage}}", id])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let used = text.split('/').next().unwrap_or("").trim();
            rollgate_core::units::parse_size(used).map_err(|e| format!("docker stats: {e}"))
        }
        Ok(Ok(out)) => Err(format!(
            "docker stats failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("cannot run docker stats: {e}")),
        Err(_) => Err("docker stats did not answer within 10s".into()),
    }
}

async fn data_dir_free(config: &Config) -> Option<u64> {
    let pg = config.dependencies.postgres.as_ref()?;
    config.headroom.database.as_ref()?;
    let outcome =
        rollgate_probe::postgres::probe_postgres(pg, None, config.probe_limits.timeout).await;
    outcome
        .observed
        .get("data_dir_free_bytes")
        .and_then(Value::as_u64)
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
    match policy {
        NoDataPolicy::Pass => "pass",
        NoDataPolicy::Inconclusive => "inconclusive",
        NoDataPolicy::Fail => "fail",
    }
}

/// The baseline's alert-contract document: recorded beside the trends when `[alerts].url` is
/// not a readiness URL, else that readiness entry's raw output.
pub fn baseline_alert_document(config: &Config, baseline: &Baseline) -> Option<Value> {
    if let Some(doc) = baseline
        .trends
        .as_ref()
        .and_then(|t| t.alert_document.clone())
    {
        return Some(doc);
    }
    let url = alert_url(config)?;
    let entry = config.readiness.iter().find(|r| r.url == url)?;
    baseline
        .readiness
        .get(&entry.name)
        .filter(|v| !v.is_null())
        .cloned()
}

fn fields_failure(
    config: &Config,
    report: &rollgate_probe::alerts::FieldReport,
    at: Duration,
) -> GateResult {
    let shown: Vec<String> = report.broken.iter().map(ToString::to_string).collect();
    gate(
        "bake:alerts:fields",
        Verdict::Fail,
        format!("alert contract broken: {}", shown.join("; ")),
        json!({
            "url": alert_url(config).map(rollgate_core::redact::redact_url),
            "broken": report.broken,
            "held": report.held,
            "not_in_baseline": report.unknown,
            "at_s": at.as_secs_f64(),
        }),
    )
}

/// The alert fields at the end of a bake that did not break them.
pub fn judge_fields(
    config: &Config,
    baseline: &Baseline,
    current: Option<&Value>,
) -> Option<GateResult> {
    let fields = &config.alerts.fields;
    if fields.is_empty() {
        return None;
    }
    let nd = config.bake.no_data;
    let Some(base) = baseline_alert_document(config, baseline) else {
        return Some(gate(
            "bake:alerts:fields",
            no_data(nd),
            format!(
                "the baseline has no status document to compare the {} alert field(s) with (no_data = {})",
                fields.len(),
                no_data_name(nd)
            ),
            Value::Null,
        ));
    };
    let Some(current) = current else {
        return Some(gate(
            "bake:alerts:fields",
            no_data(nd),
            format!(
                "the status document was never read during the bake (no_data = {})",
                no_data_name(nd)
            ),
            Value::Null,
        ));
    };
    let report = rollgate_probe::alerts::check_fields(fields, &base, current);
    if !report.broken.is_empty() {
        return Some(fields_failure(config, &report, Duration::ZERO));
    }
    let evidence = json!({"held": report.held, "not_in_baseline": report.unknown});
    Some(if report.unknown.is_empty() {
        gate(
            "bake:alerts:fields",
            Verdict::Pass,
            format!(
                "{} alert field(s) present with their baseline types",
                report.held.len()
            ),
            evidence,
        )
    } else {
        gate(
            "bake:alerts:fields",
            Verdict::Inconclusive,
            format!(
                "{} alert field(s) held; not in the baseline either, so not comparable: {}",
                report.held.len(),
                report.unknown.join(", ")
            ),
            evidence,
        )
    })
}

fn judge_metrics(
    config: &Config,
    sampler: &TrendSampler,
    base: Option<&Trends>,
) -> Option<GateResult> {
    if config.alerts.rules_files.is_empty() {
        return None;
    }
    let name = "bake:alerts:metrics";
    let files: Vec<String> = config
        .alerts
        .rules_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let rules = match rollgate_probe::alerts::load_rules(&config.alerts.rules_files) {
        Ok(r) => r,
        Err(e) => {
            return Some(gate(
                name,
                Verdict::Inconclusive,
                format!("cannot check the alert rules' metrics: {}", e.detail()),
                json!({"rules_files": files}),
            ));
        }
    };
    let required = rules.required().len() + rules.patterns.len();
    if config.alerts.metrics_urls.is_empty() {
        return Some(gate(
            name,
            Verdict::Inconclusive,
            format!(
                "{required} metric(s) referenced by the alert rules were not checked: no [alerts].metrics_urls"
            ),
            json!({"rules_files": files}),
        ));
    }
    if sampler.metric_scrapes == 0 {
        return Some(gate(
            name,
            Verdict::Fail,
            format!(
                "no metrics endpoint answered during the bake, so none of the {required} metric(s) the alert rules reference is exported: {}",
                sampler
                    .metric_errors
                    .iter()
                    .map(|(u, e)| format!("{u}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            json!({"rules_files": files, "errors": sampler.metric_errors}),
        ));
    }
    let missing = rollgate_probe::alerts::missing_metrics(&rules, sampler.metric_names());
    let baseline_names: Option<std::collections::BTreeSet<&str>> = base
        .filter(|t| !t.metric_names.is_empty())
        .map(|t| t.metric_names.iter().map(String::as_str).collect());
    let (already, new): (Vec<_>, Vec<_>) = missing.into_iter().partition(|m| {
        baseline_names
            .as_ref()
            .is_some_and(|b| !m.name.starts_with('~') && !b.contains(m.name.as_str()))
    });
    // A label key a selector needs that the metric's series no longer carry: the change's fault
    // only when the baseline's series carried it (a baseline without label records cannot say).
    let missing_labels = rollgate_probe::alerts::missing_labels(&rules, sampler.metric_labels());
    let (labels_new, labels_already): (Vec<_>, Vec<_>) =
        missing_labels.into_iter().partition(|m| {
            base.and_then(|t| t.metric_labels.get(&m.metric))
                .is_some_and(|had| had.contains(&m.label))
        });
    let required_labels: usize = rules.labels.values().map(|l| l.len()).sum();
    let evidence = json!({
        "rules_files": files,
        "rules": rules.rules,
        "required": required,
        "required_labels": required_labels,
        "missing": new,
        "missing_in_baseline_too": already,
        "missing_labels": labels_new,
        "missing_labels_unknown_in_baseline": labels_already,
        "scrapes": sampler.metric_scrapes,
        "errors": sampler.metric_errors,
    });
    let label_text = |ls: &[rollgate_probe::alerts::MissingLabel]| -> Vec<String> {
        ls.iter()
            .map(|m| {
                format!(
                    "{} has no label `{}` (used by {})",
                    m.metric,
                    m.label,
                    m.rules.join(", ")
                )
            })
            .collect()
    };
    Some(if !new.is_empty() || !labels_new.is_empty() {
        let mut list: Vec<String> = new
            .iter()
            .map(|m| format!("{} (used by {})", m.name, m.rules.join(", ")))
            .collect();
        list.extend(label_text(&labels_new));
        gate(
            name,
            Verdict::Fail,
            format!(
                "the alert rules select what is no longer exported, so they can no longer fire: {}",
                list.join("; ")
            ),
            evidence,
        )
    } else if !already.is_empty() || !labels_already.is_empty() {
        let mut list: Vec<String> = already.iter().map(|m| m.name.clone()).collect();
        list.extend(label_text(&labels_already));
        gate(
            name,
            Verdict::Inconclusive,
            format!(
                "not exported now, and not known from the baseline either: {}",
                list.join("; ")
            ),
            evidence,
        )
    } else {
        gate(
            name,
            Verdict::Pass,
            format!(
                "all {required} metric(s) and {required_labels} label(s) referenced by {} alert rule(s) are exported",
                rules.rules
            ),
            evidence,
        )
    })
}

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

/// Progression keeps moving, and no slower than `min_progression_ratio` times the baseline.
pub fn judge_progression(config: &Config, baseline: &Baseline, now: &Trends) -> Vec<GateResult> {
    let policy = &config.bake;
    let mut out = Vec::new();
    for p in &config.progression {
        let name = format!("bake:progression:{}", p.name);
        let Some(t) = now.progression.get(&p.name).filter(|t| t.samples >= 2) else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{}: fewer than 2 readings during the bake (no_data = {})",
                    p.name,
                    no_data_name(policy.no_data)
                ),
                json!({"pointer": p.pointer}),
            ));
            continue;
        };
        let did_move = moved(p.mode, &t.first, &t.last)
            || (p.mode == ProgressionMode::Changes && t.changes > 0);
        let recorded = baseline.progression.iter().find(|r| r.name == p.name);
        let baseline_idle = recorded.map(|r| r.idle).unwrap_or(false);
        let base_trend = baseline
            .trends
            .as_ref()
            .and_then(|b| b.progression.get(&p.name));
        let mut evidence = json!({"first": t.first, "last": t.last, "samples": t.samples, "changes": t.changes,
                                   "rate_per_s": t.rate_per_s, "baseline_idle": baseline_idle, "min_progression_ratio": policy.min_progression_ratio});
        if !did_move {
            let (verdict, detail) = if baseline_idle {
                let v = match config.rollout.idle_progression {
                    IdlePolicy::Fail => Verdict::Fail,
                    IdlePolicy::Inconclusive => Verdict::Inconclusive,
                    IdlePolicy::Pass => Verdict::Pass,
                };
                (
                    v,
                    format!(
                        "{} did not move during the bake; the baseline was idle too, idle_progression = {}",
                        p.name,
                        config.rollout.idle_progression.as_str()
                    ),
                )
            } else {
                (
                    Verdict::Fail,
                    format!(
                        "progression stalled during the bake: {} stayed at {}",
                        p.name, t.first
                    ),
                )
            };
            out.push(gate(&name, verdict, detail, evidence));
            continue;
        }
        // The baseline's rate in the same cadence (its trends), else the freeze's sampled rate
        // for numeric signals. A `changes` rate cannot exceed one change per sample, so both
        // sides are capped at what the coarser sampler could see.
        let now_interval = now.interval_ms.max(1) as f64 / 1000.0;
        let base_rate = match (base_trend, p.mode) {
            (Some(b), ProgressionMode::Changes) => {
                let cap = 1.0
                    / now_interval.max(
                        baseline
                            .trends
                            .as_ref()
                            .map(|b| b.interval_ms.max(1) as f64 / 1000.0)
                            .unwrap_or(now_interval),
                    );
                Some((b.rate_per_s.min(cap), t.rate_per_s.min(cap)))
            }
            (Some(b), ProgressionMode::Increases) => Some((b.rate_per_s, t.rate_per_s)),
            (None, ProgressionMode::Increases) => recorded.map(|r| (r.rate_per_s, t.rate_per_s)),
            (None, ProgressionMode::Changes) => None,
        };
        match base_rate {
            Some((b, n)) if b > 0.0 && b.is_finite() => {
                let ratio = n / b;
                evidence["baseline_rate_per_s"] = json!(b);
                evidence["ratio"] = json!(ratio);
                let numbers = format!(
                    "{n:.2}/s vs {b:.2}/s in the baseline (x{ratio:.2}; min_progression_ratio {})",
                    policy.min_progression_ratio
                );
                if ratio < policy.min_progression_ratio {
                    out.push(gate(
                        &name,
                        Verdict::Fail,
                        format!("{} progresses slower than the baseline: {numbers}", p.name),
                        evidence,
                    ));
                } else {
                    out.push(gate(
                        &name,
                        Verdict::Pass,
                        format!("{} kept moving: {numbers}", p.name),
                        evidence,
                    ));
                }
            }
            _ => out.push(gate(
                &name,
                Verdict::Pass,
                format!(
                    "{} kept moving during the bake ({} → {}); no baseline rate to compare with",
                    p.name, t.first, t.last
                ),
                evidence,
            )),
        }
    }
    out
}

/// What storage judgement needs beyond the trends.
#[derive(Debug, Clone, Default)]
pub struct StorageContext {
    /// Total bytes of each `disk:PATH` filesystem.
    pub disk_total: BTreeMap<String, u64>,
    /// Free bytes of the Postgres data directory's filesystem, when visible.
    pub data_dir_free: Option<u64>,
    pub errors: BTreeMap<String, String>,
}

fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s < 0.0 {
        format!("-{}/s", format_size((-bytes_per_s) as u64))
    } else {
        format!("{}/s", format_size(bytes_per_s as u64))
    }
}

/// Storage growth against the baseline's, and the projected time until the headroom limit.
pub fn judge_storage(
    config: &Config,
    baseline: &Baseline,
    now: &Trends,
    ctx: &StorageContext,
) -> Vec<GateResult> {
    let policy = &config.bake;
    let horizon = policy.headroom_horizon;
    let base = baseline.trends.as_ref();
    let mut out = Vec::new();
    let mut keys: Vec<&String> = now.storage.keys().collect();
    keys.extend(ctx.errors.keys().filter(|k| !now.storage.contains_key(*k)));
    for key in keys {
        let name = format!("bake:storage:{key}");
        let Some(t) = now.storage.get(key) else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{key}: could not be read: {}",
                    ctx.errors.get(key).cloned().unwrap_or_default()
                ),
                Value::Null,
            ));
            continue;
        };
        let Some(g) = t.growth_bytes_per_s else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{key}: fewer than 2 readings during the bake (no_data = {})",
                    no_data_name(policy.no_data)
                ),
                json!({"samples": t.samples}),
            ));
            continue;
        };
        let is_disk = key.starts_with("disk:");
        let quantum = if is_disk {
            FILESYSTEM_QUANTUM
        } else {
            DATABASE_QUANTUM
        };
        let base_trend = base.and_then(|b| b.storage.get(key));
        let window_s = base
            .filter(|_| base_trend.is_some())
            .map(|b| b.window_ms)
            .unwrap_or(now.window_ms)
            .min(now.window_ms)
            .max(1) as f64
            / 1000.0;
        let floor = 2.0 * quantum / window_s;
        let mut evidence = json!({"first": t.first, "last": t.last, "samples": t.samples, "growth_bytes_per_s": g,
                                   "noise_floor_bytes_per_s": floor, "max_storage_growth_ratio": policy.max_storage_growth_ratio,
                                   "headroom_horizon_s": horizon.as_secs()});
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        match base_trend.and_then(|b| b.growth_bytes_per_s) {
            Some(b) => {
                let ratio = growth_ratio(g, b, floor);
                evidence["baseline_growth_bytes_per_s"] = json!(b);
                evidence["ratio"] = json!(ratio);
                let text = format!(
                    "{} during the bake vs {} in the baseline (x{ratio:.1}; max_storage_growth_ratio {}, noise floor {})",
                    rate(g),
                    rate(b),
                    policy.max_storage_growth_ratio,
                    rate(floor)
                );
                if ratio > policy.max_storage_growth_ratio {
                    problems.push(format!("{key} grows faster than the baseline: {text}"));
                } else {
                    notes.push(text);
                }
            }
            None => notes.push(format!(
                "{} during the bake; no baseline rate to compare with",
                rate(g)
            )),
        }
        if is_disk {
            let path = key.trim_start_matches("disk:");
            let h = config
                .headroom
                .disk
                .iter()
                .find(|d| d.path.display().to_string() == path);
            let total = ctx.disk_total.get(key).copied();
            let limit = h
                .map(|h| {
                    let by_bytes = h.min_free_bytes.unwrap_or(0) as f64;
                    let by_percent = match (h.min_free_percent, total) {
                        (Some(p), Some(total)) => total as f64 * p / 100.0,
                        _ => 0.0,
                    };
                    by_bytes.max(by_percent)
                })
                .unwrap_or(0.0);
            let remaining = t.last as f64 - limit;
            // Consumption below the noise floor is not a trend to project.
            let consumption = if g > floor { g } else { 0.0 };
            let eta = time_to_exhaustion(remaining, consumption);
            evidence["free_bytes"] = json!(t.last);
            evidence["limit_bytes"] = json!(limit);
            evidence["projected_s"] = json!(eta.map(|d| d.as_secs()));
            match eta {
                Some(d) if d < horizon => problems.push(format!(
                    "{path} reaches its headroom limit ({} free) in {} at {}, inside headroom_horizon {}",
                    format_size(limit as u64),
                    format_duration(Duration::from_secs(d.as_secs())),
                    rate(g),
                    format_duration(horizon)
                )),
                Some(d) => notes.push(format!("headroom limit in {}", format_duration(Duration::from_secs(d.as_secs())))),
                None => notes.push("free space not shrinking measurably".into()),
            }
        }
        let verdict = if !problems.is_empty() {
            Verdict::Fail
        } else if base_trend.is_none() && !is_disk {
            no_data(policy.no_data)
        } else {
            Verdict::Pass
        };
        let detail = if problems.is_empty() {
            format!("{key}: {}", notes.join("; "))
        } else {
            problems.join("; ")
        };
        out.push(gate(&name, verdict, detail, evidence));
    }

    // The databases together against the data directory's free space: what must stay free is
    // one rollout window's growth budget (`headroom.database.max_growth_during_window`).
    if let (Some(h), Some(_)) = (&config.headroom.database, &config.dependencies.postgres) {
        let growth: f64 = now
            .storage
            .iter()
            .filter(|(k, _)| k.starts_with("postgres:"))
            .filter_map(|(_, t)| t.growth_bytes_per_s)
            .map(|g| g.max(0.0))
            .sum();
        let name = "bake:headroom:database";
        let reserve = h.max_growth_during_window as f64;
        match ctx.data_dir_free {
            None => out.push(gate(
                name,
                Verdict::Inconclusive,
                "the Postgres data directory's free space is not visible (server not local, or data_directory not readable): no projection".into(),
                json!({"growth_bytes_per_s": growth}),
            )),
            Some(free) => {
                let eta = time_to_exhaustion(free as f64 - reserve, growth);
                let evidence = json!({"growth_bytes_per_s": growth, "data_dir_free_bytes": free, "reserve_bytes": reserve,
                                       "projected_s": eta.map(|d| d.as_secs()), "headroom_horizon_s": horizon.as_secs()});
                let when = eta.map(|d| format_duration(Duration::from_secs(d.as_secs()))).unwrap_or_else(|| "never at this rate".into());
                let detail = format!(
                    "databases grow {} together; the data directory's {} free stays above the {} reserve (max_growth_during_window) for {when}; headroom_horizon {}",
                    rate(growth),
                    format_size(free),
                    format_size(reserve as u64),
                    format_duration(horizon)
                );
                match eta {
                    Some(d) if d < horizon => out.push(gate(name, Verdict::Fail, format!("database headroom runs out inside the horizon: {detail}"), evidence)),
                    _ => out.push(gate(name, Verdict::Pass, detail, evidence)),
                }
            }
        }
    }
    out
}

fn judge_restarts(r: &RuntimeOutcome, max_restarts: u32) -> Option<GateResult> {
    if r.restarts.is_empty() && r.state_errors.is_empty() {
        return None;
    }
    let counts: BTreeMap<&String, Value> = r
        .restarts
        .iter()
        .map(|(c, (a, b))| (c, json!({"at_start": a, "at_end": b})))
        .collect();
    let evidence =
        json!({"restarts": counts, "errors": r.state_errors, "max_restarts": max_restarts});
    let unknown: Vec<&String> = r
        .restarts
        .iter()
        .filter(|(_, (a, b))| a.is_none() || b.is_none())
        .map(|(c, _)| c)
        .collect();
    Some(
        if !r.state_errors.is_empty() || (!unknown.is_empty() && unknown.len() == r.restarts.len())
        {
            gate(
                "bake:restarts",
                Verdict::Inconclusive,
                format!(
                    "the runtime cannot tell restart counts for {}",
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .chain(r.state_errors.keys().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence,
            )
        } else {
            gate(
                "bake:restarts",
                Verdict::Pass,
                format!("no component restarted more than max_restarts {max_restarts} times"),
                evidence,
            )
        },
    )
}

fn judge_memory(policy: &BakePolicy, r: &RuntimeOutcome) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (c, samples) in &r.memory {
        let name = format!("bake:memory:{c}");
        if samples.len() < 4 {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{c}: {} memory reading(s), too few to judge growth (no_data = {})",
                    samples.len(),
                    no_data_name(policy.no_data)
                ),
                json!({"samples": samples.len()}),
            ));
            continue;
        }
        // The median of the first and of the last third: robust to a single spike.
        let third = (samples.len() / 3).max(1);
        let first: Vec<f64> = samples[..third].iter().map(|s| s.1 as f64).collect();
        let last: Vec<f64> = samples[samples.len() - third..]
            .iter()
            .map(|s| s.1 as f64)
            .collect();
        let (a, b) = (median(&first).unwrap_or(0.0), median(&last).unwrap_or(0.0));
        let ratio = if a > 0.0 { b / a } else { 1.0 };
        let detail = format!(
            "{c} memory {} at the start, {} at the end of the bake (x{ratio:.2}; max_memory_growth_ratio {})",
            format_size(a as u64),
            format_size(b as u64),
            policy.max_memory_growth_ratio
        );
        let evidence =
            json!({"start_bytes": a, "end_bytes": b, "ratio": ratio, "samples": samples.len()});
        out.push(if ratio > policy.max_memory_growth_ratio {
            gate(
                &name,
                Verdict::Fail,
                format!("memory grows during the bake: {detail}"),
                evidence,
            )
        } else {
            gate(&name, Verdict::Pass, detail, evidence)
        });
    }
    if !r.memory_unobservable.is_empty() {
        out.push(gate(
            "bake:memory",
            Verdict::Inconclusive,
            format!(
                "memory not observable for {}",
                r.memory_unobservable
                    .iter()
                    .map(|(c, why)| format!("{c} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            json!({"unobservable": r.memory_unobservable}),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::baseline::{ProgressionRate, ProgressionTrend, RequestCounts, StorageTrend};
    use rollgate_core::config::{MapEnv, load_str};
    use std::path::Path;

    const CONFIG: &str = r#"
[node]
name = "n"
mode = "localnet.loopback"
app_config = "/tmp/app"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "root"
enclave = false
state_dir = "/tmp/state"

[dependencies]
postgres = { url = "postgres://u@127.0.0.1/postgres", databases = ["node0"] }

[[headroom.disk]]
path = "/data"
min_free = "1GiB"

[headroom.database]
max_growth_during_window = "2GiB"

[readiness.operator]
url = "http://127.0.0.1:8080/v2/status"
expect = [ { pointer = "/health", equals = "Healthy" } ]

[[progression]]
name = "requestIndex"
url = "http://127.0.0.1:8080/v2/status"
pointer = "/lastRequest/requestIndex"
window = "10s"

[alerts]
fields = ["/health", "/lastTx"]

[runtime]
driver = "command"

[runtime.command]
current = "true"
apply = "true"
restart = "true"

[layers.operator-image]
kind = "image"
components = ["operator"]
"#;

    fn config() -> Config {
        load_str(
            Path::new("/etc/rollgate/rollgate.toml"),
            CONFIG,
            &MapEnv::default(),
        )
        .unwrap()
    }

    fn baseline(trends: Option<Trends>) -> Baseline {
        serde_json::from_value(json!({
            "id": "b-1", "node": "n", "created_at": "2026-11-28T04:22:10Z", "mode": "localnet.loopback",
            "layers": {}, "metadata": null, "sgx": null,
            "readiness": {"operator": {"health": "Healthy", "lastTx": "0xab"}},
            "faults": [], "progression": [], "idle": false, "checks": [], "storage": {},
            "trends": trends,
        }))
        .unwrap()
    }

    fn storage(growth: f64, first: u64, last: u64) -> StorageTrend {
        StorageTrend {
            first,
            last,
            samples: 20,
            growth_bytes_per_s: Some(growth),
        }
    }

    fn trends(window_ms: u64) -> Trends {
        Trends {
            window_ms,
            interval_ms: 500,
            ..Trends::default()
        }
    }

    fn find<'a>(gates: &'a [GateResult], name: &str) -> &'a GateResult {
        gates
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no {name} in {gates:#?}"))
    }

    #[test]
    fn database_growing_ten_times_faster_fails_with_its_numbers() {
        let config = config();
        let mut base = trends(10_000);
        base.storage.insert(
            "postgres:node0".into(),
            storage(6_000.0, 8 << 20, (8 << 20) + 60_000),
        );
        let baseline = baseline(Some(base));
        let mut now = trends(10_000);
        now.storage.insert(
            "postgres:node0".into(),
            storage(60_000.0, 9 << 20, (9 << 20) + 600_000),
        );
        let ctx = StorageContext {
            data_dir_free: Some(500 << 30),
            ..StorageContext::default()
        };
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        let g = find(&gates, "bake:storage:postgres:node0");
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        assert!(
            g.detail
                .contains("58.6 KiB/s during the bake vs 5.9 KiB/s in the baseline (x10.0"),
            "{}",
            g.detail
        );
        assert_eq!(g.evidence["ratio"], 10.0);
        // Plenty of data-directory space: the projection passes.
        assert_eq!(
            find(&gates, "bake:headroom:database").verdict,
            Verdict::Pass
        );

        // The same rate as the baseline passes; so does noise below the floor on a flat baseline.
        now.storage
            .insert("postgres:node0".into(), storage(7_000.0, 0, 0));
        assert_eq!(
            find(
                &judge_storage(&config, &baseline, &now, &ctx),
                "bake:storage:postgres:node0"
            )
            .verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn headroom_projections_inside_the_horizon_fail() {
        let config = config();
        let baseline = baseline(Some(trends(10_000)));
        let mut now = trends(10_000);
        // 10 GiB free, limit 1 GiB, losing 200 MiB/s: about 46 s left.
        now.storage.insert(
            "disk:/data".into(),
            storage(200.0 * 1048576.0, 11 << 30, 10 << 30),
        );
        now.storage
            .insert("postgres:node0".into(), storage(60_000.0, 0, 0));
        // The data directory has 3 GiB free and must keep the 2 GiB window budget: 1 GiB left
        // at 60 kB/s is about 5 hours, inside the default 24h horizon.
        let ctx = StorageContext {
            data_dir_free: Some(3 << 30),
            disk_total: BTreeMap::from([("disk:/data".into(), 100 << 30)]),
            ..Default::default()
        };
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        let disk = find(&gates, "bake:storage:disk:/data");
        assert_eq!(disk.verdict, Verdict::Fail, "{disk:#?}");
        assert!(
            disk.detail
                .contains("/data reaches its headroom limit (1.0 GiB free) in 46s"),
            "{}",
            disk.detail
        );
        let db = find(&gates, "bake:headroom:database");
        assert_eq!(db.verdict, Verdict::Fail, "{db:#?}");
        assert!(db.detail.contains("for 4h 58m"), "{}", db.detail);
        // Without a baseline rate the database ratio cannot be judged: no_data (inconclusive).
        assert_eq!(
            find(&gates, "bake:storage:postgres:node0").verdict,
            Verdict::Inconclusive
        );

        // Free space that moves less than the noise floor is not projected.
        now.storage
            .insert("disk:/data".into(), storage(1_000.0, 11 << 30, 11 << 30));
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        assert_eq!(
            find(&gates, "bake:storage:disk:/data").verdict,
            Verdict::Pass
        );
        // One reading: no rate.
        now.storage.insert(
            "disk:/data".into(),
            StorageTrend {
                first: 1,
                last: 1,
                samples: 1,
                growth_bytes_per_s: None,
            },
        );
        assert_eq!(
            find(
                &judge_storage(&config, &baseline, &now, &ctx),
                "bake:storage:disk:/data"
            )
            .verdict,
            Verdict::Inconclusive
        );
    }

    fn progression(samples: usize, first: u64, last: u64, rate: f64) -> ProgressionTrend {
        ProgressionTrend {
            samples,
            changes: (samples - 1) as u64,
            first: json!(first),
            last: json!(last),
            rate_per_s: rate,
        }
    }

    #[test]
    fn progression_rate_against_the_baseline() {
        let config = config();
        let mut base = trends(10_000);
        base.progression
            .insert("requestIndex".into(), progression(20, 0, 100, 10.0));
        let baseline = baseline(Some(base));
        let mut now = trends(10_000);
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 120, 2.0));
        let g = &judge_progression(&config, &baseline, &now)[0];
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        assert!(
            g.detail
                .contains("2.00/s vs 10.00/s in the baseline (x0.20; min_progression_ratio 0.5)"),
            "{}",
            g.detail
        );
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 190, 9.0));
        assert_eq!(
            judge_progression(&config, &baseline, &now)[0].verdict,
            Verdict::Pass
        );
        let mut stalled = progression(20, 100, 100, 0.0);
        stalled.changes = 0;
        now.progression.insert("requestIndex".into(), stalled);
        let g = &judge_progression(&config, &baseline, &now)[0];
        assert!(
            g.verdict == Verdict::Fail && g.detail.contains("stalled"),
            "{g:#?}"
        );
        // Without trends, the freeze's sampled rate is the reference for a numeric signal.
        let mut old = self::baseline(None);
        old.progression.push(ProgressionRate {
            name: "requestIndex".into(),
            first: json!(0),
            last: json!(40),
            window_ms: 10_000,
            rate_per_s: 4.0,
            idle: false,
        });
        now.progression
            .insert("requestIndex".into(), progression(20, 100, 110, 1.0));
        assert_eq!(
            judge_progression(&config, &old, &now)[0].verdict,
            Verdict::Fail
        );
        // Never read: no_data.
        now.progression.clear();
        assert_eq!(
            judge_progression(&config, &baseline, &now)[0].verdict,
            Verdict::Inconclusive
        );
    }

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

    #[test]
    fn alert_fields_from_the_readiness_output() {
        let config = config();
        let b = baseline(None);
        let g = judge_fields(
            &config,
            &b,
            Some(&json!({"health": "Healthy", "lastTx": 12})),
        )
        .unwrap();
        assert_eq!(g.verdict, Verdict::Fail);
        assert!(
            g.detail
                .contains("/lastTx changed type from string to integer"),
            "{}",
            g.detail
        );
        let g = judge_fields(
            &config,
            &b,
            Some(&json!({"health": "Healthy", "lastTx": "0xcd"})),
        )
        .unwrap();
        assert_eq!(g.verdict, Verdict::Pass, "{g:#?}");
        let g = judge_fields(&config, &b, None).unwrap();
        assert_eq!(g.verdict, Verdict::Inconclusive);
        let mut empty = b.clone();
        empty.readiness.clear();
        assert_eq!(
            judge_fields(&config, &empty, Some(&json!({})))
                .unwrap()
                .verdict,
            Verdict::Inconclusive
        );
    }
}

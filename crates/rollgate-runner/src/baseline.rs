//! Freezing the baseline (product.md step 1): a complete, addressable record of the node as it
//! is now, or a refusal that says exactly what is ambiguous or red.
//!
//! [`freeze`] runs every check (all groups) concurrently with reading every layer's current
//! value from the runtime driver; progression is sampled over `rollout.baseline_window` to
//! measure rates. It refuses when any check fails, any layer cannot be read, or — under
//! `rollout.idle_progression = "fail"` — a progression signal did not move. Under
//! `inconclusive` and `pass` an idle node is frozen with `idle: true` and its rates, and the
//! gates judge it later. Nothing is stored by [`freeze`]; [`freeze_and_store`] stores the
//! baseline in the journal and marks it known-good (`rollgate baseline freeze`).
//!
//! With `[faults].log_patterns`, the fault lines every component logged from [`LOG_LOOKBACK`]
//! before the freeze to its end are recorded, normalised, in [`Baseline::log_faults`]: the
//! gates then fail only on lines the baseline does not log itself (a recurring warning is not a
//! new fault). Logs that cannot be read here are left out (with a warning): the gates are then
//! stricter, never blind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use rollgate_core::baseline::{Baseline, LayerValue, ProgressionRate};
use rollgate_core::config::{Config, IdlePolicy};
use rollgate_core::vocab::{CheckResult, CheckStatus};
use rollgate_runtime::{LogCursor, RuntimeDriver};
use serde_json::Value;

use crate::checks::{CheckKind, CheckOptions, Checker, plan};
use crate::errors::RunnerError;
use crate::journal::JournalHandle;

/// Why a baseline was not frozen. `reasons` are complete sentences naming the check (or the
/// layer) and what was wrong; `checks` are every check that ran, for display.
#[derive(Debug, Clone)]
pub struct FreezeRefused {
    pub reasons: Vec<String>,
    pub checks: Vec<CheckResult>,
    /// What was observed anyway (never stored as known-good).
    pub observed: Box<Baseline>,
}

impl fmt::Display for FreezeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the environment is ambiguous or not green: {}",
            self.reasons.join("; ")
        )
    }
}

impl std::error::Error for FreezeRefused {}

/// Why `baseline freeze` did not store a baseline.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("refused to freeze a baseline")]
    Refused(#[source] Box<FreezeRefused>),
    #[error("failed to store the baseline")]
    Journal(#[source] RunnerError),
}

/// How long before a freeze the components' logs are read for the fault lines the baseline
/// logs itself (plus the freeze's own `baseline_window`).
pub const LOG_LOOKBACK: Duration = Duration::from_secs(600);

/// Freeze the current state into a baseline, or refuse.
pub async fn freeze(
    config: &Config,
    driver: &dyn RuntimeDriver,
) -> Result<Baseline, FreezeRefused> {
    let logs_since = SystemTime::now()
        .checked_sub(LOG_LOOKBACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let checks = plan(config, &[]);
    let options = CheckOptions::for_baseline(config);
    let results = async {
        match Checker::new(config, options) {
            Ok(checker) => checker.run_all(&checks).await,
            Err(_) => crate::checks::run_checks_with(config, &[], options).await,
        }
    };
    let layers = futures_util::future::join_all(config.layers.values().map(|l| async move {
        let r = driver.current(l).await;
        (l.name.clone(), r)
    }));
    // The bake's trends (latencies, storage growth, ...) are sampled over the same window.
    let trends = crate::watch::record_trends(
        std::sync::Arc::new(config.clone()),
        config.rollout.baseline_window,
    );
    let (results, layers, trends) = tokio::join!(results, layers, trends);

    let mut reasons = Vec::new();
    let mut values = BTreeMap::new();
    for (name, r) in layers {
        match r {
            Ok(v) if v.value.trim().is_empty() => {
                reasons.push(format!(
                    "layer {name}: the runtime reports no current value"
                ));
            }
            Ok(v) => {
                values.insert(name, v);
            }
            Err(e) => reasons.push(format!(
                "layer {name}: cannot read its current value: {}",
                rollgate_probe::errors::chain(&e)
            )),
        }
    }
    let mut baseline = assemble(config, &checks, results, values);
    baseline.trends = trends;
    baseline.log_faults = baseline_log_faults(config, driver, logs_since).await;
    // The operator's Prometheus: what its rules and this node's alerts look like now. One it
    // cannot reach leaves no record (the `rules` and `alerts` gates are then not run).
    if config.prometheus.is_some()
        && let Ok(clients) = crate::checks::ProbeClients::new(config)
    {
        match crate::monitoring::snapshot(config, &clients).await {
            Ok(record) => baseline.monitoring = Some(record),
            Err(e) => tracing::warn!("the baseline has no Prometheus record: {e}"),
        }
    }
    judge(config, &baseline, &mut reasons);
    if reasons.is_empty() {
        Ok(baseline)
    } else {
        Err(FreezeRefused {
            reasons,
            checks: baseline.checks.clone(),
            observed: Box::new(baseline),
        })
    }
}

/// The normalised fault lines (`COMPONENT: line`, see [`crate::observe::baseline_key`]) every
/// configured component logged since `since`. Components whose logs cannot be read are left
/// out: their lines then count as new in the gates.
pub async fn baseline_log_faults(
    config: &Config,
    driver: &dyn RuntimeDriver,
    since: SystemTime,
) -> Vec<String> {
    let patterns = crate::observe::log_patterns(config);
    if patterns.is_empty() {
        return Vec::new();
    }
    let reads = futures_util::future::join_all(
        config
            .components
            .values()
            .map(|c| async move { (c, driver.logs_after(c, &LogCursor::at(since)).await) }),
    )
    .await;
    let mut lines = BTreeSet::new();
    for (c, read) in reads {
        match read {
            Ok(read) => lines.extend(crate::observe::fault_lines(
                &patterns,
                &c.name,
                read.lines.iter().map(String::as_str),
            )),
            Err(e) => tracing::warn!(
                component = %c.name,
                error = %rollgate_probe::errors::chain(&e),
                "cannot read the logs for the baseline's fault lines; the gates will count all of them as new"
            ),
        }
    }
    lines.into_iter().collect()
}

/// Freeze, store in the journal, and mark known-good.
pub async fn freeze_and_store(
    config: &Config,
    journal: &JournalHandle,
    driver: &dyn RuntimeDriver,
) -> Result<Baseline, FreezeError> {
    let baseline = freeze(config, driver)
        .await
        .map_err(|r| FreezeError::Refused(Box::new(r)))?;
    let b = baseline.clone();
    journal
        .call(move |j| {
            j.insert_baseline(&b)?;
            j.mark_known_good(&b.id)
        })
        .await
        .map_err(FreezeError::Journal)?;
    Ok(baseline)
}

/// Build the record from the check results and layer values.
fn assemble(
    config: &Config,
    planned: &[crate::checks::PlannedCheck],
    results: Vec<CheckResult>,
    layers: BTreeMap<String, LayerValue>,
) -> Baseline {
    let mut readiness = BTreeMap::new();
    let mut progression = Vec::new();
    let mut faults = Vec::new();
    let mut storage = BTreeMap::new();
    let mut metadata = None;
    for (p, r) in planned.iter().zip(&results) {
        match p.kind {
            CheckKind::Readiness(i) => {
                if let Some(entry) = config.readiness.get(i) {
                    readiness.insert(entry.name.clone(), r.observed.clone());
                }
            }
            CheckKind::Progression(_) => {
                if let Ok(rate) = serde_json::from_value::<ProgressionRate>(r.observed.clone()) {
                    progression.push(rate);
                }
            }
            CheckKind::Faults => {
                if let Some(list) = r.observed.as_array() {
                    faults.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
                }
            }
            CheckKind::Postgres => {
                if let Some(dbs) = r.observed.get("databases").and_then(Value::as_object) {
                    for (db, size) in dbs {
                        if let Some(n) = size.as_u64() {
                            storage.insert(format!("postgres:{db}"), n);
                        }
                    }
                }
                if let Some(free) = r
                    .observed
                    .get("data_dir_free_bytes")
                    .and_then(Value::as_u64)
                {
                    storage.insert("postgres:data_dir_free".into(), free);
                }
            }
            CheckKind::Disk(i) => {
                if let (Some(d), Some(free)) = (
                    config.headroom.disk.get(i),
                    r.observed.get("free_bytes").and_then(Value::as_u64),
                ) {
                    storage.insert(format!("disk:{}", d.path.display()), free);
                }
            }
            CheckKind::DeploymentMetadata => {
                let o = &r.observed;
                if o.get("sha256").is_some() {
                    metadata = Some(rollgate_core::baseline::MetadataRecord {
                        path: o["path"].as_str().unwrap_or_default().to_string(),
                        owner: o["owner"].as_str().map(str::to_string),
                        uid: o["uid"].as_u64().map(|u| u as u32),
                        sha256: o["sha256"].as_str().map(str::to_string),
                    });
                }
            }
            _ => {}
        }
    }
    let sgx = config
        .sgx
        .as_ref()
        .filter(|_| config.node.enclave)
        .map(|s| {
            let files = rollgate_probe::sgx::read_files(s);
            rollgate_probe::sgx::record(s, &files)
        });
    let idle = progression.iter().any(|p| p.idle);
    Baseline {
        id: crate::rollout::new_id("b"),
        node: config.node.name.clone(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        mode: config.node.mode,
        layers,
        metadata,
        sgx,
        readiness,
        faults,
        log_faults: Vec::new(),
        progression,
        idle,
        checks: results,
        storage,
        trends: None,
        monitoring: None,
    }
}

/// Every reason the baseline cannot be frozen.
fn judge(config: &Config, baseline: &Baseline, reasons: &mut Vec<String>) {
    for c in &baseline.checks {
        if c.status == CheckStatus::Fail {
            reasons.push(format!("{}: {}", c.name, c.detail));
        }
    }
    for p in &config.progression {
        let Some(rate) = baseline.progression.iter().find(|r| r.name == p.name) else {
            // Its check failed (and is already a reason) or did not run.
            continue;
        };
        if rate.idle && config.rollout.idle_progression == IdlePolicy::Fail {
            reasons.push(format!(
                "progression:{}: idle: {} stayed at {} for {:.1}s (rollout.idle_progression = fail; set it to \
                 inconclusive or pass to freeze an idle node)",
                p.name,
                p.pointer,
                rate.last,
                rate.window_ms as f64 / 1000.0
            ));
        }
    }
}

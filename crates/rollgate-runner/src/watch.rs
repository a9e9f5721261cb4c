//! Step 6 on demand (`rollgate watch`), and the trend sampler the bake and the baseline share.
//!
//! [`TrendSampler`] takes one sample of every slow-moving signal per tick: the latency and
//! outcome of each probe endpoint (fetched one after another, so the requests do not queue
//! behind each other), the progression values, the alert-contract document, database sizes,
//! free disk space and the exported metric names. [`record_trends`] runs it over the baseline
//! window while a baseline is frozen (stored as [`Baseline::trends`]); [`crate::bake`] runs it
//! through the bake with the same cadence (`bake.sample_interval`), so the two compare directly.
//!
//! [`watch`] is the bake against the last known-good baseline, read-only: it restarts nothing,
//! writes nothing (not even to the journal) and exits 7 on a finding.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rollgate_core::baseline::{Baseline, ProgressionTrend, RequestCounts, StorageTrend, Trends};
use rollgate_core::config::{Config, ProgressionMode};
use rollgate_core::engine::numeric;
use rollgate_core::stats::linear_rate;
use rollgate_core::vocab::{GateResult, Verdict};
use rollgate_probe::HttpClient;
use rollgate_probe::http::parse_json;
use rollgate_runtime::RuntimeDriver;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::bake::{BakeVerdict, bake};
use crate::errors::RunnerError;
use crate::journal::JournalHandle;
use crate::observe::Observer;
use crate::progress::Progress;

/// One endpoint whose latency and errors are sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `readiness:NAME`, `probe:encryption-key`, `probe:mark-price` or `alerts`.
    pub name: String,
    pub url: String,
}

/// The endpoints the bake times: each readiness entry, the encryption-key and mark-price
/// probes, and `[alerts].url` when it is none of those.
pub fn latency_targets(config: &Config) -> Vec<Target> {
    let mut out: Vec<Target> = config
        .readiness
        .iter()
        .map(|r| Target {
            name: format!("readiness:{}", r.name),
            url: r.url.clone(),
        })
        .collect();
    if let Some(p) = &config.probes.encryption_key {
        out.push(Target {
            name: "probe:encryption-key".into(),
            url: p.url.clone(),
        });
    }
    if let Some(p) = &config.probes.mark_price {
        out.push(Target {
            name: "probe:mark-price".into(),
            url: p.url.clone(),
        });
    }
    if let Some(u) = &config.alerts.url
        && !out.iter().any(|t| &t.url == u)
    {
        out.push(Target {
            name: "alerts".into(),
            url: u.clone(),
        });
    }
    out
}

/// The document the alert fields are read from: `[alerts].url`, else the operator's status.
pub fn alert_url(config: &Config) -> Option<&str> {
    config
        .alerts
        .url
        .as_deref()
        .or_else(|| config.operator_status_url())
}

/// What one tick of the sampler saw that the bake judges at once.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// The alert-contract document, when it was fetched as JSON.
    pub alert_document: Option<Value>,
}

/// Samples the slow-moving signals of the bake; see the module documentation.
pub struct TrendSampler {
    config: Arc<Config>,
    http: HttpClient,
    targets: Vec<Target>,
    started: Instant,
    interval: Duration,
    latency: BTreeMap<String, Vec<f64>>,
    requests: BTreeMap<String, RequestCounts>,
    /// `(seconds since start, value)` per storage key.
    storage: BTreeMap<String, Vec<(f64, u64)>>,
    /// The last reading of each `[[headroom.disk]]` path: total bytes, for `min_free_percent`.
    disk_total: BTreeMap<String, u64>,
    progression: BTreeMap<String, Vec<(f64, Value)>>,
    /// Why a storage key could not be read (its last error).
    pub storage_errors: BTreeMap<String, String>,
    alert_document: Option<Value>,
    /// The union of every scrape of `[alerts].metrics_urls`: names and their label keys.
    metrics: rollgate_probe::alerts::Exposition,
    /// Scrapes that worked and the last scrape error per metrics URL.
    pub metric_scrapes: u32,
    pub metric_errors: BTreeMap<String, String>,
    samples: u32,
}

impl TrendSampler {
    pub fn new(config: Arc<Config>) -> Result<TrendSampler, String> {
        let http = HttpClient::new(&config.probe_limits).map_err(|e| e.detail())?;
        let targets = latency_targets(&config);
        let interval = config.bake.sample_interval.max(Duration::from_millis(10));
        Ok(TrendSampler {
            config,
            http,
            targets,
            started: Instant::now(),
            interval,
            latency: BTreeMap::new(),
            requests: BTreeMap::new(),
            storage: BTreeMap::new(),
            disk_total: BTreeMap::new(),
            progression: BTreeMap::new(),
            storage_errors: BTreeMap::new(),
            alert_document: None,
            metrics: Default::default(),
            metric_scrapes: 0,
            metric_errors: BTreeMap::new(),
            samples: 0,
        })
    }

    /// Count latency samples taken elsewhere on the same version (verify's gate polls) as this
    /// sampler's own: the bake's latency test then has them from its first tick.
    pub fn add_latency_samples(&mut self, samples: &BTreeMap<String, Vec<f64>>) {
        for (name, ms) in samples {
            if self.targets.iter().any(|t| &t.name == name) {
                self.latency.entry(name.clone()).or_default().extend(ms);
            }
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Time since the sampler started: the clock of every reading's seconds.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The `(seconds, value)` readings of each progression signal so far, in order (unreadable
    /// or null readings are absent).
    pub fn progression_readings(&self) -> &BTreeMap<String, Vec<(f64, Value)>> {
        &self.progression
    }

    /// The metric names every scrape so far exported (their union).
    pub fn metric_names(&self) -> &BTreeSet<String> {
        &self.metrics.names
    }

    /// The label keys seen on each exported metric's series, over every scrape so far.
    pub fn metric_labels(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.metrics.labels
    }

    /// Total bytes of a `disk:PATH` filesystem, as last read.
    pub fn disk_total(&self, key: &str) -> Option<u64> {
        self.disk_total.get(key).copied()
    }

    /// The last value read for a storage key.
    pub fn storage_last(&self, key: &str) -> Option<u64> {
        self.storage.get(key).and_then(|v| v.last()).map(|s| s.1)
    }

    /// Take one sample of everything.
    pub async fn sample(&mut self) -> Tick {
        self.samples += 1;
        let config = self.config.clone();
        let mut docs: BTreeMap<String, Value> = BTreeMap::new();
        for t in self.targets.clone() {
            let began = Instant::now();
            let fetched = self.http.get(&t.url).await;
            let ms = began.elapsed().as_secs_f64() * 1000.0;
            let counts = self.requests.entry(t.name.clone()).or_default();
            counts.total += 1;
            match fetched {
                Ok(f) if (200..300).contains(&f.status) => {
                    // Readiness and alert documents must be JSON; the probes' bodies may be
                    // plain text (an encryption key), which is still a success.
                    let json = parse_json(&t.url, &f.body);
                    let needs_json = t.name.starts_with("readiness:") || t.name == "alerts";
                    match json {
                        Ok(doc) => {
                            docs.insert(t.url.clone(), doc);
                        }
                        Err(_) if needs_json => {
                            counts.errors += 1;
                            continue;
                        }
                        Err(_) => {}
                    }
                    self.latency
                        .entry(t.name.clone())
                        .or_default()
                        .push((ms * 1000.0).round() / 1000.0);
                }
                Ok(f) => {
                    counts.errors += 1;
                    if f.status == 421 || f.status == 503 {
                        counts.unavailable += 1;
                    }
                }
                Err(_) => counts.errors += 1,
            }
        }
        let at = self.started.elapsed().as_secs_f64();

        // Progression and the alert document, from what was fetched or with one more GET.
        let mut wanted: BTreeSet<String> =
            config.progression.iter().map(|p| p.url.clone()).collect();
        if !config.alerts.fields.is_empty()
            && let Some(u) = alert_url(&config)
        {
            wanted.insert(u.to_string());
        }
        for url in wanted {
            if docs.contains_key(&url) {
                continue;
            }
            if let Ok(doc) = self.http.get_json(&url).await {
                docs.insert(url, doc);
            }
        }
        for p in &config.progression {
            if let Some(v) = docs
                .get(&p.url)
                .and_then(|d| d.pointer(&p.pointer))
                .filter(|v| !v.is_null())
            {
                self.progression
                    .entry(p.name.clone())
                    .or_default()
                    .push((at, v.clone()));
            }
        }
        let alert_document = alert_url(&config).and_then(|u| docs.get(u)).cloned();
        if alert_document.is_some() {
            self.alert_document = alert_document.clone();
        }

        self.sample_storage(at).await;
        self.sample_metrics().await;
        Tick { alert_document }
    }

    async fn sample_storage(&mut self, at: f64) {
        let config = self.config.clone();
        if let Some(pg) = &config.dependencies.postgres
            && !pg.databases.is_empty()
        {
            match rollgate_probe::postgres::database_sizes(pg, config.probe_limits.timeout).await {
                Ok(sizes) => {
                    for (db, size) in sizes {
                        self.storage
                            .entry(format!("postgres:{db}"))
                            .or_default()
                            .push((at, size));
                    }
                }
                Err(e) => {
                    for db in &pg.databases {
                        self.storage_errors
                            .insert(format!("postgres:{db}"), e.detail());
                    }
                }
            }
        }
        for d in &config.headroom.disk {
            let key = format!("disk:{}", d.path.display());
            let path = d.path.clone();
            match tokio::task::spawn_blocking(move || rollgate_probe::disk::disk_usage(&path)).await
            {
                Ok(Ok(u)) => {
                    self.storage
                        .entry(key.clone())
                        .or_default()
                        .push((at, u.free_bytes));
                    self.disk_total.insert(key, u.total_bytes);
                }
                Ok(Err(e)) => {
                    self.storage_errors
                        .insert(key, format!("{}: {e}", d.path.display()));
                }
                Err(e) => {
                    self.storage_errors
                        .insert(key, format!("statvfs task failed: {e}"));
                }
            }
        }
    }

    async fn sample_metrics(&mut self) {
        let urls = self.config.alerts.metrics_urls.clone();
        for url in urls {
            match rollgate_probe::alerts::scrape_exposition(&self.http, &url).await {
                Ok(exposition) => {
                    self.metric_scrapes += 1;
                    self.metrics.extend(exposition);
                }
                Err(e) => {
                    self.metric_errors
                        .insert(rollgate_core::redact::redact_url(&url), e.detail());
                }
            }
        }
    }

    /// Everything sampled so far, as a trend record.
    pub fn trends(&self) -> Trends {
        let storage = self
            .storage
            .iter()
            .map(|(key, samples)| {
                let pts: Vec<(f64, f64)> = samples.iter().map(|(t, v)| (*t, *v as f64)).collect();
                // Databases grow; a filesystem's free space shrinks. Both as bytes used up per second
                // (least squares: unbiased on the staircase that 8 KiB pages make).
                let sign = if key.starts_with("disk:") { -1.0 } else { 1.0 };
                let growth = linear_rate(&pts).map(|r| sign * r);
                let trend = StorageTrend {
                    first: samples.first().map(|s| s.1).unwrap_or(0),
                    last: samples.last().map(|s| s.1).unwrap_or(0),
                    samples: samples.len(),
                    growth_bytes_per_s: growth,
                };
                (key.clone(), trend)
            })
            .collect();
        let progression = self
            .config
            .progression
            .iter()
            .filter_map(|p| {
                let samples = self.progression.get(&p.name)?;
                let (t0, first) = samples.first()?.clone();
                let (t1, last) = samples.last()?.clone();
                let changes = samples.windows(2).filter(|w| w[0].1 != w[1].1).count() as u64;
                let secs = t1 - t0;
                let rate = if secs <= 0.0 {
                    0.0
                } else {
                    match p.mode {
                        ProgressionMode::Increases => {
                            let pts: Vec<(f64, f64)> = samples
                                .iter()
                                .filter_map(|(t, v)| numeric(v).map(|n| (*t, n)))
                                .collect();
                            linear_rate(&pts).unwrap_or(0.0)
                        }
                        ProgressionMode::Changes => changes as f64 / secs,
                    }
                };
                Some((
                    p.name.clone(),
                    ProgressionTrend {
                        samples: samples.len(),
                        changes,
                        first,
                        last,
                        rate_per_s: rate,
                    },
                ))
            })
            .collect();
        Trends {
            window_ms: self.started.elapsed().as_millis() as u64,
            interval_ms: self.interval.as_millis() as u64,
            latency_ms: self.latency.clone(),
            requests: self.requests.clone(),
            storage,
            progression,
            alert_document: self.alert_document.clone(),
            metric_names: self.metrics.names.iter().cloned().collect(),
            metric_labels: self
                .metrics
                .labels
                .iter()
                .map(|(n, l)| (n.clone(), l.iter().cloned().collect()))
                .collect(),
        }
    }
}

/// Sample the trends for `window` (at least one sample), as a baseline records them.
///
/// Runs beside the baseline's own checks while freezing; `None` only when no HTTP client could
/// be built (then the bake judges these signals by `bake.no_data`).
pub async fn record_trends(config: Arc<Config>, window: Duration) -> Option<Trends> {
    let mut sampler = TrendSampler::new(config).ok()?;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(sampler.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        sampler.sample().await;
        if started.elapsed() + sampler.interval() / 2 >= window {
            break;
        }
    }
    let mut trends = sampler.trends();
    // The alert document is kept only when the baseline's readiness outputs do not hold it.
    if config_alert_is_readiness(&sampler.config) {
        trends.alert_document = None;
    }
    Some(trends)
}

fn config_alert_is_readiness(config: &Config) -> bool {
    alert_url(config).is_some_and(|u| config.readiness.iter().any(|r| r.url == u))
}

/// The result of `rollgate watch`, printed with `--format json`:
///
/// ```json
/// {"ok": false, "baseline_id": "b-20261128T042210Z-1a2b", "duration_s": 60.0,
///  "findings": [{"name": "bake:latency:readiness:operator", "verdict": "fail",
///                "detail": "readiness:operator is slower than the baseline: median 42.1 ms vs 1.3 ms (x32.4 > 3), Mann-Whitney p = 1.2e-9 < 0.01", "evidence": {…}}],
///  "gates": [ …every gate, findings included… ]}
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    /// True when no gate failed.
    pub ok: bool,
    pub baseline_id: String,
    pub duration_s: f64,
    /// The failed gates.
    pub findings: Vec<GateResult>,
    pub gates: Vec<GateResult>,
}

impl WatchReport {
    pub fn from_verdict(
        baseline_id: &str,
        duration: Duration,
        verdict: BakeVerdict,
    ) -> WatchReport {
        let findings: Vec<GateResult> = verdict
            .gates
            .iter()
            .filter(|g| g.verdict == Verdict::Fail)
            .cloned()
            .collect();
        WatchReport {
            ok: findings.is_empty(),
            baseline_id: baseline_id.to_string(),
            duration_s: duration.as_secs_f64(),
            findings,
            gates: verdict.gates,
        }
    }
}

/// How long `watch` runs without `--for`: long enough for `bake.min_samples` samples and a
/// couple more, and at least 30 seconds.
pub fn default_watch_duration(config: &Config) -> Duration {
    let needed = config.bake.sample_interval * (config.bake.min_samples as u32 + 2);
    needed.max(Duration::from_secs(30))
}

/// `rollgate watch`: the bake's signals for `duration` against the last known-good baseline.
/// Read-only; the journal is only read.
pub async fn watch(
    config: Arc<Config>,
    driver: Arc<dyn RuntimeDriver>,
    journal: &JournalHandle,
    duration: Duration,
    progress: &dyn Progress,
) -> Result<WatchReport, RunnerError> {
    let baseline = journal.call(|j| j.last_known_good()).await?.ok_or_else(|| {
        RunnerError::NotFound(
            "no known-good baseline to watch against: run `rollgate baseline freeze` or complete a rollout first".into(),
        )
    })?;
    watch_against(config, driver, &baseline, duration, progress).await
}

/// [`watch`] against a given baseline. Every configured component is watched.
pub async fn watch_against(
    config: Arc<Config>,
    driver: Arc<dyn RuntimeDriver>,
    baseline: &Baseline,
    duration: Duration,
    progress: &dyn Progress,
) -> Result<WatchReport, RunnerError> {
    let components = config.components.values().cloned().collect();
    let mut observer = Observer::new(config.clone(), driver, components)
        .map_err(RunnerError::Internal)?
        .against(baseline);
    // Not a change: this only records the restart counts and the log position of "now".
    observer.mark_change().await;
    let verdict = bake(&config, baseline, &mut observer, duration, progress).await;
    Ok(WatchReport::from_verdict(&baseline.id, duration, verdict))
}

//! One poll of the node for the gates: readiness, probes, progression, dependencies, faults,
//! fault lines in the changed components' logs, and whether those components still run.
//!
//! Every status URL is fetched once per poll, however many gates read it. Start-up answers
//! (421 `NotAcceptingRequests`, 503, refused connections, timeouts) are `Transient`, which the
//! engine tolerates until the readiness deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use regex::Regex;
use rollgate_core::config::{Component, Config};
use rollgate_core::engine::{Observation, Reading};
use rollgate_core::vocab::{CheckGroup, CheckStatus};
use rollgate_probe::errors::ProbeError;
use rollgate_probe::http::{HttpClient, judge, parse_json};
use rollgate_runtime::{RunStatus, RuntimeDriver};
use serde_json::Value;
use tokio::time::Instant;

/// What a poll fetched from one URL.
#[derive(Debug, Clone)]
pub enum Fetch {
    Json(Value),
    Transient(String),
    Failed(String),
}

/// Polls the node for the gate engine.
pub struct Observer {
    config: Arc<Config>,
    http: HttpClient,
    driver: Arc<dyn RuntimeDriver>,
    components: Vec<Component>,
    patterns: Vec<Regex>,
    /// The changed components' logs are read from this time on.
    since: SystemTime,
    started: Instant,
    /// The gates' clock: from the change, reset when the driver's restart returned (so the
    /// readiness deadline does not include an image pull or a slow stop).
    gates_from: Instant,
    restarts_at_start: BTreeMap<String, u32>,
    /// Poll dependencies every n-th observation: they are slower than status reads and change
    /// more slowly.
    dependency_every: u32,
    polls: u32,
    /// The most recent raw status documents, by readiness entry name.
    pub last_readiness: BTreeMap<String, Value>,
    /// The deployment metadata's hash in the baseline: a different hash now is baseline drift.
    baseline_metadata_sha256: Option<String>,
    /// A rollout's observer stops at the node's kill switch; `watch`'s does not.
    kill_switch: bool,
}

impl Observer {
    pub fn new(
        config: Arc<Config>,
        driver: Arc<dyn RuntimeDriver>,
        components: Vec<Component>,
    ) -> Result<Observer, String> {
        let http = HttpClient::new(&config.probe_limits).map_err(|e| e.detail())?;
        let patterns = config
            .faults
            .log_patterns
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        Ok(Observer {
            config,
            http,
            driver,
            components,
            patterns,
            since: SystemTime::now(),
            started: Instant::now(),
            gates_from: Instant::now(),
            restarts_at_start: BTreeMap::new(),
            dependency_every: 1,
            polls: 0,
            last_readiness: BTreeMap::new(),
            kill_switch: false,
            baseline_metadata_sha256: None,
        })
    }

    /// Judge environment drift against this baseline (the deployment metadata's hash).
    pub fn against(mut self, baseline: &rollgate_core::baseline::Baseline) -> Observer {
        self.baseline_metadata_sha256 = baseline.metadata.as_ref().and_then(|m| m.sha256.clone());
        self
    }

    /// Restart the clock: the change (or the rollback) happened now.
    pub async fn mark_change(&mut self) {
        self.since = SystemTime::now() - Duration::from_secs(1);
        self.started = Instant::now();
        self.gates_from = self.started;
        self.polls = 0;
        self.restarts_at_start.clear();
        for c in &self.components {
            if let Ok(state) = self.driver.state(c).await
                && let Some(n) = state.restart_count
            {
                self.restarts_at_start.insert(c.name.clone(), n);
            }
        }
    }

    /// The runtime driver (the bake reads restart counts and memory through it).
    pub fn driver(&self) -> &Arc<dyn RuntimeDriver> {
        &self.driver
    }

    /// The components this observer watches: the changed ones in a rollout.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Honour the node's kill switch: [`Observer::frozen`] reports it.
    pub fn with_kill_switch(mut self) -> Observer {
        self.kill_switch = true;
        self
    }

    /// The kill switch, when this observer honours it and the node is frozen.
    pub fn frozen(&self) -> Option<crate::killswitch::FreezeInfo> {
        self.kill_switch
            .then(|| crate::killswitch::is_frozen(&self.config.node.state_dir))
            .flatten()
    }

    /// Read the changed components' logs from `t` on instead of from the change. A rollback calls
    /// this once its restart returned: the lines before are the rolled-back version's, and its
    /// faults must not fail the restored baseline's verification.
    pub fn logs_from(&mut self, t: SystemTime) {
        self.since = t;
    }

    /// The driver's restart returned: the gates' clock (and so the readiness deadline) starts
    /// now. Logs are still read from the change.
    pub fn restart_returned(&mut self) {
        self.gates_from = Instant::now();
    }

    /// Time on the gates' clock: since the restart returned (or the change, before that).
    pub fn gate_clock(&self) -> Duration {
        self.gates_from.elapsed()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn change_time(&self) -> SystemTime {
        self.since
    }

    async fn fetch(&self, url: &str) -> Fetch {
        match self.http.get(url).await {
            Ok(f) if f.status == 421 || f.status == 503 => Fetch::Transient(format!(
                "{}: answered HTTP {} (starting)",
                rollgate_core::redact::redact_url(url),
                f.status
            )),
            Ok(f) if !(200..300).contains(&f.status) => Fetch::Failed(format!(
                "{}: answered HTTP {}",
                rollgate_core::redact::redact_url(url),
                f.status
            )),
            Ok(f) => match parse_json(url, &f.body) {
                Ok(v) => Fetch::Json(v),
                Err(e) => Fetch::Failed(e.detail()),
            },
            Err(e @ ProbeError::Timeout { .. }) => Fetch::Transient(e.detail()),
            Err(ref e @ ProbeError::Request { ref source, .. })
                if source.is_connect() || source.is_timeout() =>
            {
                Fetch::Transient(e.detail())
            }
            Err(e) => Fetch::Failed(e.detail()),
        }
    }

    /// Take one observation.
    pub async fn observe(&mut self) -> Observation {
        self.polls += 1;
        let config = self.config.clone();
        let mut urls: BTreeSet<String> = config.readiness.iter().map(|r| r.url.clone()).collect();
        urls.extend(config.progression.iter().map(|p| p.url.clone()));
        if let Some(u) = fault_url(&config) {
            urls.insert(u.to_string());
        }
        let fetches = futures_util::future::join_all(urls.iter().map(|u| self.fetch(u))).await;
        let docs: BTreeMap<String, Fetch> = urls.into_iter().zip(fetches).collect();

        let mut obs = Observation {
            at: self.gate_clock(),
            ..Default::default()
        };
        for r in &config.readiness {
            let reading = match &docs[&r.url] {
                Fetch::Json(doc) => {
                    self.last_readiness.insert(r.name.clone(), doc.clone());
                    let failures: Vec<String> =
                        r.expect.iter().filter_map(|e| judge(doc, e)).collect();
                    if failures.is_empty() {
                        Reading::Pass(format!("{} expectations hold", r.expect.len()))
                    } else {
                        Reading::Fail(failures.join("; "))
                    }
                }
                Fetch::Transient(d) => Reading::Transient(d.clone()),
                Fetch::Failed(d) => Reading::Fail(d.clone()),
            };
            obs.readiness.insert(r.name.clone(), reading);
        }
        for (name, result) in crate::checks::probe_readiness_extras(&config).await {
            obs.readiness.insert(name, result);
        }
        for p in &config.progression {
            let value = match &docs[&p.url] {
                Fetch::Json(doc) => doc.pointer(&p.pointer).cloned().filter(|v| !v.is_null()),
                _ => None,
            };
            obs.progression.insert(p.name.clone(), value);
        }
        if let Some(u) = fault_url(&config)
            && let Fetch::Json(doc) = &docs[u]
        {
            obs.faults = faults_in(&config, doc);
        }
        if (self.polls - 1).is_multiple_of(self.dependency_every) {
            for check in crate::checks::run_checks(
                &config,
                &[CheckGroup::Prerequisites, CheckGroup::Baseline],
            )
            .await
            {
                let mut reading = match check.status {
                    CheckStatus::Fail => Reading::Fail(check.detail.clone()),
                    _ => Reading::Pass(check.detail.clone()),
                };
                if check.name == "deployment-metadata"
                    && let (Some(before), Some(now)) = (
                        &self.baseline_metadata_sha256,
                        check.observed.get("sha256").and_then(Value::as_str),
                    )
                    && before != now
                {
                    reading = Reading::Fail(format!(
                        "baseline drift: deployment metadata changed (sha256 {}… in the baseline, {}… now); repair it through the deployment-service",
                        &before[..before.len().min(12)],
                        &now[..now.len().min(12)]
                    ));
                }
                obs.dependencies
                    .insert(gate_key(check.group, &check.name), reading);
            }
        }
        self.observe_components(&mut obs).await;
        obs
    }

    async fn observe_components(&self, obs: &mut Observation) {
        for c in &self.components {
            if let Ok(state) = self.driver.state(c).await {
                let before = self.restarts_at_start.get(&c.name).copied();
                let restarted =
                    matches!((before, state.restart_count), (Some(a), Some(b)) if b > a);
                let down = matches!(
                    state.status,
                    RunStatus::Exited | RunStatus::Dead | RunStatus::Restarting
                );
                if down || restarted {
                    obs.crashed.insert(
                        c.name.clone(),
                        format!(
                            "{} (exit code {}, {} restarts since the change)",
                            state.status.as_str(),
                            state
                                .exit_code
                                .map(|c| c.to_string())
                                .unwrap_or_else(|| "-".into()),
                            state
                                .restart_count
                                .unwrap_or(0)
                                .saturating_sub(before.unwrap_or(0))
                        ),
                    );
                }
            }
            if self.patterns.is_empty() {
                continue;
            }
            if let Ok(text) = self.driver.logs_since(c, self.since).await {
                for line in text.lines().rev().take(5000) {
                    if self.patterns.iter().any(|p| p.is_match(line)) {
                        let mut l = rollgate_core::redact::redact_text(line.trim());
                        l.truncate(300);
                        obs.log_faults.push(format!("{}: {l}", c.name));
                        if obs.log_faults.len() >= 5 {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The key a check's reading has among the gate engine's dependencies: prerequisites are
/// `dependency:NAME`, environment (baseline-group) checks `environment:NAME`.
pub fn gate_key(group: CheckGroup, name: &str) -> String {
    match group {
        CheckGroup::Baseline => format!("environment:{name}"),
        _ => format!("dependency:{name}"),
    }
}

/// The URL the fault pointers are read from, when faults are configured.
pub fn fault_url(config: &Config) -> Option<&str> {
    if config.faults.pointers.is_empty() {
        return None;
    }
    crate::checks::fault_url(config)
}

/// The faults at the fault pointers, as `pointer=value`: the same reading as the baseline's
/// ([`rollgate_core::facts::faults_in`]: `null`, `false`, `""`, `[]` and `{}` are no fault).
///
/// ```
/// # use std::path::Path;
/// # use rollgate_core::config::{MapEnv, default_profile, load_str};
/// # use rollgate_core::vocab::Mode;
/// let text = default_profile("operator-localnet", Mode::LocalnetLoopback).unwrap();
/// let config = load_str(Path::new("rollgate.toml"), &text, &MapEnv::default()).unwrap();
/// let quiet = serde_json::json!({"attestation": {"fault": false}, "registration": {"fault": ""}});
/// assert!(rollgate_runner::observe::faults_in(&config, &quiet).is_empty());
/// let failing = serde_json::json!({"attestation": {"fault": {}}, "registration": {"fault": "rejected"}});
/// let faults = rollgate_runner::observe::faults_in(&config, &failing);
/// assert_eq!(faults.into_iter().collect::<Vec<_>>(), ["/registration/fault=\"rejected\""]);
/// ```
pub fn faults_in(config: &Config, doc: &Value) -> BTreeSet<String> {
    rollgate_core::facts::faults_in(doc, &config.faults.pointers)
        .into_iter()
        .collect()
}

//! One poll of the node for the gates: readiness, probes, progression, dependencies, faults,
//! fault lines in the changed components' logs, and whether those components still run.
//!
//! Every status URL is fetched once per poll, however many gates read it. Start-up answers
//! (421 `NotAcceptingRequests`, 503, refused connections, timeouts) are `Transient`, which the
//! engine tolerates until the readiness deadline.
//!
//! **Logs** are read incrementally: each component has a [`LogCursor`], each poll reads only what
//! was logged after it ([`RuntimeDriver::logs_after`]), and past the driver's cap the newest
//! lines are kept. A line matching `[faults].log_patterns` is a fault unless the baseline logged
//! the same line ([`normalize_log_line`], [`Baseline::log_faults`]). Every poll that reads logs
//! reports `logs:COMPONENT` among the dependencies ([`logs_key`]): `Pass`, or `Fail` with the
//! reason when the logs cannot be read. The cursor then stays where it was, so the next read
//! that succeeds covers the gap: an unreadable read makes the log part of the faults gate
//! unknown for that poll, never silently green.
//!
//! **Restarts** are counted per container: the mark taken at [`Observer::mark_change`] holds
//! each component's container id and restart count; a container with another id (Compose
//! recreated it) counts its restarts from its creation, so a crash-looping new container is not
//! masked by the restarts its predecessor had.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use regex::Regex;
use rollgate_core::analysis::Sampled;
use rollgate_core::baseline::Baseline;
use rollgate_core::config::{Component, Config};
use rollgate_core::engine::{Observation, Reading};
use rollgate_core::text::truncate_chars;
use rollgate_core::vocab::{CheckGroup, CheckStatus};
use rollgate_probe::errors::ProbeError;
use rollgate_probe::http::{judge, parse_json};
use rollgate_runtime::{ComponentState, LogCursor, RunStatus, RuntimeDriver};
use serde_json::Value;
use tokio::time::Instant;

use crate::checks::ProbeClients;

/// At most this many latency samples are kept per endpoint from the gate polls.
const MAX_LATENCY_SAMPLES: usize = 1000;

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
    /// Built once: every poll reuses these clients and their connections.
    clients: ProbeClients,
    driver: Arc<dyn RuntimeDriver>,
    components: Vec<Component>,
    patterns: Vec<Regex>,
    /// The changed components' logs are read from this time on.
    since: SystemTime,
    /// Where each component's next log read starts, by component name.
    log_cursors: BTreeMap<String, LogCursor>,
    /// The baseline's own fault lines, normalised (`COMPONENT: line`): not new faults.
    baseline_log_faults: BTreeSet<String>,
    started: Instant,
    /// The gates' clock: from the change, reset when the driver's restart returned (so the
    /// readiness deadline does not include an image pull or a slow stop).
    gates_from: Instant,
    /// Each component's container and restart count at the change.
    restarts_at_start: BTreeMap<String, RestartMark>,
    /// Poll dependencies every n-th observation: they are slower than status reads and change
    /// more slowly.
    dependency_every: u32,
    polls: u32,
    /// The most recent raw status documents, by readiness entry name.
    pub last_readiness: BTreeMap<String, Value>,
    /// Response times (ms) of readiness answers that passed since the change, keyed like the
    /// bake's trends (`readiness:NAME`): the bake's latency comparison starts from them.
    latency_ms: BTreeMap<String, Vec<f64>>,
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
        let clients = ProbeClients::new(&config).map_err(|e| e.detail())?;
        let patterns = log_patterns(&config);
        let since = SystemTime::now();
        Ok(Observer {
            log_cursors: cursors_at(&components, since),
            baseline_log_faults: BTreeSet::new(),
            config,
            clients,
            driver,
            components,
            patterns,
            since,
            started: Instant::now(),
            gates_from: Instant::now(),
            restarts_at_start: BTreeMap::new(),
            dependency_every: 1,
            polls: 0,
            last_readiness: BTreeMap::new(),
            latency_ms: BTreeMap::new(),
            kill_switch: false,
            baseline_metadata_sha256: None,
        })
    }

    /// Judge environment drift (the deployment metadata's hash) and log lines against this
    /// baseline: the fault lines it logged itself are not new faults.
    pub fn against(mut self, baseline: &Baseline) -> Observer {
        self.baseline_metadata_sha256 = baseline.metadata.as_ref().and_then(|m| m.sha256.clone());
        self.baseline_log_faults = baseline.log_faults.iter().cloned().collect();
        self
    }

    /// Restart the clock: the change (or the rollback) happened now. Marks each component's
    /// container and restart count; call it before the restart (a container recreated by it
    /// counts its restarts from its creation) or after it.
    pub async fn mark_change(&mut self) {
        self.since = SystemTime::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.log_cursors = cursors_at(&self.components, self.since);
        self.started = Instant::now();
        self.gates_from = self.started;
        self.polls = 0;
        self.latency_ms.clear();
        self.restarts_at_start.clear();
        for c in &self.components {
            if let Ok(state) = self.driver.state(c).await
                && let Some(mark) = RestartMark::of(&state)
            {
                self.restarts_at_start.insert(c.name.clone(), mark);
            }
        }
    }

    /// The `logs:COMPONENT` keys this observer reports among the dependencies (none without
    /// `[faults].log_patterns`). Add them to the gate plan's dependencies to make unreadable
    /// logs hold, then fail, the gates like any dependency.
    pub fn log_gate_keys(&self) -> Vec<String> {
        if self.patterns.is_empty() {
            return Vec::new();
        }
        self.components.iter().map(|c| logs_key(&c.name)).collect()
    }

    /// Response times (ms) of the readiness answers that passed since the change, by
    /// `readiness:NAME`: verify's polls are latency samples of the new version too.
    pub fn latency_samples(&self) -> &BTreeMap<String, Vec<f64>> {
        &self.latency_ms
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
        self.log_cursors = cursors_at(&self.components, t);
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
        match self.clients.http.get(url).await {
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
        let this = &*self;
        let fetches = futures_util::future::join_all(urls.iter().map(|u| async move {
            let began = Instant::now();
            let fetched = this.fetch(u).await;
            (fetched, began.elapsed().as_secs_f64() * 1000.0)
        }))
        .await;
        let elapsed_ms: BTreeMap<String, f64> = urls
            .iter()
            .cloned()
            .zip(fetches.iter().map(|(_, ms)| *ms))
            .collect();
        let fetches = fetches.into_iter().map(|(f, _)| f);
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
                        if let Some(ms) = elapsed_ms.get(&r.url) {
                            let samples = self
                                .latency_ms
                                .entry(format!("readiness:{}", r.name))
                                .or_default();
                            if samples.len() < MAX_LATENCY_SAMPLES {
                                samples.push((ms * 1000.0).round() / 1000.0);
                            }
                        }
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
        for (name, result) in
            crate::checks::probe_readiness_extras(&config, &self.clients.http).await
        {
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
            for check in crate::checks::run_checks_using(
                &config,
                &self.clients,
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
                        truncate_chars(before, 12),
                        truncate_chars(now, 12)
                    ));
                }
                obs.dependencies
                    .insert(gate_key(check.group, &check.name), reading);
            }
        }
        self.observe_components(&mut obs).await;
        obs
    }

    /// Ask Prometheus the named analysis queries (those the engine says are due).
    pub async fn measure(&self, names: &[String]) -> BTreeMap<String, Sampled> {
        crate::analysis::measure(&self.config, &self.clients, names).await
    }

    /// Ask the operator's Prometheus about its rules and this node's alerts.
    pub async fn monitoring(&self) -> Result<rollgate_core::monitoring::MonitoringRecord, String> {
        crate::monitoring::snapshot(&self.config, &self.clients).await
    }

    async fn observe_components(&mut self, obs: &mut Observation) {
        for c in self.components.clone() {
            if let Ok(state) = self.driver.state(&c).await {
                self.observe_state(&c, &state, obs);
            }
            if !self.patterns.is_empty() {
                self.observe_logs(&c, obs).await;
            }
        }
    }

    fn observe_state(&mut self, c: &Component, state: &ComponentState, obs: &mut Observation) {
        let mark = match self.restarts_at_start.get(&c.name) {
            Some(m) => Some(m.clone()),
            None => {
                // Not marked at the change (its state could not be read then): from now on.
                if let Some(m) = RestartMark::of(state) {
                    self.restarts_at_start.insert(c.name.clone(), m);
                }
                None
            }
        };
        let restarts = mark.as_ref().and_then(|m| m.restarts_since(state));
        let down = matches!(
            state.status,
            RunStatus::Exited | RunStatus::Dead | RunStatus::Restarting
        );
        if down || restarts.is_some_and(|n| n > 0) {
            obs.crashed.insert(
                c.name.clone(),
                format!(
                    "{} (exit code {}, {} restarts since the change)",
                    state.status.as_str(),
                    state
                        .exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    restarts.unwrap_or(0)
                ),
            );
        }
    }

    /// Read what the component logged since the last read and report the new fault lines.
    async fn observe_logs(&mut self, c: &Component, obs: &mut Observation) {
        let cursor = self
            .log_cursors
            .get(&c.name)
            .cloned()
            .unwrap_or_else(|| LogCursor::at(self.since));
        let read = match self.driver.logs_after(c, &cursor).await {
            Ok(read) => read,
            Err(e) => {
                // The cursor stays: the next read that succeeds covers these lines.
                obs.dependencies.insert(
                    logs_key(&c.name),
                    Reading::Fail(format!(
                        "cannot read the logs of {} since {}: {}; fault lines since then are not known yet",
                        c.name,
                        humantime::format_rfc3339_seconds(cursor.since),
                        truncate_chars(&rollgate_probe::errors::chain(&e), 500)
                    )),
                );
                return;
            }
        };
        let mut detail = format!("{} new line(s) read", read.lines.len());
        if read.dropped_bytes > 0 {
            detail.push_str(&format!(
                "; {} older bytes logged since the last poll were past the driver's cap and not read",
                read.dropped_bytes
            ));
        }
        obs.dependencies
            .insert(logs_key(&c.name), Reading::Pass(detail));
        for line in &read.lines {
            if obs.log_faults.len() >= 5 {
                break;
            }
            if !self.patterns.iter().any(|p| p.is_match(line)) {
                continue;
            }
            if self
                .baseline_log_faults
                .contains(&baseline_key(&c.name, line))
            {
                continue;
            }
            let redacted = rollgate_core::redact::redact_text(line.trim());
            let reported = format!("{}: {}", c.name, truncate_chars(&redacted, 300));
            if !obs.log_faults.contains(&reported) {
                obs.log_faults.push(reported);
            }
        }
        self.log_cursors.insert(c.name.clone(), read.next);
    }
}

/// A component's container and its restart count when the change was marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartMark {
    pub container_id: Option<String>,
    pub restart_count: u32,
}

impl RestartMark {
    /// The mark of this state, when the runtime counts restarts.
    pub fn of(state: &ComponentState) -> Option<RestartMark> {
        Some(RestartMark {
            container_id: state.container_id.clone(),
            restart_count: state.restart_count?,
        })
    }

    /// How often the component restarted since the mark: on the marked container, the increase
    /// of its count; on another container (recreated since), its whole count, since it was
    /// created after the mark. `None` when the runtime does not count restarts.
    pub fn restarts_since(&self, now: &ComponentState) -> Option<u32> {
        let n = now.restart_count?;
        if now.container_id.is_some() && now.container_id != self.container_id {
            Some(n)
        } else {
            Some(n.saturating_sub(self.restart_count))
        }
    }
}

/// The dependency key under which a component's log reads are reported.
pub fn logs_key(component: &str) -> String {
    format!("logs:{component}")
}

fn cursors_at(components: &[Component], since: SystemTime) -> BTreeMap<String, LogCursor> {
    components
        .iter()
        .map(|c| (c.name.clone(), LogCursor::at(since)))
        .collect()
}

/// `[faults].log_patterns`, compiled (configuration validation rejects invalid ones).
pub fn log_patterns(config: &Config) -> Vec<Regex> {
    config
        .faults
        .log_patterns
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
}

/// How a component's fault line is recorded in [`Baseline::log_faults`]:
/// `COMPONENT: normalised line`.
pub fn baseline_key(component: &str, line: &str) -> String {
    format!("{component}: {}", normalize_log_line(line))
}

/// The fault lines among `lines` that match `patterns`, as [`baseline_key`]s.
pub fn fault_lines<'a>(
    patterns: &[Regex],
    component: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    lines
        .into_iter()
        .filter(|l| patterns.iter().any(|p| p.is_match(l)))
        .map(|l| baseline_key(component, l))
        .collect()
}

/// A log line with what differs between two occurrences of "the same line" taken out:
/// timestamps removed; hex numbers, long hexadecimal ids (hashes, UUIDs) and numbers replaced by
/// `#`; secrets redacted; whitespace collapsed; at most 300 characters.
pub fn normalize_log_line(line: &str) -> String {
    static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?|\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b",
        )
        .expect("a valid pattern")
    });
    static HEX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-fA-F][0-9a-fA-F-]{6,}[0-9a-fA-F]\b")
            .expect("a valid pattern")
    });
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").expect("a valid pattern"));
    let text = rollgate_core::redact::redact_text(line);
    let text = TIMESTAMP.replace_all(&text, "");
    let text = HEX.replace_all(&text, |c: &regex::Captures| {
        let m = &c[0];
        if m.bytes().any(|b| b.is_ascii_digit()) {
            "#".to_string()
        } else {
            m.to_string()
        }
    });
    let text = NUMBER.replace_all(&text, "#");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&text, 300).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_line_normalises_alike() {
        let a = normalize_log_line(
            "2026-12-01T10:00:00.123Z WARN slow block 0x1f2e took 734ms (id 3f2a9c1e-77b0)",
        );
        let b = normalize_log_line(
            "2026-12-02 11:30:59,9 WARN  slow block 0xa0 took 5ms (id deadbeef-0042)",
        );
        assert_eq!(a, "WARN slow block # took #ms (id #)");
        assert_eq!(a, b);
        // Words made of hex letters only are words, not ids.
        assert_eq!(
            normalize_log_line("ERROR facade decade"),
            "ERROR facade decade"
        );
        assert_ne!(
            normalize_log_line("ERROR attestation failed"),
            normalize_log_line("ERROR registration rejected")
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert!(normalize_log_line(&"日本".repeat(200)).len() <= 300);
        for pad in 0..4 {
            let line = format!("ERROR {}{}", "x".repeat(pad), "é日😀".repeat(40));
            assert!(normalize_log_line(&line).len() <= 300);
        }
    }

    #[test]
    fn restarts_count_on_the_container_that_runs() {
        let state = |id: &str, n: u32| ComponentState {
            container_id: Some(id.into()),
            restart_count: Some(n),
            ..ComponentState::unknown("app")
        };
        let mark = RestartMark::of(&state("old", 4)).unwrap();
        // The same container: the increase.
        assert_eq!(mark.restarts_since(&state("old", 4)), Some(0));
        assert_eq!(mark.restarts_since(&state("old", 6)), Some(2));
        // A container created after the mark: every restart it had.
        assert_eq!(mark.restarts_since(&state("new", 0)), Some(0));
        assert_eq!(mark.restarts_since(&state("new", 1)), Some(1));
        // A runtime without ids or counts.
        let no_id = RestartMark::of(&ComponentState {
            restart_count: Some(2),
            ..ComponentState::unknown("app")
        })
        .unwrap();
        assert_eq!(
            no_id.restarts_since(&ComponentState {
                restart_count: Some(3),
                ..ComponentState::unknown("app")
            }),
            Some(1)
        );
        assert_eq!(mark.restarts_since(&ComponentState::unknown("app")), None);
        assert_eq!(RestartMark::of(&ComponentState::unknown("app")), None);
    }
}

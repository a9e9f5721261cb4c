//! The checks of `rollgate check`, and the readiness probes the rollout gates reuse.
//!
//! [`plan`] turns the configuration into an ordered list of [`PlannedCheck`]s (a closed set of
//! [`CheckKind`]s, one per probe kind and configured target); a [`Checker`] runs them, all at
//! once ([`Checker::run_all`]) or one after another ([`Checker::run_sequentially`], for the
//! benchmark). Output order is always the plan's order, whatever order checks finish in.
//!
//! Groups (product.md steps 1, 2 and 4):
//! - `baseline`: mode, dependency URLs, `APP_CONFIG`, deployment metadata; SGX flags,
//!   attestation and devices when `enclave = true`;
//! - `prerequisites`: chain, deployment-service, Postgres, Redis, disk headroom; PCCS and AESM
//!   when `enclave = true`;
//! - `readiness`: each readiness entry, encryption key, mark price, faults, progression.
//!
//! In `check`, progression is sampled over a short window ([`CheckOptions::for_check`]) and an
//! idle signal is a warning; the baseline samples over `rollout.baseline_window` and applies
//! the idle policy ([`crate::baseline`]).

use std::time::Duration;

use rollgate_core::baseline::ProgressionRate;
use rollgate_core::config::Config;
use rollgate_core::engine::Reading;
use rollgate_core::vocab::{CheckGroup, CheckResult, CheckStatus};
use rollgate_probe::errors::ProbeError;
use rollgate_probe::pccs::PccsClient;
use rollgate_probe::progression::Sampling;
use rollgate_probe::prometheus::PrometheusClient;
use rollgate_probe::{HttpClient, Outcome};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The longest `check` spends watching a progression signal.
pub const CHECK_PROGRESSION_WINDOW: Duration = Duration::from_secs(3);

/// What to check: one probe kind, and which configured target (by index) for repeated ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Mode,
    DependencyUrls,
    AppConfig,
    DeploymentMetadata,
    SgxFlags,
    SgxAttestation,
    SgxDevices,
    Chain,
    DeploymentService,
    Postgres,
    Redis,
    Pccs,
    Aesm,
    Disk(usize),
    Readiness(usize),
    EncryptionKey,
    MarkPrice,
    Faults,
    Progression(usize),
}

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCheck {
    pub name: String,
    pub group: CheckGroup,
    pub kind: CheckKind,
}

/// How long time-based checks watch.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Progression sampling; `until_moved` stops at the first movement.
    pub progression: Sampling,
}

impl CheckOptions {
    /// For `rollgate check`: short windows, stopping as soon as a signal moves.
    pub fn for_check(config: &Config) -> CheckOptions {
        let longest = config
            .progression
            .iter()
            .map(|p| p.window)
            .max()
            .unwrap_or(CHECK_PROGRESSION_WINDOW);
        CheckOptions {
            progression: Sampling {
                window: longest.min(CHECK_PROGRESSION_WINDOW),
                interval: config.rollout.poll_interval.min(Duration::from_millis(250)),
                until_moved: true,
            },
        }
    }

    /// For a baseline: the full `rollout.baseline_window`, to measure rates.
    pub fn for_baseline(config: &Config) -> CheckOptions {
        CheckOptions {
            progression: Sampling {
                window: config.rollout.baseline_window,
                interval: config.rollout.poll_interval,
                until_moved: false,
            },
        }
    }
}

/// The checks of the selected groups (all groups when `groups` is empty), in a stable order.
pub fn plan(config: &Config, groups: &[CheckGroup]) -> Vec<PlannedCheck> {
    let wants = |g: CheckGroup| groups.is_empty() || groups.contains(&g);
    let mut out = Vec::new();
    let mut add = |name: String, group: CheckGroup, kind: CheckKind| {
        out.push(PlannedCheck { name, group, kind })
    };
    let enclave = config.node.enclave;
    let deps = &config.dependencies;

    if wants(CheckGroup::Baseline) {
        let g = CheckGroup::Baseline;
        add("mode".into(), g, CheckKind::Mode);
        add("dependency-urls".into(), g, CheckKind::DependencyUrls);
        add("app-config".into(), g, CheckKind::AppConfig);
        add(
            "deployment-metadata".into(),
            g,
            CheckKind::DeploymentMetadata,
        );
        if enclave && config.sgx.is_some() {
            add("sgx-flags".into(), g, CheckKind::SgxFlags);
            add("sgx-attestation".into(), g, CheckKind::SgxAttestation);
            add("sgx-devices".into(), g, CheckKind::SgxDevices);
        }
    }
    if wants(CheckGroup::Prerequisites) {
        let g = CheckGroup::Prerequisites;
        if deps.chain.is_some() {
            add("chain".into(), g, CheckKind::Chain);
        }
        if deps.deployment_service.is_some() {
            add("deployment-service".into(), g, CheckKind::DeploymentService);
        }
        if deps.postgres.is_some() {
            add("postgres".into(), g, CheckKind::Postgres);
        }
        if deps.redis.is_some() {
            add("redis".into(), g, CheckKind::Redis);
        }
        if enclave && deps.pccs.is_some() {
            add("pccs".into(), g, CheckKind::Pccs);
        }
        if enclave && deps.aesm.is_some() {
            add("aesm".into(), g, CheckKind::Aesm);
        }
        for (i, d) in config.headroom.disk.iter().enumerate() {
            add(format!("disk:{}", d.path.display()), g, CheckKind::Disk(i));
        }
    }
    if wants(CheckGroup::Readiness) {
        let g = CheckGroup::Readiness;
        for (i, r) in config.readiness.iter().enumerate() {
            add(format!("readiness:{}", r.name), g, CheckKind::Readiness(i));
        }
        if config.probes.encryption_key.is_some() {
            add("encryption-key".into(), g, CheckKind::EncryptionKey);
        }
        if config.probes.mark_price.is_some() {
            add("mark-price".into(), g, CheckKind::MarkPrice);
        }
        if !config.faults.pointers.is_empty() && fault_url(config).is_some() {
            add("faults".into(), g, CheckKind::Faults);
        }
        for (i, p) in config.progression.iter().enumerate() {
            add(
                format!("progression:{}", p.name),
                g,
                CheckKind::Progression(i),
            );
        }
    }
    out
}

/// The status document the fault pointers are read from.
pub fn fault_url(config: &Config) -> Option<&str> {
    config
        .faults
        .url
        .as_deref()
        .or_else(|| config.operator_status_url())
}

/// The probes' HTTP clients for one configuration, built once and shared by every check of a
/// run and every poll of a gate loop (a clone shares the connection pools).
#[derive(Debug, Clone)]
pub struct ProbeClients {
    pub http: HttpClient,
    /// The PCCS client, or why it could not be built (the PCCS check's failed detail).
    pccs: Option<Result<PccsClient, String>>,
    /// The operator's Prometheus, or why its client could not be built (every analysis
    /// measurement then reports it as no data).
    pub prometheus: Option<Result<PrometheusClient, String>>,
}

impl ProbeClients {
    pub fn new(config: &Config) -> Result<ProbeClients, ProbeError> {
        Ok(ProbeClients {
            http: HttpClient::new(&config.probe_limits)?,
            pccs: config
                .dependencies
                .pccs
                .as_ref()
                .map(|p| PccsClient::new(p, &config.probe_limits)),
            prometheus: config
                .prometheus
                .as_ref()
                .map(|p| PrometheusClient::new(p, &config.probe_limits).map_err(|e| e.detail())),
        })
    }
}

/// Runs planned checks against one configuration.
#[derive(Debug, Clone)]
pub struct Checker<'a> {
    config: &'a Config,
    clients: ProbeClients,
    options: CheckOptions,
}

impl<'a> Checker<'a> {
    pub fn new(config: &'a Config, options: CheckOptions) -> Result<Checker<'a>, ProbeError> {
        Ok(Checker::with_clients(
            config,
            ProbeClients::new(config)?,
            options,
        ))
    }

    /// A checker reusing clients built for this configuration.
    pub fn with_clients(
        config: &'a Config,
        clients: ProbeClients,
        options: CheckOptions,
    ) -> Checker<'a> {
        Checker {
            config,
            clients,
            options,
        }
    }

    /// Run one check, timing it.
    pub async fn run(&self, check: &PlannedCheck) -> CheckResult {
        let start = Instant::now();
        let outcome = self.outcome(check.kind).await;
        CheckResult {
            name: check.name.clone(),
            group: check.group,
            status: outcome.status,
            detail: outcome.detail,
            latency_ms: start.elapsed().as_millis() as u64,
            observed: outcome.observed,
        }
    }

    /// Run every check concurrently; results in the given order.
    pub async fn run_all(&self, checks: &[PlannedCheck]) -> Vec<CheckResult> {
        futures_util::future::join_all(checks.iter().map(|c| self.run(c))).await
    }

    /// Run the checks one after another (the benchmark's reference).
    pub async fn run_sequentially(&self, checks: &[PlannedCheck]) -> Vec<CheckResult> {
        let mut out = Vec::with_capacity(checks.len());
        for c in checks {
            out.push(self.run(c).await);
        }
        out
    }

    async fn outcome(&self, kind: CheckKind) -> Outcome {
        use rollgate_probe::*;
        let c = self.config;
        let limits = &c.probe_limits;
        let deps = &c.dependencies;
        let missing = || Outcome::skip("not configured");
        match kind {
            CheckKind::Mode => environment::check_mode(c),
            CheckKind::DependencyUrls => {
                let runtime_env = c
                    .sgx
                    .as_ref()
                    .and_then(|s| envfile::read_env_file(&s.runtime_env).ok());
                environment::check_dependency_urls(c, runtime_env.as_ref())
            }
            CheckKind::AppConfig => environment::check_app_config(&c.node.app_config),
            CheckKind::DeploymentMetadata => metadata::check_metadata(&c.node).0,
            CheckKind::SgxFlags => match &c.sgx {
                Some(s) => sgx::check_flags(s, &sgx::read_files(s)),
                None => missing(),
            },
            CheckKind::SgxAttestation => match &c.sgx {
                Some(s) => sgx::check_attestation(s, c.node.mode, &sgx::read_files(s)),
                None => missing(),
            },
            CheckKind::SgxDevices => match &c.sgx {
                Some(s) => sgx::check_devices(&s.devices),
                None => missing(),
            },
            CheckKind::Chain => match &deps.chain {
                Some(ch) => chain::probe_chain(&self.clients.http, ch).await,
                None => missing(),
            },
            CheckKind::DeploymentService => match &deps.deployment_service {
                Some(d) => {
                    http::probe_health(&self.clients.http, &join_url(&d.probe_url, &d.path)).await
                }
                None => missing(),
            },
            CheckKind::Postgres => match &deps.postgres {
                Some(pg) => {
                    postgres::probe_postgres(pg, c.headroom.database.as_ref(), limits.timeout).await
                }
                None => missing(),
            },
            CheckKind::Redis => match &deps.redis {
                Some(r) => redis::probe_redis(r, limits.timeout).await,
                None => missing(),
            },
            CheckKind::Pccs => match &deps.pccs {
                Some(p) => match &self.clients.pccs {
                    Some(Ok(client)) => pccs::probe_pccs_with(client, p).await,
                    Some(Err(detail)) => Outcome::fail(detail.clone(), Value::Null),
                    None => pccs::probe_pccs(p, limits).await,
                },
                None => missing(),
            },
            CheckKind::Aesm => match &deps.aesm {
                Some(a) => aesm::probe_aesm(&a.socket, limits.timeout).await,
                None => missing(),
            },
            CheckKind::Disk(i) => match c.headroom.disk.get(i) {
                Some(d) => disk::probe_disk(d),
                None => missing(),
            },
            CheckKind::Readiness(i) => match c.readiness.get(i) {
                Some(r) => http::probe_readiness(&self.clients.http, r).await,
                None => missing(),
            },
            CheckKind::EncryptionKey => match &c.probes.encryption_key {
                Some(p) => encryption_key::probe_encryption_key(&self.clients.http, p).await,
                None => missing(),
            },
            CheckKind::MarkPrice => match &c.probes.mark_price {
                Some(p) => mark_price::probe_mark_price(&self.clients.http, p).await,
                None => missing(),
            },
            CheckKind::Faults => match fault_url(c) {
                Some(url) => {
                    match faults::read_faults(&self.clients.http, url, &c.faults.pointers).await {
                        Ok(list) if list.is_empty() => Outcome::pass(
                            format!("no faults at {}", c.faults.pointers.join(", ")),
                            json!([]),
                        ),
                        // Known faults are recorded, not refused: a gate fails only on new ones.
                        Ok(list) => Outcome::warn(
                            format!("{} fault(s): {}", list.len(), list.join("; ")),
                            json!(list),
                        ),
                        Err(e) => e.into(),
                    }
                }
                None => missing(),
            },
            CheckKind::Progression(i) => match c.progression.get(i) {
                Some(p) => {
                    let mut s = self.options.progression;
                    if s.until_moved {
                        s.window = s.window.min(p.window);
                    }
                    progression::probe_progression(&self.clients.http, p, s).await
                }
                None => missing(),
            },
        }
    }
}

fn join_url(base: &str, path: &str) -> String {
    if path.is_empty() {
        return base.to_string();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// [`run_checks`] through clients built once for this configuration (a gate loop's polls).
pub async fn run_checks_using(
    config: &Config,
    clients: &ProbeClients,
    groups: &[CheckGroup],
) -> Vec<CheckResult> {
    Checker::with_clients(config, clients.clone(), CheckOptions::for_check(config))
        .run_all(&plan(config, groups))
        .await
}

/// Run the checks of `groups` (all when empty) concurrently, in a stable order. Windows are
/// those of `rollgate check` ([`CheckOptions::for_check`]).
pub async fn run_checks(config: &Config, groups: &[CheckGroup]) -> Vec<CheckResult> {
    run_checks_with(config, groups, CheckOptions::for_check(config)).await
}

/// [`run_checks`] with explicit windows.
pub async fn run_checks_with(
    config: &Config,
    groups: &[CheckGroup],
    options: CheckOptions,
) -> Vec<CheckResult> {
    let checks = plan(config, groups);
    match Checker::new(config, options) {
        Ok(checker) => checker.run_all(&checks).await,
        Err(e) => checks
            .into_iter()
            .map(|c| CheckResult {
                name: c.name,
                group: c.group,
                status: CheckStatus::Fail,
                detail: e.detail(),
                latency_ms: 0,
                observed: Value::Null,
            })
            .collect(),
    }
}

/// True when no check failed (`warn` and `skip` are green: `check` exits 0).
pub fn all_green(results: &[CheckResult]) -> bool {
    results.iter().all(|r| r.status != CheckStatus::Fail)
}

/// The readiness entries and the encryption-key and mark-price probes, without progression:
/// what a readiness gate re-runs on every poll.
pub async fn readiness_checks(config: &Config) -> Vec<CheckResult> {
    match ProbeClients::new(config) {
        Ok(clients) => readiness_checks_using(config, &clients).await,
        Err(_) => run_checks(config, &[CheckGroup::Readiness]).await,
    }
}

/// [`readiness_checks`] through clients built once (`serve`'s prober polls with them).
pub async fn readiness_checks_using(config: &Config, clients: &ProbeClients) -> Vec<CheckResult> {
    let checks: Vec<PlannedCheck> = plan(config, &[CheckGroup::Readiness])
        .into_iter()
        .filter(|c| !matches!(c.kind, CheckKind::Progression(_) | CheckKind::Faults))
        .collect();
    Checker::with_clients(config, clients.clone(), CheckOptions::for_check(config))
        .run_all(&checks)
        .await
}

/// The readiness probes beyond the `[readiness]` entries, by the names
/// [`probe_readiness_extras`] reports them under.
pub fn readiness_extra_names(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.probes.encryption_key.is_some() {
        out.push("encryption-key".to_string());
    }
    if config.probes.mark_price.is_some() {
        out.push("mark-price".to_string());
    }
    out
}

/// The encryption-key and mark-price probes as gate readings: an endpoint that refuses
/// connections, times out or answers 421/503 is `Transient` (expected while a component
/// restarts); a malformed or wrong answer is `Fail`.
pub async fn probe_readiness_extras(config: &Config, http: &HttpClient) -> Vec<(String, Reading)> {
    let reading = |r: Result<Outcome, ProbeError>| match r {
        Ok(o) if o.status == CheckStatus::Fail => Reading::Fail(o.detail),
        Ok(o) => Reading::Pass(o.detail),
        Err(e) if e.is_transient() => Reading::Transient(e.detail()),
        Err(e) => Reading::Fail(e.detail()),
    };
    let key = async {
        match &config.probes.encryption_key {
            Some(p) => Some((
                "encryption-key".to_string(),
                reading(rollgate_probe::encryption_key::encryption_key(http, p).await),
            )),
            None => None,
        }
    };
    let price = async {
        match &config.probes.mark_price {
            Some(p) => Some((
                "mark-price".to_string(),
                reading(rollgate_probe::mark_price::mark_price(http, p).await),
            )),
            None => None,
        }
    };
    let (k, p) = tokio::join!(key, price);
    k.into_iter().chain(p).collect()
}

/// The faults present now, as `pointer=value` (the operator status, non-null fault pointers).
pub async fn probe_faults(config: &Config) -> Result<Vec<String>, ProbeError> {
    let Some(url) = fault_url(config) else {
        return Ok(Vec::new());
    };
    if config.faults.pointers.is_empty() {
        return Ok(Vec::new());
    }
    let http = HttpClient::new(&config.probe_limits)?;
    rollgate_probe::faults::read_faults(&http, url, &config.faults.pointers).await
}

/// Sample every progression signal concurrently over `window`, measuring rates over the whole
/// window (a baseline, a bake comparison).
pub async fn sample_progression(
    config: &Config,
    window: Duration,
) -> Result<Vec<ProgressionRate>, ProbeError> {
    sample_all(
        config,
        Sampling {
            window,
            interval: config.rollout.poll_interval,
            until_moved: false,
        },
    )
    .await
}

/// Sample every progression signal until each has moved or `window` ends (a gate waiting for
/// progress); `idle` says which did not move.
pub async fn wait_for_progression(
    config: &Config,
    window: Duration,
) -> Result<Vec<ProgressionRate>, ProbeError> {
    sample_all(
        config,
        Sampling {
            window,
            interval: config.rollout.poll_interval,
            until_moved: true,
        },
    )
    .await
}

async fn sample_all(
    config: &Config,
    sampling: Sampling,
) -> Result<Vec<ProgressionRate>, ProbeError> {
    let http = HttpClient::new(&config.probe_limits)?;
    let results = futures_util::future::join_all(
        config
            .progression
            .iter()
            .map(|p| rollgate_probe::progression::sample_progression(&http, p, sampling)),
    )
    .await;
    results.into_iter().collect()
}

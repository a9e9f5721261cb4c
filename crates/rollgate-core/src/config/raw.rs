//! The configuration file as written: serde structs with no I/O and no validation beyond types.
//!
//! Every table denies unknown keys. Strings that may hold `${VAR}` references, durations and
//! sizes keep their source span so that [`super::resolve`] can name the line of a bad value.
//! The keys are those of product.md section 3; additions are marked "extension".

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A string with its location in the file.
pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node: RawNode,
    #[serde(default)]
    pub sgx: Option<RawSgx>,
    #[serde(default)]
    pub dependencies: RawDependencies,
    #[serde(default)]
    pub headroom: RawHeadroom,
    #[serde(default)]
    pub readiness: BTreeMap<String, RawReadiness>,
    #[serde(default)]
    pub probes: RawProbes,
    #[serde(default)]
    pub progression: Vec<RawProgression>,
    #[serde(default)]
    pub faults: RawFaults,
    #[serde(default)]
    pub alerts: RawAlerts,
    /// Extension: the operator's Prometheus, asked by the analysis gates.
    #[serde(default)]
    pub prometheus: Option<RawPrometheus>,
    /// Extension: PromQL analysis gates (verify and bake).
    #[serde(default)]
    pub analysis: Vec<RawAnalysis>,
    /// Extension: the operator's Alertmanager, silenced during the restart.
    #[serde(default)]
    pub alertmanager: Option<RawAlertmanager>,
    pub runtime: RawRuntime,
    /// Extension: the components that run, and how the runtime names them. When absent, the
    /// components are the names of the `[readiness]` entries.
    #[serde(default)]
    pub components: Option<BTreeMap<String, RawComponent>>,
    #[serde(default)]
    pub layers: BTreeMap<String, RawLayer>,
    #[serde(default)]
    pub rollout: RawRollout,
    /// Extension: limits that protect the tool itself.
    #[serde(default)]
    pub probe: RawProbeLimits,
    /// Extension: the bake period's thresholds.
    #[serde(default)]
    pub bake: RawBake,
    /// Extension: `rollgate serve` and notifications.
    #[serde(default)]
    pub serve: RawServe,
    /// `rollgate fleet`: how this node takes part in a cluster-wide rollout (shared docs,
    /// fleet.md). Absent: the node is not in a fleet.
    #[serde(default)]
    pub fleet: Option<RawFleet>,
    /// Extension: values redacted from every output besides the passwords and tokens rollgate
    /// finds itself (an API key in a chain RPC URL's path: `secrets = ["${INFURA_KEY}"]`).
    #[serde(default)]
    pub secrets: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Str,
    pub mode: Str,
    pub app_config: Str,
    pub deployment_metadata: Str,
    pub deployment_metadata_owner: Str,
    #[serde(default)]
    pub enclave: bool,
    pub state_dir: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSgx {
    pub build_flags: Str,
    pub runtime_env: Str,
    #[serde(default)]
    pub report_type: Option<Str>,
    #[serde(default)]
    pub devices: Vec<Str>,
    /// Extension: the attestation mode the node runs in (`"self"` or `"dcap"`); a debug build
    /// is refused with DCAP. Defaults from `report_type` (`SELF` → self).
    #[serde(default)]
    pub attestation: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDependencies {
    #[serde(default)]
    pub chain: Option<RawChain>,
    #[serde(default)]
    pub deployment_service: Option<RawHttpDep>,
    #[serde(default)]
    pub postgres: Option<RawPostgres>,
    #[serde(default)]
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub pccs: Option<RawPccs>,
    #[serde(default)]
    pub aesm: Option<RawAesm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    pub url: Str,
    /// Extension: where rollgate reaches the chain when that differs from the node's own URL
    /// (in `localnet.compose` the node says `http://ethereum:8545`, the host sees a published port).
    #[serde(default)]
    pub probe_url: Option<Str>,
    /// Extension: the chain id the node must be on (hex or decimal); unchecked when absent.
    #[serde(default)]
    pub chain_id: Option<Str>,
    /// The oldest the latest block may be (default 60s); older is a stalled chain.
    #[serde(default)]
    pub max_block_age: Option<Str>,
    /// Extension: when the latest block is older than `max_block_age`, watch the head for this
    /// long instead of failing; a head that stays put is then a warning (an idle automining
    /// localnet). Off by default.
    #[serde(default)]
    pub advance_window: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpDep {
    pub url: Str,
    #[serde(default)]
    pub path: Option<Str>,
    /// Extension: as for the chain.
    #[serde(default)]
    pub probe_url: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Str,
    #[serde(default)]
    pub databases: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPccs {
    pub url: Str,
    #[serde(default)]
    pub pin_sha256: Option<Str>,
    #[serde(default)]
    pub ca_file: Option<Str>,
    #[serde(default)]
    pub insecure: Option<Spanned<bool>>,
    /// Extension: the path probed (default `/sgx/certification/v4/rootcacrl`).
    #[serde(default)]
    pub path: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAesm {
    pub socket: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeadroom {
    #[serde(default)]
    pub disk: Vec<RawDisk>,
    #[serde(default)]
    pub database: Option<RawDatabaseHeadroom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub path: Str,
    #[serde(default)]
    pub min_free: Option<Str>,
    #[serde(default)]
    pub min_free_percent: Option<Spanned<f64>>,
    /// Extension: minimum free inodes, percent.
    #[serde(default)]
    pub min_free_inodes_percent: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabaseHeadroom {
    pub max_growth_during_window: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadiness {
    pub url: Str,
    #[serde(default)]
    pub expect: Vec<RawExpect>,
}

/// One JSON-pointer expectation. Exactly one of `equals`, `one_of`, `present`, `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub pointer: Str,
    #[serde(default)]
    pub equals: Option<toml::Value>,
    #[serde(default)]
    pub one_of: Option<Vec<toml::Value>>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default, rename = "type")]
    pub type_: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbes {
    #[serde(default)]
    pub encryption_key: Option<RawEncryptionKey>,
    #[serde(default)]
    pub mark_price: Option<RawMarkPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryptionKey {
    pub url: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMarkPrice {
    pub url: Str,
    pub symbols: Vec<Str>,
    pub price_pointer: Str,
    pub timestamp_pointer: Str,
    pub max_age: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgression {
    pub name: Str,
    pub url: Str,
    pub pointer: Str,
    #[serde(default)]
    pub mode: Option<Str>,
    pub window: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaults {
    #[serde(default)]
    pub pointers: Vec<Str>,
    #[serde(default)]
    pub log_patterns: Vec<Str>,
    /// Extension: the status URL the fault pointers are read from (default: the operator's
    /// readiness URL).
    #[serde(default)]
    pub url: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default)]
    pub fields: Vec<Str>,
    #[serde(default)]
    pub rules_files: Vec<Str>,
    /// Extension: the status URL the alert fields are read from (default: the operator's
    /// readiness URL).
    #[serde(default)]
    pub url: Option<Str>,
    /// Extension: the Prometheus endpoints whose metric names the rules may reference.
    #[serde(default)]
    pub metrics_urls: Vec<Str>,
}

/// `[prometheus]`: the operator's Prometheus HTTP API. Basic auth goes in the URL's user info
/// (`https://user:${PW}@prom:9090`), redacted like every URL password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    pub url: Str,
    /// A file holding a bearer token (read at each start; never printed).
    #[serde(default)]
    pub bearer_token_file: Option<Str>,
    /// PEM certificates trusted for an `https` URL instead of the platform's roots.
    #[serde(default)]
    pub ca_file: Option<Str>,
    /// Label matchers selecting this node's alerts (`node="node0"`): a new firing one fails.
    #[serde(default)]
    pub alert_selectors: Vec<Str>,
}

/// `[alertmanager]`: quiet restarts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    pub url: Str,
    #[serde(default)]
    pub silence: Option<Spanned<bool>>,
    /// Label matchers of the silence, in Prometheus syntax (`node="node0"`, `alertname=~"A|B"`).
    #[serde(default)]
    pub matchers: Vec<Str>,
    #[serde(default)]
    pub bearer_token_file: Option<Str>,
    #[serde(default)]
    pub ca_file: Option<Str>,
}

/// One `[[analysis]]` gate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub name: Str,
    pub query: Str,
    pub success: Str,
    #[serde(default)]
    pub interval: Option<Str>,
    #[serde(default)]
    pub failure_limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub inconclusive_limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub no_data: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub driver: Str,
    #[serde(default)]
    pub compose: Option<RawCompose>,
    #[serde(default)]
    pub command: Option<RawCommand>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompose {
    pub project_dir: Str,
    #[serde(default)]
    pub files: Vec<Str>,
    /// Extension: the Compose project name (default: Compose's own rule, the directory name).
    #[serde(default)]
    pub project_name: Option<Str>,
    /// Extension: `docker compose` (v2) or `docker-compose` (v1); detected when absent.
    #[serde(default)]
    pub command: Option<Str>,
    /// Extension: variables of rollgate's environment passed to `docker` (besides PATH, HOME,
    /// the locale, DOCKER_* and COMPOSE_*), e.g. those a compose file interpolates.
    #[serde(default)]
    pub env: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    pub current: Str,
    pub apply: Str,
    pub restart: Str,
    /// Extension: a command printing the component's logs since `$ROLLGATE_SINCE` (RFC 3339).
    #[serde(default)]
    pub logs: Option<Str>,
    /// Extension: stop `$ROLLGATE_COMPONENTS` (required by layers with a `snapshot`).
    #[serde(default)]
    pub stop: Option<Str>,
    /// Extension: start `$ROLLGATE_COMPONENTS` again (required by layers with a `snapshot`).
    #[serde(default)]
    pub start: Option<Str>,
    /// Extension: how long any one command may run (default 60s).
    #[serde(default)]
    pub timeout: Option<Str>,
    /// Extension: variables of rollgate's environment passed to the commands (besides PATH,
    /// HOME, the locale and the ROLLGATE_* variables rollgate sets).
    #[serde(default)]
    pub env: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    /// The Compose service (or process name) of this component; defaults to the component name.
    #[serde(default)]
    pub service: Option<Str>,
    /// The readiness entry that covers this component; defaults to the entry of the same name.
    #[serde(default)]
    pub readiness: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLayer {
    pub kind: Str,
    pub components: Vec<Str>,
    /// Extension: databases of `[dependencies.postgres]` snapshotted before a change to this
    /// layer and restored on its rollback (a layer whose new version migrates them).
    #[serde(default)]
    pub snapshot: Vec<Str>,
    /// Extension: `"dump"` (pg_dump/pg_restore, any server; the default) or `"template"`
    /// (`CREATE DATABASE … TEMPLATE`, same server, fast).
    #[serde(default)]
    pub snapshot_method: Option<Str>,
    /// Extension: the files a `config` layer owns (rollgate writes and restores them).
    #[serde(default)]
    pub files: Vec<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    #[serde(default)]
    pub readiness_deadline: Option<Str>,
    #[serde(default)]
    pub bake: Option<Str>,
    #[serde(default)]
    pub idle_progression: Option<Str>,
    /// Extension: the window over which the baseline's progression rates are sampled.
    #[serde(default)]
    pub baseline_window: Option<Str>,
    /// Extension: how often gates re-probe while waiting.
    #[serde(default)]
    pub poll_interval: Option<Str>,
    /// Extension: how long every readiness check must stay green before a promotion.
    #[serde(default)]
    pub min_healthy: Option<Str>,
    /// Extension: how long the database snapshot of a promoted rollout is kept (default 7d).
    #[serde(default)]
    pub snapshot_retention: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeLimits {
    /// Per-request timeout (default 5s).
    #[serde(default)]
    pub timeout: Option<Str>,
    /// Largest response body read (default 1MiB).
    #[serde(default)]
    pub max_body: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBake {
    #[serde(default)]
    pub sample_interval: Option<Str>,
    #[serde(default)]
    pub min_samples: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_latency_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub significance: Option<Spanned<f64>>,
    #[serde(default)]
    pub min_progression_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_storage_growth_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_error_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_restarts: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_memory_growth_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    pub headroom_horizon: Option<Str>,
    #[serde(default)]
    pub no_data: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    pub etcd: Vec<Str>,
    pub cluster: Str,
    #[serde(default)]
    pub node_id_pointer: Option<Str>,
    #[serde(default)]
    pub voters_pointer: Option<Str>,
    #[serde(default)]
    pub leader_pointer: Option<Str>,
    #[serde(default)]
    pub max_lag: Option<Spanned<i64>>,
    #[serde(default)]
    pub stabilization: Option<Str>,
    #[serde(default)]
    pub canary_soak: Option<Str>,
    /// Extension: etcd authentication (both or neither).
    #[serde(default)]
    pub user: Option<Str>,
    #[serde(default)]
    pub password: Option<Str>,
    /// Extension: the CA bundle that signs the `https://` endpoints' certificates (else the
    /// system roots).
    #[serde(default)]
    pub ca_file: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    #[serde(default)]
    pub listen: Option<Str>,
    #[serde(default)]
    pub token: Option<Str>,
    #[serde(default)]
    pub token_file: Option<Str>,
    #[serde(default)]
    pub webhook_url: Option<Str>,
    /// Extension: the bearer token for the endpoints that only read.
    #[serde(default)]
    pub read_token: Option<Str>,
    #[serde(default)]
    pub read_token_file: Option<Str>,
    /// Extension: host names a request's `Host` header may name, besides the defaults.
    #[serde(default)]
    pub allowed_hosts: Vec<Str>,
}

//! The validated configuration: what the rest of rollgate works with.
//!
//! Built only by [`super::resolve`]; every value here has been checked (durations parsed, URLs
//! of the right scheme, layers naming known components, exactly one PCCS trust setting, ...).
//! URLs may hold passwords: print them through [`crate::redact::redact_url`] only.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::vocab::{LayerKind, Mode};

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was loaded from.
    pub source: PathBuf,
    pub node: Node,
    pub sgx: Option<Sgx>,
    pub dependencies: Dependencies,
    pub headroom: Headroom,
    pub readiness: Vec<Readiness>,
    pub probes: Probes,
    pub progression: Vec<Progression>,
    pub faults: Faults,
    pub alerts: Alerts,
    /// Extension: the operator's Prometheus (required by `analysis`).
    pub prometheus: Option<Prometheus>,
    /// Extension: PromQL analysis gates, in file order.
    pub analysis: Vec<Analysis>,
    /// Extension: the operator's Alertmanager (quiet restarts).
    pub alertmanager: Option<Alertmanager>,
    pub runtime: Runtime,
    pub components: BTreeMap<String, Component>,
    pub layers: BTreeMap<String, Layer>,
    pub rollout: RolloutPolicy,
    pub probe_limits: ProbeLimits,
    pub bake: BakePolicy,
    pub serve: Serve,
    /// `[fleet]`: None when the node takes no part in a fleet.
    pub fleet: Option<Fleet>,
    /// Values declared secret (`secrets = [...]`), each at least
    /// [`crate::secrets::MIN_LEN`] characters. Never printed.
    pub secrets: Vec<String>,
}

impl Config {
    /// The layer of that name.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.get(name)
    }

    /// The operator's status URL: the readiness entry named `operator`, else the first one.
    pub fn operator_status_url(&self) -> Option<&str> {
        self.readiness
            .iter()
            .find(|r| r.name == "operator")
            .or_else(|| self.readiness.first())
            .map(|r| r.url.as_str())
    }
}

/// `[fleet]`: where the cluster coordinates (etcd) and how this node's status document names
/// its Raft identity. Read by the agent on this node and by any conductor given `--config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// etcd endpoints, `http://` or `https://`, at least one.
    pub etcd: Vec<String>,
    /// The key prefix `/rollgate/v1/<cluster>/`: letters, digits, `.`, `_`, `-`.
    pub cluster: String,
    /// JSON pointers into the operator readiness document.
    pub node_id_pointer: String,
    pub voters_pointer: String,
    /// None: the leader must be given to the conductor (`--leader`).
    pub leader_pointer: Option<String>,
    /// How far a node's `requestIndex` may be behind the cluster's highest (default 50).
    pub max_lag: u64,
    /// How long the cluster gates must hold after a node is done (default 15 s).
    pub stabilization: Duration,
    /// Extra wait after the first node (default 0).
    pub canary_soak: Duration,
    /// etcd authentication; the password is a secret (scrubbed from every output).
    pub user: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
}

impl Fleet {
    /// The defaults of an empty `[fleet]` section for these endpoints: what a conductor-side
    /// command (`fleet status --etcd URL --cluster NAME`) uses on a host that is not a node.
    pub fn for_endpoints(etcd: Vec<String>, cluster: String) -> Fleet {
        Fleet {
            etcd,
            cluster,
            node_id_pointer: "/raftMetrics/nodeId".into(),
            voters_pointer: "/raftMetrics/voterIds".into(),
            leader_pointer: None,
            max_lag: 50,
            stabilization: Duration::from_secs(15),
            canary_soak: Duration::ZERO,
            user: None,
            password: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub mode: Mode,
    pub app_config: PathBuf,
    /// Absolute: `app_config` joined with the configured relative path.
    pub deployment_metadata: PathBuf,
    pub deployment_metadata_owner: Owner,
    pub enclave: bool,
    pub state_dir: PathBuf,
}

/// Who must own the deployment metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Name(String),
    Uid(u32),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Name(n) => f.write_str(n),
            Owner::Uid(u) => write!(f, "uid {u}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sgx {
    pub build_flags: PathBuf,
    pub runtime_env: PathBuf,
    pub report_type: String,
    pub devices: Vec<PathBuf>,
    pub attestation: Attestation,
}

/// The attestation mode: a debug enclave build must never be used with DCAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attestation {
    /// `REPORT_TYPE=SELF`, the localnet mode.
    SelfReport,
    Dcap,
}

#[derive(Debug, Clone, Default)]
pub struct Dependencies {
    pub chain: Option<Chain>,
    pub deployment_service: Option<DeploymentService>,
    pub postgres: Option<Postgres>,
    pub redis: Option<Redis>,
    pub pccs: Option<Pccs>,
    pub aesm: Option<Aesm>,
}

#[derive(Debug, Clone)]
pub struct Chain {
    /// The URL the node is configured with (judged for the runtime mode).
    pub url: String,
    /// The URL rollgate probes (defaults to `url`).
    pub probe_url: String,
    pub chain_id: Option<u64>,
    /// The oldest the latest block may be: older is a stalled chain (a failure).
    pub max_block_age: Duration,
    /// When set, a latest block older than `max_block_age` is not judged at once: the head is
    /// watched for this long, and a head that stays put is a warning (automining chains only
    /// mine with traffic).
    pub advance_window: Option<Duration>,
}

impl Chain {
    /// The default `max_block_age`: five Ethereum mainnet slots, thirty 2 s blocks.
    pub const DEFAULT_MAX_BLOCK_AGE: Duration = Duration::from_secs(60);
}

#[derive(Debug, Clone)]
pub struct DeploymentService {
    pub url: String,
    pub probe_url: String,
    /// Health path, appended to `probe_url` (default `/health`).
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Postgres {
    pub url: String,
    pub databases: Vec<String>,
    /// Extension: the room the layers' database snapshots need (from their `snapshot`), which
    /// the Postgres check adds to its headroom requirement.
    pub snapshot: SnapshotNeeds,
}

/// Which databases some layer snapshots, by method: a `template` snapshot takes its size again
/// on the server's data directory, a `dump` at most its size under `dump_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotNeeds {
    pub template: Vec<String>,
    pub dump: Vec<String>,
    /// `state_dir/snapshots`.
    pub dump_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Redis {
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Pccs {
    pub url: String,
    pub path: String,
    pub trust: PccsTrust,
}

/// How the PCCS certificate is trusted. Exactly one is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PccsTrust {
    /// SHA-256 of the leaf certificate's DER. Works with the version 1 self-signed
    /// certificates the usual PCCS set-up produces.
    Pin([u8; 32]),
    /// A PEM file of trusted certificates.
    CaFile(PathBuf),
    /// Accept any certificate: loud in every output.
    Insecure,
}

#[derive(Debug, Clone)]
pub struct Aesm {
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Headroom {
    pub disk: Vec<DiskHeadroom>,
    pub database: Option<DatabaseHeadroom>,
}

#[derive(Debug, Clone)]
pub struct DiskHeadroom {
    pub path: PathBuf,
    pub min_free_bytes: Option<u64>,
    pub min_free_percent: Option<f64>,
    pub min_free_inodes_percent: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DatabaseHeadroom {
    pub max_growth_during_window: u64,
}

#[derive(Debug, Clone)]
pub struct Readiness {
    pub name: String,
    pub url: String,
    pub expect: Vec<Expect>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// An RFC 6901 JSON pointer.
    pub pointer: String,
    pub check: Expectation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    Equals(serde_json::Value),
    OneOf(Vec<serde_json::Value>),
    Present(bool),
    Type(JsonType),
}

/// A JSON type, as expectations and the alert contract name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    Null,
    Boolean,
    Number,
    Integer,
    String,
    Array,
    Object,
}

impl JsonType {
    pub fn parse(s: &str) -> Option<JsonType> {
        Some(match s {
            "null" => JsonType::Null,
            "boolean" | "bool" => JsonType::Boolean,
            "number" => JsonType::Number,
            "integer" => JsonType::Integer,
            "string" => JsonType::String,
            "array" => JsonType::Array,
            "object" => JsonType::Object,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    /// The type of a value (`Integer` for whole numbers, `Number` otherwise).
    pub fn of(v: &serde_json::Value) -> JsonType {
        match v {
            serde_json::Value::Null => JsonType::Null,
            serde_json::Value::Bool(_) => JsonType::Boolean,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            serde_json::Value::Number(_) => JsonType::Number,
            serde_json::Value::String(_) => JsonType::String,
            serde_json::Value::Array(_) => JsonType::Array,
            serde_json::Value::Object(_) => JsonType::Object,
        }
    }

    /// Whether `v` has this type (an integer is also a number).
    pub fn matches(self, v: &serde_json::Value) -> bool {
        let t = JsonType::of(v);
        t == self || (self == JsonType::Number && t == JsonType::Integer)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub encryption_key: Option<EncryptionKeyProbe>,
    pub mark_price: Option<MarkPriceProbe>,
}

#[derive(Debug, Clone)]
pub struct EncryptionKeyProbe {
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct MarkPriceProbe {
    pub url: String,
    pub symbols: Vec<String>,
    /// JSON pointer template with `{symbol}`.
    pub price_pointer: String,
    pub timestamp_pointer: String,
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct Progression {
    pub name: String,
    pub url: String,
    pub pointer: String,
    pub mode: ProgressionMode,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressionMode {
    /// The value is a number (or a numeric string) that must increase.
    Increases,
    /// Any change of the value counts.
    Changes,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub pointers: Vec<String>,
    /// Validated regular expressions.
    pub log_patterns: Vec<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Alerts {
    pub fields: Vec<String>,
    pub rules_files: Vec<PathBuf>,
    pub url: Option<String>,
    pub metrics_urls: Vec<String>,
}

/// The operator's Prometheus HTTP API (`/api/v1/query`).
#[derive(Debug, Clone)]
pub struct Prometheus {
    /// Base URL (`http://127.0.0.1:9090`, or with a path prefix); basic auth in its user info.
    pub url: String,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// This node's alerts (all must match); empty: no `alerts` gate.
    pub alert_selectors: Vec<LabelMatcher>,
}

/// The operator's Alertmanager: with `silence`, a silence with `matchers` covers the restart
/// and the verify window of every rollout (never the bake).
#[derive(Debug, Clone)]
pub struct Alertmanager {
    pub url: String,
    pub silence: bool,
    pub matchers: Vec<LabelMatcher>,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// A label matcher as Prometheus and Alertmanager write it: `name="v"`, `name!="v"`,
/// `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual")]
    pub is_equal: bool,
}

impl std::fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl std::str::FromStr for LabelMatcher {
    type Err = String;

    fn from_str(s: &str) -> Result<LabelMatcher, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}` is not a label matcher: expected name=\"value\" (or !=, =~, !~ with a quoted value)"
            )
        };
        let at = s.find(['=', '!']).ok_or_else(bad)?;
        let name = s[..at].trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(bad());
        }
        let rest = &s[at..];
        let (is_equal, is_regex, quoted) = if let Some(r) = rest.strip_prefix("=~") {
            (true, true, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (false, true, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (false, false, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (true, false, r)
        } else {
            return Err(bad());
        };
        let quoted = quoted.trim();
        let value = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .filter(|v| !v.contains('"'))
            .ok_or_else(bad)?;
        Ok(LabelMatcher {
            name: name.to_string(),
            value: value.to_string(),
            is_regex,
            is_equal,
        })
    }
}

/// One analysis gate (see [`crate::analysis`]): `query` measured every `interval` once the
/// node is ready, each sample judged by `success`.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub name: String,
    pub query: String,
    pub success: crate::analysis::Comparison,
    pub interval: Duration,
    /// Failed measurements tolerated; one more fails the gate (Argo's `failureLimit`, default 0).
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated; one more makes the gate inconclusive (recorded,
    /// not a rollback; default 0).
    pub inconclusive_limit: u32,
    /// How a measurement without data (no series, only NaN, Prometheus unavailable) counts
    /// (default `fail`).
    pub no_data: NoDataPolicy,
}

#[derive(Debug, Clone)]
pub enum Runtime {
    Compose(ComposeRuntime),
    Command(CommandRuntime),
}

impl Runtime {
    pub fn driver_name(&self) -> &'static str {
        match self {
            Runtime::Compose(_) => "compose",
            Runtime::Command(_) => "command",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ComposeRuntime {
    pub project_dir: PathBuf,
    /// Relative to `project_dir` unless absolute. Never edited by rollgate.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    /// `docker compose` or `docker-compose`; `None` means detect.
    pub command: Option<String>,
    /// Variables of rollgate's environment `docker` also gets.
    pub env: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CommandRuntime {
    /// Shell commands run with `sh -c`; not `${VAR}`-expanded, so the shell sees them as written.
    pub current: String,
    pub apply: String,
    pub restart: String,
    pub logs: Option<String>,
    /// Stop and start `$ROLLGATE_COMPONENTS` around a database snapshot or restore.
    pub stop: Option<String>,
    pub start: Option<String>,
    pub timeout: Duration,
    /// Variables of rollgate's environment the commands also get.
    pub env: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    /// The Compose service or process name.
    pub service: String,
    /// The readiness entry covering this component.
    pub readiness: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    /// The restart set of a change to this layer.
    pub components: Vec<String>,
    /// The files a `config` layer owns, absolute (relative ones are resolved against the
    /// configuration file's directory). Empty: the runtime driver changes the layer itself.
    pub files: Vec<PathBuf>,
    /// Extension: the databases snapshotted before a change to this layer (`snapshot = […]`).
    pub snapshot: Option<SnapshotPlan>,
}

/// `snapshot` and `snapshot_method` of a layer: what is saved before its change and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPlan {
    /// Names from `[dependencies.postgres] databases`.
    pub databases: Vec<String>,
    pub method: SnapshotMethod,
}

/// How a database snapshot is taken and restored. A closed set chosen in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMethod {
    /// `CREATE DATABASE snap TEMPLATE db STRATEGY FILE_COPY`: a file copy on the same server
    /// (PostgreSQL 15+); needs the database idle, which it is while the components are stopped.
    Template,
    /// `pg_dump -Fc` to a file under `state_dir`, `pg_restore --clean`: any server, slower.
    Dump,
}

impl SnapshotMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMethod::Template => "template",
            SnapshotMethod::Dump => "dump",
        }
    }
}

/// What to do when the baseline itself did not progress (an idle localnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdlePolicy {
    Fail,
    Inconclusive,
    Pass,
}

impl IdlePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            IdlePolicy::Fail => "fail",
            IdlePolicy::Inconclusive => "inconclusive",
            IdlePolicy::Pass => "pass",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RolloutPolicy {
    pub readiness_deadline: Duration,
    pub bake: Duration,
    pub idle_progression: IdlePolicy,
    /// How long the baseline's progression is sampled (default: the longest progression window).
    pub baseline_window: Duration,
    pub poll_interval: Duration,
    /// Readiness must hold this long after it turned green before a promotion (default: the
    /// longest progression window), so a version that crashes or degrades soon after its first
    /// green answer is not promoted.
    pub min_healthy: Duration,
    /// How long a promoted rollout's database snapshots are kept (`rollgate snapshot prune`).
    pub snapshot_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct ProbeLimits {
    pub timeout: Duration,
    pub max_body: u64,
}

/// What happens when a bake signal has too few samples to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    Pass,
    Inconclusive,
    Fail,
}

#[derive(Debug, Clone)]
pub struct BakePolicy {
    pub sample_interval: Duration,
    pub min_samples: usize,
    /// Median latency after / before above which latency is degraded (default 3.0).
    pub max_latency_ratio: f64,
    /// Significance level of the latency test (default 0.01).
    pub significance: f64,
    /// Progression rate after / before below which progression is degraded (default 0.5).
    pub min_progression_ratio: f64,
    /// Storage growth rate after / before above which storage is degraded (default 3.0).
    pub max_storage_growth_ratio: f64,
    /// Fraction of failed or 421/503 probes tolerated during the bake (default 0.05).
    pub max_error_rate: f64,
    pub max_restarts: u32,
    pub max_memory_growth_ratio: f64,
    /// Fail when disk or database headroom is projected to run out within this horizon.
    pub headroom_horizon: Duration,
    pub no_data: NoDataPolicy,
}

#[derive(Debug, Clone, Default)]
pub struct Serve {
    pub listen: Option<String>,
    /// The bearer token for endpoints that change something. Never printed.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub webhook_url: Option<String>,
    /// The bearer token for the endpoints that read. Never printed.
    pub read_token: Option<String>,
    pub read_token_file: Option<PathBuf>,
    /// `Host` names accepted besides localhost, 127.0.0.1, [::1] and the listen address.
    pub allowed_hosts: Vec<String>,
}

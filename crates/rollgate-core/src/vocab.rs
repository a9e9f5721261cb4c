//! The nouns every crate shares: runtime modes, layer kinds, check and gate results, outcomes.
//!
//! The serialized forms of [`CheckResult`], [`GateResult`] and [`Outcome`] are part of the JSON
//! contract in product.md ("JSON output"); field names are snake_case.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How the node is run, which fixes the URLs its dependencies must have (domain.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Canonical host-local mode: dependencies on 127.0.0.1.
    #[serde(rename = "localnet.loopback")]
    LocalnetLoopback,
    /// Canonical Compose-network mode: dependencies by service name (`ethereum`, `deployment-service`).
    #[serde(rename = "localnet.compose")]
    LocalnetCompose,
    /// Diagnostic only: never a target to roll out in.
    #[serde(rename = "host")]
    Host,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::LocalnetLoopback, Mode::LocalnetCompose, Mode::Host];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::LocalnetLoopback => "localnet.loopback",
            Mode::LocalnetCompose => "localnet.compose",
            Mode::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The canonical chain JSON-RPC URL of this mode, when it has one.
    pub fn canonical_chain_url(self) -> Option<&'static str> {
        match self {
            Mode::LocalnetLoopback => Some("http://127.0.0.1:8545"),
            Mode::LocalnetCompose => Some("http://ethereum:8545"),
            Mode::Host => None,
        }
    }

    /// The canonical deployment-service URL of this mode, when it has one.
    pub fn canonical_deployment_url(self) -> Option<&'static str> {
        match self {
            Mode::LocalnetLoopback => Some("http://127.0.0.1:4040"),
            Mode::LocalnetCompose => Some("http://deployment-service:4040"),
            Mode::Host => None,
        }
    }

    /// Which mode a dependency URL belongs to, judged by its host: loopback hosts are
    /// `localnet.loopback`, the Compose service names are `localnet.compose`, anything else is
    /// `host`. Ports are not judged, so tests may use ephemeral ports on loopback.
    pub fn of_url(url: &str) -> Mode {
        let host = url_host(url).to_ascii_lowercase();
        match host.as_str() {
            "127.0.0.1" | "localhost" | "::1" | "[::1]" => Mode::LocalnetLoopback,
            h if h.starts_with("127.") => Mode::LocalnetLoopback,
            "ethereum" | "deployment-service" => Mode::LocalnetCompose,
            _ => Mode::Host,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of a URL, without user info or port. Text-based; never fails.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if hostport.starts_with('[') {
        return hostport
            .split(']')
            .next()
            .map(|h| &hostport[..h.len() + 1])
            .unwrap_or(hostport);
    }
    hostport.split(':').next().unwrap_or(hostport)
}

/// What kind of artifact a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// A container image reference; its value is recorded with the resolved digest.
    Image,
    /// A binary path or version; its value is recorded with the file's hash when it is a path.
    Binary,
    /// A configuration file; its value is recorded with the file's hash.
    Config,
    /// Environment overrides of Compose services (`KEY=VALUE,…`), written to the override file
    /// the compose driver owns; its value is the stored set's hash.
    Env,
}

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Image => "image",
            LayerKind::Binary => "binary",
            LayerKind::Config => "config",
            LayerKind::Env => "env",
        }
    }

    /// Software layers may not be bundled with configuration in one change.
    pub fn is_software(self) -> bool {
        matches!(self, LayerKind::Image | LayerKind::Binary)
    }
}

/// The result of one check (`rollgate check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Skip,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Skip => "skip",
            CheckStatus::Fail => "fail",
        }
    }
}

/// Which group a check belongs to (`rollgate check --group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckGroup {
    /// Dependencies and headroom: step 2.
    Prerequisites,
    /// Operator and KYC readiness, probes and progression: step 4.
    Readiness,
    /// Environment checks that decide whether a baseline may be frozen: step 1.
    Baseline,
}

impl CheckGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckGroup::Prerequisites => "prerequisites",
            CheckGroup::Readiness => "readiness",
            CheckGroup::Baseline => "baseline",
        }
    }
}

/// One check's result, as printed by `rollgate check --format json`:
///
/// ```json
/// {"name": "postgres", "group": "prerequisites", "status": "pass",
///  "detail": "2 databases, 41 MiB", "latency_ms": 3, "observed": {"databases": {"node0": 1234}}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub group: CheckGroup,
    pub status: CheckStatus,
    pub detail: String,
    pub latency_ms: u64,
    /// What the check measured, for evidence and baselines. `null` when nothing was observed.
    #[serde(default)]
    pub observed: serde_json::Value,
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One gate's recorded decision: the gate, the verdict, the measured value against the
/// threshold in `detail`, and the raw evidence.
///
/// ```json
/// {"name": "progression:requestIndex", "verdict": "fail",
///  "detail": "requestIndex did not increase in 10s (stayed at 118); baseline rate 4.1/s",
///  "evidence": {"samples": [[0, 118], [10000, 118]], "baseline_rate_per_s": 4.1}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    #[serde(default)]
    pub evidence: serde_json::Value,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    RollbackFailed,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_of_url_judges_the_host() {
        assert_eq!(
            Mode::of_url("http://127.0.0.1:8545"),
            Mode::LocalnetLoopback
        );
        assert_eq!(
            Mode::of_url("http://localhost:41234/x"),
            Mode::LocalnetLoopback
        );
        assert_eq!(
            Mode::of_url("http://user:pw@ethereum:8545"),
            Mode::LocalnetCompose
        );
        assert_eq!(
            Mode::of_url("http://deployment-service:4040"),
            Mode::LocalnetCompose
        );
        assert_eq!(Mode::of_url("https://rpc.example.org"), Mode::Host);
        assert_eq!(Mode::of_url("http://[::1]:8545"), Mode::LocalnetLoopback);
    }

    #[test]
    fn outcome_names_match_json() {
        for o in [
            Outcome::Promoted,
            Outcome::RolledBack,
            Outcome::RollbackFailed,
            Outcome::Refused,
        ] {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(o.as_str().into())
            );
        }
    }
}

//! The catalogue of simulated versions. Each operator and KYC version string selects one
//! behaviour; the strings are a contract shared with the images (`rollgate-sim/operator:<version>`),
//! the localnet version files and other crates' tests, so they never change once published.

use std::fmt;
use std::str::FromStr;

use crate::errors::SimError;

/// Behaviour of the simulated operator, selected by its version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorVersion {
    /// `v1.0.0`: the healthy baseline.
    V1_0_0,
    /// `v1.1.0`: healthy, a good upgrade.
    V1_1_0,
    /// `v1.1.0-slow-start`: answers 421 and reports `Starting` for a while, then healthy.
    SlowStart,
    /// `v1.1.0-crash-loop`: exits non-zero about a second after start.
    CrashLoop,
    /// `v1.1.0-stall-request`: healthy, but `lastRequest.requestIndex` never advances.
    StallRequest,
    /// `v1.1.0-stall-tx`: healthy, `requestIndex` advances but `lastTx` never changes.
    StallTx,
    /// `v1.1.0-attestation-fault`: `attestation.fault` non-null, logs "attestation failed: …".
    AttestationFault,
    /// `v1.1.0-registration-fault`: `registration.fault` non-null, logs "registration rejected: …".
    RegistrationFault,
    /// `v1.1.0-renamed-field`: `raftMetrics.voterIds` renamed to `voters`, `lastTx` a number.
    RenamedField,
    /// `v1.1.0-slow`: every endpoint about 8x slower (+40 ms).
    Slow,
    /// `v1.1.0-bloat`: writes about 30x more bytes to Postgres per request.
    Bloat,
    /// `v1.1.0-sgx-debug`: enclave artifacts built with `SGX_DEBUG=1`.
    SgxDebug,
    /// `v1.1.0-migrate-schema`: migrates the database (adds `operator_requests.schema_v2` and
    /// writes rows with it), then `lastTx` never changes: a progression gate fails after the
    /// migration. Every other version refuses a database with that column (health `Degraded`),
    /// so only a restored database lets the baseline come back.
    MigrateSchema,
    /// `v1.1.0-errors`: healthy by its status, but counts an internal error for every request
    /// in `operator_errors_total` (only Prometheus sees it: an analysis gate's case).
    Errors,
    /// `v1.1.0-renamed-metric`: healthy, but exports `operator_requests_total` as
    /// `operator_requests_sequenced_total` (a rule over the old name returns nothing).
    RenamedMetric,
    /// `v1.1.0-lagging` (cluster mode): applies the cluster's entries 200 behind the commit index.
    Lagging,
    /// `v1.1.0-leaves-voters` (cluster mode): removes itself from the voter set.
    LeavesVoters,
    /// `v1.1.0-no-leader`: never sees a leader (`leaderId` null, applies nothing, does not count
    /// for quorum).
    NoLeader,
}

impl OperatorVersion {
    /// Every operator version, baseline first.
    pub const ALL: [OperatorVersion; 18] = [
        OperatorVersion::V1_0_0,
        OperatorVersion::V1_1_0,
        OperatorVersion::SlowStart,
        OperatorVersion::CrashLoop,
        OperatorVersion::StallRequest,
        OperatorVersion::StallTx,
        OperatorVersion::AttestationFault,
        OperatorVersion::RegistrationFault,
        OperatorVersion::RenamedField,
        OperatorVersion::Slow,
        OperatorVersion::Bloat,
        OperatorVersion::SgxDebug,
        OperatorVersion::MigrateSchema,
        OperatorVersion::Errors,
        OperatorVersion::RenamedMetric,
        OperatorVersion::Lagging,
        OperatorVersion::LeavesVoters,
        OperatorVersion::NoLeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorVersion::V1_0_0 => "v1.0.0",
            OperatorVersion::V1_1_0 => "v1.1.0",
            OperatorVersion::SlowStart => "v1.1.0-slow-start",
            OperatorVersion::CrashLoop => "v1.1.0-crash-loop",
            OperatorVersion::StallRequest => "v1.1.0-stall-request",
            OperatorVersion::StallTx => "v1.1.0-stall-tx",
            OperatorVersion::AttestationFault => "v1.1.0-attestation-fault",
            OperatorVersion::RegistrationFault => "v1.1.0-registration-fault",
            OperatorVersion::RenamedField => "v1.1.0-renamed-field",
            OperatorVersion::Slow => "v1.1.0-slow",
            OperatorVersion::Bloat => "v1.1.0-bloat",
            OperatorVersion::SgxDebug => "v1.1.0-sgx-debug",
            OperatorVersion::MigrateSchema => "v1.1.0-migrate-schema",
            OperatorVersion::Errors => "v1.1.0-errors",
            OperatorVersion::RenamedMetric => "v1.1.0-renamed-metric",
            OperatorVersion::Lagging => "v1.1.0-lagging",
            OperatorVersion::LeavesVoters => "v1.1.0-leaves-voters",
            OperatorVersion::NoLeader => "v1.1.0-no-leader",
        }
    }

    /// One line on what the version does, for `rollgate-sim versions` and the docs.
    pub fn behaviour(self) -> &'static str {
        match self {
            OperatorVersion::V1_0_0 => "healthy baseline",
            OperatorVersion::V1_1_0 => "healthy, a good upgrade",
            OperatorVersion::SlowStart => {
                "421 NotAcceptingRequests and health Starting for --slow-start (5s), then healthy"
            }
            OperatorVersion::CrashLoop => "exits with status 1 about 1s after start",
            OperatorVersion::StallRequest => "healthy, lastRequest.requestIndex never advances",
            OperatorVersion::StallTx => "healthy, requestIndex advances, lastTx never changes",
            OperatorVersion::AttestationFault => {
                "attestation.fault non-null; logs \"attestation failed: ...\" to stderr"
            }
            OperatorVersion::RegistrationFault => {
                "registration.fault non-null; logs \"registration rejected: ...\" to stderr"
            }
            OperatorVersion::RenamedField => {
                "raftMetrics.voterIds renamed to raftMetrics.voters; lastTx is a number"
            }
            OperatorVersion::Slow => "every endpoint about 8x slower (+40ms)",
            OperatorVersion::Bloat => "writes about 30x more bytes to Postgres per request",
            OperatorVersion::SgxDebug => {
                "writes enclave/build-flags.env with SGX_DEBUG=1 SGX_PRERELEASE=0 (runtime flags unchanged)"
            }
            OperatorVersion::MigrateSchema => {
                "adds operator_requests.schema_v2 and writes rows with it (older versions refuse \
                 that schema: health Degraded); lastTx never changes"
            }
            OperatorVersion::Errors => {
                "healthy status, but operator_errors_total counts one error per request (/metrics)"
            }
            OperatorVersion::RenamedMetric => {
                "healthy, but /metrics exports operator_requests_total as operator_requests_sequenced_total"
            }
            OperatorVersion::Lagging => {
                "cluster mode: applies entries 200 behind the commit index (alone: as v1.1.0)"
            }
            OperatorVersion::LeavesVoters => {
                "cluster mode: removes itself from the voter set (alone: as v1.1.0)"
            }
            OperatorVersion::NoLeader => {
                "never sees a leader: leaderId null, requestIndex stands still, not counted for quorum"
            }
        }
    }

    /// Whether the enclave artifacts of this version were built as a debug enclave.
    pub fn sgx_debug_build(self) -> bool {
        self == OperatorVersion::SgxDebug
    }
}

/// Behaviour of the simulated KYC service, selected by its version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KycVersion {
    /// `v1.0.0`: healthy baseline.
    V1_0_0,
    /// `v1.1.0`: healthy upgrade.
    V1_1_0,
    /// `v1.1.0-unhealthy`: serves, but `isHealthy` is false.
    Unhealthy,
    /// `v1.1.0-crash-loop`: exits non-zero about a second after start.
    CrashLoop,
}

impl KycVersion {
    pub const ALL: [KycVersion; 4] = [
        KycVersion::V1_0_0,
        KycVersion::V1_1_0,
        KycVersion::Unhealthy,
        KycVersion::CrashLoop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KycVersion::V1_0_0 => "v1.0.0",
            KycVersion::V1_1_0 => "v1.1.0",
            KycVersion::Unhealthy => "v1.1.0-unhealthy",
            KycVersion::CrashLoop => "v1.1.0-crash-loop",
        }
    }

    pub fn behaviour(self) -> &'static str {
        match self {
            KycVersion::V1_0_0 => "healthy baseline",
            KycVersion::V1_1_0 => "healthy, a good upgrade",
            KycVersion::Unhealthy => "serves, but isHealthy is false",
            KycVersion::CrashLoop => "exits with status 1 about 1s after start",
        }
    }
}

/// Accepts a bare version (`v1.1.0`) or an image reference whose tag is the version
/// (`rollgate-sim/operator:v1.1.0`), so a layer value can be passed through unchanged.
pub fn version_of(value: &str) -> &str {
    let value = value.trim();
    match value.rsplit_once(':') {
        // A `host:port/name` registry prefix has a '/' after the colon: not a tag.
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => value,
    }
}

fn unknown(
    component: &'static str,
    s: &str,
    known: impl Iterator<Item = &'static str>,
) -> SimError {
    SimError::UnknownVersion {
        component,
        version: s.to_owned(),
        known: known.collect::<Vec<_>>().join(", "),
    }
}

impl FromStr for OperatorVersion {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = version_of(s);
        OperatorVersion::ALL
            .into_iter()
            .find(|x| x.as_str() == v)
            .ok_or_else(|| {
                unknown(
                    "operator",
                    s,
                    OperatorVersion::ALL.iter().map(|v| v.as_str()),
                )
            })
    }
}

impl FromStr for KycVersion {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = version_of(s);
        KycVersion::ALL
            .into_iter()
            .find(|x| x.as_str() == v)
            .ok_or_else(|| unknown("kyc", s, KycVersion::ALL.iter().map(|v| v.as_str())))
    }
}

impl fmt::Display for OperatorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for KycVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_round_trips() {
        for v in OperatorVersion::ALL {
            assert_eq!(v.as_str().parse::<OperatorVersion>().unwrap(), v);
        }
        for v in KycVersion::ALL {
            assert_eq!(v.as_str().parse::<KycVersion>().unwrap(), v);
        }
    }

    #[test]
    fn image_references_select_their_tag() {
        assert_eq!(
            "rollgate-sim/operator:v1.1.0-slow"
                .parse::<OperatorVersion>()
                .unwrap(),
            OperatorVersion::Slow
        );
        assert_eq!(
            version_of("localhost:5000/sim/operator"),
            "localhost:5000/sim/operator"
        );
        assert!("v9".parse::<OperatorVersion>().is_err());
    }
}

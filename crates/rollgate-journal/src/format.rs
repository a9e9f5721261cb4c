//! The persisted forms: what a row of each table holds, and the conversion to the API types.
//!
//! Kept apart from [`crate::model`] so the code can evolve without silently changing the file:
//! a change here is a schema change (bump [`crate::schema::SCHEMA_VERSION`], add a migration).
//! JSON columns are written compact; every string in them has been through the redactor.

use rollgate_core::baseline::{Baseline, LayerValue};
use rollgate_core::vocab::{Outcome, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::JournalError;

/// The `body` column of `baselines`: a format number and the baseline document.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PersistedBaseline {
    /// 1: `baseline` is [`Baseline`] as serialized by rollgate-core.
    pub format: u32,
    pub baseline: Value,
}

impl PersistedBaseline {
    pub fn decode(&self, id: &str) -> Result<Baseline, JournalError> {
        serde_json::from_value(self.baseline.clone()).map_err(|source| JournalError::Format {
            what: format!("baseline {id}"),
            source,
        })
    }
}

/// Outcome names as stored in `rollouts.outcome`.
pub(crate) fn outcome_to_db(o: Outcome) -> &'static str {
    o.as_str()
}

pub(crate) fn outcome_from_db(s: &str) -> Option<Outcome> {
    Some(match s {
        "promoted" => Outcome::Promoted,
        "rolled_back" => Outcome::RolledBack,
        "rollback_failed" => Outcome::RollbackFailed,
        "refused" => Outcome::Refused,
        _ => return None,
    })
}

pub(crate) fn verdict_from_db(s: &str) -> Verdict {
    match s {
        "pass" => Verdict::Pass,
        "fail" => Verdict::Fail,
        _ => Verdict::Inconclusive,
    }
}

/// A JSON column; a malformed value is a format error naming what it was.
pub(crate) fn json_col(
    text: Option<String>,
    what: impl FnOnce() -> String,
) -> Result<Option<Value>, JournalError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|source| JournalError::Format {
            what: what(),
            source,
        })
    })
    .transpose()
}

pub(crate) fn layer_value_col(
    text: Option<String>,
    what: impl FnOnce() -> String,
) -> Result<Option<LayerValue>, JournalError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|source| JournalError::Format {
            what: what(),
            source,
        })
    })
    .transpose()
}

//! `rollgate snapshot prune`: drop the snapshots whose retention has passed (also run after
//! every promotion), or the ones named.

use serde::Serialize;

use super::*;
use crate::errors::RunnerError;
use crate::journal::JournalHandle;

/// What a prune did, as `rollgate snapshot prune --format json` prints it:
///
/// ```json
/// {"dropped": ["rgsnap_node0_r20261201t210100z1a2b"], "kept": 2,
///  "failed": [{"id": "rgsnap_kyc_r20261130t080000z0c1d", "error": "DROP DATABASE … failed …"}]}
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dropped: Vec<String>,
    /// Snapshots still kept (not expired, or held).
    pub kept: usize,
    pub failed: Vec<PruneFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneFailure {
    pub id: String,
    pub error: String,
}

/// Drop every expired snapshot, or exactly those in `ids` (whatever their state, but never one
/// whose rollout is still unfinished: a resume may need it). Each drop is journaled once done;
/// a failure is reported and the rest go on.
pub async fn prune(
    config: &Config,
    journal: &JournalHandle,
    ids: &[String],
) -> Result<PruneReport, RunnerError> {
    let retention = config.rollout.snapshot_retention;
    let all = journal.call(move |j| j.list_snapshots(retention)).await?;
    for id in ids {
        match all.iter().find(|s| &s.id == id) {
            None => return Err(RunnerError::NotFound(format!("no snapshot `{id}`"))),
            Some(s) if s.rollout_outcome.is_none() => {
                return Err(RunnerError::Busy(format!(
                    "snapshot `{id}` belongs to rollout {} which is not finished: `rollgate resume` first",
                    s.rollout_id
                )));
            }
            Some(_) => {}
        }
    }
    let mut report = PruneReport::default();
    for s in &all {
        if s.state == "dropped" {
            continue;
        }
        let chosen = if ids.is_empty() {
            s.is_expired()
        } else {
            ids.contains(&s.id)
        };
        if !chosen {
            report.kept += 1;
            continue;
        }
        let Some(target) = Target::of_record(s) else {
            report.failed.push(PruneFailure {
                id: s.id.clone(),
                error: format!("unknown method `{}`", s.method),
            });
            continue;
        };
        match remove(config, &target).await {
            Ok(()) => {
                let id = s.id.clone();
                journal.call(move |j| j.snapshot_dropped(&id)).await?;
                report.dropped.push(s.id.clone());
            }
            Err(e) => report.failed.push(PruneFailure {
                id: s.id.clone(),
                error: rollgate_core::secrets::scrub(&rollgate_probe::errors::chain(&e))
                    .into_owned(),
            }),
        }
    }
    Ok(report)
}

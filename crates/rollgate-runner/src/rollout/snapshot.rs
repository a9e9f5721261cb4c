//! The database snapshot of a layer that migrates (`snapshot = [...]` on the layer): taken
//! between the frozen baseline and the change with the layer's components stopped, restored at
//! the start of the way back with them stopped again.
//!
//! Journal boundaries: the `snapshot` step (intent: the snapshots about to be taken, each also
//! a row of the `snapshots` table before it is begun; outcome: their sizes) and the
//! `rollback_restore_data` step. Crash-safety follows from three rules:
//! - once the `snapshot` intent is written the node has changed (its components may be
//!   stopped): any way out of the rollout goes through the rollback, which starts them again;
//! - the data is restored only when the new version may have run, i.e. the rollout's
//!   `restart` intent was written (before that the database still holds the baseline's rows,
//!   and a snapshot a crash cut short must not replace them);
//! - every action is idempotent (taking drops a half-made snapshot first, restoring drops
//!   and recreates), so resume redoes the step a crash interrupted.

use super::*;
use crate::snapshot::{self, Target};

impl Runner {
    /// The snapshots of a change to `layer` in rollout `rollout_id` (none without `snapshot`).
    pub(super) fn snapshot_targets(&self, layer: &Layer, rollout_id: &str) -> Vec<Target> {
        let Some(plan) = &layer.snapshot else {
            return vec![];
        };
        plan.databases
            .iter()
            .map(|db| Target::new(&self.config, rollout_id, db, plan.method))
            .collect()
    }

    /// Stop the layer's components and snapshot its databases. `Ok(Some(reason))` when that
    /// failed: the caller rolls back (which starts the components again).
    pub(super) async fn take_snapshots(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        baseline: &Baseline,
        components: &[Component],
        timings: &mut Timings,
    ) -> Result<Option<String>, RunnerError> {
        let targets = self.snapshot_targets(layer, &rec.rollout_id);
        if targets.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let s = rec
            .intent(
                step::SNAPSHOT,
                json!({
                    "components": components.iter().map(|c| &c.name).collect::<Vec<_>>(),
                    "snapshots": targets.iter().map(|t| json!({"id": t.id, "database": t.database, "method": t.method.as_str(), "location": t.location})).collect::<Vec<_>>(),
                }),
            )
            .await?;
        let rows: Vec<_> = targets
            .iter()
            .map(|t| t.record(&rec.rollout_id, &baseline.id))
            .collect();
        self.journal
            .call(move |j| {
                for r in &rows {
                    j.begin_snapshot(r)?;
                }
                Ok(())
            })
            .await?;
        let failure = match self.driver.stop(components).await {
            Err(e) => Some(format!(
                "stop before the snapshot failed: {}",
                rollgate_probe::errors::chain(&e)
            )),
            Ok(_) => {
                let mut failure = None;
                let mut sizes = Vec::new();
                for t in &targets {
                    match snapshot::take(&self.config, t).await {
                        Ok(size) => {
                            let id = t.id.clone();
                            self.journal
                                .call(move |j| j.snapshot_taken(&id, size))
                                .await?;
                            sizes.push(
                                json!({"id": t.id, "database": t.database, "size_bytes": size}),
                            );
                        }
                        Err(e) => {
                            failure = Some(format!(
                                "snapshot of database {} ({}) failed: {}",
                                t.database,
                                t.method.as_str(),
                                rollgate_core::secrets::scrub(&rollgate_probe::errors::chain(&e))
                            ));
                            break;
                        }
                    }
                }
                if failure.is_none() {
                    timings.snapshot = Some(started.elapsed().as_millis() as u64);
                    rec.outcome(
                        step::SNAPSHOT,
                        s,
                        true,
                        json!({"summary": format!("snapshot of {} taken ({})", targets.iter().map(|t| t.database.as_str()).collect::<Vec<_>>().join(", "), targets[0].method.as_str()), "snapshots": sizes}),
                    )
                    .await?;
                    return Ok(None);
                }
                failure
            }
        };
        let reason = failure.unwrap_or_default();
        rec.outcome(step::SNAPSHOT, s, false, json!({"summary": reason}))
            .await?;
        Ok(Some(reason))
    }

    /// On the way back: when the rollout snapshotted databases and the new version may have
    /// run, stop the components and restore the data. `Some(reason)` when the restore failed
    /// (the components are then left stopped: the baseline's version must not start on data it
    /// may not understand).
    pub(super) async fn restore_snapshots(
        &self,
        rec: &mut Recorder,
        components: &[Component],
    ) -> Option<String> {
        let id = rec.rollout_id.clone();
        let retention = self.config.rollout.snapshot_retention;
        let found = self
            .journal
            .call(move |j| {
                let steps = j.rollout(&id)?.map(|d| d.steps).unwrap_or_default();
                let ran = steps.iter().any(|s| s.kind == step::RESTART);
                Ok((ran, j.snapshots_of(&id, retention)?))
            })
            .await;
        let (ran, records) = match found {
            Ok(v) => v,
            Err(e) => {
                rec.soft(Err::<(), _>(e));
                return Some("cannot read the rollout's snapshots from the journal".into());
            }
        };
        if records.is_empty() || !ran {
            return None;
        }
        let targets: Vec<Target> = records.iter().filter_map(Target::of_record).collect();
        let s = rec
            .soft_intent(
                step::ROLLBACK_RESTORE_DATA,
                json!({"snapshots": records.iter().map(|r| json!({"id": r.id, "database": r.database, "method": r.method})).collect::<Vec<_>>()}),
            )
            .await;
        let mut failure = None;
        if let Some(r) = records.iter().find(|r| r.taken_at.is_none()) {
            failure = Some(format!(
                "snapshot {} of {} was never completed: the database cannot be restored",
                r.id, r.database
            ));
        } else if let Err(e) = self.driver.stop(components).await {
            failure = Some(format!(
                "stop before the restore failed: {}",
                rollgate_probe::errors::chain(&e)
            ));
        } else {
            for t in &targets {
                if let Err(e) = snapshot::restore(&self.config, t).await {
                    failure = Some(format!(
                        "restore of database {} from {} failed: {}",
                        t.database,
                        t.id,
                        rollgate_core::secrets::scrub(&rollgate_probe::errors::chain(&e))
                    ));
                    break;
                }
            }
        }
        let summary = failure.clone().unwrap_or_else(|| {
            format!(
                "restored {} from the snapshot",
                targets
                    .iter()
                    .map(|t| t.database.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        rec.soft_outcome(
            step::ROLLBACK_RESTORE_DATA,
            s,
            failure.is_none(),
            json!({"summary": summary}),
        )
        .await;
        failure
    }

    /// The rollout's snapshots, for its report.
    pub(super) async fn attach_snapshots(&self, result: &mut Result<RolloutReport, RunnerError>) {
        let Ok(report) = result else { return };
        let id = report.rollout_id.clone();
        let retention = self.config.rollout.snapshot_retention;
        if let Ok(s) = self
            .journal
            .call(move |j| j.snapshots_of(&id, retention))
            .await
        {
            report.snapshots = s;
        }
    }

    /// After a promotion: drop the snapshots whose retention has passed. A failure is logged,
    /// never fails the rollout (`rollgate snapshot prune` retries).
    pub(super) async fn prune_after_promotion(&self, result: &Result<RolloutReport, RunnerError>) {
        if !matches!(result, Ok(r) if r.outcome == Outcome::Promoted) {
            return;
        }
        match snapshot::prune(&self.config, &self.journal, &[]).await {
            Ok(r) => {
                for f in &r.failed {
                    tracing::warn!(snapshot = %f.id, "prune failed: {}", f.error);
                }
            }
            Err(e) => tracing::warn!(
                "snapshot prune failed: {}",
                rollgate_probe::errors::chain(&e)
            ),
        }
    }
}

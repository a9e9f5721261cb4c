//! Database snapshots in the journal (schema 2): one row per database saved before a layer
//! change, written *before* the snapshot is taken (so a crash leaves a row to clean up, never
//! an unknown database or file), completed when it is taken, and marked dropped by
//! `rollgate snapshot prune`. How long one is kept is policy, not data: `keep_until` is its
//! rollout's finish plus the configured `snapshot_retention`, computed when read, so changing
//! the retention applies to every snapshot. Rows are never deleted: the history of what was
//! saved, and where, stays readable.

use std::time::{Duration, SystemTime};

use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use crate::errors::JournalError;
use crate::journal::Journal;

/// A snapshot about to be taken.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSnapshot {
    pub id: String,
    pub rollout_id: String,
    pub baseline_id: Option<String>,
    pub database: String,
    /// `template` or `dump`.
    pub method: String,
    /// The snapshot database's name (template) or the dump file's path (dump).
    pub location: String,
}

/// One snapshot as `rollgate snapshot list --format json` prints it:
///
/// ```json
/// {"id": "rgsnap_node0_r20261201t2101z1a2b", "rollout_id": "r-20261201T210100Z-1a2b",
///  "baseline_id": "b-20261201T210102Z-77f0", "database": "node0", "method": "template",
///  "location": "rgsnap_node0_r20261201t2101z1a2b", "size_bytes": 104857600,
///  "created_at": "2026-12-01T21:01:05.120Z", "taken_at": "2026-12-01T21:01:05.912Z",
///  "keep_until": "2026-12-08T21:02:10Z", "dropped_at": null, "rollout_outcome": "promoted",
///  "state": "kept"}
/// ```
///
/// `state` is `taking` (begun, not known complete, its rollout unfinished), `held` (its rollout
/// is not finished, or ended `rollback_failed`: kept for the operator until dropped by hand with
/// `rollgate snapshot prune --id`), `kept` (until `keep_until`), `expired` (past it, or an
/// incomplete one of a finished rollout: the next prune drops it) or `dropped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub rollout_id: String,
    pub baseline_id: Option<String>,
    pub database: String,
    pub method: String,
    pub location: String,
    pub size_bytes: Option<u64>,
    pub created_at: String,
    pub taken_at: Option<String>,
    pub keep_until: Option<String>,
    pub dropped_at: Option<String>,
    /// How its rollout ended (`null` while it runs or was interrupted).
    pub rollout_outcome: Option<String>,
    pub state: String,
}

impl SnapshotRecord {
    fn from_row(
        r: &Row<'_>,
        now: SystemTime,
        retention: Duration,
    ) -> rusqlite::Result<SnapshotRecord> {
        let finished_at: Option<String> = r.get(10)?;
        let outcome: Option<String> = r.get(11)?;
        let keep_until = finished_at
            .as_deref()
            .filter(|_| outcome.as_deref() != Some("rollback_failed"))
            .and_then(|f| humantime::parse_rfc3339_weak(f).ok())
            .map(|f| f + retention);
        let mut s = SnapshotRecord {
            id: r.get(0)?,
            rollout_id: r.get(1)?,
            baseline_id: r.get(2)?,
            database: r.get(3)?,
            method: r.get(4)?,
            location: r.get(5)?,
            size_bytes: r.get::<_, Option<i64>>(6)?.map(|n| n.max(0) as u64),
            created_at: r.get(7)?,
            taken_at: r.get(8)?,
            keep_until: keep_until.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            dropped_at: r.get(9)?,
            rollout_outcome: outcome.clone(),
            state: String::new(),
        };
        s.state = match (&s.dropped_at, &s.taken_at, keep_until) {
            (Some(_), _, _) => "dropped",
            (None, None, None) if finished_at.is_none() => "taking",
            (None, _, None) => "held",
            (None, None, Some(_)) => "expired",
            (None, Some(_), Some(until)) if until <= now => "expired",
            (None, Some(_), Some(_)) => "kept",
        }
        .to_string();
        Ok(s)
    }

    /// Whether `rollgate snapshot prune` may drop it now: past its `keep_until`, not dropped.
    pub fn is_expired(&self) -> bool {
        self.state == "expired"
    }
}

const COLUMNS: &str = "s.id, s.rollout_id, s.baseline_id, s.database, s.method, s.location, \
                       s.size_bytes, s.created_at, s.taken_at, s.dropped_at, r.finished_at, \
                       r.outcome FROM snapshots s JOIN rollouts r ON r.id = s.rollout_id";

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl Journal {
    /// Record a snapshot before it is taken (its intent).
    pub fn begin_snapshot(&mut self, s: &NewSnapshot) -> Result<(), JournalError> {
        let location = self.text(&s.location);
        self.conn.execute(
            "INSERT INTO snapshots (id, rollout_id, baseline_id, database, method, location, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT(id) DO NOTHING",
            params![
                s.id,
                s.rollout_id,
                s.baseline_id,
                s.database,
                s.method,
                location,
                now()
            ],
        )?;
        Ok(())
    }

    /// The snapshot is complete: `size_bytes` on disk (or in the server).
    pub fn snapshot_taken(&mut self, id: &str, size_bytes: u64) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE snapshots SET taken_at = ?2, size_bytes = ?3 WHERE id = ?1",
            params![id, now(), size_bytes as i64],
        )?;
        Ok(())
    }

    /// The snapshot is gone (dropped by prune, or found missing).
    pub fn snapshot_dropped(&mut self, id: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE snapshots SET dropped_at = ?2 WHERE id = ?1 AND dropped_at IS NULL",
            params![id, now()],
        )?;
        Ok(())
    }

    /// Every snapshot, newest first; a finished rollout's are kept for `retention`.
    pub fn list_snapshots(&self, retention: Duration) -> Result<Vec<SnapshotRecord>, JournalError> {
        let now = SystemTime::now();
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} ORDER BY s.seq DESC"))?;
        let rows = stmt
            .query_map([], |r| SnapshotRecord::from_row(r, now, retention))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The snapshots of one rollout, in the order they were begun.
    pub fn snapshots_of(
        &self,
        rollout_id: &str,
        retention: Duration,
    ) -> Result<Vec<SnapshotRecord>, JournalError> {
        let now = SystemTime::now();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} WHERE s.rollout_id = ?1 ORDER BY s.seq"
        ))?;
        let rows = stmt
            .query_map([rollout_id], |r| {
                SnapshotRecord::from_row(r, now, retention)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

//! The journal database: open and migrate, write intents and outcomes, rebuild the state.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rollgate_core::baseline::Baseline;
use rollgate_core::vocab::{GateResult, Outcome};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use crate::errors::JournalError;
use crate::format::{
    PersistedBaseline, json_col, layer_value_col, outcome_from_db, outcome_to_db, verdict_from_db,
};
use crate::model::*;
use crate::redact::Redactor;
use crate::schema::{MIGRATIONS, SCHEMA_VERSION};

/// The database file inside `state_dir`.
pub const FILE_NAME: &str = "journal.sqlite";

/// Driver output beyond this many bytes per stream keeps only its tail: errors are at the end,
/// and the journal must not grow without bound because a child was chatty.
pub const MAX_STORED_OUTPUT: usize = 64 * 1024;

/// The SQLite journal. See the crate docs for the guarantees.
#[derive(Debug)]
pub struct Journal {
    pub(crate) conn: Connection,
    path: PathBuf,
    redactor: Redactor,
}

/// How long opening the journal retries a "busy" answer from SQLite.
const BUSY_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Run `f` again while SQLite answers "busy", for at most [`BUSY_RETRY_FOR`].
fn while_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_RETRY_FOR => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Journal {
    /// Open (creating when missing) `<state_dir>/journal.sqlite`, bringing its schema up to
    /// date. The directory is created mode 0700, the file kept at mode 0600.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        let dir_err = |source| JournalError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        };
        if !state_dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(dir_err)?;
        }
        let path = state_dir.join(FILE_NAME);
        // Create the file ourselves so it never exists with the umask's mode; SQLite gives the
        // -wal and -shm files the database file's mode.
        let file_err = |source| JournalError::StateDir {
            path: path.clone(),
            source,
        };
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(file_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;

        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL keeps readers (status, serve) off the writer's back; FULL fsyncs every commit so
        // an intent that was reported written survives a power cut.
        // (A filesystem without shared memory keeps the rollback journal; that still works,
        // only with readers blocking the writer, so the answer is not checked.)
        // Switching to WAL and the first migration can meet another process doing the same on a
        // fresh file; SQLite then answers "busy" without its busy handler. Retried, bounded.
        let _mode: String =
            while_busy(|| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let mut journal = Journal {
            conn,
            path,
            redactor: Redactor::default(),
        };
        let started = std::time::Instant::now();
        loop {
            match journal.migrate() {
                Err(JournalError::Sqlite(e))
                    if is_busy(&e) && started.elapsed() < BUSY_RETRY_FOR =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(journal)
    }

    /// Use this redactor for everything written from now on (see [`Redactor::for_config`]).
    pub fn with_redactor(mut self, redactor: Redactor) -> Journal {
        self.redactor = redactor;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u32, JournalError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Bring the schema up to date. The version is read inside a write transaction taken up
    /// front (`BEGIN IMMEDIATE`), so two processes opening a fresh journal at once (a rollout
    /// and `rollgate status`) cannot both run the same migration: the second waits, then finds
    /// the schema current.
    fn migrate(&mut self) -> Result<(), JournalError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.execute_batch(m.sql)?;
            tx.pragma_update(None, "user_version", m.version)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn text(&self, s: &str) -> String {
        self.redactor.text(s)
    }

    fn json(&self, v: &Value) -> String {
        self.redactor.json(v).to_string()
    }

    // ----- baselines -------------------------------------------------------------------------

    /// Store a baseline. Baselines are immutable: an existing id is an error.
    pub fn insert_baseline(&mut self, baseline: &Baseline) -> Result<(), JournalError> {
        let value = serde_json::to_value(baseline).map_err(|source| JournalError::Format {
            what: format!("baseline {}", baseline.id),
            source,
        })?;
        let body = PersistedBaseline {
            format: 1,
            baseline: self.redactor.json(&value),
        };
        let body = serde_json::to_string(&body).map_err(|source| JournalError::Format {
            what: format!("baseline {}", baseline.id),
            source,
        })?;
        let res = self.conn.execute(
            "INSERT INTO baselines (id, node, created_at, body) VALUES (?1, ?2, ?3, ?4)",
            params![
                baseline.id,
                self.text(&baseline.node),
                baseline.created_at,
                body
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(JournalError::BaselineExists(baseline.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn baseline(&self, id: &str) -> Result<Option<Baseline>, JournalError> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM baselines WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(body) = body else { return Ok(None) };
        let p: PersistedBaseline =
            serde_json::from_str(&body).map_err(|source| JournalError::Format {
                what: format!("baseline {id}"),
                source,
            })?;
        p.decode(id).map(Some)
    }

    /// Every baseline, newest first, with its known-good mark.
    pub fn list_baselines(&self) -> Result<Vec<BaselineSummary>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT b.id, b.node, b.created_at, b.body, (SELECT MAX(at) FROM promotions p WHERE p.baseline_id = b.id)
             FROM baselines b ORDER BY b.seq DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, node, created_at, body, known_good_at) = row?;
            out.push(summary(id, node, created_at, &body, known_good_at)?);
        }
        Ok(out)
    }

    /// Mark a baseline known-good (a promotion or a verified rollback). Recorded apart from the
    /// baseline, which stays immutable.
    pub fn mark_known_good(&mut self, id: &str) -> Result<(), JournalError> {
        if !self.baseline_exists(id)? {
            return Err(JournalError::NoBaseline(id.to_string()));
        }
        self.conn.execute(
            "INSERT INTO promotions (baseline_id, at) VALUES (?1, ?2)",
            params![id, now()],
        )?;
        Ok(())
    }

    /// The baseline most recently marked known-good.
    pub fn last_known_good(&self) -> Result<Option<Baseline>, JournalError> {
        match self.last_known_good_summary()? {
            Some(s) => self.baseline(&s.id),
            None => Ok(None),
        }
    }

    fn last_known_good_summary(&self) -> Result<Option<BaselineSummary>, JournalError> {
        let row = self
            .conn
            .query_row(
                "SELECT b.id, b.node, b.created_at, b.body, p.at FROM promotions p JOIN baselines b ON b.id = p.baseline_id
                 ORDER BY p.seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?)),
            )
            .optional()?;
        row.map(|(id, node, created_at, body, at)| summary(id, node, created_at, &body, at))
            .transpose()
    }

    fn baseline_exists(&self, id: &str) -> Result<bool, JournalError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM baselines WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }

    // ----- rollouts ----------------------------------------------------------------------------

    /// Start a rollout. Refused while another rollout is unfinished: it must be resumed first.
    pub fn begin_rollout(&mut self, new: &NewRollout) -> Result<(), JournalError> {
        let from = new
            .from
            .as_ref()
            .map(|f| serde_json::to_value(f).map(|v| self.json(&v)))
            .transpose()
            .map_err(|source| JournalError::Format {
                what: "from".into(),
                source,
            })?;
        let to = self.text(&new.to);
        let plan = new.plan.as_ref().map(|p| self.json(p));
        let tx = self.conn.transaction()?;
        let unfinished: Option<String> = tx
            .query_row(
                "SELECT id FROM rollouts WHERE finished_at IS NULL ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = unfinished {
            return Err(JournalError::Unfinished(id));
        }
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM rollouts WHERE id = ?1)",
            [&new.id],
            |r| r.get(0),
        )?;
        if exists {
            return Err(JournalError::RolloutExists(new.id.clone()));
        }
        if let Some(b) = &new.baseline_id {
            let known: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM baselines WHERE id = ?1)",
                [b],
                |r| r.get(0),
            )?;
            if !known {
                return Err(JournalError::NoBaseline(b.clone()));
            }
        }
        tx.execute(
            "INSERT INTO rollouts (id, layer, from_value, to_value, baseline_id, started_at, plan) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.id,
                new.layer,
                from,
                to,
                new.baseline_id,
                new.started_at,
                plan,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record the baseline a rollout started from (frozen after `begin_rollout`).
    pub fn set_baseline(
        &mut self,
        rollout_id: &str,
        baseline_id: &str,
    ) -> Result<(), JournalError> {
        self.require_open_rollout(rollout_id)?;
        if !self.baseline_exists(baseline_id)? {
            return Err(JournalError::NoBaseline(baseline_id.to_string()));
        }
        self.conn.execute(
            "UPDATE rollouts SET baseline_id = ?2 WHERE id = ?1",
            params![rollout_id, baseline_id],
        )?;
        Ok(())
    }

    /// Write what is about to be done, before doing it. Committed (and fsynced) on return.
    pub fn record_intent(
        &mut self,
        rollout_id: &str,
        kind: &str,
        detail: Value,
    ) -> Result<StepId, JournalError> {
        self.require_open_rollout(rollout_id)?;
        self.conn.execute(
            "INSERT INTO steps (rollout_id, kind, intent, intent_at) VALUES (?1, ?2, ?3, ?4)",
            params![rollout_id, kind, self.json(&detail), now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Write how a step ended. Each step has exactly one outcome.
    pub fn record_outcome(
        &mut self,
        step: StepId,
        ok: bool,
        detail: Value,
    ) -> Result<(), JournalError> {
        let has: Option<Option<i64>> = self
            .conn
            .query_row("SELECT ok FROM steps WHERE id = ?1", [step], |r| r.get(0))
            .optional()?;
        match has {
            None => return Err(JournalError::NoStep(step)),
            Some(Some(_)) => return Err(JournalError::OutcomeRecorded(step)),
            Some(None) => {}
        }
        self.conn.execute(
            "UPDATE steps SET ok = ?2, outcome = ?3, outcome_at = ?4 WHERE id = ?1",
            params![step, ok, self.json(&detail), now()],
        )?;
        Ok(())
    }

    /// Store a child's output beside its step. `output` is the runtime's `DriverOutput` (or
    /// anything serializing to the same fields, see [`DriverOutputRecord`]).
    pub fn record_driver_output(
        &mut self,
        step: StepId,
        output: &impl Serialize,
    ) -> Result<(), JournalError> {
        let fmt = |source| JournalError::Format {
            what: "driver output".into(),
            source,
        };
        let rec: DriverOutputRecord =
            serde_json::from_value(serde_json::to_value(output).map_err(fmt)?).map_err(fmt)?;
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM steps WHERE id = ?1)",
            [step],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(JournalError::NoStep(step));
        }
        self.conn.execute(
            "INSERT INTO driver_outputs (step_id, command, stdout, stderr, exit_code, duration_ms, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                step,
                self.text(&rec.command),
                self.text(&tail(&rec.stdout)),
                self.text(&tail(&rec.stderr)),
                rec.exit_code,
                i64::try_from(rec.duration_ms).unwrap_or(i64::MAX),
                now()
            ],
        )?;
        Ok(())
    }

    /// Store a gate verdict with its evidence.
    pub fn record_gate(&mut self, rollout_id: &str, gate: &GateResult) -> Result<(), JournalError> {
        self.require_rollout(rollout_id)?;
        self.conn.execute(
            "INSERT INTO gates (rollout_id, name, verdict, detail, evidence, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rollout_id, self.text(&gate.name), gate.verdict.as_str(), self.text(&gate.detail), self.json(&gate.evidence), now()],
        )?;
        Ok(())
    }

    /// End a rollout with its outcome and the reason (the deciding gate, or why it was refused).
    pub fn finish_rollout(
        &mut self,
        rollout_id: &str,
        outcome: Outcome,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.require_open_rollout(rollout_id)?;
        self.conn.execute(
            "UPDATE rollouts SET finished_at = ?2, outcome = ?3, reason = ?4 WHERE id = ?1",
            params![rollout_id, now(), outcome_to_db(outcome), self.text(reason)],
        )?;
        Ok(())
    }

    fn require_rollout(&self, id: &str) -> Result<bool, JournalError> {
        let finished: Option<bool> = self
            .conn
            .query_row(
                "SELECT finished_at IS NOT NULL FROM rollouts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        finished.ok_or_else(|| JournalError::NoRollout(id.to_string()))
    }

    fn require_open_rollout(&self, id: &str) -> Result<(), JournalError> {
        if self.require_rollout(id)? {
            return Err(JournalError::Finished(id.to_string()));
        }
        Ok(())
    }

    // ----- reading -----------------------------------------------------------------------------

    /// The state rebuilt from the file: the unfinished rollout and where it stopped, the last
    /// known-good baseline, the last finished rollout.
    pub fn state(&self) -> Result<JournalState, JournalError> {
        let active = self
            .conn
            .query_row(
                "SELECT id, layer, from_value, to_value, baseline_id, started_at FROM rollouts WHERE finished_at IS NULL ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?, r.get::<_, String>(5)?)),
            )
            .optional()?;
        let active = match active {
            None => None,
            Some((rollout_id, layer, from, to, baseline_id, started_at)) => {
                let steps: u32 = self.conn.query_row(
                    "SELECT COUNT(*) FROM steps WHERE rollout_id = ?1",
                    [&rollout_id],
                    |r| r.get(0),
                )?;
                let last = self
                    .conn
                    .query_row(
                        "SELECT id, kind, intent, intent_at, ok FROM steps WHERE rollout_id = ?1 ORDER BY id DESC LIMIT 1",
                        [&rollout_id],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<bool>>(4)?)),
                    )
                    .optional()?;
                let last_step = last
                    .map(
                        |(id, kind, intent, intent_at, ok)| -> Result<StepSummary, JournalError> {
                            Ok(StepSummary {
                                step_id: id,
                                kind,
                                intent: json_col(Some(intent), || format!("step {id} intent"))?
                                    .unwrap_or(Value::Null),
                                intent_at,
                                outcome_recorded: ok.is_some(),
                                ok,
                            })
                        },
                    )
                    .transpose()?;
                let from = layer_value_col(from, || format!("rollout {rollout_id} from"))?;
                Some(UnfinishedRollout {
                    rollout_id,
                    layer,
                    from,
                    to,
                    baseline_id,
                    started_at,
                    steps,
                    last_step,
                })
            }
        };
        let last_finished = self
            .history_query("WHERE finished_at IS NOT NULL", 1)?
            .into_iter()
            .next();
        Ok(JournalState {
            schema_version: self.schema_version()?,
            interrupted: active,
            last_known_good: self.last_known_good_summary()?,
            last_finished,
        })
    }

    /// The latest `limit` rollouts, newest first.
    /// (`History::from` it for the JSON document.)
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, JournalError> {
        self.history_query("", limit)
    }

    fn history_query(&self, filter: &str, limit: usize) -> Result<Vec<HistoryEntry>, JournalError> {
        let sql = format!(
            "SELECT id, started_at, layer, from_value, to_value, outcome, finished_at, baseline_id FROM rollouts {filter} ORDER BY seq DESC LIMIT ?1"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rollout_id, started_at, layer, from, to, outcome, finished_at, baseline_id) = row?;
            let from =
                layer_value_col(from, || format!("rollout {rollout_id} from"))?.map(|f| f.value);
            out.push(HistoryEntry {
                rollout_id,
                started_at,
                layer,
                from,
                to,
                outcome: outcome.as_deref().and_then(outcome_from_db),
                finished_at,
                baseline_id,
            });
        }
        Ok(out)
    }

    /// Everything recorded about one rollout, for `rollgate show`.
    pub fn rollout(&self, id: &str) -> Result<Option<RolloutDetail>, JournalError> {
        let head = self
            .conn
            .query_row(
                "SELECT layer, from_value, to_value, baseline_id, started_at, finished_at, outcome, reason, plan FROM rollouts WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                },
            )
            .optional()?;
        let Some((layer, from, to, baseline_id, started_at, finished_at, outcome, reason, plan)) =
            head
        else {
            return Ok(None);
        };
        let mut steps = Vec::new();
        {
            let mut stmt = self.conn.prepare("SELECT id, kind, intent, intent_at, ok, outcome, outcome_at FROM steps WHERE rollout_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<bool>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            for row in rows {
                let (sid, kind, intent, intent_at, ok, outcome, outcome_at) = row?;
                steps.push(StepRecord {
                    step_id: sid,
                    kind,
                    intent: json_col(Some(intent), || format!("step {sid} intent"))?
                        .unwrap_or(Value::Null),
                    intent_at,
                    ok,
                    outcome: json_col(outcome, || format!("step {sid} outcome"))?,
                    outcome_at,
                    driver_outputs: self.driver_outputs(sid)?,
                });
            }
        }
        let mut gates = Vec::new();
        {
            let mut stmt = self.conn.prepare("SELECT name, verdict, detail, evidence, at FROM gates WHERE rollout_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            for row in rows {
                let (name, verdict, detail, evidence, at) = row?;
                let evidence = json_col(Some(evidence), || format!("gate {name} evidence"))?
                    .unwrap_or(Value::Null);
                gates.push(GateRecord {
                    name,
                    verdict: verdict_from_db(&verdict),
                    detail,
                    evidence,
                    at,
                });
            }
        }
        Ok(Some(RolloutDetail {
            rollout_id: id.to_string(),
            layer,
            from: layer_value_col(from, || format!("rollout {id} from"))?,
            to,
            baseline_id,
            started_at,
            finished_at,
            outcome: outcome.as_deref().and_then(outcome_from_db),
            reason,
            plan: json_col(plan, || format!("rollout {id} plan"))?,
            steps,
            gates,
        }))
    }

    fn driver_outputs(&self, step: StepId) -> Result<Vec<DriverOutputRecord>, JournalError> {
        let mut stmt = self.conn.prepare("SELECT command, stdout, stderr, exit_code, duration_ms FROM driver_outputs WHERE step_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([step], driver_output_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn driver_output_row(r: &Row<'_>) -> rusqlite::Result<DriverOutputRecord> {
    Ok(DriverOutputRecord {
        command: r.get(0)?,
        stdout: r.get(1)?,
        stderr: r.get(2)?,
        exit_code: r.get(3)?,
        duration_ms: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
    })
}

fn summary(
    id: String,
    node: String,
    created_at: String,
    body: &str,
    known_good_at: Option<String>,
) -> Result<BaselineSummary, JournalError> {
    let p: PersistedBaseline =
        serde_json::from_str(body).map_err(|source| JournalError::Format {
            what: format!("baseline {id}"),
            source,
        })?;
    let mode = p.baseline.get("mode").cloned().unwrap_or(Value::Null);
    let mode = serde_json::from_value(mode).map_err(|source| JournalError::Format {
        what: format!("baseline {id} mode"),
        source,
    })?;
    Ok(BaselineSummary {
        id,
        node,
        created_at,
        mode,
        known_good: known_good_at.is_some(),
        known_good_at,
    })
}

/// The last [`MAX_STORED_OUTPUT`] bytes, cut at a character boundary, with a note of the cut.
fn tail(s: &str) -> String {
    if s.len() <= MAX_STORED_OUTPUT {
        return s.to_string();
    }
    let mut start = s.len() - MAX_STORED_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes omitted …]\n{}", &s[start..])
}

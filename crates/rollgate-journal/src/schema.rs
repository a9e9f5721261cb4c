//! The journal's schema and its migrations.
//!
//! The version lives in SQLite's `user_version`. Each migration moves the file from
//! `version - 1` to `version` inside one transaction; a file newer than [`SCHEMA_VERSION`] is
//! refused, never modified.
//!
//! Changelog of [`SCHEMA_VERSION`]:
//! - **1**: baselines (immutable, enforced by triggers), promotions (known-good marks),
//!   rollouts, steps (intent + outcome), gates, driver outputs.
//! - **2**: snapshots (database snapshots taken before a layer change: where they are, the
//!   rollout and baseline they belong to, when they were taken and dropped).

/// The schema version this build writes. Bump it with a new entry in [`MIGRATIONS`] and in
/// the changelog above; never edit a released migration.
pub const SCHEMA_VERSION: u32 = 2;

/// One step of the schema history.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: V1,
    },
    Migration {
        version: 2,
        sql: V2,
    },
];

const V2: &str = r#"
CREATE TABLE snapshots (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,   -- the snapshot database's name, or the dump file's stem
    rollout_id  TEXT NOT NULL REFERENCES rollouts(id),
    baseline_id TEXT REFERENCES baselines(id),
    database    TEXT NOT NULL,          -- the database it saves
    method      TEXT NOT NULL,          -- template | dump
    location    TEXT NOT NULL,          -- a database name (template) or a file path (dump)
    size_bytes  INTEGER,                -- NULL until taken
    created_at  TEXT NOT NULL,          -- when it was begun
    taken_at    TEXT,                   -- NULL: begun, not (known to be) complete
    dropped_at  TEXT
);
CREATE INDEX snapshots_by_rollout ON snapshots(rollout_id, seq);
"#;

const V1: &str = r#"
CREATE TABLE baselines (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    node       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body       TEXT NOT NULL            -- format::PersistedBaseline as JSON
);
CREATE TRIGGER baselines_immutable BEFORE UPDATE ON baselines
BEGIN SELECT RAISE(ABORT, 'baselines are immutable'); END;
CREATE TRIGGER baselines_kept BEFORE DELETE ON baselines
BEGIN SELECT RAISE(ABORT, 'baselines are never deleted'); END;

CREATE TABLE promotions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    baseline_id TEXT NOT NULL REFERENCES baselines(id),
    at          TEXT NOT NULL
);

CREATE TABLE rollouts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    layer       TEXT NOT NULL,
    from_value  TEXT,                   -- LayerValue as JSON
    to_value    TEXT NOT NULL,
    baseline_id TEXT REFERENCES baselines(id),
    started_at  TEXT NOT NULL,
    plan        TEXT,                   -- JSON
    finished_at TEXT,
    outcome     TEXT,                   -- promoted | rolled_back | rollback_failed | refused
    reason      TEXT
);

CREATE TABLE steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    kind       TEXT NOT NULL,
    intent     TEXT NOT NULL,           -- JSON, written before the action
    intent_at  TEXT NOT NULL,
    ok         INTEGER,                 -- NULL until the outcome is written
    outcome    TEXT,                    -- JSON
    outcome_at TEXT
);
CREATE INDEX steps_by_rollout ON steps(rollout_id, id);

CREATE TABLE gates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    name       TEXT NOT NULL,
    verdict    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    evidence   TEXT NOT NULL,           -- JSON
    at         TEXT NOT NULL
);
CREATE INDEX gates_by_rollout ON gates(rollout_id, id);

CREATE TABLE driver_outputs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id     INTEGER NOT NULL REFERENCES steps(id),
    command     TEXT NOT NULL,
    stdout      TEXT NOT NULL,
    stderr      TEXT NOT NULL,
    exit_code   INTEGER,
    duration_ms INTEGER NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX driver_outputs_by_step ON driver_outputs(step_id, id);
"#;

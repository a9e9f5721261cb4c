//! Opening, permissions and migrations.

use std::os::unix::fs::PermissionsExt;

use rollgate_journal::{Journal, JournalError, SCHEMA_VERSION};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn migrates_an_empty_file_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // An empty file (as left by a crash right after creation) is a database at version 0.
    std::fs::write(state.join("journal.sqlite"), b"").unwrap();
    let j = Journal::open(&state).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(j.state().unwrap().interrupted.is_none());
    drop(j);
    let j = Journal::open(&state).unwrap();
    assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
    let conn = rusqlite::Connection::open(state.join("journal.sqlite")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "baselines",
            "driver_outputs",
            "gates",
            "promotions",
            "rollouts",
            "snapshots",
            "steps"
        ]
    );
}

/// A version-1 journal (before snapshots) is migrated to version 2 in place, its rows kept.
#[test]
fn a_version_1_journal_gains_the_snapshots_table() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut j = Journal::open(&state).unwrap();
    j.insert_baseline(&crate::support::baseline("b1")).unwrap();
    drop(j);
    // Back to what a version-1 build left behind.
    let conn = rusqlite::Connection::open(state.join("journal.sqlite")).unwrap();
    conn.execute_batch("DROP TABLE snapshots; PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let j = Journal::open(&state).unwrap();
    assert_eq!(j.schema_version().unwrap(), 2);
    assert!(j.baseline("b1").unwrap().is_some(), "the baseline survived");
    assert!(
        j.list_snapshots(std::time::Duration::from_secs(60))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn creates_private_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/b/state");
    let mut j = Journal::open(&state).unwrap();
    j.insert_baseline(&crate::support::baseline("b1")).unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("journal.sqlite")), 0o600);
    assert_eq!(mode(&state.join("journal.sqlite-wal")), 0o600);
}

#[test]
fn tightens_a_loose_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.sqlite"), b"").unwrap();
    std::fs::set_permissions(
        dir.path().join("journal.sqlite"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    Journal::open(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("journal.sqlite")), 0o600);
}

#[test]
fn refuses_a_newer_schema_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Journal::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, JournalError::TooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    let conn = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let v: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1);
}

/// Two processes opening a fresh journal at once (a rollout and `rollgate status`) must both
/// succeed: only one of them runs the migrations.
#[test]
fn concurrent_first_opens_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let (state, barrier) = (state.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Journal::open(&state).map(|j| j.schema_version().unwrap())
                })
            })
            .collect();
        for h in opens {
            match h.join().unwrap() {
                Ok(v) => assert_eq!(v, SCHEMA_VERSION),
                Err(e) => panic!("round {round}: a concurrent first open failed: {e:?}"),
            }
        }
    }
}

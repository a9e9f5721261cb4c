//! Database snapshots for layers that migrate (issue 13), on the simulated node and the real
//! Postgres: `v1.1.0-migrate-schema` adds a column to the operator's table, writes rows with it
//! and then fails a progression gate; every other version refuses a database with that column.
//! Without `snapshot` the rollback cannot be verified (exit 5); with it, of either method, the
//! node is back on the baseline with the baseline's rows (exit 4). Crashes at the new journal
//! boundaries (`snapshot`, `rollback_restore_data`) are resumed to the same end.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

const MIGRATES: &str = "v1.1.0-migrate-schema";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The first column of the first row of `sql` on the operator's database, as text.
pub(crate) fn sql(node: &Node, query: &str) -> Option<String> {
    sql_at(&node.operator_database().1, query)
}

/// The first column of the first row of `sql` on the database at `url`, as text.
pub(crate) fn sql_at(url: &str, query: &str) -> Option<String> {
    runtime().block_on(async {
        let c = rollgate_sim::db::connect_pg(url, Duration::from_secs(10))
            .await
            .expect("connect to the operator's database");
        let rows = c.simple_query(query).await.expect(query);
        rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    })
}

/// Whether the migration's column exists: the database is the migrated one.
fn migrated(node: &Node) -> bool {
    sql(
        node,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'operator_requests' \
         AND column_name = 'schema_v2'",
    )
    .as_deref()
        != Some("0")
}

/// A node whose operator layer snapshots the operator's database with `method` (or none).
fn node(method: Option<&str>) -> Option<Node> {
    let node = Node::start(NodeOptions {
        window: "2s",
        ..NodeOptions::default()
    })?;
    if let Some(method) = method {
        let (db, _) = node.operator_database();
        node.edit_config(
            "[layers.operator-image]\nkind = \"image\"\ncomponents = [\"operator\"]\n",
            &format!(
                "[layers.operator-image]\nkind = \"image\"\ncomponents = [\"operator\"]\n\
                 snapshot = [\"{db}\"]\nsnapshot_method = \"{method}\"\n"
            ),
        );
    }
    Some(node)
}

/// Drop every snapshot this node took (the shared server keeps no test leftovers).
fn cleanup(node: &Node) {
    let (_, list) = node.run(&["snapshot", "list"]);
    for s in list["snapshots"].as_array().cloned().unwrap_or_default() {
        if s["state"] != "dropped" {
            let id = s["id"].as_str().unwrap().to_string();
            let (out, _) = node.run(&["snapshot", "prune", "--id", &id]);
            assert_eq!(code(&out), 0, "{}", explain(&out));
        }
    }
}

/// The baseline's rows are back: no migrated column, no row of the migrating version, and the
/// rows the baseline wrote before the change are all there.
fn assert_baseline_data(node: &Node, rows_before: i64) {
    assert!(!migrated(node), "the migrated schema is still there");
    let old: i64 = sql(
        node,
        "SELECT count(*) FROM operator_requests WHERE version = 'v1.0.0'",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        old >= rows_before,
        "baseline rows lost: {old} < {rows_before}"
    );
    let theirs = sql(
        node,
        &format!("SELECT count(*) FROM operator_requests WHERE version = '{MIGRATES}'"),
    );
    assert_eq!(theirs.as_deref(), Some("0"));
}

fn baseline_rows(node: &Node) -> i64 {
    sql(node, "SELECT count(*) FROM operator_requests")
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_migrating_version_without_a_snapshot_cannot_be_rolled_back_verified() {
    let Some(node) = node(None) else { return };
    let (_, plan) = node.run(&["plan", &format!("operator-image={MIGRATES}")]);
    assert!(plan["snapshot"].is_null(), "{plan:#}");
    let (out, record) = node.run(&["rollout", &format!("operator-image={MIGRATES}"), "--yes"]);
    assert_eq!(code(&out), 5, "{}", explain(&out));
    assert_eq!(record["outcome"], "rollback_failed", "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    assert!(migrated(&node), "nothing restored the data");
    let why = record["rollback"]["reason"].as_str().unwrap_or_default();
    assert!(why.contains("readiness:operator"), "{record:#}");
}

fn rolled_back_with(method: &str) {
    let Some(node) = node(Some(method)) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(1));
    assert_plan_shows_snapshot(&node, method);
    let before = baseline_rows(&node);
    let (out, record) = node.run(&["rollout", &format!("operator-image={MIGRATES}"), "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    assert_baseline_data(&node, before);
    let kinds = step_kinds(&record);
    assert!(
        kinds.contains(&"snapshot") && kinds.contains(&"rollback_restore_data"),
        "{kinds:?}"
    );
    let snaps = record["snapshots"].as_array().cloned().unwrap_or_default();
    assert_eq!(snaps.len(), 1, "{record:#}");
    assert_eq!(snaps[0]["method"], method);
    assert!(
        snaps[0]["size_bytes"].as_u64().unwrap_or(0) > 0,
        "{record:#}"
    );
    assert!(
        record["timings_ms"]["snapshot"].as_u64().is_some(),
        "{record:#}"
    );
    if method == "dump" {
        use std::os::unix::fs::PermissionsExt;
        let path = snaps[0]["location"].as_str().unwrap();
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
    }
    cleanup(&node);
}

/// `plan` says, before the rollout, which database is saved, how, its size now and which
/// components are stopped for it; it changes nothing (the human line: `dispatch::plan` tests).
fn assert_plan_shows_snapshot(node: &Node, method: &str) {
    let (db, _) = node.operator_database();
    let change = format!("operator-image={MIGRATES}");
    let (out, plan) = node.run(&["plan", &change]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let snap = &plan["snapshot"];
    assert_eq!(snap["method"], method, "{plan:#}");
    assert_eq!(snap["stops"], serde_json::json!(["operator"]), "{plan:#}");
    assert!(snap["size_error"].is_null(), "{plan:#}");
    assert_eq!(snap["databases"][0]["name"], db.as_str(), "{plan:#}");
    assert!(
        snap["databases"][0]["size_bytes"].as_u64().unwrap_or(0) > 0,
        "{plan:#}"
    );
    // The server unreachable: the plan still says what would be saved, and why no size.
    let out = node
        .rollgate()
        .env(
            "ROLLGATE_TEST_DATABASE_URL",
            "postgres://rollgate:pw-not-shown@127.0.0.1:1/nowhere",
        )
        .args(["plan", &change])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", explain(&out));
    let down: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let snap = &down["snapshot"];
    assert_eq!(snap["method"], method, "{down:#}");
    assert!(snap["databases"][0]["size_bytes"].is_null(), "{down:#}");
    let why = snap["size_error"].as_str().unwrap_or_default();
    assert!(why.contains("127.0.0.1:1"), "{down:#}");
    assert!(!explain(&out).contains("pw-not-shown"), "{}", explain(&out));
    assert!(!migrated(node), "plan changed the database");
    let (_, list) = node.run(&["snapshot", "list"]);
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{list:#}"
    );
}

#[test]
fn a_template_snapshot_brings_back_the_baselines_rows() {
    rolled_back_with("template");
}

#[test]
fn a_dump_snapshot_brings_back_the_baselines_rows() {
    rolled_back_with("dump");
}

/// A session nobody stopped is left on the database: the template snapshot refuses (naming
/// it) rather than terminating a client rollgate does not know, and the rollout rolls back
/// before anything was applied. The database is not restored (the new version never ran, and
/// the snapshot is incomplete): restoring it would fail the rollback (exit 5).
#[test]
fn a_session_left_on_the_database_refuses_the_template_snapshot() {
    let Some(node) = node(Some("template")) else {
        return;
    };
    let (_, url) = node.operator_database();
    let rt = runtime();
    let held = rt
        .block_on(rollgate_sim::db::connect_pg(
            &format!("{url}?application_name=held-by-test"),
            Duration::from_secs(10),
        ))
        .expect("hold a session");
    let (out, record) = node.run(&["rollout", &format!("operator-image={MIGRATES}"), "--yes"]);
    drop(held);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("other session(s) (held-by-test pid"),
        "{record:#}"
    );
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert_eq!(node.current("operator-image"), "v1.0.0");
    assert!(!migrated(&node));
    let kinds = step_kinds(&record);
    assert!(!kinds.contains(&"apply"), "{kinds:?}");
    assert!(!kinds.contains(&"rollback_restore_data"), "{kinds:?}");
    cleanup(&node);
}

/// A good version with a snapshot is promoted; the snapshot is kept, listed, and pruned only
/// when named or expired.
#[test]
fn a_promoted_rollout_keeps_its_snapshot_until_pruned() {
    let Some(node) = node(Some("template")) else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let id = record["snapshots"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(record["snapshots"][0]["state"], "kept", "{record:#}");
    let (out, pruned) = node.run(&["snapshot", "prune"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(pruned["dropped"].as_array().unwrap().len(), 0, "{pruned:#}");
    let (_, status) = node.run(&["status"]);
    assert_eq!(status["snapshots"][0]["id"], id.as_str(), "{status:#}");
    let exists = |node: &Node| {
        sql(
            node,
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{id}'"),
        )
    };
    assert_eq!(exists(&node).as_deref(), Some("1"));
    let (out, pruned) = node.run(&["snapshot", "prune", "--id", &id]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(pruned["dropped"][0], id.as_str(), "{pruned:#}");
    assert_eq!(exists(&node).as_deref(), Some("0"));
    let (_, list) = node.run(&["snapshot", "list"]);
    assert_eq!(list["snapshots"][0]["state"], "dropped", "{list:#}");
}

/// `snapshot_retention = "0s"`: the next promotion drops the previous rollout's snapshot.
#[test]
fn promotions_prune_expired_snapshots() {
    let Some(node) = node(Some("dump")) else {
        return;
    };
    node.edit_config("[rollout]\n", "[rollout]\nsnapshot_retention = \"0s\"\n");
    let (out, first) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let path = first["snapshots"][0]["location"]
        .as_str()
        .unwrap()
        .to_string();
    // Its own promotion already pruned it: retention 0 expires it at the finish.
    assert!(!std::path::Path::new(&path).exists(), "{first:#}");
    let (_, list) = node.run(&["snapshot", "list"]);
    assert_eq!(list["snapshots"][0]["state"], "dropped", "{list:#}");
}

fn crash_then_resume(method: &str, version: &str, at: &str) {
    let Some(node) = node(Some(method)) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(1));
    assert_plan_shows_snapshot(&node, method);
    let before = baseline_rows(&node);
    node.killed_at(
        &["rollout", &format!("operator-image={version}"), "--yes"],
        at,
    );
    let (out, record) = node.run(&["resume"]);
    match record["outcome"].as_str() {
        Some("promoted") => {
            assert_eq!(code(&out), 0, "{}", explain(&out));
            assert_eq!(
                version, "v1.1.0",
                "{at}: only the good version may be promoted"
            );
            assert_eq!(node.current("operator-image"), version);
        }
        Some("rolled_back") => {
            assert_eq!(code(&out), 4, "{at}: {}", explain(&out));
            assert_eq!(node.current("operator-image"), "v1.0.0");
            assert_baseline_data(&node, before);
        }
        other => panic!("{at}: unexpected outcome {other:?}: {}", explain(&out)),
    }
    node.assert_no_active_rollout(at);
    let (_, readiness) = node.run(&["check", "--group", "readiness"]);
    assert_eq!(
        readiness["ok"], true,
        "{at}: the node is not green: {readiness:#}"
    );
    cleanup(&node);
    let _: Value = record;
}

macro_rules! snapshot_crash_tests {
    ($($name:ident: $method:expr, $version:expr, $at:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_then_resume($method, $version, $at);
        }
    )*};
}

snapshot_crash_tests! {
    crash_template_snapshot_intent: "template", MIGRATES, "snapshot:intent";
    crash_template_snapshot_outcome: "template", MIGRATES, "snapshot:outcome";
    crash_template_restore_data_intent: "template", MIGRATES, "rollback_restore_data:intent";
    crash_template_restore_data_outcome: "template", MIGRATES, "rollback_restore_data:outcome";
    crash_dump_snapshot_intent: "dump", MIGRATES, "snapshot:intent";
    crash_dump_snapshot_outcome: "dump", MIGRATES, "snapshot:outcome";
    crash_dump_restore_data_intent: "dump", MIGRATES, "rollback_restore_data:intent";
    crash_dump_restore_data_outcome: "dump", MIGRATES, "rollback_restore_data:outcome";
    crash_promote_path_snapshot_outcome: "template", "v1.1.0", "snapshot:outcome";
}

/// The connection's password reaches `pg_dump`/`pg_restore` through `PGPASSWORD` only: never
/// their command line, never rollgate's output or journal. Wrappers on PATH record each
/// program's arguments and whether the variable was set, then run the real program.
#[test]
fn dump_passwords_travel_in_the_environment_only() {
    let Some(node) = node(Some("dump")) else {
        return;
    };
    const PASSWORD: &str = "s3cr3t-snap-pw";
    let bin = node.dir.path().join("pgbin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = node.dir.path().join("pg-calls.log");
    for program in ["pg_dump", "pg_restore"] {
        let real = ["/usr/bin", "/usr/lib/postgresql/15/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(program))
            .find(|p| p.exists())
            .expect("the PostgreSQL client programs");
        let script = bin.join(program);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"{program} pw=${{PGPASSWORD:+set}} args=$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The test server trusts local connections: any password is accepted, and must be hidden.
    let url = node.database_url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(url.contains(PASSWORD), "{url}");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = node.rollgate();
    cmd.env("ROLLGATE_TEST_DATABASE_URL", &url);
    // `rollgate()` put the simulator's directory first; the wrappers go before it.
    let sim_path = format!(
        "{}:{path}",
        crate::fixture::sim_bin().parent().unwrap().display()
    );
    cmd.env("PATH", sim_path);
    let out = cmd
        .args(["rollout", &format!("operator-image={MIGRATES}"), "--yes"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("pg_dump pw=set args="), "{calls}");
    assert!(calls.contains("pg_restore pw=set args="), "{calls}");
    assert!(
        !calls.contains(PASSWORD),
        "a password on a command line: {calls}"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(PASSWORD), "{text}");
    for file in ["journal.sqlite", "journal.sqlite-wal"] {
        let bytes = std::fs::read(node.dir.path().join("state").join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "the password is in {file}"
        );
    }
    assert!(!migrated(&node));
    cleanup(&node);
}

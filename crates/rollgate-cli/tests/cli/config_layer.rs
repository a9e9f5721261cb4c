//! `config` layers with `files` on the process localnet (command driver): rollgate writes the
//! operator's configuration file itself (the simulated operator reads `config/operator.env` at
//! start), restarts the operator, gates; a bad file is rolled back to the exact bytes, mode and
//! owner; a hand-edited file is refused (exit 3); the deployment metadata and
//! `APP_CONFIG/ethereum` are never touched (exit 2); `plan` shows a masked diff; a crash at
//! every step of a config rollout ends, after `resume`, promoted or on the exact baseline bytes;
//! a config layer with `snapshot` is rolled back with its bytes and its database.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fixture::{Node, NodeOptions, code, explain, step_kinds};

const LAYER: &str = r#"
[layers.operator-config]
kind = "config"
files = ["localnet/config/operator.env"]
components = ["operator"]
"#;

/// The baseline content: a secret and a harmless key, mode 0640.
const BASELINE: &str = "# operator configuration\nOPERATOR_MARK_PRICE=on\nDB_PASSWORD=hunter2-old\nOPERATOR_SLOW_START_MS=100\n";
/// A good change: the secret rotated, a key added.
const GOOD: &str = "# operator configuration\nOPERATOR_MARK_PRICE=on\nDB_PASSWORD=s3cret-new\nOPERATOR_SLOW_START_MS=100\nLOG_LEVEL=debug\n";
/// A bad change: the operator loses its mark prices (readiness fails).
const BAD: &str = "# operator configuration\nOPERATOR_MARK_PRICE=off\nDB_PASSWORD=hunter2-old\nOPERATOR_SLOW_START_MS=100\n";

fn config_node(window: &'static str) -> Option<(Node, PathBuf)> {
    let node = Node::start(NodeOptions {
        window,
        extra: LAYER,
        ..NodeOptions::default()
    })?;
    let file = node.sim_dir.join("config/operator.env");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, BASELINE).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    Some((node, file))
}

/// A new version of the file, outside the node's files.
fn candidate(node: &Node, name: &str, text: &str) -> PathBuf {
    let dir = node.dir.path().join("candidates").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("operator.env");
    std::fs::write(&p, text).unwrap();
    p
}

/// Bytes, permission bits and owner of a file.
fn fingerprint(path: &Path) -> (Vec<u8>, u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (
        std::fs::read(path).unwrap(),
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
    )
}

fn operator_pid(node: &Node) -> String {
    std::fs::read_to_string(node.sim_dir.join("pids/operator.pid")).unwrap()
}

#[test]
fn good_config_is_promoted_then_a_hand_edit_is_refused() {
    let Some((node, file)) = config_node("1500ms") else {
        return;
    };
    let before = fingerprint(&file);
    let new = candidate(&node, "good", GOOD);

    // The dry run shows the change with the secrets masked, and changes nothing.
    let (out, plan) = node.run(&["plan", &format!("operator-config={}", new.display())]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let diff = plan["diff"][0]["diff"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(diff.contains("-DB_PASSWORD=****"), "{diff}");
    assert!(diff.contains("+DB_PASSWORD=****"), "{diff}");
    assert!(diff.contains("+LOG_LEVEL=debug"), "{diff}");
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!all.contains("hunter2") && !all.contains("s3cret"), "{all}");
    assert_eq!(fingerprint(&file), before, "plan changed the file");

    let pid = operator_pid(&node);
    let (out, record) = node.run(&[
        "rollout",
        &format!("operator-config={}", new.display()),
        "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    let to = record["to"].as_str().unwrap();
    assert!(to.starts_with("sha256:"), "{record:#}");
    assert!(
        record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "applied:operator-config" && g["verdict"] == "pass"),
        "{record:#}"
    );
    // The new bytes, with the original mode and owner; the operator was restarted.
    let after = fingerprint(&file);
    assert_eq!(after.0, GOOD.as_bytes());
    assert_eq!((after.1, after.2, after.3), (before.1, before.2, before.3));
    assert_ne!(operator_pid(&node), pid, "the operator was not restarted");
    // The baseline's bytes are in the store, private, named by their hash.
    let store = node.dir.path().join("state/store/sha256");
    let blob = store.join(sha256_hex(BASELINE.as_bytes()));
    assert_eq!(std::fs::read(&blob).unwrap(), BASELINE.as_bytes());
    assert_eq!(
        std::fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(!all_output(&node).contains("s3cret"));

    // Someone edits the file by hand: the next rollout refuses (exit 3) and changes nothing.
    let edited = "OPERATOR_MARK_PRICE=on\nEDITED=by-hand\n";
    std::fs::write(&file, edited).unwrap();
    let other = candidate(&node, "other", BASELINE);
    let (out, _) = node.run(&[
        "rollout",
        &format!("operator-config={}", other.display()),
        "--yes",
    ]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("operator.env") && err.contains("by hand"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), edited.as_bytes());
    let (_, history) = node.run(&["history"]);
    assert_eq!(
        history["rollouts"].as_array().unwrap().len(),
        1,
        "{history:#}"
    );
}

/// Everything rollgate printed about the node (history and show), for secret checks.
fn all_output(node: &Node) -> String {
    let (_, history) = node.run(&["history"]);
    let id = history["rollouts"][0]["rollout_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (out, _) = node.run(&["show", &id]);
    history.to_string() + &String::from_utf8_lossy(&out.stdout)
}

fn sha256_hex(bytes: &[u8]) -> String {
    rollgate_runtime::store::sha256_hex(bytes)
}

#[test]
fn bad_config_is_rolled_back_to_the_exact_bytes_mode_and_owner() {
    let Some((node, file)) = config_node("1500ms") else {
        return;
    };
    let before = fingerprint(&file);
    let bad = candidate(&node, "bad", BAD);
    let (out, record) = node.run(&[
        "rollout",
        &format!("operator-config={}", bad.display()),
        "--yes",
    ]);
    assert_rolled_back_by_mark_price(&out, &record);
    assert_eq!(
        fingerprint(&file),
        before,
        "not the exact baseline bytes, mode and owner"
    );
}

/// A config layer that also snapshots the operator's database (`snapshot`, the default `dump`
/// method, on the real Postgres): the file writer forwards the command driver's `stop` and
/// `start`, so the bad file is rolled back with its exact bytes **and** the database as it was
/// at the snapshot. The bad run writes nothing itself (no mark price, no request is
/// sequenced), so the test writes a row while the bad file is being verified: the restore
/// removes it, and every row of the baseline is still there.
#[test]
fn bad_config_with_a_snapshot_is_rolled_back_with_its_database() {
    use crate::snapshot::sql;
    let Some((node, file)) = config_node("1500ms") else {
        return;
    };
    let (db, _) = node.operator_database();
    node.edit_config(
        "files = [\"localnet/config/operator.env\"]\n",
        &format!("files = [\"localnet/config/operator.env\"]\nsnapshot = [\"{db}\"]\n"),
    );
    let before = fingerprint(&file);
    // The baseline's rows: traffic writes one per sequenced request.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let count = |q: &str| -> i64 { sql(&node, q).unwrap().parse().unwrap() };
    let last_id = count("SELECT coalesce(max(id), 0) FROM operator_requests");
    assert!(last_id > 0, "the baseline wrote no row");
    let up_to_last = format!("SELECT count(*) FROM operator_requests WHERE id <= {last_id}");
    let baseline_rows = count(&up_to_last);

    let bad = candidate(&node, "bad", BAD);
    let mut child = node
        .rollgate()
        .args([
            "rollout",
            &format!("operator-config={}", bad.display()),
            "--yes",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `verify` comes after the snapshot and the restart on the bad file; the mark-price gate
    // waits for `readiness_deadline` (15 s) before it fails.
    node.wait_for_step("verify", &mut child);
    sql(
        &node,
        "INSERT INTO operator_requests (request_index, tx_hash, version, payload) \
         VALUES (0, 'written-during-the-bad-run', 'v1.0.0', '')",
    );
    let (_, status) = node.run(&["status"]);
    assert_eq!(
        status["active_rollout"]["last_step"]["kind"], "verify",
        "the rollout left verify before the test wrote its row: {status:#}"
    );
    let out = child.wait_with_output().unwrap();
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_rolled_back_by_mark_price(&out, &record);
    assert_eq!(
        fingerprint(&file),
        before,
        "not the exact baseline bytes, mode and owner"
    );
    let kinds = step_kinds(&record);
    assert!(
        kinds.contains(&"snapshot") && kinds.contains(&"rollback_restore_data"),
        "{kinds:?}"
    );
    let snaps = record["snapshots"].as_array().cloned().unwrap_or_default();
    assert!(
        snaps.iter().any(|s| s["database"] == db.as_str()),
        "{record:#}"
    );
    // The database is the snapshot's: the bad run's row is gone, the baseline's are all back.
    assert_eq!(
        count(
            "SELECT count(*) FROM operator_requests WHERE tx_hash = 'written-during-the-bad-run'"
        ),
        0,
        "the row written during the bad run survived the rollback"
    );
    assert_eq!(count(&up_to_last), baseline_rows, "baseline rows lost");
}

/// A bad configuration file's rollout (`OPERATOR_MARK_PRICE=off`): rolled back and verified,
/// failed by the mark-price gate, the files restored and checked by hash
/// (`restored:operator-config`). Shared with the compose driver's test.
pub(crate) fn assert_rolled_back_by_mark_price(
    out: &std::process::Output,
    record: &serde_json::Value,
) {
    assert_eq!(code(out), 4, "{}", explain(out));
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    let failed: Vec<&str> = record["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["verdict"] == "fail")
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        failed.iter().any(|g| g.contains("mark-price")),
        "{failed:?}: {record:#}"
    );
    assert!(
        record["rollback"]["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "restored:operator-config" && g["verdict"] == "pass"),
        "{record:#}"
    );
}

/// Run rollgate; it must exit `want` with `needle` in its error output.
fn refused(node: &Node, args: &[&str], want: i32, needle: &str) {
    let (out, _) = node.run(args);
    assert_eq!(code(&out), want, "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "{needle}: {}",
        explain(&out)
    );
}

#[test]
fn deployment_metadata_and_ethereum_paths_are_refused() {
    let Some((node, file)) = config_node("1500ms") else {
        return;
    };
    let metadata = node.sim_dir.join("app_config/ethereum/addresses.json");
    let meta_before = std::fs::read(&metadata).unwrap();

    // PATH under APP_CONFIG/ethereum.
    let change = |p: &Path| format!("operator-config={}", p.display());
    refused(
        &node,
        &["rollout", &change(&metadata), "--yes"],
        2,
        "ethereum",
    );

    // A name that is not one of the layer's files.
    let dir = node.dir.path().join("candidates/unknown");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kyc.env"), "X=1\n").unwrap();
    refused(&node, &["rollout", &change(&dir), "--yes"], 2, "kyc.env");

    // The layer's file is a symlink to the deployment metadata: refused once resolved.
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&metadata, &file).unwrap();
    let new = candidate(&node, "good", GOOD);
    refused(
        &node,
        &["rollout", &change(&new), "--yes"],
        2,
        "deployment metadata",
    );
    assert_eq!(std::fs::read(&metadata).unwrap(), meta_before);

    // A layer naming a file under APP_CONFIG/ethereum is a configuration error naming the key.
    node.edit_config(
        "files = [\"localnet/config/operator.env\"]",
        "files = [\"localnet/app_config/ethereum/operator.env\"]",
    );
    refused(&node, &["status"], 2, "layers.operator-config.files");
    assert_eq!(std::fs::read(&metadata).unwrap(), meta_before);
}

/// Kill rollgate at `crash_at` during a config rollout (good or bad content), then `resume`:
/// promoted with the new bytes, or rolled back with the baseline's exact bytes.
fn crash_then_resume(good: bool, crash_at: &str) {
    let Some((node, file)) = config_node("1500ms") else {
        return;
    };
    let before = fingerprint(&file);
    let text = if good { GOOD } else { BAD };
    let new = candidate(&node, "new", text);
    node.killed_at(
        &[
            "rollout",
            &format!("operator-config={}", new.display()),
            "--yes",
        ],
        crash_at,
    );
    let (out, record) = node.run(&["resume"]);
    match record["outcome"].as_str() {
        Some("promoted") => {
            assert!(good, "{crash_at}: the bad config was promoted: {record:#}");
            assert_eq!(code(&out), 0, "{}", explain(&out));
            assert_eq!(std::fs::read(&file).unwrap(), GOOD.as_bytes());
        }
        Some("rolled_back") => {
            assert_eq!(code(&out), 4, "{}", explain(&out));
            assert_eq!(record["rollback"]["verified"], true, "{record:#}");
            assert_eq!(
                fingerprint(&file),
                before,
                "{crash_at}: not the baseline bytes"
            );
        }
        other => panic!(
            "{crash_at}: unexpected outcome {other:?}: {}",
            explain(&out)
        ),
    }
    node.assert_no_active_rollout(crash_at);
}

macro_rules! config_crash_tests {
    ($($name:ident: $good:expr, $at:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_then_resume($good, $at);
        }
    )*};
}

config_crash_tests! {
    crash_good_apply_intent: true, "apply:intent";
    crash_good_apply_outcome: true, "apply:outcome";
    crash_good_restart_outcome: true, "restart:outcome";
    crash_good_verify_outcome: true, "verify:outcome";
    crash_bad_verify_intent: false, "verify:intent";
    crash_bad_rollback_restore_intent: false, "rollback_restore:intent";
    crash_bad_rollback_restore_outcome: false, "rollback_restore:outcome";
    crash_bad_rollback_restart_outcome: false, "rollback_restart:outcome";
    crash_bad_rollback_verify_intent: false, "rollback_verify:intent";
}

//! A password from a configured URL never reaches the database file, in any form it leaks in.

use std::path::Path;

use rollgate_core::config::{MapEnv, default_profile, load_str};
use rollgate_core::vocab::{GateResult, Mode, Outcome, Verdict};
use rollgate_journal::{DriverOutputRecord, Journal, Redactor};
use serde_json::json;

use crate::support::{baseline, rollout};

const PASSWORD: &str = "Sup3rS3cretPw";
const TOKEN: &str = "tok-8c1f2e77";

fn scan(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[test]
fn configured_password_never_appears_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("postgres://app:{PASSWORD}@127.0.0.1:5432/node0");
    let env = MapEnv::new([
        ("DATABASE_URL", db_url.as_str()),
        ("REDIS_URL", "redis://:r3disPw99@127.0.0.1:6379"),
    ]);
    let text = default_profile("operator-localnet", Mode::LocalnetLoopback).unwrap()
        + &format!("\n[serve]\ntoken = \"{TOKEN}\"\n");
    let cfg = load_str(Path::new("rollgate.toml"), &text, &env).unwrap();

    let mut j = Journal::open(dir.path())
        .unwrap()
        .with_redactor(Redactor::for_config(&cfg));
    let mut b = baseline("b1");
    b.readiness.insert(
        "postgres".into(),
        json!({"url": db_url, "dsn": format!("host=h password={PASSWORD}"), "password": PASSWORD}),
    );
    b.checks[0].detail = format!("connected to {db_url}");
    b.checks[0].observed = json!({"note": format!("auth with {PASSWORD}\tok"), "token": TOKEN});
    j.insert_baseline(&b).unwrap();

    let mut r = rollout("r1", Some("b1"));
    r.plan = Some(json!({"env": {"DATABASE_URL": db_url}, "why": format!("uses {PASSWORD}")}));
    r.to = format!("image-with-{PASSWORD}-in-tag");
    j.begin_rollout(&r).unwrap();
    let s = j
        .record_intent(
            "r1",
            "apply",
            json!({"url": db_url, "args": ["--db", db_url]}),
        )
        .unwrap();
    let out = DriverOutputRecord {
        command: format!("psql {db_url}"),
        stdout: format!("line one\n{db_url}\n"),
        stderr: format!(
            "FATAL: password authentication failed for password {PASSWORD}\nredis://:r3disPw99@127.0.0.1:6379\n"
        ),
        exit_code: Some(2),
        duration_ms: 5,
    };
    j.record_driver_output(s, &out).unwrap();
    j.record_outcome(
        s,
        false,
        json!({"error": format!("{PASSWORD}"), "Authorization": format!("Bearer {TOKEN}")}),
    )
    .unwrap();
    j.record_gate(
        "r1",
        &GateResult {
            name: "postgres".into(),
            verdict: Verdict::Fail,
            detail: format!("{db_url} refused"),
            evidence: json!([db_url, PASSWORD]),
        },
    )
    .unwrap();
    j.finish_rollout(
        "r1",
        Outcome::RolledBack,
        &format!("postgres at {db_url} failed"),
    )
    .unwrap();

    // Check the WAL before it is checkpointed, then the main file after.
    for needle in [PASSWORD, TOKEN, "r3disPw99"] {
        assert_eq!(
            scan(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} leaked"
        );
    }
    assert!(dir.path().join("journal.sqlite-wal").exists());
    let d = j.rollout("r1").unwrap().unwrap();
    assert!(
        d.steps[0].driver_outputs[0]
            .command
            .contains("postgres://app:****@127.0.0.1")
    );
    drop(j);
    for needle in [PASSWORD, TOKEN, "r3disPw99"] {
        assert_eq!(
            scan(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} leaked after checkpoint"
        );
    }
}

/// `[fleet]`: the etcd password (its own key, or inside an endpoint URL) is a secret of the
/// configuration like every other password.
#[test]
fn fleet_etcd_passwords_are_secrets_of_the_configuration() {
    let env = MapEnv::new([
        (
            "DATABASE_URL",
            "postgres://app:pw-db-1@127.0.0.1:5432/node0",
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ]);
    let text = default_profile("operator-localnet", Mode::LocalnetLoopback).unwrap()
        + "\n[fleet]\netcd = [\"http://127.0.0.1:2379\", \"https://root:etcdUrlPw7@10.0.0.2:2379\"]\n\
           cluster = \"dex-a\"\nuser = \"rollgate\"\npassword = \"etcdKeyPw42\"\n";
    let cfg = load_str(Path::new("rollgate.toml"), &text, &env).unwrap();
    let secrets = rollgate_journal::redact::secrets_of(&cfg);
    for pw in ["etcdKeyPw42", "etcdUrlPw7"] {
        assert!(secrets.iter().any(|s| s == pw), "{pw} missing: {secrets:?}");
    }
}

//! Exit codes that need no running node: usage and configuration errors, `init`, `validate`.

use std::process::Command;

use crate::fixture::{code, explain, rollgate_bin};

fn rollgate(dir: &std::path::Path) -> Command {
    let mut c = Command::new(rollgate_bin());
    c.current_dir(dir)
        .env_remove("ROLLGATE_CONFIG")
        .env("NO_COLOR", "1");
    c
}

#[test]
fn init_writes_a_profile_the_parser_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = rollgate(dir.path())
        .args(["init", "--profile", "operator-localnet"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let text = std::fs::read_to_string(dir.path().join("rollgate.toml")).unwrap();
    assert!(
        text.contains("mode = \"localnet.loopback\"") && text.contains("http://127.0.0.1:8545")
    );
    let out = rollgate(dir.path())
        .args(["--json", "validate"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "localnet.loopback");
    assert_eq!(v["layers"]["operator-image"]["components"][0], "operator");
    assert_eq!(
        code(
            &rollgate(dir.path())
                .args(["check", "--help"])
                .output()
                .unwrap()
        ),
        0
    );

    // A second init refuses to overwrite (exit 2); compose mode writes compose URLs.
    let out = rollgate(dir.path()).args(["init"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let out = rollgate(dir.path())
        .args(["init", "--mode", "localnet.compose", "--output", "c.toml"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert!(
        std::fs::read_to_string(dir.path().join("c.toml"))
            .unwrap()
            .contains("http://ethereum:8545")
    );
}

#[test]
fn misspelled_key_exits_2_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&rollgate(dir.path()).arg("init").output().unwrap()), 0);
    let path = dir.path().join("rollgate.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("readiness_deadline =", "readines_deadline =");
    let line = text
        .lines()
        .position(|l| l.starts_with("readines_deadline"))
        .unwrap()
        + 1;
    std::fs::write(&path, text).unwrap();
    for args in [&["validate"][..], &["check"], &["status"]] {
        let out = rollgate(dir.path()).args(args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", explain(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("rollgate.toml:{line}:")) && err.contains("readines_deadline"),
            "{err}"
        );
    }
}

#[test]
fn mode_mismatch_exits_3_and_missing_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&rollgate(dir.path()).arg("init").output().unwrap()), 0);
    let out = rollgate(dir.path())
        .arg("validate")
        .env("DEPLOYMENT_SERVICE_URL", "http://deployment-service:4040")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode mismatch"));
    let empty = tempfile::tempdir().unwrap();
    let out = rollgate(empty.path()).arg("validate").output().unwrap();
    assert_eq!(code(&out), 2, "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no configuration file found"));
}

#[test]
fn usage_errors_exit_2_and_json_errors_are_one_document() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&rollgate(dir.path()).arg("init").output().unwrap()), 0);
    let out = rollgate(dir.path()).args(["--bogus"]).output().unwrap();
    assert_eq!(code(&out), 2);
    let out = rollgate(dir.path())
        .args(["--json", "rollout", "operator-image=a:1", "kyc-image=b:2"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one layer"),
        "{v}"
    );
    let out = rollgate(dir.path())
        .args(["rollout", "operator-image"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", explain(&out));
    assert_eq!(
        code(&rollgate(dir.path()).arg("--version").output().unwrap()),
        0
    );
}

/// issue 16: `rollgate --version` names the version and the git commit the binary was built
/// from (`unknown` outside a git checkout), so a packaged binary can be traced to its source.
#[test]
fn version_names_the_version_and_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = rollgate(dir.path()).arg("--version").output().unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let rest = text
        .trim_end()
        .strip_prefix(concat!("rollgate ", env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output: {text:?}"));
    assert!(
        rest == "unknown" || (rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit {rest:?} in {text:?}"
    );
}

/// issue 11 item 12 (c): `check` names the keys that leave a bake signal undecidable (8 s
/// progression windows, a 12 s bake, the old floor of 8 samples), in JSON and in the table
/// output; the profile's own settings decide every signal. No node is needed: the checks fail
/// (exit 3), the warnings are there regardless.
#[test]
fn check_warns_when_a_bake_signal_is_undecidable() {
    let dir = tempfile::tempdir().unwrap();
    let out = rollgate(dir.path())
        .args(["init", "--profile", "operator-localnet"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let out = rollgate(dir.path())
        .args(["--json", "check", "--group", "readiness"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");

    let path = dir.path().join("rollgate.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("window = \"60s\"", "window = \"8s\"")
        .replace("bake = \"10m\"", "bake = \"12s\"\nbaseline_window = \"8s\"")
        + "\n[bake]\nmin_samples = 8\n";
    std::fs::write(&path, text).unwrap();
    let out = rollgate(dir.path())
        .args(["--json", "check", "--group", "readiness"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", explain(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "{v}");
    assert!(
        warnings[0].contains("rollout.bake (12s) / bake.sample_interval (2s)")
            && warnings[0].contains("bake.min_samples (8)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("rollout.baseline_window (8s)"),
        "{}",
        warnings[1]
    );
    let out = rollgate(dir.path())
        .args(["--format", "human", "check", "--group", "readiness"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn: bake:latency:*") && l.contains("rollout.baseline_window")),
        "{text}"
    );
}

/// A slim image without `ca-certificates`: the platform's CA store is empty (here
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` point at an empty file and directory). The probes fall
/// back to the bundled roots instead of failing to build their HTTP client, so the checks run.
#[test]
fn checks_run_without_a_platform_ca_store() {
    let dir = tempfile::tempdir().unwrap();
    let addr = crate::fixture::json_server(|| r#"{"health":"Healthy"}"#.to_string());
    let config = crate::fixture::command_node_config(
        dir.path(),
        &format!("http://{addr}/v2/status"),
        r#"{ pointer = "/health", equals = "Healthy" }"#,
        "echo v1",
        "true",
        "",
    );
    std::fs::write(dir.path().join("rollgate.toml"), config).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("no-certs")).unwrap();
    let out = rollgate(dir.path())
        .env("SSL_CERT_FILE", dir.path().join("empty.pem"))
        .env("SSL_CERT_DIR", dir.path().join("no-certs"))
        .args(["--json", "check", "--group", "readiness"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let operator = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "readiness:operator"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(operator["status"], "pass", "{}\n{v}", explain(&out));
    assert_eq!(code(&out), 0, "{}", explain(&out));
}

/// issue 12 item 2: a database password holding `/`, `?` and `#` unencoded (a base64 password;
/// tokio-postgres accepts it) was printed in full by `check`, because the URL's authority was
/// taken to end at the first `/`. The binary must print the URL with the password replaced.
#[test]
fn check_never_prints_a_password_holding_url_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(&rollgate(dir.path()).arg("init").output().unwrap()), 0);
    let password = "Zm9v/YmFy?cXV4#PQ==";
    let out = rollgate(dir.path())
        .args(["--json", "check", "--group", "prerequisites"])
        .env(
            "DATABASE_URL",
            format!("postgres://app:{password}@127.0.0.1:1/node0"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in [password, "YmFy?cXV4", "cXV4#PQ"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed: {}",
            explain(&out)
        );
    }
    assert!(
        stdout.contains("postgres://app:****@127.0.0.1:1/node0"),
        "{}",
        explain(&out)
    );
}

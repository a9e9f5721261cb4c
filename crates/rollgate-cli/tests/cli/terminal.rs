//! The binary on a terminal (a pseudo-terminal from util-linux `script`): the live progress
//! line is shown there only.

use std::process::Command;

use crate::fixture::{command_node_config, json_server, rollgate_bin};

/// A gate detail with two-byte characters across the progress line's cut (the line shows the
/// pending readiness gate's detail; two configurations one byte apart put the cut inside a
/// character in one of them): the rollout rolls back (exit 4) instead of panicking (exit 101)
/// with the new version left in place and no rollback.
#[test]
fn a_non_ascii_gate_detail_on_the_progress_line_does_not_stop_the_rollback() {
    if Command::new("script").arg("--version").output().is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "util-linux `script` is required under CI=true"
        );
        eprintln!("skipping: no `script` (util-linux) on PATH");
        return;
    }
    for pad in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let changed = dir.path().join("changed");
        // `Healthy` until the change, then `Starting` for ever: readiness fails, rollback.
        let addr = json_server(move || {
            let health = if changed.exists() {
                "Starting"
            } else {
                "Healthy"
            };
            format!(r#"{{"health":"{health}"}}"#)
        });
        let d = dir.path().display();
        let config = command_node_config(
            dir.path(),
            &format!("http://{addr}/v2/status"),
            &format!(
                r#"{{ pointer = "/health", one_of = ["Healthy", "{}{}"] }}"#,
                "x".repeat(pad),
                "é".repeat(40)
            ),
            &format!("cat {d}/current 2>/dev/null || echo v1"),
            &format!(
                r#"if [ \"$ROLLGATE_VALUE\" = v1 ]; then rm -f {d}/changed; else touch {d}/changed; fi; echo $ROLLGATE_VALUE > {d}/current"#
            ),
            "\n[rollout]\nreadiness_deadline = \"3s\"\nbaseline_window = \"1s\"\nmin_healthy = \"1s\"\n",
        );
        let path = dir.path().join("rollgate.toml");
        std::fs::write(&path, config).unwrap();
        let command = format!(
            "{} --config {} rollout operator-image=v2 --yes",
            rollgate_bin().display(),
            path.display()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("ROLLGATE_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("panicked"), "pad {pad}: {text}");
        assert_eq!(out.status.code(), Some(4), "pad {pad}: {text}");
        assert!(
            text.contains("waiting on readiness:operator"),
            "pad {pad}: {text}"
        );
        let current = std::fs::read_to_string(dir.path().join("current")).unwrap();
        assert_eq!(current.trim(), "v1", "pad {pad}: rolled back");
    }
}

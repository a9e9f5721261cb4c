//! The Compose driver on the real Docker engine.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rollgate_core::config::{Component, Config, Runtime};
use rollgate_core::vocab::LayerKind;
use rollgate_runtime::{ComponentState, ComposeDriver, DriverError, RunStatus, RuntimeDriver};

use crate::support::{config, docker_available, sh, unique};

/// Removes everything a test created, even when it panics: the Compose project's containers
/// and networks, the images, the override file (inside the temporary directory).
struct Cleanup {
    project: String,
    compose_file: PathBuf,
    images: Vec<String>,
}

impl Cleanup {
    fn run(&mut self) {
        // Synchronous on purpose: this runs from Drop, possibly while unwinding.
        let _ = std::process::Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(&self.compose_file)
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "1"])
            .output();
        // Whatever Compose missed (or when only `docker compose` exists), by label.
        let label = format!("label=com.docker.compose.project={}", self.project);
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output();
        if let Ok(o) = ids {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
        let nets = std::process::Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &label])
            .output();
        if let Ok(o) = nets {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["network", "rm", id])
                    .output();
            }
        }
        for image in self.images.drain(..) {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", &image])
                .output();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Build a FROM-scratch image whose program prints `version`: a static C binary plus a
/// `/version` file, imported as a one-layer image. Different versions get different image IDs.
fn build_image(work: &Path, tag: &str, version: &str) {
    let root = work.join(format!("root-{version}"));
    std::fs::create_dir_all(&root).unwrap();
    let bin = work.join("app");
    if !bin.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/app.c");
        sh(
            "gcc",
            &[
                "-static",
                "-Os",
                "-o",
                bin.to_str().unwrap(),
                src.to_str().unwrap(),
            ],
        );
    }
    std::fs::copy(&bin, root.join("app")).unwrap();
    std::fs::write(root.join("version"), version).unwrap();
    let tar = work.join(format!("{version}.tar"));
    sh(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            "app",
            "version",
        ],
    );
    sh(
        "docker",
        &[
            "import",
            "-c",
            r#"ENTRYPOINT ["/app"]"#,
            tar.to_str().unwrap(),
            tag,
        ],
    );
}

fn image_id(reference: &str) -> String {
    sh(
        "docker",
        &["image", "inspect", "--format", "{{.Id}}", reference],
    )
    .trim()
    .to_string()
}

struct Stack {
    dir: tempfile::TempDir,
    cfg: Config,
    driver: ComposeDriver,
    repo: String,
    cleanup: Cleanup,
}

impl Stack {
    /// Services `app-svc` (component `app`), `other` (depends on `app-svc`) and `third`,
    /// all on `<repo>:v1`, up and running.
    async fn up(test: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let project = unique("rgt");
        let repo = format!("rollgate-test/{}", unique("app"));
        let compose_file = dir.path().join("docker-compose.yml");
        let mut cleanup = Cleanup {
            project: project.clone(),
            compose_file: compose_file.clone(),
            images: vec![],
        };
        for v in ["v1", "v2", "v3"] {
            let tag = format!("{repo}:{v}");
            cleanup.images.push(tag.clone());
            build_image(dir.path(), &tag, v);
        }
        std::fs::write(
            &compose_file,
            format!(
                "version: \"2.4\"\nservices:\n  app-svc:\n    image: {repo}:v1\n    stop_grace_period: 1s\n  other:\n    image: {repo}:v1\n    stop_grace_period: 1s\n    depends_on: [app-svc]\n  third:\n    image: {repo}:v1\n    stop_grace_period: 1s\n"
            ),
        )
        .unwrap();
        let runtime = format!(
            "[runtime]\ndriver = \"compose\"\n\n[runtime.compose]\nproject_dir = \"{}\"\nfiles = [\"docker-compose.yml\"]\nproject_name = \"{project}\"\n\n[components.third]\n",
            dir.path().display()
        );
        let cfg = config(dir.path(), &runtime);
        let Runtime::Compose(c) = &cfg.runtime else {
            panic!("not compose")
        };
        let driver = ComposeDriver::new(c.clone(), &cfg).unwrap();
        assert_eq!(driver.project(), project);
        let inv = driver.compose(&["up", "-d"]).await.unwrap();
        rollgate_runtime::process::run(&inv)
            .await
            .unwrap_or_else(|e| panic!("{test}: compose up: {e}"));
        Stack {
            dir,
            cfg,
            driver,
            repo,
            cleanup,
        }
    }

    fn component(&self, name: &str) -> Component {
        self.cfg.components[name].clone()
    }

    async fn states(&self) -> Vec<ComponentState> {
        let mut out = Vec::new();
        for c in ["app", "other", "third"] {
            out.push(self.driver.state(&self.component(c)).await.unwrap());
        }
        out
    }
}

fn assert_untouched(before: &[ComponentState], after: &[ComponentState]) {
    for (b, a) in before.iter().zip(after).skip(1) {
        assert_eq!(
            a.container_id, b.container_id,
            "{} was recreated",
            b.component
        );
        assert_eq!(a.started_at, b.started_at, "{} was restarted", b.component);
        assert_eq!(a.status, RunStatus::Running);
    }
}

#[tokio::test]
async fn compose_apply_restart_and_restore_by_digest() {
    if !docker_available("compose_apply_restart_and_restore_by_digest") {
        return;
    }
    let mut s = Stack::up("compose_apply_restart_and_restore_by_digest").await;
    let layer = s.cfg.layer("app-image").unwrap().clone();
    let app = s.component("app");
    let (v1, v2, v3) = (
        format!("{}:v1", s.repo),
        format!("{}:v2", s.repo),
        format!("{}:v3", s.repo),
    );
    let (v1_id, v2_id) = (image_id(&v1), image_id(&v2));
    assert_ne!(v1_id, v2_id);
    let t0 = SystemTime::now();

    // Read the layer: the reference and the image ID it runs.
    let recorded = s.driver.current(&layer).await.unwrap();
    assert_eq!(recorded.kind, LayerKind::Image);
    assert_eq!(recorded.value, v1);
    assert_eq!(recorded.digest.as_deref(), Some(v1_id.as_str()));
    let before = s.states().await;
    assert!(
        before
            .iter()
            .all(|st| st.status == RunStatus::Running && st.restart_count == Some(0)),
        "{before:?}"
    );

    // Apply pins the image in rollgate's override; nothing restarts yet.
    let out = s.driver.apply(&layer, &v2).await.unwrap();
    assert!(out.command.contains("pin image"), "{out:?}");
    let override_text = std::fs::read_to_string(s.driver.override_path()).unwrap();
    let override_json: serde_json::Value = serde_json::from_str(&override_text).unwrap();
    assert_eq!(override_json["services"]["app-svc"]["image"], v2.as_str());
    assert_eq!(override_json["version"], "2.4");
    assert!(override_json["services"].get("other").is_none());
    assert_eq!(s.driver.current(&layer).await.unwrap(), recorded);

    // Restart recreates only the layer's service.
    let out = s.driver.restart(std::slice::from_ref(&app)).await.unwrap();
    assert!(
        out.command.contains("--no-deps") && out.command.contains("app-svc"),
        "{}",
        out.command
    );
    let after = s.states().await;
    assert_ne!(
        after[0].container_id, before[0].container_id,
        "app was not recreated"
    );
    assert_eq!(after[0].image_id.as_deref(), Some(v2_id.as_str()));
    assert_eq!(after[0].status, RunStatus::Running);
    assert_untouched(&before, &after);
    let now = s.driver.current(&layer).await.unwrap();
    assert_eq!(
        (now.value.as_str(), now.digest.as_deref()),
        (v2.as_str(), Some(v2_id.as_str()))
    );

    // Logs since before the restart show the new version.
    let logs = wait_for_logs(&s.driver, &app, t0, "app version v2 started").await;
    assert!(!logs.contains("v1"), "{logs}");

    // The v1 tag is re-pushed with other content: a restore must still give the recorded image.
    sh("docker", &["tag", &v3, &v1]);
    assert_ne!(image_id(&v1), v1_id);
    let out = s.driver.restore(&layer, &recorded).await.unwrap();
    assert!(out.command.contains("docker tag"), "{out:?}");
    assert_eq!(
        image_id(&v1),
        v1_id,
        "the tag was not put back on the recorded image"
    );
    // Back to what the operator's files give: the override is gone.
    assert!(!s.driver.override_path().exists(), "override left behind");
    s.driver.restart(std::slice::from_ref(&app)).await.unwrap();
    assert_eq!(s.driver.current(&layer).await.unwrap(), recorded);
    let restored = s.states().await;
    assert_eq!(restored[0].image_id.as_deref(), Some(v1_id.as_str()));
    assert_untouched(&before, &restored);

    // Clean up explicitly and prove nothing is left.
    s.cleanup.run();
    let label = format!("label=com.docker.compose.project={}", s.cleanup.project);
    assert_eq!(sh("docker", &["ps", "-aq", "--filter", &label]).trim(), "");
    assert_eq!(
        sh("docker", &["network", "ls", "-q", "--filter", &label]).trim(),
        ""
    );
    assert!(!s.driver.override_path().exists());
    assert!(
        !s.dir
            .path()
            .join("state/compose")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn compose_restore_to_a_value_the_files_do_not_give_keeps_a_pin() {
    if !docker_available("compose_restore_to_a_value_the_files_do_not_give_keeps_a_pin") {
        return;
    }
    let s = Stack::up("compose_restore_pin").await;
    let layer = s.cfg.layer("app-image").unwrap().clone();
    let app = s.component("app");
    let v2 = format!("{}:v2", s.repo);
    s.driver.apply(&layer, &v2).await.unwrap();
    s.driver.restart(std::slice::from_ref(&app)).await.unwrap();
    let on_v2 = s.driver.current(&layer).await.unwrap();
    s.driver
        .apply(&layer, &format!("{}:v3", s.repo))
        .await
        .unwrap();
    s.driver.restart(std::slice::from_ref(&app)).await.unwrap();

    // Restoring v2 (not the operator's v1) keeps a pin, now on v2.
    s.driver.restore(&layer, &on_v2).await.unwrap();
    let o: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.driver.override_path()).unwrap()).unwrap();
    assert_eq!(o["services"]["app-svc"]["image"], v2.as_str());
    s.driver.restart(std::slice::from_ref(&app)).await.unwrap();
    assert_eq!(s.driver.current(&layer).await.unwrap(), on_v2);

    // A recorded image that no longer exists cannot be restored, and the error says why.
    let mut gone = on_v2.clone();
    gone.digest = Some(format!("sha256:{}", "0".repeat(64)));
    let err = s.driver.restore(&layer, &gone).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Restore { .. }) && err.to_string().contains("no longer present"),
        "{err}"
    );

    // Non-image layers and unknown services are refused or reported, never guessed.
    let err = s
        .driver
        .current(s.cfg.layer("app-config").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    let missing = Component {
        name: "ghost".into(),
        service: "ghost".into(),
        readiness: None,
    };
    assert_eq!(
        s.driver.state(&missing).await.unwrap().status,
        RunStatus::Missing
    );
    assert!(matches!(
        s.driver.logs_since(&missing, SystemTime::now()).await,
        Err(DriverError::NoContainer { .. })
    ));

    // A restart that cannot succeed (image missing, no registry) carries Compose's stderr.
    s.driver
        .apply(&layer, "rollgate-test/does-not-exist:never")
        .await
        .unwrap();
    let err = s
        .driver
        .restart(std::slice::from_ref(&app))
        .await
        .unwrap_err();
    let out = err.output().expect("a failed compose carries its output");
    assert!(!out.stderr.is_empty(), "{err}");
    assert!(err.to_string().contains("up -d --no-deps"), "{err}");
}

/// `stop` (around a database snapshot) stops exactly its services and keeps their containers;
/// `start` brings them back on the layer's value; nothing else is touched by either.
#[tokio::test]
async fn compose_stop_and_start_touch_only_their_services() {
    if !docker_available("compose_stop_and_start_touch_only_their_services") {
        return;
    }
    let s = Stack::up("compose_stop_and_start_touch_only_their_services").await;
    let app = s.component("app");
    let before = s.states().await;
    s.driver.stop(std::slice::from_ref(&app)).await.unwrap();
    let stopped = s.states().await;
    assert_eq!(stopped[0].status, RunStatus::Exited, "{stopped:?}");
    assert_untouched(&before, &stopped);
    // Stopping a stopped service succeeds (a resumed rollout redoes it).
    s.driver.stop(std::slice::from_ref(&app)).await.unwrap();
    s.driver.start(std::slice::from_ref(&app)).await.unwrap();
    let after = s.states().await;
    assert_eq!(after[0].status, RunStatus::Running, "{after:?}");
    assert_untouched(&before, &after);
    let layer = s.cfg.layer("app-image").unwrap().clone();
    let now = s.driver.current(&layer).await.unwrap();
    assert_eq!(now.value, format!("{}:v1", s.repo));
}

async fn wait_for_logs(
    driver: &ComposeDriver,
    c: &Component,
    since: SystemTime,
    want: &str,
) -> String {
    let mut logs = String::new();
    for _ in 0..50 {
        logs = driver.logs_since(c, since).await.unwrap();
        if logs.contains(want) {
            return logs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("logs never showed {want:?}: {logs:?}");
}

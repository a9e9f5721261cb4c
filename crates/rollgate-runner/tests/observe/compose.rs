//! The observer on the real Docker engine through the Compose driver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rollgate_core::config::{Component, Config, Runtime};
use rollgate_runtime::{ComposeDriver, RunStatus, RuntimeDriver};

use crate::support::{config, observer};

fn sh(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a Docker engine answers; under `CI=true` a missing engine fails the test.
fn docker_available(test: &str) -> bool {
    let ok = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{test}: Docker is required under CI=true but `docker info` failed");
        }
        eprintln!("{test}: skipped, no Docker engine (set CI=true to make this a failure)");
    }
    ok
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

/// Removes the project's containers and networks and the images, even when a test panics.
struct Cleanup {
    project: String,
    compose_file: PathBuf,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(&self.compose_file)
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "1"])
            .output();
        let label = format!("label=com.docker.compose.project={}", self.project);
        for what in [&["ps", "-aq"][..], &["network", "ls", "-q"][..]] {
            let Ok(o) = std::process::Command::new("docker")
                .args(what)
                .args(["--filter", &label])
                .output()
            else {
                continue;
            };
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let rm: &[&str] = if what[0] == "ps" {
                    &["rm", "-f"]
                } else {
                    &["network", "rm"]
                };
                let _ = std::process::Command::new("docker")
                    .args(rm)
                    .arg(id)
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

/// A FROM-scratch image of `fixtures/crashy.c` behaving as `version`.
fn build_image(work: &Path, tag: &str, version: &str) {
    let root = work.join(format!("root-{version}"));
    std::fs::create_dir_all(&root).unwrap();
    let bin = work.join("app");
    if !bin.exists() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crashy.c");
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

struct Stack {
    _dir: tempfile::TempDir,
    cfg: Config,
    driver: ComposeDriver,
    repo: String,
    _cleanup: Cleanup,
}

impl Stack {
    /// Service `app-svc` (component `app`) on `<repo>:v1` with `restart: always`, up, and
    /// stable after its first 4 starts failed.
    async fn up() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let project = unique("rgo");
        let repo = format!("rollgate-test/{}", unique("crashy"));
        let compose_file = dir.path().join("docker-compose.yml");
        let mut cleanup = Cleanup {
            project: project.clone(),
            compose_file: compose_file.clone(),
            images: vec![],
        };
        for v in ["v1", "v2"] {
            let tag = format!("{repo}:{v}");
            cleanup.images.push(tag.clone());
            build_image(dir.path(), &tag, v);
        }
        std::fs::write(
            &compose_file,
            format!(
                "version: \"2.4\"\nservices:\n  app-svc:\n    image: {repo}:v1\n    restart: always\n    stop_grace_period: 1s\n"
            ),
        )
        .unwrap();
        let runtime = format!(
            "[runtime]\ndriver = \"compose\"\n\n[runtime.compose]\nproject_dir = \"{}\"\nfiles = [\"docker-compose.yml\"]\nproject_name = \"{project}\"\n",
            dir.path().display()
        );
        let cfg = config(dir.path(), &runtime);
        let Runtime::Compose(c) = &cfg.runtime else {
            panic!("not compose")
        };
        let driver = ComposeDriver::new(c.clone(), &cfg).unwrap();
        let inv = driver.compose(&["up", "-d"]).await.unwrap();
        rollgate_runtime::process::run(&inv).await.unwrap();
        let s = Stack {
            _dir: dir,
            cfg,
            driver,
            repo,
            _cleanup: cleanup,
        };
        s.wait_for(|st| st.status == RunStatus::Running && st.restart_count == Some(4))
            .await;
        s
    }

    fn app(&self) -> Component {
        self.cfg.components["app"].clone()
    }

    async fn wait_for(
        &self,
        ok: impl Fn(&rollgate_runtime::ComponentState) -> bool,
    ) -> rollgate_runtime::ComponentState {
        let mut last = None;
        for _ in 0..600 {
            let st = self.driver.state(&self.app()).await.unwrap();
            if ok(&st) {
                return st;
            }
            last = Some(st);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the state never matched: {last:?}");
    }
}

#[tokio::test]
async fn a_crash_looping_new_container_is_not_masked_by_the_old_ones_restarts() {
    if !docker_available("a_crash_looping_new_container_is_not_masked") {
        return;
    }
    let s = Stack::up().await;
    let old = s.driver.state(&s.app()).await.unwrap();
    let mut o = observer(&s.cfg, None);
    // As the runner does: the change is marked, then the layer applied and restarted.
    o.mark_change().await;
    let layer = s.cfg.layer("app-image").unwrap().clone();
    s.driver
        .apply(&layer, &format!("{}:v2", s.repo))
        .await
        .unwrap();
    s.driver.restart(&[s.app()]).await.unwrap();

    // The new container crashed once and runs again: fewer restarts than the old one had.
    let new = s
        .wait_for(|st| {
            st.container_id != old.container_id
                && st.status == RunStatus::Running
                && st.restart_count == Some(1)
        })
        .await;
    assert!(new.restart_count < old.restart_count);
    let obs = o.observe().await;
    let crashed = obs.crashed.get("app").unwrap_or_else(|| {
        panic!("the new container's restart was not seen: {obs:?}");
    });
    assert!(crashed.contains("1 restarts since the change"), "{crashed}");
}

#[tokio::test]
async fn each_log_line_is_read_once() {
    if !docker_available("each_log_line_is_read_once") {
        return;
    }
    let s = Stack::up().await;
    let id = s
        .driver
        .state(&s.app())
        .await
        .unwrap()
        .container_id
        .unwrap();
    let mut o = observer(&s.cfg, None);
    o.mark_change().await;
    sh("docker", &["exec", &id, "/app", "say", "ERROR one"]);
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = o.observe().await.log_faults;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec!["app: ERROR one".to_string()]);
    // Read again at once (inside the overlap): the line is not returned a second time.
    let again = o.observe().await;
    assert!(again.log_faults.is_empty(), "{:?}", again.log_faults);
    sh("docker", &["exec", &id, "/app", "say", "ERROR two"]);
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = o.observe().await.log_faults;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec!["app: ERROR two".to_string()]);
}

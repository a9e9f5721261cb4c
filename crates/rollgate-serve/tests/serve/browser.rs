//! The status page and the report in headless Chromium (Debian's `chromium`): the rendered DOM
//! holds the outcome and the chart. Under `CI=true` a missing Chromium fails the test.
//!
//! With `ROLLGATE_SCREENSHOT_DIR=DIR`, also writes `DIR/status-page.png` and `DIR/report.png`.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::support::{FAILING_GATE, Fixture, TestServer, require_tool};

async fn chromium(profile: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished in time")
    .expect("chromium ran");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn screenshot(profile: &Path, url: &str, name: &str, size: &str) {
    let Some(dir) = std::env::var_os("ROLLGATE_SCREENSHOT_DIR") else {
        return;
    };
    let file = Path::new(&dir).join(name);
    chromium(
        profile,
        &[
            &format!("--screenshot={}", file.display()),
            &format!("--window-size={size}"),
            url,
        ],
    )
    .await;
    assert!(file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_in_chromium() {
    if !require_tool("chromium") {
        return;
    }
    let f = Fixture::new();
    let detail = f.journal().rollout(&f.rolled_back).unwrap().unwrap();
    let file = f.dir.path().join("report.html");
    std::fs::write(&file, rollgate_serve::render_report_html(&detail)).unwrap();
    let url = format!("file://{}", file.display());
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(profile.path(), &["--dump-dom", &url]).await;
    assert!(
        dom.contains(r#"data-outcome="rolled_back""#),
        "the outcome is in the rendered page"
    );
    assert!(dom.contains("rolled back"));
    assert!(
        dom.contains("<svg") && dom.contains(r#"class="timeline""#),
        "the chart is rendered"
    );
    assert!(
        dom.contains(&format!(
            r#"data-gate="{FAILING_GATE}" data-verdict="fail""#
        )),
        "the failing gate is on the chart"
    );
    screenshot(profile.path(), &url, "report.png", "1280,1500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium() {
    if !require_tool("chromium") {
        return;
    }
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;
    let profile = tempfile::tempdir().unwrap();
    let url = server.at("/");
    let dom = chromium(profile.path(), &["--dump-dom", &url]).await;
    assert!(dom.contains("Node <code>node0</code>"));
    assert!(
        dom.contains(r#"data-outcome="rolled_back""#),
        "the latest rollout's outcome"
    );
    assert!(
        dom.contains("<svg") && dom.contains(r#"class="timeline""#),
        "its chart"
    );
    assert!(dom.contains("Last known-good baseline"));
    screenshot(profile.path(), &url, "status-page.png", "1280,1400").await;
    server.stop().await;
}

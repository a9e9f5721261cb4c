//! The status page and the rollout report, as HTML.

use rollgate_journal::NewRollout;
use rollgate_serve::render_report_html;
use serde_json::json;

use crate::support::{FAILING_GATE, Fixture, TestServer};

/// No script, nothing fetched from elsewhere.
fn assert_self_contained(html: &str) {
    assert!(!html.to_ascii_lowercase().contains("<script"), "no script");
    for attr in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(attr), "external asset: {attr}");
    }
}

#[test]
fn the_report_of_a_rolled_back_rollout_shows_the_failing_gate() {
    let f = Fixture::new();
    let detail = f.journal().rollout(&f.rolled_back).unwrap().unwrap();
    let html = render_report_html(&detail);
    assert_self_contained(&html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(r#"data-outcome="rolled_back""#));
    assert!(html.contains("rolled back: gate progression:requestIndex failed in verify: healthy but not progressing"), "the headline says where and why");
    // The chart: an inline SVG with the failing gate marked, the stalled series and the decision.
    assert!(html.contains("<svg"));
    assert!(html.contains(&format!(
        r#"data-gate="{FAILING_GATE}" data-verdict="fail""#
    )));
    assert!(
        html.contains(r#"class="series" data-gate="progression:requestIndex" data-key="samples""#)
    );
    assert!(html.contains("stalled at 118"));
    assert!(html.contains("✕ roll back: progression:requestIndex"));
    assert!(html.contains(r#"data-kind="rollback_verify""#));
    // The gates table marks the failing row; steps carry driver output.
    assert!(html.contains(&format!(r#"<tr class="fail" data-gate="{FAILING_GATE}">"#)));
    assert!(html.contains("docker compose up -d operator"));
    assert!(html.contains("Container node-operator-1  Started"));
}

#[test]
fn the_report_of_a_promotion() {
    let f = Fixture::new();
    let detail = f.journal().rollout(&f.promoted).unwrap().unwrap();
    let html = render_report_html(&detail);
    assert!(html.contains(r#"data-outcome="promoted""#));
    assert!(html.contains("✓ promoted"));
    assert!(!html.contains(r#"data-verdict="fail""#));
    assert!(html.contains("<code>none</code>"), "cause none");
}

#[test]
fn everything_from_the_journal_is_escaped() {
    let f = Fixture::new();
    let mut j = f.journal();
    j.begin_rollout(&NewRollout {
        id: "r-<x>".into(),
        layer: "operator-image".into(),
        from: None,
        to: "<script>alert(1)</script>".into(),
        baseline_id: None,
        started_at: "2026-11-28T04:50:00Z".into(),
        plan: Some(json!({"note": "</pre><script>alert(2)</script>"})),
    })
    .unwrap();
    let s = j
        .record_intent(
            "r-<x>",
            "apply",
            json!({"to": "<img src=x onerror=alert(3)>"}),
        )
        .unwrap();
    j.record_outcome(s, false, json!({"summary": "<b>bold</b>"}))
        .unwrap();
    let html = render_report_html(&j.rollout("r-<x>").unwrap().unwrap());
    assert_self_contained(&html);
    assert!(!html.contains("<img") && !html.contains("<b>bold"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn an_unfinished_rollout_renders() {
    let f = Fixture::new();
    let mut j = f.journal();
    j.begin_rollout(&NewRollout {
        id: "r-9".into(),
        layer: "operator-image".into(),
        from: None,
        to: "v9".into(),
        baseline_id: None,
        started_at: "2026-11-28T04:50:00Z".into(),
        plan: None,
    })
    .unwrap();
    let html = render_report_html(&j.rollout("r-9").unwrap().unwrap());
    assert!(html.contains(r#"data-outcome="unfinished""#) && html.contains("<svg"));
}

#[tokio::test]
async fn the_status_page_and_the_report_are_served() {
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;

    let resp = server.get("/").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = resp.text().await.unwrap();
    assert_self_contained(&page);
    assert!(page.contains("Node <code>node0</code>"));
    assert!(page.contains(r#"id="node-state">idle<"#));
    assert!(page.contains("No rollout in progress."));
    assert!(
        page.contains("<code>b-2</code>"),
        "the last known-good baseline"
    );
    assert!(page.contains("rollgate-sim/operator:v1.1.0"), "its layers");
    assert!(page.contains(&format!(r#"href="/rollouts/{}""#, f.rolled_back)));
    assert!(page.contains(&format!(r#"href="/rollouts/{}""#, f.promoted)));
    assert!(
        page.contains(r#"data-outcome="rolled_back""#) && page.contains("<svg"),
        "the latest rollout with its timeline"
    );

    let report = server.get(&format!("/rollouts/{}", f.rolled_back)).await;
    assert_eq!(report.status(), 200);
    let report = report.text().await.unwrap();
    assert!(report.contains(FAILING_GATE) && report.contains("<svg"));

    let missing = server.get("/rollouts/r-nope").await;
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("no rollout `r-nope`")
    );
    server.stop().await;
}

#[tokio::test]
async fn an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(rollgate_serve::ServeOptions::new(
        "fresh",
        dir.path().join("state"),
    ))
    .await;
    let page = server.text("/").await;
    assert!(
        page.contains("No rollout recorded yet.")
            && page.contains("No baseline has been marked known-good yet")
    );
    let metrics = server.text("/metrics").await;
    assert!(metrics.contains("rollgate_journal_up 1"));
    server.stop().await;
}

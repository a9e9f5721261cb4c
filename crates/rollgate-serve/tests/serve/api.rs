//! The JSON API: reading status, history and one rollout; the token on everything that changes
//! the node; the kill switch; a rollout started through the API.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use rollgate_serve::{ServeError, ServeOptions};
use serde_json::{Value, json};

use crate::support::{
    FAILING_GATE, Fixture, TOKEN, TestServer, client, crashing_runner, refusing_runner, token,
    wait_for_action,
};

const CHANGING: [&str; 5] = [
    "/api/v1/rollouts",
    "/api/v1/rollback",
    "/api/v1/resume",
    "/api/v1/freeze",
    "/api/v1/unfreeze",
];

#[tokio::test]
async fn status_history_and_one_rollout() {
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;

    let status: Value = server.json("/api/v1/status").await;
    assert_eq!(status["node"], "node0");
    assert_eq!(status["last_rollout"]["rollout_id"], f.rolled_back);
    assert_eq!(status["last_rollout"]["outcome"], "rolled_back");
    assert_eq!(status["last_known_good"]["id"], "b-2");
    assert_eq!(status["active_rollout"], Value::Null);
    assert_eq!(status["frozen"], Value::Null);
    assert_eq!(status["lock"]["state"], "free");

    let history: Value = server.json("/api/v1/history").await;
    let ids: Vec<&str> = history["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rollout_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [f.rolled_back.as_str(), f.promoted.as_str()],
        "newest first"
    );
    let one: Value = server.json("/api/v1/history?limit=1").await;
    assert_eq!(one["rollouts"].as_array().unwrap().len(), 1);

    let detail: Value = server
        .json(&format!("/api/v1/rollouts/{}", f.rolled_back))
        .await;
    assert_eq!(detail["outcome"], "rolled_back");
    let failing: Vec<&Value> = detail["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["verdict"] == "fail")
        .collect();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0]["name"], FAILING_GATE);
    assert!(failing[0]["evidence"]["samples"].is_array());

    let missing = server.get("/api/v1/rollouts/r-nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("r-nope")
    );

    assert_eq!(server.get("/live").await.status(), StatusCode::OK);
    assert_eq!(server.get("/ready").await.status(), StatusCode::OK);
    assert_eq!(
        server.get("/no/such/thing").await.status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn changing_endpoints_refuse_a_missing_or_wrong_token() {
    let f = Fixture::new();
    let mut options = f.options();
    options.token = Some(token());
    let server = TestServer::start(options).await;
    let http = client();
    for path in CHANGING {
        let none = http
            .post(server.at(path))
            .json(&json!({"reason": "x", "layer": "a", "value": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            none.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        assert_eq!(
            none.headers()["www-authenticate"],
            r#"Bearer realm="rollgate""#
        );
        let wrong = http
            .post(server.at(path))
            .bearer_auth("serve-test-token-0123456789abcdeX")
            .json(&json!({"reason": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        let basic = http
            .post(server.at(path))
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(
            basic.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with basic auth"
        );
    }
    // Nothing was changed by the refused requests.
    assert!(rollgate_runner::killswitch::is_frozen(&f.state_dir()).is_none());

    // Reading needs no token.
    assert_eq!(server.get("/api/v1/status").await.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn without_a_configured_token_changes_are_disabled() {
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;
    let resp = client()
        .post(server.at("/api/v1/freeze"))
        .bearer_auth(TOKEN)
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(rollgate_runner::killswitch::is_frozen(&f.state_dir()).is_none());
    server.stop().await;
}

#[tokio::test]
async fn freeze_and_unfreeze_through_the_api() {
    let f = Fixture::new();
    let mut options = f.options();
    options.token = Some(token());
    let server = TestServer::start(options).await;
    let http = client();

    let empty = http
        .post(server.at("/api/v1/freeze"))
        .bearer_auth(TOKEN)
        .json(&json!({"reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let bad = http
        .post(server.at("/api/v1/freeze"))
        .bearer_auth(TOKEN)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid request body")
    );

    let frozen = http
        .post(server.at("/api/v1/freeze"))
        .bearer_auth(TOKEN)
        .json(&json!({"reason": "exchange maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(frozen.status(), StatusCode::OK);
    let info: Value = frozen.json().await.unwrap();
    assert_eq!(info["reason"], "exchange maintenance");
    assert_eq!(info["by"], "serve api");
    assert!(
        rollgate_runner::killswitch::is_frozen(&f.state_dir()).is_some(),
        "the same switch the CLI and the runner read"
    );

    let status: Value = server.json("/api/v1/status").await;
    assert_eq!(status["frozen"]["reason"], "exchange maintenance");
    let page = server.text("/").await;
    assert!(page.contains("exchange maintenance") && page.contains(r#"id="frozen""#));

    let lifted: Value = http
        .post(server.at("/api/v1/unfreeze"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lifted["unfrozen"], true);
    assert_eq!(lifted["was"]["reason"], "exchange maintenance");
    let again: Value = http
        .post(server.at("/api/v1/unfreeze"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["unfrozen"], false);
    server.stop().await;
}

#[tokio::test]
async fn actions_need_a_runner() {
    let f = Fixture::new();
    let mut options = f.options();
    options.token = Some(token());
    let server = TestServer::start(options).await;
    let resp = client()
        .post(server.at("/api/v1/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_through_the_api_runs_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let runner = refusing_runner(dir.path());
    let options = ServeOptions::for_runner(runner, Some(token()));
    let state_dir = options.state_dir.clone();
    let server = TestServer::start(options).await;
    let http = client();

    // Frozen: refused before anything runs.
    rollgate_runner::killswitch::freeze_by(&state_dir, "change freeze", "test").unwrap();
    let locked = http
        .post(server.at("/api/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({"layer": "operator-image", "value": "rollgate-sim/operator:v1.1.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::LOCKED);
    assert!(
        locked.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("change freeze")
    );
    rollgate_runner::killswitch::unfreeze(&state_dir).unwrap();

    // Unknown layer: the runner's usage error.
    let unknown = http
        .post(server.at("/api/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({"layer": "nope", "value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let bad_bake = http
        .post(server.at("/api/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({"layer": "operator-image", "value": "x", "bake": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_bake.status(), StatusCode::BAD_REQUEST);

    // The operator does not answer: the preflight refuses, nothing is changed.
    let started = std::time::Instant::now();
    let resp = http.post(server.at("/api/v1/rollouts")).bearer_auth(TOKEN).json(&json!({"layer": "operator-image", "value": "rollgate-sim/operator:v1.1.0", "bake": "0s"})).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    eprintln!("answered {status} after {:?}", started.elapsed());
    assert!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "{status}: {body}"
    );
    let rollout_id = body["rollout_id"].as_str().unwrap().to_string();
    // Wait for the end through the action endpoint.
    let action = wait_for_action(&server).await;
    assert_eq!(action["state"], "finished", "{action}");
    assert_eq!(action["outcome"], "refused");
    assert_eq!(action["rollout_id"], rollout_id);
    assert_eq!(action["report"]["outcome"], "refused");
    let detail: Value = server.json(&format!("/api/v1/rollouts/{rollout_id}")).await;
    assert_eq!(detail["outcome"], "refused");
    assert_eq!(detail["steps"][0]["kind"], "freeze_baseline");
    assert_eq!(detail["steps"][0]["ok"], false);

    // Nothing to resume.
    let resume = http
        .post(server.at("/api/v1/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token() {
    let f = Fixture::new();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = rollgate_serve::run(listener, async {}, f.options())
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::NoReadToken { .. }), "{err}");
    assert!(rollgate_serve::check_listen("0.0.0.0:9810".parse().unwrap(), true).is_ok());
    assert!(rollgate_serve::check_listen("[::1]:9810".parse().unwrap(), false).is_ok());
    assert!(rollgate_serve::check_listen("10.1.2.3:9810".parse().unwrap(), false).is_err());
}

/// Captures every log line the server writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_appears_in_logs_or_answers() {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let f = Fixture::new();
    let mut options = f.options();
    options.token = Some(token());
    assert!(!format!("{options:?}").contains(TOKEN));
    let server = TestServer::start(options).await;
    let http = client();
    let mut answers = String::new();
    for (path, tok) in [
        ("/api/v1/freeze", TOKEN),
        ("/api/v1/unfreeze", TOKEN),
        ("/api/v1/freeze", "serve-test-token-wrong-0123456789"),
    ] {
        let resp = http
            .post(server.at(path))
            .bearer_auth(tok)
            .json(&json!({"reason": "log check"}))
            .send()
            .await
            .unwrap();
        answers.push_str(&format!("{:?}", resp.headers()));
        answers.push_str(&resp.text().await.unwrap());
    }
    for path in ["/api/v1/status", "/", "/metrics"] {
        let body = server.get(path).await;
        answers.push_str(&body.text().await.unwrap());
    }
    server.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/api/v1/freeze"),
        "request logging was captured: {logs}"
    );
    assert!(
        !logs.contains(TOKEN) && !logs.contains("serve-test-token"),
        "a token leaked into the logs:\n{logs}"
    );
    assert!(
        !answers.contains(TOKEN) && !answers.contains("serve-test-token"),
        "a token leaked into an answer"
    );
}

/// An action whose runner panics is marked failed with the panic's message, never left
/// "running" for ever, and the next action can start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_crashes_is_marked_failed() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServeOptions::for_runner(crashing_runner(dir.path()), Some(token()));
    let server = TestServer::start(options).await;
    let http = client();
    let resp = http
        .post(server.at("/api/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({"layer": "operator-image", "value": "rollgate-sim/operator:v1.1.0", "bake": "0s"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    // The crash may come before or after the answer: a 202 with the rollout, or the error.
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::INTERNAL_SERVER_ERROR,
        "{status}: {body}"
    );
    let action = wait_for_action(&server).await;
    assert_eq!(action["state"], "failed", "{action}");
    let error = action["error"].as_str().unwrap();
    assert!(
        error.contains("crashed") && error.contains("test driver crashed reading operator-image"),
        "{error}"
    );
    assert!(action["finished_at"].is_string(), "{action}");
    // The slot is free again: a new rollout is not refused as "still running", but because
    // the crashed one was recorded and must be resumed first (as after a killed CLI).
    let again = http
        .post(server.at("/api/v1/rollouts"))
        .bearer_auth(TOKEN)
        .json(&json!({"layer": "operator-image", "value": "rollgate-sim/operator:v1.1.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let message = again.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !message.contains("still running") && message.contains("resume"),
        "{message}"
    );
    server.stop().await;
}

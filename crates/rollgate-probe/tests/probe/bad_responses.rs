//! Bad answers are failed checks with a clear detail, never panics or hangs.

use std::time::{Duration, Instant};

use rollgate_core::config::{
    Chain, EncryptionKeyProbe, Expect, Expectation, MarkPriceProbe, Progression, ProgressionMode,
    Readiness,
};
use rollgate_core::vocab::CheckStatus;
use rollgate_probe::chain::probe_chain;
use rollgate_probe::encryption_key::probe_encryption_key;
use rollgate_probe::http::{HttpClient, probe_health, probe_readiness};
use rollgate_probe::mark_price::probe_mark_price;
use rollgate_probe::progression::{Sampling, probe_progression};
use serde_json::json;

use crate::support::{Answer, assert_outcome, closed_port, json, limits, serve};

fn readiness(url: &str) -> Readiness {
    Readiness {
        name: "operator".into(),
        url: format!("{url}/v2/status"),
        expect: vec![Expect {
            pointer: "/health".into(),
            check: Expectation::Equals(json!("Healthy")),
        }],
    }
}

async fn readiness_outcome(answer: Answer) -> rollgate_probe::Outcome {
    let url = serve(answer).await;
    let http = HttpClient::new(&limits()).unwrap();
    probe_readiness(&http, &readiness(&url)).await
}

fn assert_fail(o: &rollgate_probe::Outcome, needle: &str) {
    assert_outcome(o, CheckStatus::Fail, needle);
}

#[tokio::test]
async fn healthy_json_passes_and_keeps_the_document() {
    let o = readiness_outcome(json(json!({"health": "Healthy"}))).await;
    assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
    assert_eq!(o.observed, json!({"health": "Healthy"}));
}

/// A readiness endpoint that redirects to a healthy server is not judged on that server's
/// answer: the redirect is a failed check naming the (redacted) Location.
#[tokio::test]
async fn a_redirect_is_a_failure_naming_the_location() {
    let healthy = serve(json(json!({"health": "Healthy"}))).await;
    let target = healthy.replace("http://", "http://probe:hunter2@") + "/v2/status";
    let o = readiness_outcome(Answer::Redirect(target.clone())).await;
    assert_fail(&o, "HTTP 302, a redirect to");
    let shown = target.replace("hunter2", "****");
    assert!(o.detail.contains(&shown), "{}", o.detail);
    assert!(!o.detail.contains("hunter2"), "{}", o.detail);
    // A relative Location is shown resolved; the deployment-service health check alike.
    let o = readiness_outcome(Answer::Redirect("/login?next=/v2/status".into())).await;
    assert_fail(&o, "/login?next=/v2/status");
    let url = serve(Answer::Redirect(healthy.clone())).await;
    let http = HttpClient::new(&limits()).unwrap();
    let o = probe_health(&http, &format!("{url}/health")).await;
    assert_fail(&o, &format!("a redirect to {healthy}/"));
}

#[tokio::test]
async fn non_json_body() {
    let o = readiness_outcome(Answer::Full(
        200,
        "text/html",
        b"<html>oops</html>".to_vec(),
    ))
    .await;
    assert_fail(&o, "not JSON (starts with `<html>oops</html>`)");
}

#[tokio::test]
async fn truncated_body() {
    let o = readiness_outcome(Answer::Truncated {
        claimed: 500,
        body: br#"{"health": "Hea"#.to_vec(),
    })
    .await;
    assert_eq!(o.status, CheckStatus::Fail, "{}", o.detail);
    assert!(o.detail.contains("request failed"), "{}", o.detail);
}

#[tokio::test]
async fn multi_megabyte_body_is_cut_at_the_cap() {
    let start = Instant::now();
    let o = readiness_outcome(Answer::Huge {
        total: 8 * 1024 * 1024,
    })
    .await;
    assert_fail(&o, "larger than the 1048576-byte limit");
    assert!(start.elapsed() < Duration::from_secs(5));
    // A declared length over the cap is refused before reading.
    let o = readiness_outcome(Answer::Full(
        200,
        "application/json",
        vec![b' '; 2 * 1024 * 1024],
    ))
    .await;
    assert_fail(&o, "larger than the");
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let start = Instant::now();
    let o = readiness_outcome(Answer::Silent).await;
    assert_fail(&o, "no complete answer within 800ms");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn body_that_drips_forever_times_out() {
    let start = Instant::now();
    let o = readiness_outcome(Answer::Drip {
        every: Duration::from_millis(50),
    })
    .await;
    assert_fail(&o, "no complete answer within");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn wrong_type_at_pointer() {
    let o = readiness_outcome(json(json!({"health": 1}))).await;
    assert_fail(&o, "/health is 1, expected \"Healthy\"");
    let o = readiness_outcome(json(json!({"other": true}))).await;
    assert_fail(&o, "/health is missing");
}

#[tokio::test]
async fn error_status_keeps_json_body() {
    let o = readiness_outcome(Answer::Full(
        503,
        "application/json",
        br#"{"error":"ServiceUnavailable"}"#.to_vec(),
    ))
    .await;
    assert_fail(&o, "answered HTTP 503");
    assert_eq!(o.observed, json!({"error": "ServiceUnavailable"}));
}

#[tokio::test]
async fn connection_refused() {
    let url = closed_port().await;
    let http = HttpClient::new(&limits()).unwrap();
    let o = probe_readiness(&http, &readiness(&url)).await;
    assert_fail(&o, "/v2/status: cannot connect: Connection refused");
    let o = probe_health(&http, &format!("{url}/health")).await;
    assert_fail(&o, "/health: cannot connect: Connection refused");
}

#[tokio::test]
async fn passwords_never_reach_details() {
    let url = closed_port()
        .await
        .replace("http://", "http://user:hunter2@");
    let http = HttpClient::new(&limits()).unwrap();
    let o = probe_readiness(&http, &readiness(&url)).await;
    assert!(!o.detail.contains("hunter2"), "{}", o.detail);
    assert!(o.detail.contains("user:****@"), "{}", o.detail);
}

pub fn chain(url: &str) -> Chain {
    Chain {
        url: url.into(),
        probe_url: url.into(),
        chain_id: Some(1337),
        max_block_age: Chain::DEFAULT_MAX_BLOCK_AGE,
        advance_window: None,
    }
}

#[tokio::test]
async fn chain_rpc_bad_answers() {
    let http = HttpClient::new(&limits()).unwrap();
    // Each server gives the same answer to every request: a batch gets a single object back,
    // so the probe falls back to one call per method, and reports the first bad one.
    let cases = [
        (
            json(json!({"jsonrpc": "2.0", "id": 1, "result": 1337})),
            "expected a hex quantity",
        ),
        (
            json(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}})),
            "eth_chainId returned error",
        ),
        (json(json!({"jsonrpc": "2.0", "id": 1})), "has no `result`"),
        (
            json(json!({"jsonrpc": "2.0", "id": 1, "result": "0x1"})),
            "chain id is 1, expected 1337",
        ),
        (
            Answer::Full(200, "text/plain", b"hello".to_vec()),
            "not JSON",
        ),
        (Answer::Silent, "no complete answer"),
        // The chain id is right, but a quantity is no block.
        (
            json(json!({"jsonrpc": "2.0", "id": 1, "result": "0x539"})),
            "eth_getBlockByNumber(\"latest\") returned \"0x539\", expected a block object",
        ),
    ];
    for (answer, needle) in cases {
        let url = serve(answer).await;
        let o = probe_chain(&http, &chain(&url)).await;
        assert_fail(&o, needle);
    }
}

#[tokio::test]
async fn encryption_key_bad_answers() {
    let http = HttpClient::new(&limits()).unwrap();
    for (answer, needle) in [
        (json(json!("0x1234")), "the key is 2 bytes"),
        (json(json!({"unexpected": 1})), "without a key string"),
        (
            Answer::Full(200, "application/octet-stream", vec![0xff, 0x00, 0xfe]),
            "not text",
        ),
        (
            Answer::Huge {
                total: 4 * 1024 * 1024,
            },
            "larger than",
        ),
    ] {
        let url = serve(answer).await;
        let o = probe_encryption_key(
            &http,
            &EncryptionKeyProbe {
                url: format!("{url}/v2/encryption-key"),
            },
        )
        .await;
        assert_fail(&o, needle);
    }
    let url = serve(json(json!(
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    )))
    .await;
    let o = probe_encryption_key(&http, &EncryptionKeyProbe { url }).await;
    assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
}

#[tokio::test]
async fn mark_price_bad_answers() {
    let http = HttpClient::new(&limits()).unwrap();
    let probe = |url: String| MarkPriceProbe {
        url,
        symbols: vec!["ETHP".into()],
        price_pointer: "/{symbol}/price".into(),
        timestamp_pointer: "/{symbol}/timestamp".into(),
        max_age: Duration::from_secs(30),
    };
    for (answer, needle) in [
        (json(json!({})), "ETHP: no mark price at /ETHP/price"),
        (
            json(json!({"ETHP": {"price": "abc", "timestamp": 1}})),
            "is not a decimal number",
        ),
        (json(json!({"ETHP": {"price": 1, "timestamp": 1}})), "stale"),
        (
            Answer::Truncated {
                claimed: 100,
                body: b"{\"ETHP\"".to_vec(),
            },
            "request failed",
        ),
    ] {
        let url = serve(answer).await;
        let o = probe_mark_price(&http, &probe(url)).await;
        assert_fail(&o, needle);
    }
}

#[tokio::test]
async fn progression_wrong_type_fails_and_idle_warns() {
    let http = HttpClient::new(&limits()).unwrap();
    let p = |url: String| Progression {
        name: "requestIndex".into(),
        url,
        pointer: "/lastRequest/requestIndex".into(),
        mode: ProgressionMode::Increases,
        window: Duration::from_millis(200),
    };
    let s = Sampling {
        window: Duration::from_millis(200),
        interval: Duration::from_millis(50),
        until_moved: false,
    };
    let url = serve(json(json!({"lastRequest": {"requestIndex": [1]}}))).await;
    assert_fail(
        &probe_progression(&http, &p(url), s).await,
        "expected a number",
    );
    let url = serve(json(json!({"lastRequest": {"requestIndex": 5}}))).await;
    let o = probe_progression(&http, &p(url), s).await;
    assert_eq!(o.status, CheckStatus::Warn, "{}", o.detail);
    assert_eq!(o.observed["idle"], json!(true));
}

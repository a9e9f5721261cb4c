//! Webhook notifications: `[serve].webhook_url` receives a JSON POST when a rollout starts, is
//! promoted, rolled back, fails its rollback or is refused, with the decision summary.
//!
//! [`Notifier::notify`] only enqueues: delivery runs on a background tokio task with bounded
//! retries and exponential backoff, so a slow or dead endpoint never delays a rollout. When the
//! queue is full the event is dropped with a warning. A short-lived process (the CLI) calls
//! [`Notifier::flush`] before it exits so the last events are not lost with it.
//!
//! The body (`"text"` is what Slack-compatible incoming webhooks display):
//!
//! ```json
//! {"event": "rolled_back", "node": "node0", "rollout_id": "r-20261128T043512Z-7c1e",
//!  "layer": "operator-image", "from": "rollgate-sim/operator:v1.0.0", "to": "rollgate-sim/operator:v1.1.0",
//!  "outcome": "rolled_back", "reason": "progression:requestIndex: healthy but not progressing: …",
//!  "failing_gate": {"name": "progression:requestIndex", "verdict": "fail", "detail": "…"},
//!  "gates": [{"name": "readiness:operator", "verdict": "pass", "detail": "green after 2.1s"}, …],
//!  "rollback_verified": true, "at": "2026-11-28T04:35:26.330Z",
//!  "text": "rollgate node0: rollout r-… operator-image → rollgate-sim/operator:v1.1.0 rolled back: …"}
//! ```
//!
//! Retried: connection errors, timeouts, 429 and 5xx answers. Not retried: other 4xx answers
//! (the request itself is wrong). The URL is never logged, since webhook URLs often embed a
//! secret; logs name the host only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollgate_core::vocab::{GateResult, Outcome, Verdict};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::report::RolloutReport;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RolloutStarted,
    Promoted,
    RolledBack,
    RollbackFailed,
    Refused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RolloutStarted => "rollout_started",
            EventKind::Promoted => "promoted",
            EventKind::RolledBack => "rolled_back",
            EventKind::RollbackFailed => "rollback_failed",
            EventKind::Refused => "refused",
        }
    }

    fn of(outcome: Outcome) -> EventKind {
        match outcome {
            Outcome::Promoted => EventKind::Promoted,
            Outcome::RolledBack => EventKind::RolledBack,
            Outcome::RollbackFailed => EventKind::RollbackFailed,
            Outcome::Refused => EventKind::Refused,
        }
    }
}

/// A gate in a notification: the evidence stays in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSummary {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl From<&GateResult> for GateSummary {
    fn from(g: &GateResult) -> Self {
        GateSummary {
            name: g.name.clone(),
            verdict: g.verdict,
            detail: g.detail.clone(),
        }
    }
}

/// One notification (the JSON body above).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    pub node: String,
    pub rollout_id: String,
    pub layer: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub failing_gate: Option<GateSummary>,
    pub gates: Vec<GateSummary>,
    pub rollback_verified: Option<bool>,
    pub at: String,
    pub text: String,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Event {
    /// A rollout began (its id is journaled; nothing has changed yet).
    pub fn started(
        node: &str,
        rollout_id: &str,
        layer: &str,
        from: Option<&str>,
        to: &str,
    ) -> Event {
        let text = format!(
            "rollgate {node}: rollout {rollout_id} started: {layer} {} → {to}",
            from.unwrap_or("?")
        );
        Event {
            event: EventKind::RolloutStarted,
            node: node.into(),
            rollout_id: rollout_id.into(),
            layer: layer.into(),
            from: from.map(str::to_string),
            to: to.into(),
            outcome: None,
            reason: None,
            failing_gate: None,
            gates: vec![],
            rollback_verified: None,
            at: now(),
            text,
        }
    }

    /// A rollout, rollback or resume ended: its decision record, summarized.
    pub fn finished(node: &str, report: &RolloutReport) -> Event {
        let failing = report
            .gates
            .iter()
            .find(|g| g.verdict == Verdict::Fail)
            .map(GateSummary::from);
        let words = match report.outcome {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled back",
            Outcome::RollbackFailed => "ROLLBACK FAILED, operator attention needed",
            Outcome::Refused => "refused, nothing was changed",
        };
        let text = format!(
            "rollgate {node}: rollout {} {} → {} {words}: {}",
            report.rollout_id, report.layer, report.to, report.reason
        );
        Event {
            event: EventKind::of(report.outcome),
            node: node.into(),
            rollout_id: report.rollout_id.clone(),
            layer: report.layer.clone(),
            from: report.from.clone(),
            to: report.to.clone(),
            outcome: Some(report.outcome),
            reason: Some(report.reason.clone()),
            failing_gate: failing,
            gates: report.gates.iter().map(GateSummary::from).collect(),
            rollback_verified: report.rollback.as_ref().map(|r| r.verified),
            at: now(),
            text,
        }
    }
}

/// Delivery policy.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled after every failure.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt's limit (connect, send and answer).
    pub timeout: Duration,
    /// Events waiting beyond this are dropped.
    pub queue: usize,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            queue: 64,
        }
    }
}

enum Msg {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// Why a notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("failed to build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("the webhook URL is not a valid http(s) URL")]
    Url,
    #[error("notifications need a tokio runtime")]
    NoRuntime,
}

/// Sends [`Event`]s to the configured webhook from a background task. Cheap to clone; a
/// disabled notifier (no `webhook_url`) accepts and drops everything.
#[derive(Clone, Default)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Msg>>,
    host: Arc<str>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a secret.
        f.debug_struct("Notifier")
            .field("enabled", &self.tx.is_some())
            .field("host", &self.host)
            .finish()
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// From `[serve].webhook_url`; disabled (with a warning) when it cannot be started.
    /// Must be called inside a tokio runtime.
    pub fn from_config(config: &rollgate_core::config::Config) -> Notifier {
        match &config.serve.webhook_url {
            None => Notifier::disabled(),
            Some(url) => Notifier::new(url, NotifyOptions::default()).unwrap_or_else(|e| {
                tracing::warn!(
                    "webhook notifications disabled: {}",
                    rollgate_probe::errors::chain(&e)
                );
                Notifier::disabled()
            }),
        }
    }

    /// Start the delivery task for `url`.
    pub fn new(url: &str, options: NotifyOptions) -> Result<Notifier, NotifyError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| NotifyError::Url)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NotifyError::Url);
        }
        let host: Arc<str> = parsed.host_str().unwrap_or("?").into();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")))
            // The probes' roots: the platform's, or the bundled ones in an image without any.
            .tls_certs_only(rollgate_probe::http::trust_roots().certs.iter().cloned())
            .build()
            .map_err(NotifyError::Client)?;
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        runtime.spawn(deliver(client, parsed, host.clone(), options, rx));
        Ok(Notifier { tx: Some(tx), host })
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queue an event and return at once. Dropped with a warning when the queue is full.
    pub fn notify(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        let kind = event.event;
        match tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(event = kind.as_str(), host = %self.host, "webhook queue full: notification dropped")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(
                    event = kind.as_str(),
                    "webhook delivery task is gone: notification dropped"
                )
            }
        }
    }

    /// Wait (at most `timeout`) until every event queued so far has been delivered or given
    /// up on. True when that happened in time.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (done, wait) = oneshot::channel();
        tokio::time::timeout(timeout, async {
            tx.send(Msg::Flush(done)).await.is_ok() && wait.await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// The delivery task: one event at a time, in order.
async fn deliver(
    client: reqwest::Client,
    url: reqwest::Url,
    host: Arc<str>,
    options: NotifyOptions,
    mut rx: mpsc::Receiver<Msg>,
) {
    while let Some(msg) = rx.recv().await {
        let event = match msg {
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Msg::Event(e) => e,
        };
        // The body leaves the machine: the configuration's secrets are replaced first.
        let body = serde_json::to_string(&*event).unwrap_or_default();
        let body = rollgate_core::secrets::scrub_json_text(&body).into_owned();
        let mut backoff = options.initial_backoff;
        for attempt in 1..=options.max_attempts.max(1) {
            let result = client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let retry = match result {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(event = event.event.as_str(), rollout = %event.rollout_id, %host, attempt, "webhook delivered");
                    break;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    tracing::warn!(event = event.event.as_str(), %host, attempt, status = status.as_u16(), "webhook answered with an error");
                    retry
                }
                Err(e) => {
                    // Without the URL (reqwest errors may print it).
                    let what = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "failed"
                    };
                    tracing::warn!(event = event.event.as_str(), %host, attempt, "webhook delivery {what}");
                    true
                }
            };
            if !retry {
                tracing::warn!(event = event.event.as_str(), %host, "webhook refused the notification; not retried");
                break;
            }
            if attempt == options.max_attempts.max(1) {
                tracing::warn!(event = event.event.as_str(), %host, attempts = attempt, "webhook delivery given up");
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(options.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A webhook receiver: answers the statuses given in order (then 200), records bodies.
    /// With `hang`, accepts connections and never answers.
    async fn receiver(
        statuses: Vec<u16>,
        hang: bool,
    ) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook/s3cr3t-token",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                if hang {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(sock);
                    });
                    continue;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break Some(body[..len].to_string());
                        }
                    }
                };
                if let Some(body) = body {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null));
                }
                let status = statuses.next().unwrap_or(200);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (url, bodies)
    }

    fn fast() -> NotifyOptions {
        NotifyOptions {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            timeout: Duration::from_secs(2),
            queue: 8,
        }
    }

    fn report(outcome: Outcome) -> RolloutReport {
        RolloutReport {
            rollout_id: "r-1".into(),
            outcome,
            layer: "operator-image".into(),
            from: Some("op:v1".into()),
            to: "op:v2".into(),
            baseline_id: Some("b-1".into()),
            gates: vec![
                GateResult {
                    name: "readiness:operator".into(),
                    verdict: Verdict::Pass,
                    detail: "green after 2s".into(),
                    evidence: serde_json::json!({"big": "evidence"}),
                },
                GateResult {
                    name: "progression:requestIndex".into(),
                    verdict: Verdict::Fail,
                    detail: "did not increase in 5s".into(),
                    evidence: serde_json::Value::Null,
                },
            ],
            reason: "progression:requestIndex: did not increase in 5s; rolled back".into(),
            rollback: None,
            promoted_baseline_id: None,
            steps: vec![],
            timings_ms: Default::default(),
            snapshots: vec![],
        }
    }

    #[tokio::test]
    async fn delivers_the_decision_summary() {
        let (url, bodies) = receiver(vec![], false).await;
        let n = Notifier::new(&url, fast()).unwrap();
        n.notify(Event::started(
            "node0",
            "r-1",
            "operator-image",
            Some("op:v1"),
            "op:v2",
        ));
        n.notify(Event::finished("node0", &report(Outcome::RolledBack)));
        assert!(n.flush(Duration::from_secs(10)).await);
        let got = bodies.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["event"], "rollout_started");
        assert_eq!(got[1]["event"], "rolled_back");
        assert_eq!(got[1]["failing_gate"]["name"], "progression:requestIndex");
        assert_eq!(got[1]["gates"].as_array().unwrap().len(), 2);
        assert!(
            got[1]["gates"][0].get("evidence").is_none(),
            "evidence stays in the journal"
        );
        assert!(got[1]["text"].as_str().unwrap().contains("rolled back"));
        assert!(
            !format!("{n:?}").contains("s3cr3t"),
            "the URL is never printed"
        );
    }

    #[tokio::test]
    async fn retries_server_errors_with_backoff() {
        let (url, bodies) = receiver(vec![503, 500, 200], false).await;
        let n = Notifier::new(&url, fast()).unwrap();
        n.notify(Event::finished("node0", &report(Outcome::Promoted)));
        assert!(n.flush(Duration::from_secs(10)).await);
        assert_eq!(
            bodies.lock().unwrap().len(),
            3,
            "two failures, then delivered"
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_a_client_error() {
        let (url, bodies) = receiver(vec![500, 500, 500, 500, 500, 500], false).await;
        let n = Notifier::new(&url, fast()).unwrap();
        n.notify(Event::finished("node0", &report(Outcome::RollbackFailed)));
        assert!(n.flush(Duration::from_secs(10)).await);
        assert_eq!(bodies.lock().unwrap().len(), 4);

        let (url, bodies) = receiver(vec![400], false).await;
        let n = Notifier::new(&url, fast()).unwrap();
        n.notify(Event::finished("node0", &report(Outcome::RolledBack)));
        assert!(n.flush(Duration::from_secs(10)).await);
        assert_eq!(bodies.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_hanging_endpoint_never_blocks_the_caller() {
        let (url, _) = receiver(vec![], true).await;
        let n = Notifier::new(
            &url,
            NotifyOptions {
                timeout: Duration::from_secs(30),
                ..fast()
            },
        )
        .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            n.notify(Event::finished("node0", &report(Outcome::RolledBack)));
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "notify only enqueues: {:?}",
            started.elapsed()
        );
        assert!(
            !n.flush(Duration::from_millis(100)).await,
            "nothing could be delivered"
        );
    }

    #[tokio::test]
    async fn a_disabled_notifier_accepts_everything() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.notify(Event::finished("node0", &report(Outcome::Promoted)));
        assert!(n.flush(Duration::from_millis(10)).await);
    }

    #[test]
    fn only_http_urls() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                Notifier::new("ftp://example.invalid/x", fast()),
                Err(NotifyError::Url)
            ));
            assert!(matches!(
                Notifier::new("not a url", fast()),
                Err(NotifyError::Url)
            ));
        });
        assert!(matches!(
            Notifier::new("http://127.0.0.1:1/x", fast()),
            Err(NotifyError::NoRuntime)
        ));
    }
}

//! A client of the operator's Alertmanager (API v2) for quiet restarts: create a silence for
//! the node's alerts before the restart, expire it when the rollout is past verify or over.
//!
//! Silences are found again by their comment, which names the rollout
//! (`rollgate rollout r-…`): [`AlertmanagerClient::expire_for`] expires every active or pending
//! silence of a rollout, so a `resume` after a crash cleans up even when the process died
//! between creating the silence and journaling its id. Shares the probes' HTTP plumbing and the
//! `[prometheus]` client's authentication (bearer token file, basic auth in the URL, CA file).

use rollgate_core::config::{Alertmanager, LabelMatcher, ProbeLimits};
use rollgate_core::redact::redact_url;
use serde_json::{Value, json};

use crate::errors::ProbeError;
use crate::http::{Fetched, HttpClient, parse_json, require_success};
use crate::prometheus::api_client;

/// The Alertmanager client.
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    http: HttpClient,
    base: String,
    bearer: Option<String>,
}

/// The comment that ties a silence to its rollout.
pub fn comment_for(rollout_id: &str) -> String {
    format!("rollgate rollout {rollout_id}: planned restart")
}

impl AlertmanagerClient {
    pub fn new(
        config: &Alertmanager,
        limits: &ProbeLimits,
    ) -> Result<AlertmanagerClient, ProbeError> {
        let (http, bearer) = api_client(
            &config.url,
            config.bearer_token_file.as_deref(),
            config.ca_file.as_deref(),
            limits,
            "alertmanager",
        )?;
        Ok(AlertmanagerClient {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            bearer,
        })
    }

    fn url(&self, path: &str) -> Result<(reqwest::Url, String), ProbeError> {
        let endpoint = redact_url(&format!("{}{path}", self.base));
        let url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            ProbeError::Invalid {
                endpoint: endpoint.clone(),
                message: format!("not a URL: {e}"),
            }
        })?;
        Ok((url, endpoint))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Fetched, String), ProbeError> {
        let (url, endpoint) = self.url(path)?;
        let fetched = self
            .http
            .request_as(method, &url, &endpoint, self.bearer.as_deref(), body)
            .await?;
        Ok((fetched, endpoint))
    }

    /// Create a silence from `starts_at` to `ends_at` (RFC 3339); its id.
    pub async fn create_silence(
        &self,
        matchers: &[LabelMatcher],
        starts_at: &str,
        ends_at: &str,
        comment: &str,
    ) -> Result<String, ProbeError> {
        let body = json!({
            "matchers": matchers,
            "startsAt": starts_at,
            "endsAt": ends_at,
            "createdBy": "rollgate",
            "comment": comment,
        });
        let (fetched, endpoint) = self
            .call(reqwest::Method::POST, "/api/v2/silences", Some(&body))
            .await?;
        require_success(&endpoint, &fetched)?;
        let doc = parse_json(&endpoint, &fetched.body)?;
        doc.get("silenceID")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 100)
            .map(str::to_string)
            .ok_or_else(|| ProbeError::Invalid {
                endpoint,
                message: "answer without a `silenceID`".into(),
            })
    }

    /// The ids of the silences whose comment is `comment` and that are active or pending.
    pub async fn live_silences(&self, comment: &str) -> Result<Vec<String>, ProbeError> {
        let (fetched, endpoint) = self
            .call(reqwest::Method::GET, "/api/v2/silences", None)
            .await?;
        require_success(&endpoint, &fetched)?;
        let doc = parse_json(&endpoint, &fetched.body)?;
        let list = doc.as_array().ok_or_else(|| ProbeError::Invalid {
            endpoint,
            message: "the silences are not a list".into(),
        })?;
        Ok(list
            .iter()
            .filter(|s| s.get("comment").and_then(Value::as_str) == Some(comment))
            .filter(|s| {
                matches!(
                    s.pointer("/status/state").and_then(Value::as_str),
                    Some("active" | "pending")
                )
            })
            .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// Expire one silence.
    pub async fn expire(&self, id: &str) -> Result<(), ProbeError> {
        // An id is opaque text from the server: keep it to a path segment.
        let safe: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let (fetched, endpoint) = self
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v2/silence/{safe}"),
                None,
            )
            .await?;
        require_success(&endpoint, &fetched)
    }

    /// Expire every live silence of the rollout with this comment; the ids expired.
    pub async fn expire_for(&self, comment: &str) -> Result<Vec<String>, ProbeError> {
        let ids = self.live_silences(comment).await?;
        for id in &ids {
            self.expire(id).await?;
        }
        Ok(ids)
    }
}

//! Errors of the probe crate: why a probe could not observe what it went to observe.
//!
//! Every variant names the endpoint it was talking to, already redacted (URLs go through
//! [`rollgate_core::redact::redact_url`] before they are stored here). A check's detail is the
//! whole chain, rendered by [`chain`], so the root cause (connection refused, certificate not
//! trusted, ...) is always visible.

use std::time::Duration;
use thiserror::Error;

/// Why a probe failed to observe its target.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{endpoint}: no complete answer within {}", humanize(*after))]
    Timeout { endpoint: String, after: Duration },

    #[error("{endpoint}: request failed")]
    Request {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{endpoint}: answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },

    /// Probes never follow redirects: the endpoint configured is the one judged.
    #[error(
        "{endpoint}: answered HTTP {status}, a redirect to {location} (probes do not follow redirects: configure the final URL)"
    )]
    Redirect {
        endpoint: String,
        status: u16,
        location: String,
    },

    #[error("{endpoint}: response body larger than the {limit}-byte limit (probe.max_body)")]
    TooLarge { endpoint: String, limit: u64 },

    #[error("{endpoint}: response is not JSON ({snippet})")]
    NotJson {
        endpoint: String,
        snippet: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{endpoint}: {message}")]
    Invalid { endpoint: String, message: String },

    #[error("{endpoint}: {what}")]
    Io {
        endpoint: String,
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{endpoint}: {what}")]
    Postgres {
        endpoint: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{endpoint}: {what}")]
    Redis {
        endpoint: String,
        what: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("{endpoint}: {what}")]
    Tls {
        endpoint: String,
        what: String,
        #[source]
        source: rustls::Error,
    },
}

/// `1.5s`, `250ms`: short durations for details.
pub(crate) fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 || d.subsec_millis() != 0 && d.as_secs() < 10 {
        if d.as_millis() < 1000 {
            return format!("{}ms", d.as_millis());
        }
        return format!("{:.1}s", d.as_secs_f64());
    }
    format!("{}s", d.as_secs())
}

/// An error and all its causes, joined with `: `, with adjacent duplicates removed (hyper and
/// reqwest often repeat the same text one level apart). URLs inside are redacted.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && parts.last().is_none_or(|l| !l.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    rollgate_core::redact::redact_text(&parts.join(": "))
}

/// The innermost cause of an error (an `io::Error`'s wrapped error included).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    loop {
        if let Some(inner) = cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            cur = inner;
            continue;
        }
        match cur.source() {
            Some(next) => cur = next,
            None => return cur.to_string(),
        }
    }
}

impl ProbeError {
    /// The whole chain of causes, for a check's detail. A refused or failed connection is
    /// said plainly (`…: cannot connect: Connection refused (os error 111)`) instead of through
    /// the HTTP stack's layers of wrapping.
    pub fn detail(&self) -> String {
        if let ProbeError::Request { endpoint, source } = self
            && source.is_connect()
        {
            return rollgate_core::redact::redact_text(&format!(
                "{endpoint}: cannot connect: {}",
                root_cause(source)
            ));
        }
        chain(self)
    }

    /// Whether this is what a component looks like while it restarts: no connection, no answer
    /// in time, or HTTP 421 `NotAcceptingRequests` / 503 `ServiceUnavailable` (domain.md).
    pub fn is_transient(&self) -> bool {
        match self {
            ProbeError::Timeout { .. } => true,
            ProbeError::Request { source, .. } => source.is_connect() || source.is_timeout(),
            ProbeError::Status { status, .. } => matches!(status, 421 | 503),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_secs(5)), "5s");
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn chain_includes_causes() {
        let e = ProbeError::Io {
            endpoint: "unix:/x".into(),
            what: "cannot connect".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ),
        };
        assert_eq!(e.detail(), "unix:/x: cannot connect: connection refused");
    }
}

//! What one probe concluded: a status, a one-line detail and what it measured.
//!
//! The runner turns an [`Outcome`] into a [`rollgate_core::vocab::CheckResult`] by adding the
//! check's name, group and latency; probes themselves never know how they are presented.

use rollgate_core::vocab::CheckStatus;
use serde_json::Value;

use crate::errors::ProbeError;

/// The conclusion of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: CheckStatus,
    /// One line, naming the endpoint or path; redacted.
    pub detail: String,
    /// What was measured, for evidence and baselines; `Value::Null` when nothing was.
    pub observed: Value,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>, observed: Value) -> Outcome {
        Outcome {
            status: CheckStatus::Pass,
            detail: detail.into(),
            observed,
        }
    }

    pub fn warn(detail: impl Into<String>, observed: Value) -> Outcome {
        Outcome {
            status: CheckStatus::Warn,
            detail: detail.into(),
            observed,
        }
    }

    pub fn fail(detail: impl Into<String>, observed: Value) -> Outcome {
        Outcome {
            status: CheckStatus::Fail,
            detail: detail.into(),
            observed,
        }
    }

    pub fn skip(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: CheckStatus::Skip,
            detail: detail.into(),
            observed: Value::Null,
        }
    }

    /// Fail with the error's whole chain of causes as the detail.
    pub fn from_error(err: &ProbeError) -> Outcome {
        Outcome::fail(err.detail(), Value::Null)
    }

    /// True unless the status is `fail`.
    pub fn is_ok(&self) -> bool {
        self.status != CheckStatus::Fail
    }
}

impl From<ProbeError> for Outcome {
    fn from(err: ProbeError) -> Outcome {
        Outcome::from_error(&err)
    }
}

/// Render a JSON value for a detail, cut at `max` characters.
pub fn show_value(v: &Value, max: usize) -> String {
    rollgate_core::text::shorten(&v.to_string(), max + 1)
}

/// The first `max` characters of a possibly binary body, printable, for a detail.
pub fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max * 4)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    if out.trim().is_empty() {
        "empty body".to_string()
    } else {
        format!("starts with `{}`", out.trim())
    }
}

//! The secrets of the running configuration, known to every output.
//!
//! Word-level redaction ([`crate::redact::redact_text`]) finds passwords inside URLs and
//! `token=…` pairs, but not a password a child prints on its own, nor the serve token in an
//! error message. So the secrets a configuration holds (passwords of its URLs, tokens, declared
//! `secrets`) are installed here once, right after the configuration is loaded, and every
//! output path replaces them: `redact_text` (driver output, errors, serve answers), the journal's
//! redactor, the CLI's printed output and its log writer, webhooks. A process-wide list, because
//! "every output" includes code that never sees the configuration (a tracing writer, a panic
//! message); it only ever grows, so an output cannot race a reload into printing a secret.

use std::borrow::Cow;
use std::sync::RwLock;

use crate::redact::REDACTED;

/// Secrets shorter than this are not replaced literally: replacing every `a` would destroy the
/// record and protect nothing (configuration refuses declared secrets this short).
pub const MIN_LEN: usize = 4;

/// Longest first, so a secret containing another is replaced whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Add `secrets` to the process-wide list (too short or empty ones are ignored).
pub fn install(secrets: impl IntoIterator<Item = String>) {
    let mut list = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for s in secrets {
        if s.chars().count() >= MIN_LEN && !list.contains(&s) {
            list.push(s);
        }
    }
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// How many secrets are installed.
pub fn count() -> usize {
    SECRETS.read().unwrap_or_else(|p| p.into_inner()).len()
}

/// `text` with every installed secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let list = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    replace_all(text, &list)
}

/// Replace each of `secrets` (longest first) in `text`.
pub fn replace_all<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for s in secrets {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

/// Serialized JSON with every installed secret replaced, in its raw form and as JSON escapes it
/// (a secret holding `"` or `\` appears escaped). Keeps the document's key order, which
/// scrubbing a [`serde_json::Value`] would sort.
pub fn scrub_json_text(json: &str) -> Cow<'_, str> {
    let list = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut variants: Vec<String> = Vec::with_capacity(list.len() * 2);
    for s in list.iter() {
        variants.push(s.clone());
        let escaped = serde_json::to_string(s).unwrap_or_default();
        let escaped = &escaped[1..escaped.len().saturating_sub(1).max(1)];
        if escaped != s {
            variants.push(escaped.to_string());
        }
    }
    variants.sort_by_key(|s| std::cmp::Reverse(s.len()));
    replace_all(json, &variants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_longest_first_and_ignores_short_ones() {
        let list = vec!["hunter22-long".to_string(), "hunter22".to_string()];
        assert_eq!(
            replace_all("a hunter22-long b hunter22 c", &list),
            "a **** b **** c"
        );
        install(["abc".to_string(), "s3cr3t-x".to_string()]);
        assert_eq!(scrub("abc s3cr3t-x"), "abc ****");
        install([r#"q"uo\te"#.to_string()]);
        let doc = serde_json::json!({"z": r#"a q"uo\te b"#, "a": "s3cr3t-x"}).to_string();
        assert_eq!(scrub_json_text(&doc), r#"{"a":"****","z":"a **** b"}"#);
    }
}

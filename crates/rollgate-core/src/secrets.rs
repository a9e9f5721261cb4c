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

/// Every string (and key) of a JSON value, scrubbed in place.
pub fn scrub_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = scrub(s) {
                *s = clean;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub_json),
        Value::Object(m) => {
            let dirty: Vec<String> = m
                .keys()
                .filter(|k| matches!(scrub(k), Cow::Owned(_)))
                .cloned()
                .collect();
            for k in dirty {
                if let Some(v) = m.remove(&k) {
                    m.insert(scrub(&k).into_owned(), v);
                }
            }
            m.values_mut().for_each(scrub_json);
        }
        _ => {}
    }
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
        let mut v = serde_json::json!({"s3cr3t-x": ["x s3cr3t-x", 1]});
        scrub_json(&mut v);
        assert_eq!(v, serde_json::json!({"****": ["x ****", 1]}));
    }
}

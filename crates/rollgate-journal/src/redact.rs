//! Scrubbing secrets from everything the journal writes.
//!
//! Two layers, because either alone misses cases: the configured secrets themselves (passwords
//! in configured URLs, the API token) are replaced wherever they appear, even bare in a child's
//! stderr; and every whitespace-separated word goes through
//! [`rollgate_core::redact::redact_text`], which catches URLs with passwords and `token=…` pairs
//! the configuration never mentioned. JSON is scrubbed value by value, and the value of any key
//! that names a secret (`password`, `token`, …) is replaced whole.

use rollgate_core::config::Config;
use rollgate_core::redact::{REDACTED, password_range, redact_text, url_query};
use serde_json::Value;

/// Removes secrets from text and JSON before they are stored.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

/// Secrets shorter than this are not replaced literally: replacing every `a` would destroy the
/// record and protect nothing. URL-based redaction still applies to them.
const MIN_LITERAL: usize = rollgate_core::secrets::MIN_LEN;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_LITERAL)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// A redactor for the secrets of a configuration.
    pub fn for_config(config: &Config) -> Redactor {
        Redactor::new(secrets_of(config))
    }

    /// `text` without this redactor's secrets, the installed ones ([`rollgate_core::secrets`])
    /// and anything word-level redaction recognises.
    pub fn text(&self, text: &str) -> String {
        let own = rollgate_core::secrets::replace_all(text, &self.secrets);
        redact_words(&rollgate_core::secrets::scrub(&own))
    }

    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.json(v)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let v = if is_secret_key(k) && !v.is_null() {
                            Value::String(REDACTED.into())
                        } else {
                            self.json(v)
                        };
                        (self.text(k), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Apply [`redact_text`] to every maximal run of non-whitespace (it splits on spaces only, so a
/// URL after a newline or tab would otherwise be glued to the previous word).
fn redact_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !word.is_empty() {
                out.push_str(&redact_text(&word));
                word.clear();
            }
            out.push(c);
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push_str(&redact_text(&word));
    }
    out
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "private_key",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// The secrets in a configuration: passwords (and secret query values) of every configured URL,
/// and the API token.
pub fn secrets_of(config: &Config) -> Vec<String> {
    let d = &config.dependencies;
    let mut urls: Vec<&str> = Vec::new();
    if let Some(c) = &d.chain {
        urls.extend([c.url.as_str(), c.probe_url.as_str()]);
    }
    if let Some(s) = &d.deployment_service {
        urls.extend([s.url.as_str(), s.probe_url.as_str()]);
    }
    urls.extend(d.postgres.iter().map(|p| p.url.as_str()));
    urls.extend(d.redis.iter().map(|r| r.url.as_str()));
    urls.extend(d.pccs.iter().map(|p| p.url.as_str()));
    urls.extend(config.readiness.iter().map(|r| r.url.as_str()));
    urls.extend(config.progression.iter().map(|p| p.url.as_str()));
    urls.extend(config.probes.encryption_key.iter().map(|p| p.url.as_str()));
    urls.extend(config.probes.mark_price.iter().map(|p| p.url.as_str()));
    urls.extend(config.faults.url.iter().map(String::as_str));
    urls.extend(config.alerts.url.iter().map(String::as_str));
    urls.extend(config.alerts.metrics_urls.iter().map(String::as_str));
    urls.extend(config.serve.webhook_url.iter().map(String::as_str));
    urls.extend(config.prometheus.iter().map(|p| p.url.as_str()));
    urls.extend(config.alertmanager.iter().map(|a| a.url.as_str()));
    if let Some(f) = &config.fleet {
        urls.extend(f.etcd.iter().map(String::as_str));
    }
    let mut secrets: Vec<String> = urls.into_iter().flat_map(url_secrets).collect();
    let serve = &config.serve;
    secrets.extend(serve.token.iter().chain(&serve.read_token).cloned());
    // A token file's content is as secret as the token (read now: it may be unreadable later).
    let api_tokens = config
        .prometheus
        .iter()
        .filter_map(|p| p.bearer_token_file.as_ref())
        .chain(
            config
                .alertmanager
                .iter()
                .filter_map(|a| a.bearer_token_file.as_ref()),
        );
    for file in serve
        .token_file
        .iter()
        .chain(&serve.read_token_file)
        .chain(api_tokens)
    {
        if let Ok(text) = std::fs::read_to_string(file) {
            secrets.push(text.trim().to_string());
        }
    }
    // A webhook URL is a credential as a whole: Slack, Discord and the like put the secret in
    // the path, usually as its last segment.
    if let Some(url) = &serve.webhook_url {
        secrets.push(url.clone());
        if let Some((_, rest)) = url.split_once("://")
            && let Some(slash) = rest.find('/')
        {
            let path = rest[slash..].split(['?', '#']).next().unwrap_or("");
            secrets.push(path.to_string());
            secrets.extend(path.rsplit('/').next().map(str::to_string));
        }
    }
    secrets.extend(config.fleet.iter().flat_map(|f| f.password.clone()));
    secrets.extend(config.secrets.iter().cloned());
    secrets.retain(|s| !s.trim().is_empty());
    secrets
}

/// Install the secrets of `config` process-wide ([`rollgate_core::secrets`]): from then on every
/// output path replaces them. Call it right after a configuration is loaded.
pub fn install(config: &Config) {
    rollgate_core::secrets::install(secrets_of(config));
}

/// The password of a URL's user info (for `redis://secret@host`, the lone field; up to the last
/// `@`, see [`password_range`]) and the values of secret-looking query parameters, each also
/// percent-decoded.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(pw) = password_range(url) {
        out.push(url[pw].to_string());
    }
    if let Some(query) = url_query(url) {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && (is_secret_key(k)
                    || ["key", "pass", "auth"].contains(&k.to_ascii_lowercase().as_str()))
            {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out
        .iter()
        .map(|s| percent_decode(s))
        .filter(|d| !out.contains(d))
        .collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configured_secrets_vanish_everywhere() {
        let r = Redactor::new(url_secrets("postgres://app:s3cr%3At@127.0.0.1/db"));
        assert_eq!(
            r.text("auth failed for s3cr:t\npostgres://app:s3cr%3At@h/db"),
            "auth failed for ****\npostgres://app:****@h/db"
        );
        let v =
            r.json(&json!({"url": "x redis://:hunter22@h", "password": "pw", "n": [1, "s3cr:t"]}));
        assert_eq!(
            v,
            json!({"url": "x redis://:****@h", "password": "****", "n": [1, "****"]})
        );
    }

    /// issue 12 item 2: the literal password of a configured URL is the whole password even
    /// when it holds `/`, `?`, `#` or `@` unencoded, so a bare echo of it is replaced too.
    #[test]
    fn passwords_with_delimiters_are_extracted_whole() {
        for (url, pw) in [
            ("postgres://u:a/b?c#d@host/db", "a/b?c#d"),
            (
                "postgres://app:Zm9v/YmFy+cXV4==@127.0.0.1/node0",
                "Zm9v/YmFy+cXV4==",
            ),
            ("redis://p/w?x@h:6379", "p/w?x"),
            ("postgres://u:a@b/c@h/db", "a@b/c"),
        ] {
            let secrets = url_secrets(url);
            assert_eq!(secrets.first().map(String::as_str), Some(pw), "{url}");
            let r = Redactor::new(secrets);
            assert_eq!(r.text(&format!("bad password {pw}")), "bad password ****");
        }
    }

    #[test]
    fn short_or_absent_secrets_leave_text_alone() {
        let r = Redactor::new(vec!["a".to_string()]);
        assert_eq!(r.text("a banana"), "a banana");
        assert!(url_secrets("http://127.0.0.1:8080/v2/status").is_empty());
        assert_eq!(
            url_secrets("https://h/x?token=abc123&a=1"),
            vec!["abc123".to_string()]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// issue 12 item 2: the literal secret taken from a configured URL is its whole
        /// password, whatever it holds, so a bare echo of it is replaced too.
        #[test]
        fn the_whole_password_is_a_secret(
            user in "[a-zA-Z0-9._-]{0,8}",
            password in "[^\\s*]{4,24}",
            host in "[a-z0-9.]{1,12}(:[0-9]{1,5})?",
            path in "(/[a-zA-Z0-9._~%=&?#-]{0,10}){0,3}",
        ) {
            let url = format!("postgres://{user}:{password}@{host}{path}");
            let secrets = url_secrets(&url);
            proptest::prop_assert_eq!(secrets.first(), Some(&password), "{}", url);
            let out = Redactor::new(secrets).text(&format!("auth failed for {password}."));
            proptest::prop_assert!(!out.contains(&password), "{url:?}: {out:?}");
        }
    }
}

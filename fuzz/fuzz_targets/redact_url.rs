//! URL redaction, asserted: a URL is built from fuzz-chosen user, password, host and path
//! (the password from any characters, `/ ? # @ : %` and non-ASCII included), and the password
//! must never survive `redact_url`, `redact_text`, or the journal's literal scrubber fed by
//! `url_secrets`. Raw input must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_core::redact::{REDACTED, redact_text, redact_url};
use rollgate_fuzz::{fields, without};
use rollgate_journal::redact::{Redactor, url_secrets};

const SCHEMES: [&str; 5] = ["postgres", "postgresql", "redis", "https", "http"];

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let _ = (redact_url(&raw), redact_text(&raw), url_secrets(&raw));

    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let parts = fields(data, 4);
    let scheme = SCHEMES[sel as usize % SCHEMES.len()];
    // The user and the host cannot hold `:`, `@`, `/`, `?`, `#` (they would not be a user or a
    // host); the path holds no `@` (a path `@` is indistinguishable from a password's).
    let user = without(&parts[0], &[':', '@', '/', '?', '#'], true);
    let password = parts[1].clone();
    let host = without(&parts[2], &['@', '/', '?', '#'], true);
    let path = without(&parts[3], &['@'], true);
    if host.is_empty() || password.is_empty() {
        return;
    }
    let path = if path.is_empty() || path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{user}:{password}@{host}{path}");
    let prefix = format!("{scheme}://{user}:{REDACTED}@{host}");

    // Exactly the URL without user info, redacted the same way, with `user:****@` put back:
    // the password is gone whole, and nothing else changed.
    let bare = format!("{scheme}://{host}");
    let tail = redact_url(&format!("{bare}{path}"))[bare.len()..].to_string();
    let out = redact_url(&url);
    assert_eq!(out, format!("{prefix}{tail}"), "{url:?}");
    if !password.contains(char::is_whitespace) {
        let text = format!("error: connect {url} failed");
        assert_eq!(redact_text(&text), format!("error: connect {out} failed"));
    }

    let secrets = url_secrets(&url);
    assert!(secrets.contains(&password), "{url:?}: {secrets:?}");
    if password.chars().count() >= 4 && !password.contains('*') {
        let bare = Redactor::new(secrets).text(&format!("auth failed for {password}."));
        assert!(!bare.contains(&password), "{url:?}: {bare:?}");
    }
});

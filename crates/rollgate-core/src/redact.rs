//! Removing secrets from anything rollgate prints or stores.
//!
//! URLs in configuration and output never show passwords (product.md, section 3). Every string
//! that may hold a URL goes through [`redact_url`] or [`redact_text`] before it is printed,
//! logged or written to the journal.

/// The replacement for a secret.
pub const REDACTED: &str = "****";

/// Replace the password of a URL (`scheme://user:password@host`) and the values of query
/// parameters that usually carry secrets (`password`, `token`, `key`, `secret`, ...).
///
/// Works on text, not on a parsed URL, so it never fails: a string that is not a URL comes back
/// unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                let end = rest_start + at;
                out.replace_range(start..end, REDACTED);
            } else if out[..scheme_end].starts_with("redis") && !userinfo.is_empty() {
                // `redis://secret@host`: a lone user-info field is the password for Redis.
                out.replace_range(rest_start..rest_start + at, REDACTED);
            }
        }
    }
    redact_query(&out)
}

fn redact_query(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let (head, query) = url.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", parts.join("&"))
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password", "passwd", "pass", "token", "secret", "apikey", "api_key", "key", "auth",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// Redact every URL-looking word and every `password=...` style pair in free text (a child's
/// stderr, an error message), and every secret of the configuration ([`crate::secrets`]).
pub fn redact_text(text: &str) -> String {
    let text = &*crate::secrets::scrub(text);
    let mut out = String::with_capacity(text.len());
    // Words are separated by any whitespace (command output has tabs and newlines); the
    // separators are kept as they were.
    for piece in text.split_inclusive(char::is_whitespace) {
        let (word, sep) = piece.split_at(piece.trim_end_matches(char::is_whitespace).len());
        if word.contains("://") {
            out.push_str(&redact_url(word));
        } else if let Some((k, _)) = word.split_once('=') {
            if is_secret_key(k.trim_start_matches(['-', '"', '\''])) {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            } else {
                out.push_str(word);
            }
        } else {
            out.push_str(word);
        }
        out.push_str(sep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_any_whitespace() {
        let text = "url:\tpostgres://u:hunter2@db/x\npassword=hunter2\r\n  ok";
        let out = redact_text(text);
        assert!(!out.contains("hunter2"), "{out}");
        assert_eq!(out.matches('\n').count(), 2, "{out}");
        assert!(out.contains('\t') && out.ends_with("  ok"), "{out}");
    }

    #[test]
    fn passwords_in_urls_are_replaced() {
        let cases = [
            (
                "postgres://app:s3cret@127.0.0.1:5432/node0",
                "postgres://app:****@127.0.0.1:5432/node0",
            ),
            (
                "redis://:hunter2@127.0.0.1:6379",
                "redis://:****@127.0.0.1:6379",
            ),
            (
                "redis://hunter2@127.0.0.1:6379",
                "redis://****@127.0.0.1:6379",
            ),
            (
                "http://127.0.0.1:8080/v2/status",
                "http://127.0.0.1:8080/v2/status",
            ),
            ("https://h/x?token=abc&a=1", "https://h/x?token=****&a=1"),
            ("postgres://u:p@ss@h/db", "postgres://u:****@h/db"),
            ("not a url", "not a url"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn free_text_is_redacted() {
        let t = "connect postgres://a:b@h/db failed password=xyz user=me";
        assert_eq!(
            redact_text(t),
            "connect postgres://a:****@h/db failed password=**** user=me"
        );
    }
}

//! Removing secrets from anything rollgate prints or stores.
//!
//! URLs in configuration and output never show passwords (product.md, section 3). Every string
//! that may hold a URL goes through [`redact_url`] or [`redact_text`] before it is printed,
//! logged or written to the journal.

/// The replacement for a secret.
pub const REDACTED: &str = "****";

use std::ops::Range;

/// Replace the password of a URL (`scheme://user:password@host`) and the values of query
/// parameters that usually carry secrets (`password`, `token`, `key`, `secret`, ...).
///
/// Works on text, not on a parsed URL, so it never fails: a string that is not a URL comes back
/// unchanged. The password is found by [`password_range`].
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(range) = password_range(url) {
        out.replace_range(range, REDACTED);
    }
    redact_query(&out)
}

/// Where the password of a URL-looking string is (for `redis://secret@host`, the lone user-info
/// field), as a byte range; `None` when there is none.
///
/// The user info runs from `://` to the **last** `@`, not to the first `/`, `?` or `#`: a
/// password holding those unencoded (base64 passwords do) is accepted by tokio-postgres, so
/// the authority ends at the first `/`, `?` or `#` *after* the last `@`. In
/// `postgres://u:a/b?c#d@host/db` the password is `a/b?c#d`. The price is that an `@` later in
/// the URL (`https://host:8443/to/me@x`) makes `8443/to/me` look like a password: that is
/// redacted too, since the two cannot be told apart as text.
pub fn password_range(url: &str) -> Option<Range<usize>> {
    let scheme_end = url.find("://")?;
    let start = scheme_end + 3;
    let at = start + url[start..].rfind('@')?;
    let userinfo = &url[start..at];
    match userinfo.find(':') {
        Some(colon) => Some(start + colon + 1..at),
        // `redis://secret@host`: a lone user-info field is the password for Redis.
        None if url[..scheme_end].starts_with("redis") && !userinfo.is_empty() => Some(start..at),
        None => None,
    }
}

/// The query of a URL-looking string (after the first `?` that follows the user info, up to
/// `#`), or `None`.
pub fn url_query(url: &str) -> Option<&str> {
    let after = match (password_range(url), url.find("://")) {
        (Some(pw), _) => pw.end,
        (None, Some(scheme_end)) => scheme_end + 3,
        (None, None) => 0,
    };
    let q = after + url[after..].find('?')?;
    url[q + 1..].split('#').next()
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

    /// issue 12 item 2: a password holding `/`, `?` or `#` unencoded (base64 passwords do) is
    /// accepted by tokio-postgres; the user info runs to the last `@`, not to the first `/`.
    #[test]
    fn passwords_with_delimiters_are_replaced_whole() {
        let cases = [
            ("postgres://u:a/b?c#d@host/db", "postgres://u:****@host/db"),
            (
                "postgres://app:Zm9v/YmFy+cXV4==@127.0.0.1:5432/node0?sslmode=disable",
                "postgres://app:****@127.0.0.1:5432/node0?sslmode=disable",
            ),
            ("redis://:p?w#x@h:6379/0", "redis://:****@h:6379/0"),
            ("redis://p/w@h", "redis://****@h"),
            ("postgres://u:a@b/c@h/db", "postgres://u:****@h/db"),
            ("https://u:p#w@h/x?token=t", "https://u:****@h/x?token=****"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
            let text = format!("error: connect {input} failed");
            assert_eq!(
                redact_text(&text),
                format!("error: connect {want} failed"),
                "{input}"
            );
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

    /// Strategies for URLs with user info.
    mod urls {
        use proptest::prelude::*;

        /// A password from a wide alphabet: URL delimiters, `%`, quotes, any non-whitespace
        /// character (non-ASCII and control characters included).
        pub fn password() -> impl Strategy<Value = String> {
            let special = prop::sample::select(vec![
                '/', '?', '#', '@', ':', '%', '&', '=', '+', '[', ']', '\'', '"', '!', '$', ';',
            ]);
            prop::collection::vec(
                prop_oneof![2 => special, 3 => any::<char>().prop_filter("no space", |c| !c.is_whitespace())],
                1..24,
            )
            .prop_map(|cs| cs.into_iter().collect())
        }

        /// Text made of URL pieces in any order: schemes, delimiters, secret query keys,
        /// an already redacted password.
        pub fn fragments() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "redis",
                    "https",
                    "postgres",
                    "://",
                    ":",
                    "@",
                    "/",
                    "?",
                    "#",
                    "&",
                    "=",
                    "token",
                    "db_password",
                    "key",
                    "****",
                    "u",
                    "h",
                    "x",
                    " ",
                    "%40",
                ]),
                0..16,
            )
            .prop_map(|parts| parts.concat())
        }

        /// `(scheme, user, host, path)`: what a user and a host can hold, and a path without
        /// `@` (a path `@` cannot be told apart from a password's; see `password_range`).
        pub fn parts() -> impl Strategy<Value = (String, String, String, String)> {
            (
                prop::sample::select(vec!["postgres", "postgresql", "redis", "rediss", "https"]),
                "[a-zA-Z0-9._~-]{0,8}",
                "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
                "(/[a-zA-Z0-9._~%=&?#-]{0,10}){0,3}",
            )
                .prop_map(|(s, u, h, p)| (s.to_string(), u, h, p))
        }
    }

    /// Callers that hold an endpoint already redacted pass it to helpers that redact again
    /// (`rollgate_probe::http::parse_json`): a second pass must change nothing.
    #[test]
    fn redacting_twice_is_redacting_once() {
        let cases = [
            "postgres://app:s3cret@127.0.0.1:5432/node0",
            "redis://hunter2@127.0.0.1:6379",
            "https://h/x?token=abc&a=1",
            "postgres://u:a/b?c#d@host/db",
            "https://u?token=x:p@h",
            "https://u:p@h/?token=a@b",
            "https://host:8443/to/me@x?key=k&auth=a",
            "http://127.0.0.1:9090/api/v1/query",
            "not a url",
        ];
        for input in cases {
            let once = redact_url(input);
            assert_eq!(redact_url(&once), once, "{input}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// `redact_url` is idempotent on any text, URL-shaped or not.
        #[test]
        fn redact_url_is_idempotent(
            text in urls::fragments(),
            (scheme, user, host, path) in urls::parts(),
            password in urls::password(),
        ) {
            let url = format!("{scheme}://{user}:{password}@{host}{path}");
            for input in [text, url] {
                let once = redact_url(&input);
                proptest::prop_assert_eq!(redact_url(&once), once.clone(), "{:?}", input);
            }
        }

        /// issue 12 item 2: for any URL with user info, the password never survives
        /// `redact_url`, nor `redact_text` on text holding the URL.
        #[test]
        fn the_password_never_survives(
            (scheme, user, host, path) in urls::parts(),
            password in urls::password(),
        ) {
            let url = format!("{scheme}://{user}:{password}@{host}{path}");
            let prefix = format!("{scheme}://{user}:{REDACTED}@{host}");
            // Exactly the URL without user info, redacted the same way, with `user:****@`
            // put back: the password is gone whole, and nothing else changed.
            let bare = format!("{scheme}://{host}");
            let tail = redact_url(&format!("{bare}{path}"))[bare.len()..].to_string();
            let out = redact_url(&url);
            proptest::prop_assert_eq!(&out, &format!("{prefix}{tail}"), "{:?}", url);
            let text = redact_text(&format!("error: connect {url}\tfailed"));
            proptest::prop_assert_eq!(text, format!("error: connect {out}\tfailed"));
        }
    }
}

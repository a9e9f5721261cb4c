//! The bearer token that guards every endpoint that changes something.
//!
//! Only the token's SHA-256 is kept in memory, and a presented token is hashed and compared
//! with it in constant time, so neither its length nor a matching prefix leaks through timing.
//! The token is never logged, printed or returned: `Debug` shows `Token(<redacted>)`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::errors::ServeError;

/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Result<Token, ServeError> {
        let text = text.trim();
        if text.chars().count() < MIN_TOKEN_LEN {
            return Err(ServeError::ShortToken { min: MIN_TOKEN_LEN });
        }
        Ok(Token {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// From `[serve].token` or `[serve].token_file` (one of them); `None` when neither is set.
    pub fn from_config(serve: &rollgate_core::config::Serve) -> Result<Option<Token>, ServeError> {
        Token::from_pair(&serve.token, &serve.token_file, "token")
    }

    /// The read token: `[serve].read_token` or `[serve].read_token_file`.
    pub fn read_from_config(
        serve: &rollgate_core::config::Serve,
    ) -> Result<Option<Token>, ServeError> {
        Token::from_pair(&serve.read_token, &serve.read_token_file, "read_token")
    }

    fn from_pair(
        text: &Option<String>,
        file: &Option<std::path::PathBuf>,
        key: &'static str,
    ) -> Result<Option<Token>, ServeError> {
        match (text, file) {
            (Some(_), Some(_)) => Err(ServeError::TwoTokens { key }),
            (Some(t), None) => Token::new(t).map(Some),
            (None, Some(path)) => Token::from_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// Read a token file; warns when others may read it.
    pub fn from_file(path: &Path) -> Result<Token, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            return Err(ServeError::EmptyTokenFile {
                path: path.to_path_buf(),
            });
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the token file is readable by group or others; chmod 600 it");
        }
        Token::new(&text)
    }

    /// Does `presented` match? Constant time in the presented token's content.
    pub fn matches(&self, presented: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut diff = 0u8;
        for (a, b) in self.digest.iter().zip(other.iter()) {
            diff |= std::hint::black_box(a ^ b);
        }
        std::hint::black_box(diff) == 0
    }

    /// Does the request carry `Authorization: Bearer <this token>`?
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.matches(t))
    }
}

/// The bearer credential of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const T: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn matches_only_the_exact_token() {
        let t = Token::new(&format!("  {T}\n")).unwrap();
        assert!(t.matches(T));
        assert!(!t.matches(&T[..31]));
        assert!(!t.matches(&format!("{T}0")));
        assert!(!t.matches(""));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(matches!(
            Token::new("hunter2"),
            Err(ServeError::ShortToken { .. })
        ));
    }

    #[test]
    fn debug_never_shows_it() {
        let t = Token::new(T).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains(T) && shown.contains("redacted"));
    }

    #[test]
    fn reads_the_bearer_header() {
        let t = Token::new(T).unwrap();
        let mut h = HeaderMap::new();
        assert!(!t.authorizes(&h));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {T}")).unwrap(),
        );
        assert!(t.authorizes(&h));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("bearer {T}")).unwrap(),
        );
        assert!(t.authorizes(&h));
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {T}")).unwrap(),
        );
        assert!(!t.authorizes(&h));
    }

    #[test]
    fn token_file_or_token_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{T}\n")).unwrap();
        let serve = rollgate_core::config::Serve {
            token_file: Some(file.clone()),
            ..Default::default()
        };
        assert!(Token::from_config(&serve).unwrap().unwrap().matches(T));
        let both = rollgate_core::config::Serve {
            token: Some(T.into()),
            token_file: Some(file),
            ..Default::default()
        };
        assert!(matches!(
            Token::from_config(&both),
            Err(ServeError::TwoTokens { .. })
        ));
        assert!(Token::from_config(&Default::default()).unwrap().is_none());
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert!(matches!(
            Token::from_file(&dir.path().join("empty")),
            Err(ServeError::EmptyTokenFile { .. })
        ));
    }
}

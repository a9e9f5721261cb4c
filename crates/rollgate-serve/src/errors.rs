//! Errors of `serve`: why the server could not start or stopped, and the JSON error answers of
//! the API.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("failed to open the journal")]
    Journal(#[source] rollgate_journal::JournalError),
    #[error("failed to read the token file {}", .path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {} is empty", .path.display())]
    EmptyTokenFile { path: PathBuf },
    #[error("set one of [serve].{key} and [serve].{key}_file, not both")]
    TwoTokens { key: &'static str },
    #[error(
        "the bearer token is too short: use at least {min} characters (e.g. `openssl rand -hex 32`)"
    )]
    ShortToken { min: usize },
    #[error(
        "refusing to listen on {addr}: it is not a loopback address and no read token is configured; set [serve].read_token or [serve].read_token_file, or listen on 127.0.0.1"
    )]
    NoReadToken { addr: SocketAddr },
    #[error("failed to serve HTTP")]
    Io(#[source] std::io::Error),
}

/// An error answer of the API: `{"error": {"status": 409, "message": "…"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        // Whatever reaches a client is redacted like the journal is.
        ApiError {
            status,
            message: rollgate_core::redact::redact_text(&message.into()),
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }

    pub fn internal(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({"error": {"status": self.status.as_u16(), "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="rollgate""#),
            );
        }
        resp
    }
}

/// A runner error as an API answer.
pub fn runner_error(e: &rollgate_runner::RunnerError) -> ApiError {
    use rollgate_runner::RunnerError as E;
    let message = chain(e);
    let status = match e {
        E::Usage(_) => StatusCode::BAD_REQUEST,
        E::Busy(_) => StatusCode::CONFLICT,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, message)
}

/// An error and its sources on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

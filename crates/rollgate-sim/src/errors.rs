//! Errors of the simulator library. Messages are lowercase fragments that fit "failed to …";
//! the cause is carried in `#[source]`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while starting or driving a simulated service.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("bind {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bind unix socket {}", path.display())]
    BindUnix {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read local address")]
    LocalAddr(#[source] std::io::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown {component} version {version:?} (known: {known})")]
    UnknownVersion {
        component: &'static str,
        version: String,
        known: String,
    },
    #[error("parse url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("talk to postgres")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("talk to redis")]
    Redis(#[from] redis::RedisError),
    #[error("time out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("generate certificate")]
    Certificate(#[from] rcgen::Error),
    #[error("configure tls")]
    Tls(#[from] rustls::Error),
    #[error("serialize json")]
    Json(#[from] serde_json::Error),
    #[error("serve on {addr}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Localnet(String),
    /// The shared state of a simulated cluster (`--cluster-file`).
    #[error("{0}")]
    Cluster(String),
}

impl SimError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SimError::Io {
            context: context.into(),
            source,
        }
    }
}

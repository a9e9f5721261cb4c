//! Errors of fleet coordination. Messages are lowercase fragments that fit "failed to …".

/// Everything that can go wrong talking to etcd or reading what it holds.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{action}")]
    Etcd {
        action: String,
        #[source]
        source: etcd_client::Error,
    },
    /// A key holds something that is not the JSON we wrote: never guessed around.
    #[error("read {key}: {message}")]
    Corrupt { key: String, message: String },
    /// The lease this work depended on is gone: stop acting.
    #[error("keep lease {0:x} alive: it expired or etcd stopped answering")]
    LeaseLost(i64),
}

impl FleetError {
    pub(crate) fn etcd(action: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> FleetError {
        let action = action.into();
        move |source| FleetError::Etcd { action, source }
    }
}

/// The error and its causes on one line ("a: b: c").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

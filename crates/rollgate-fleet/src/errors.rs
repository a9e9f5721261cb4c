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

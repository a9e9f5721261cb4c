//! The AESM probe: the platform service's unix socket accepts a connection.
//!
//! Connecting is all that is asked: AESM speaks a protobuf protocol rollgate does not need, and
//! a socket that accepts proves the daemon is running and the path is the right one.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::outcome::Outcome;

pub async fn probe_aesm(socket: &Path, timeout: Duration) -> Outcome {
    let path = socket.display();
    let observed = json!({"socket": path.to_string()});
    match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(socket)).await {
        Ok(Ok(_stream)) => Outcome::pass(format!("unix:{path}: accepting connections"), observed),
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "no socket at this path (is aesmd running?)".to_string()
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "nothing is listening on the socket (aesmd stopped?)".to_string()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (is rollgate in the socket's group?)".to_string()
                }
                _ => format!("cannot connect: {e}"),
            };
            Outcome::fail(format!("unix:{path}: {why}"), observed)
        }
        Err(_) => Outcome::fail(
            format!("unix:{path}: connect did not complete within {timeout:?}"),
            observed,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::CheckStatus;

    #[tokio::test]
    async fn up_missing_and_stale() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("aesm.socket");
        let missing = probe_aesm(&sock, Duration::from_secs(1)).await;
        assert_eq!(missing.status, CheckStatus::Fail);
        assert!(missing.detail.contains("no socket"), "{}", missing.detail);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let up = probe_aesm(&sock, Duration::from_secs(1)).await;
        assert_eq!(up.status, CheckStatus::Pass, "{}", up.detail);
        drop(listener);
        // The socket file stays behind when the daemon dies: refused, not missing.
        let stale = probe_aesm(&sock, Duration::from_secs(1)).await;
        assert_eq!(stale.status, CheckStatus::Fail);
        assert!(
            stale.detail.contains("nothing is listening"),
            "{}",
            stale.detail
        );
    }
}

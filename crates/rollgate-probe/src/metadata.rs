//! Deployment metadata (`${APP_CONFIG}/ethereum/addresses.json`): present, owned by its
//! configured writer (the deployment-service), and hashed. It is opened read-only and never
//! written: drift is repaired only through the deployment-service's own restore flow.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rollgate_core::baseline::MetadataRecord;
use rollgate_core::config::{Node, Owner};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::outcome::Outcome;

/// The user database consulted for owner names.
pub const PASSWD: &str = "/etc/passwd";
/// The group database consulted for group names.
pub const GROUP: &str = "/etc/group";

/// `name → id` and `id → name` from passwd- or group-format text (`name:x:id:...`).
fn entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse().ok()?;
        (!name.is_empty() && !name.starts_with('#')).then_some((name, id))
    })
}

/// The id of a user or group name in passwd/group text.
pub fn id_of(db_text: &str, name: &str) -> Option<u32> {
    entries(db_text).find(|(n, _)| *n == name).map(|(_, id)| id)
}

/// The name of a user or group id in passwd/group text.
pub fn name_of(db_text: &str, id: u32) -> Option<String> {
    entries(db_text)
        .find(|(_, i)| *i == id)
        .map(|(n, _)| n.to_string())
}

/// SHA-256 of a file, read in chunks through a read-only handle.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Inspect the metadata against its configured owner, resolving names through `passwd` text.
pub fn check_metadata_with(node: &Node, passwd: &str) -> (Outcome, Option<MetadataRecord>) {
    let path = &node.deployment_metadata;
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return (
                Outcome::fail(
                    format!("{shown} is not a regular file"),
                    json!({"path": shown}),
                ),
                None,
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                Outcome::fail(
                    format!(
                        "{shown} does not exist (only the deployment-service writes it: restore it through its own flow)"
                    ),
                    json!({"path": shown}),
                ),
                None,
            );
        }
        Err(e) => {
            return (
                Outcome::fail(format!("{shown}: {e}"), json!({"path": shown})),
                None,
            );
        }
    };
    let uid = meta.uid();
    let owner_name = name_of(passwd, uid);
    let sha = match sha256_file(path) {
        Ok(s) => Some(s),
        Err(e) => {
            return (
                Outcome::fail(
                    format!("{shown}: cannot read to hash it: {e}"),
                    json!({"path": shown, "uid": uid}),
                ),
                None,
            );
        }
    };
    let record = MetadataRecord {
        path: shown.clone(),
        owner: owner_name.clone(),
        uid: Some(uid),
        sha256: sha.clone(),
    };
    let observed =
        json!({"path": shown, "uid": uid, "owner": owner_name, "sha256": sha, "size": meta.len()});
    let owned_by = match &owner_name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    };
    let expected_uid = match &node.deployment_metadata_owner {
        Owner::Uid(u) => Some(*u),
        Owner::Name(n) => id_of(passwd, n),
    };
    let want = &node.deployment_metadata_owner;
    let outcome = match expected_uid {
        None => Outcome::fail(
            format!(
                "{shown}: configured owner {want} is not a user on this machine (file owned by {owned_by})"
            ),
            observed,
        ),
        Some(e) if e != uid => Outcome::fail(
            format!("{shown} is owned by {owned_by}, expected its writer {want} (uid {e})"),
            observed,
        ),
        Some(_) => Outcome::pass(
            format!(
                "{shown}: owned by {owned_by}, sha256 {}…",
                sha.as_deref().map(|s| &s[..12]).unwrap_or("")
            ),
            observed,
        ),
    };
    (outcome, Some(record))
}

/// As [`check_metadata_with`], with the system's `/etc/passwd`.
pub fn check_metadata(node: &Node) -> (Outcome, Option<MetadataRecord>) {
    let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
    check_metadata_with(node, &passwd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::{CheckStatus, Mode};

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\ndeployment-service:x:998:998::/nonexistent:/usr/sbin/nologin\n";

    fn node(path: &Path, owner: Owner) -> Node {
        Node {
            name: "node0".into(),
            mode: Mode::LocalnetLoopback,
            app_config: path.parent().unwrap().to_path_buf(),
            deployment_metadata: path.to_path_buf(),
            deployment_metadata_owner: owner,
            enclave: false,
            state_dir: "/tmp".into(),
        }
    }

    #[test]
    fn passwd_lookup() {
        assert_eq!(id_of(PASSWD_TEXT, "deployment-service"), Some(998));
        assert_eq!(name_of(PASSWD_TEXT, 0).as_deref(), Some("root"));
        assert_eq!(id_of(PASSWD_TEXT, "nobody"), None);
    }

    #[test]
    fn owner_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("addresses.json");
        std::fs::write(&file, b"{}").unwrap();
        let uid = std::fs::metadata(&file).unwrap().uid();
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();

        let (ok, rec) = check_metadata_with(&node(&file, Owner::Uid(uid)), PASSWD_TEXT);
        assert_eq!(ok.status, CheckStatus::Pass, "{}", ok.detail);
        // sha256("{}")
        assert_eq!(
            rec.unwrap().sha256.unwrap(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );

        let (bad, _) = check_metadata_with(&node(&file, Owner::Uid(uid + 1)), PASSWD_TEXT);
        assert_eq!(bad.status, CheckStatus::Fail);
        assert!(
            bad.detail
                .contains(&format!("expected its writer uid {}", uid + 1)),
            "{}",
            bad.detail
        );

        let (unknown, _) =
            check_metadata_with(&node(&file, Owner::Name("ghost".into())), PASSWD_TEXT);
        assert!(
            unknown.detail.contains("ghost is not a user"),
            "{}",
            unknown.detail
        );

        let (missing, rec) = check_metadata_with(
            &node(&dir.path().join("nope.json"), Owner::Uid(uid)),
            PASSWD_TEXT,
        );
        assert!(missing.detail.contains("does not exist") && rec.is_none());

        // Read-only: inspecting never touches the file.
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            before
        );
    }
}

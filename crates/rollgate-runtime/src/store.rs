//! The content-addressed store of configuration-file bytes: `<state_dir>/store/sha256/<hex>`.
//!
//! Before a `config` layer's files are replaced, their exact bytes are put here, and a
//! *manifest* (which file holds which bytes, with its mode and owner) is put here too; the
//! layer's recorded value is the manifest's address (`sha256:<hex>`), so a baseline and the
//! journal reference the exact content by hash, and a rollback writes back bytes it can prove.
//!
//! Blobs are immutable: named by the SHA-256 of their content, written once (temp file, fsync,
//! rename), mode 0600 in directories of mode 0700 (a config file may hold secrets), and checked
//! against their name when read, so a corrupted blob is an error, never a silent restore.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::errors::DriverError;

/// Version of the manifest document (`format`).
pub const MANIFEST_FORMAT: u32 = 1;

/// The store under one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Which bytes each file of a `config` layer holds. Serialized canonically (field order,
/// files in the layer's order), so equal content gives an equal address.
///
/// ```json
/// {"format": 1, "layer": "operator-config",
///  "files": [{"path": "/srv/node/operator.env", "sha256": "9f86d0…", "mode": 416, "uid": 1000, "gid": 1000}]}
/// ```
///
/// `sha256: null` records a file that did not exist (restoring it removes the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub layer: String,
    pub files: Vec<FileEntry>,
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: PathBuf,
    /// Hex SHA-256 of the content, `None` when the file does not exist.
    pub sha256: Option<String>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Replace `path` with `bytes`: a temporary file in the same directory with `mode` (and
/// `owner`, uid and gid, when given), fsync, rename over the file, fsync of the directory. A
/// reader sees the old or the new content, never a mix.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), DriverError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.rollgate-{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DriverError::io(path, e)
    })
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("store").join("sha256"),
        }
    }

    /// Where the blob with this hex hash lives.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join(hex)
    }

    /// Put bytes in the store (idempotent); their hex SHA-256.
    pub fn put(&self, bytes: &[u8]) -> Result<String, DriverError> {
        let hex = sha256_hex(bytes);
        let path = self.blob_path(&hex);
        if self.read_verified(&hex).is_ok() {
            return Ok(hex);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| DriverError::io(&self.dir, e))?;
        write_atomic(&path, bytes, 0o600, None)?;
        Ok(hex)
    }

    /// The bytes stored under this hex hash, checked against it.
    pub fn get(&self, hex: &str) -> Result<Vec<u8>, DriverError> {
        self.read_verified(hex)
    }

    fn read_verified(&self, hex: &str) -> Result<Vec<u8>, DriverError> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DriverError::io(
                self.blob_path(hex),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256 address"),
            ));
        }
        let path = self.blob_path(hex);
        let bytes = std::fs::read(&path).map_err(|e| DriverError::io(&path, e))?;
        if sha256_hex(&bytes) != hex {
            return Err(DriverError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the stored bytes do not match their hash (the store is corrupted)",
                ),
            ));
        }
        Ok(bytes)
    }

    /// Put a document as JSON; its address `sha256:<hex>`.
    pub fn put_json<T: Serialize>(&self, doc: &T) -> Result<String, DriverError> {
        let bytes = serde_json::to_vec(doc).unwrap_or_default();
        Ok(format!("sha256:{}", self.put(&bytes)?))
    }

    /// The JSON document at an address (`sha256:<hex>`); `what` names it in the error.
    pub fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        address: &str,
        what: &str,
    ) -> Result<T, DriverError> {
        let hex = address.strip_prefix("sha256:").unwrap_or(address);
        let bytes = self.get(hex)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            DriverError::io(
                self.blob_path(hex),
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not {what}: {e}")),
            )
        })
    }

    /// Put a manifest; its address `sha256:<hex>`.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<String, DriverError> {
        self.put_json(manifest)
    }

    /// The manifest at an address (`sha256:<hex>`).
    pub fn manifest(&self, address: &str) -> Result<Manifest, DriverError> {
        self.get_json(address, "a configuration manifest")
    }

    /// Whether a manifest is stored at this address.
    pub fn has_manifest(&self, address: &str) -> bool {
        self.manifest(address).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn blobs_are_private_verified_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let hex = store.put(b"PASSWORD=x\n").unwrap();
        assert_eq!(hex, sha256_hex(b"PASSWORD=x\n"));
        assert_eq!(store.put(b"PASSWORD=x\n").unwrap(), hex);
        assert_eq!(store.get(&hex).unwrap(), b"PASSWORD=x\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.blob_path(&hex)), 0o600);
        assert_eq!(mode(store.blob_path(&hex).parent().unwrap()), 0o700);
        // A corrupted blob is refused, never returned.
        std::fs::write(store.blob_path(&hex), b"PASSWORD=y\n").unwrap();
        assert!(store.get(&hex).is_err());
        // ... and a put repairs it.
        store.put(b"PASSWORD=x\n").unwrap();
        assert_eq!(store.get(&hex).unwrap(), b"PASSWORD=x\n");
        assert!(store.get("../../etc/passwd").is_err());
    }

    #[test]
    fn manifests_round_trip_by_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let m = Manifest {
            format: MANIFEST_FORMAT,
            layer: "operator-config".into(),
            files: vec![FileEntry {
                path: "/srv/node/operator.env".into(),
                sha256: None,
                mode: 0o640,
                uid: 1,
                gid: 2,
            }],
        };
        let a = store.put_manifest(&m).unwrap();
        assert!(a.starts_with("sha256:"));
        assert_eq!(store.put_manifest(&m).unwrap(), a);
        assert_eq!(store.manifest(&a).unwrap(), m);
        assert!(!store.has_manifest("sha256:00"));
    }
}

//! `config` layers that name their `files`: rollgate reads, writes and restores those files
//! itself, under any driver, and asks the driver only to restart the layer's components.
//!
//! [`FilesDriver`] wraps the configured driver. For a layer with `files` it answers `current`,
//! `apply` and `restore`; everything else (restarts, states, logs, other layers) goes to the
//! wrapped driver. A layer's value is the address of a [`Manifest`] in the [`Store`]:
//!
//! - `current` reads every file (bytes, mode, owner), puts the bytes and the manifest in the
//!   store and returns `sha256:<manifest hash>` as both value and digest, so the baseline frozen
//!   before a change references the exact bytes it can be restored to.
//! - `apply` and `restore` write the manifest's content: each file that differs is replaced
//!   atomically (a temporary file in the same directory with the recorded mode and owner,
//!   fsync, rename, fsync of the directory), a file recorded as absent is removed. Both are
//!   idempotent, so `resume` redoes them after a crash at any point.
//! - `restore` then reads the files back and fails unless they hash to the recorded manifest:
//!   the gates only run on proven bytes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use rollgate_core::baseline::LayerValue;
use rollgate_core::config::{Component, Layer};
use rollgate_core::vocab::LayerKind;

use crate::driver::{ComponentState, DriverOutput, LogCursor, LogRead, RuntimeDriver};
use crate::errors::DriverError;
use crate::store::{FileEntry, MANIFEST_FORMAT, Manifest, Store, sha256_hex, write_atomic};

/// The biggest configuration file rollgate reads into memory.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// A driver that manages the files of `config` layers and delegates everything else.
pub struct FilesDriver {
    inner: Arc<dyn RuntimeDriver>,
    store: Store,
}

impl FilesDriver {
    pub fn new(inner: Arc<dyn RuntimeDriver>, state_dir: &Path) -> FilesDriver {
        FilesDriver {
            inner,
            store: Store::new(state_dir),
        }
    }
}

/// Whether rollgate manages this layer's files itself.
pub fn manages(layer: &Layer) -> bool {
    layer.kind == LayerKind::Config && !layer.files.is_empty()
}

/// One file as it is on disk now: its manifest entry and its bytes (`None`: absent).
pub fn read_file(path: &Path) -> Result<(FileEntry, Option<Vec<u8>>), DriverError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(DriverError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        )),
        Ok(m) if m.len() > MAX_FILE => Err(DriverError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_FILE} bytes"),
            ),
        )),
        Ok(m) => {
            let bytes = std::fs::read(path).map_err(|e| DriverError::io(path, e))?;
            Ok((
                FileEntry {
                    path: path.to_path_buf(),
                    sha256: Some(sha256_hex(&bytes)),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                },
                Some(bytes),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // An absent file: a later write creates it owned by rollgate's user, 0600.
            let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
            Ok((
                FileEntry {
                    path: path.to_path_buf(),
                    sha256: None,
                    mode: 0o600,
                    uid: uid.as_raw(),
                    gid: gid.as_raw(),
                },
                None,
            ))
        }
        Err(e) => Err(DriverError::io(path, e)),
    }
}

/// The layer's files as they are now, stored; the manifest and its address.
pub fn snapshot(store: &Store, layer: &Layer) -> Result<(Manifest, String), DriverError> {
    let mut files = Vec::new();
    for path in &layer.files {
        let (entry, bytes) = read_file(path)?;
        if let Some(b) = bytes {
            store.put(&b)?;
        }
        files.push(entry);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        layer: layer.name.clone(),
        files,
    };
    let address = store.put_manifest(&manifest)?;
    Ok((manifest, address))
}

/// Write the manifest's content; what was done, one line per changed file.
fn write_manifest(store: &Store, manifest: &Manifest) -> Result<Vec<String>, DriverError> {
    let mut notes = Vec::new();
    for entry in &manifest.files {
        let (now, _) = read_file(&entry.path)?;
        if now == *entry {
            continue;
        }
        match &entry.sha256 {
            None => {
                std::fs::remove_file(&entry.path).map_err(|e| DriverError::io(&entry.path, e))?;
                sync_dir(&entry.path)?;
                notes.push(format!("removed {}", entry.path.display()));
            }
            Some(hex) => {
                let bytes = store.get(hex)?;
                write_atomic(
                    &entry.path,
                    &bytes,
                    entry.mode,
                    Some((entry.uid, entry.gid)),
                )?;
                notes.push(format!(
                    "wrote {} (sha256:{}, mode {:o})",
                    entry.path.display(),
                    &hex[..12],
                    entry.mode
                ));
            }
        }
    }
    Ok(notes)
}

fn sync_dir(path: &Path) -> Result<(), DriverError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DriverError::io(dir, e))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriverError::io("<config files task>", std::io::Error::other(e)))?
}

fn value_of(address: String) -> LayerValue {
    LayerValue {
        kind: LayerKind::Config,
        value: address.clone(),
        digest: Some(address),
    }
}

impl FilesDriver {
    async fn write(&self, layer: &Layer, address: &str) -> Result<DriverOutput, DriverError> {
        let store = self.store.clone();
        let address_owned = address.to_string();
        let manifest = blocking(move || store.manifest(&address_owned)).await?;
        if manifest
            .files
            .iter()
            .map(|f| &f.path)
            .collect::<Vec<&PathBuf>>()
            != layer.files.iter().collect::<Vec<_>>()
        {
            return Err(DriverError::Restore {
                layer: layer.name.clone(),
                recorded: address.to_string(),
                detail: "the stored content names other files than the layer's `files`".into(),
            });
        }
        let store = self.store.clone();
        let notes = blocking(move || write_manifest(&store, &manifest)).await?;
        Ok(DriverOutput::note(if notes.is_empty() {
            format!("{}: the files already hold {address}", layer.name)
        } else {
            notes.join("; ")
        }))
    }
}

#[async_trait]
impl RuntimeDriver for FilesDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        if !manages(layer) {
            return self.inner.current(layer).await;
        }
        let store = self.store.clone();
        let layer = layer.clone();
        let (_, address) = blocking(move || snapshot(&store, &layer)).await?;
        Ok(value_of(address))
    }

    async fn apply(&self, layer: &Layer, value: &str) -> Result<DriverOutput, DriverError> {
        if !manages(layer) {
            return self.inner.apply(layer, value).await;
        }
        self.write(layer, value).await
    }

    async fn restore(
        &self,
        layer: &Layer,
        recorded: &LayerValue,
    ) -> Result<DriverOutput, DriverError> {
        if !manages(layer) {
            return self.inner.restore(layer, recorded).await;
        }
        let address = recorded.digest.as_deref().unwrap_or(&recorded.value);
        let out = self.write(layer, address).await?;
        // Prove it: the files read back must hash to the recorded manifest.
        let now = self.current(layer).await?;
        if now.digest.as_deref() != Some(address) {
            return Err(DriverError::Restore {
                layer: layer.name.clone(),
                recorded: recorded.display(),
                detail: format!("after the write the files read {}", now.display()),
            });
        }
        Ok(out)
    }

    async fn restart(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        self.inner.restart(components).await
    }

    // A snapshot layer's stop and start are the wrapped driver's (the default refuses).
    async fn stop(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        self.inner.stop(components).await
    }

    async fn start(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        self.inner.start(components).await
    }

    async fn state(&self, component: &Component) -> Result<ComponentState, DriverError> {
        self.inner.state(component).await
    }

    async fn logs_since(
        &self,
        component: &Component,
        since: SystemTime,
    ) -> Result<String, DriverError> {
        self.inner.logs_since(component, since).await
    }

    async fn logs_after(
        &self,
        component: &Component,
        cursor: &LogCursor,
    ) -> Result<LogRead, DriverError> {
        self.inner.logs_after(component, cursor).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_keep_mode_and_restore_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("state"));
        let file = dir.path().join("operator.env");
        std::fs::write(&file, b"PORT=1\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let layer = Layer {
            name: "operator-config".into(),
            kind: LayerKind::Config,
            components: vec!["operator".into()],
            files: vec![file.clone(), dir.path().join("absent.env")],
            snapshot: None,
        };
        let (before, address) = snapshot(&store, &layer).unwrap();
        assert_eq!(before.files[0].mode, 0o640);
        assert_eq!(before.files[1].sha256, None);

        std::fs::write(&file, b"PORT=2\n").unwrap();
        std::fs::write(dir.path().join("absent.env"), b"X=1\n").unwrap();
        let notes = write_manifest(&store, &store.manifest(&address).unwrap()).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(std::fs::read(&file).unwrap(), b"PORT=1\n");
        assert!(!dir.path().join("absent.env").exists());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        // Idempotent: nothing left to do.
        assert!(
            write_manifest(&store, &store.manifest(&address).unwrap())
                .unwrap()
                .is_empty()
        );
        assert_eq!(snapshot(&store, &layer).unwrap().1, address);
    }
}

#[cfg(test)]
mod delegation {
    use std::sync::Mutex;

    use super::*;

    /// Records which of stop/start reached it; everything else is unreachable in this test.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<&'static str>>);

    #[async_trait]
    impl RuntimeDriver for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn current(&self, _: &Layer) -> Result<LayerValue, DriverError> {
            unreachable!()
        }
        async fn apply(&self, _: &Layer, _: &str) -> Result<DriverOutput, DriverError> {
            unreachable!()
        }
        async fn restore(&self, _: &Layer, _: &LayerValue) -> Result<DriverOutput, DriverError> {
            unreachable!()
        }
        async fn restart(&self, _: &[Component]) -> Result<DriverOutput, DriverError> {
            unreachable!()
        }
        async fn stop(&self, _: &[Component]) -> Result<DriverOutput, DriverError> {
            self.0.lock().unwrap().push("stop");
            Ok(DriverOutput::note("stop"))
        }
        async fn start(&self, _: &[Component]) -> Result<DriverOutput, DriverError> {
            self.0.lock().unwrap().push("start");
            Ok(DriverOutput::note("start"))
        }
        async fn state(&self, _: &Component) -> Result<ComponentState, DriverError> {
            unreachable!()
        }
        async fn logs_since(&self, _: &Component, _: SystemTime) -> Result<String, DriverError> {
            unreachable!()
        }
        async fn logs_after(&self, _: &Component, _: &LogCursor) -> Result<LogRead, DriverError> {
            unreachable!()
        }
    }

    /// A snapshot layer's stop and start reach the wrapped driver: the trait's default refuses,
    /// so a config layer with files and `snapshot` would otherwise never be snapshotted.
    #[tokio::test]
    async fn stop_and_start_reach_the_wrapped_driver() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(Recorder::default());
        let files = FilesDriver::new(inner.clone(), dir.path());
        files.stop(&[]).await.unwrap();
        files.start(&[]).await.unwrap();
        assert_eq!(*inner.0.lock().unwrap(), ["stop", "start"]);
    }
}

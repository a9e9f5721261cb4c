//! `rollgate rollout LAYER=PATH` for a `config` layer with `files`: turn the operator's PATH into
//! the content the rollout will write, before anything changes.
//!
//! PATH is a file (a one-file layer, or a file named like one of the layer's files) or a
//! directory whose regular files are mapped onto the layer's files by name. The new bytes and
//! a manifest go into the store under `state_dir` ([`rollgate_runtime::store`]); the rollout's
//! value is then the manifest's address (`sha256:…`), which the journal, the read-back gate and
//! `resume` compare exactly. An address already in the store is accepted as a value too (a plan
//! file or a second rollout of the same content).
//!
//! Refused, nothing changed:
//! - exit 2: a name in PATH that is not one of the layer's files; a layer file or PATH that is,
//!   holds or lies under the deployment metadata or `APP_CONFIG/ethereum`, symlinks resolved;
//! - exit 3: a file that no longer holds what the last known-good baseline recorded (edited by
//!   hand since: which content is the baseline is ambiguous).

use std::path::{Path, PathBuf};

use rollgate_core::config::{Config, Layer, Node, protected_path};
use rollgate_runtime::envset;
use rollgate_runtime::files::{MAX_FILE, manages, read_file};
use rollgate_runtime::store::{FileEntry, MANIFEST_FORMAT, Manifest, Store, sha256_hex};

use super::*;

/// A change to a `config` layer's files, read but not applied.
#[derive(Debug, Clone)]
pub struct ConfigChange {
    pub layer: String,
    pub files: Vec<FileChange>,
}

/// One file of a [`ConfigChange`].
#[derive(Debug, Clone)]
pub struct FileChange {
    /// The file as it is now.
    pub now: FileEntry,
    pub now_bytes: Option<Vec<u8>>,
    /// The new bytes; `None` leaves the file as it is.
    pub new_bytes: Option<Vec<u8>>,
    /// Where the new bytes come from.
    pub source: Option<PathBuf>,
}

impl ConfigChange {
    /// The manifest of the files after the change (mode and owner kept).
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            layer: self.layer.clone(),
            files: self
                .files
                .iter()
                .map(|f| match &f.new_bytes {
                    Some(b) => FileEntry {
                        sha256: Some(sha256_hex(b)),
                        ..f.now.clone()
                    },
                    None => f.now.clone(),
                })
                .collect(),
        }
    }

    /// A unified diff per changed file, secret-looking values masked.
    pub fn diffs(&self) -> Vec<(PathBuf, String)> {
        self.files
            .iter()
            .filter_map(|f| {
                let new = f.new_bytes.as_ref()?;
                let old = f.now_bytes.as_deref().unwrap_or_default();
                let name = f.now.path.display().to_string();
                let diff = match (std::str::from_utf8(old), std::str::from_utf8(new)) {
                    (Ok(o), Ok(n)) => {
                        let from = if f.now_bytes.is_some() {
                            format!("{name} (now)")
                        } else {
                            "/dev/null".to_string()
                        };
                        rollgate_core::confdiff::unified_diff(
                            &from,
                            &format!("{name} (new)"),
                            o,
                            n,
                            3,
                        )
                    }
                    _ if old == new.as_slice() => String::new(),
                    _ => format!("binary file {name} differs\n"),
                };
                Some((f.now.path.clone(), diff))
            })
            .collect()
    }
}

/// Why rollgate must not touch `path`, judged as written and with symlinks resolved (against
/// the node's paths resolved the same way).
fn refuse_protected(path: &Path, node: &Node) -> Result<(), RunnerError> {
    let mut resolved_node = node.clone();
    resolved_node.app_config = resolve(&node.app_config);
    resolved_node.deployment_metadata = resolve(&node.deployment_metadata);
    let why = protected_path(path, node)
        .or_else(|| protected_path(&resolve(path), node))
        .or_else(|| protected_path(&resolve(path), &resolved_node));
    match why {
        Some(why) => Err(RunnerError::Usage(format!("refused: {why}"))),
        None => Ok(()),
    }
}

/// The path with symlinks resolved: the file itself when it exists, else its nearest existing
/// ancestor resolved and the rest appended.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if parent != path => resolve(parent).join(name),
        _ => path.to_path_buf(),
    }
}

fn read_source(path: &Path) -> Result<Vec<u8>, RunnerError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| RunnerError::Usage(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX_FILE {
        return Err(RunnerError::Usage(format!(
            "{} is larger than {MAX_FILE} bytes",
            path.display()
        )));
    }
    std::fs::read(path)
        .map_err(|e| RunnerError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Read the change `LAYER=PATH` would make: refuses (exit 2) unknown names and protected paths.
/// Reads only; the store is not touched.
pub fn read_change(
    config: &Config,
    layer: &Layer,
    value: &str,
) -> Result<ConfigChange, RunnerError> {
    for f in &layer.files {
        refuse_protected(f, &config.node)?;
    }
    let source = Path::new(value);
    refuse_protected(source, &config.node)?;
    let meta = std::fs::metadata(source).map_err(|e| {
        RunnerError::Usage(format!(
            "layer `{}` takes a file or a directory: cannot read {value}: {e}",
            layer.name
        ))
    })?;
    let file_name = |p: &Path| p.file_name().map(|n| n.to_os_string());
    // Source file per layer file.
    let mut sources: Vec<Option<PathBuf>> = vec![None; layer.files.len()];
    let known = || {
        layer
            .files
            .iter()
            .filter_map(|f| f.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(source)
            .map_err(|e| RunnerError::Usage(format!("cannot list {value}: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            refuse_protected(&entry, &config.node)?;
            let name = file_name(&entry);
            let Some(i) = layer.files.iter().position(|f| file_name(f) == name) else {
                return Err(RunnerError::Usage(format!(
                    "{} is not one of the files of layer `{}` ({})",
                    entry.display(),
                    layer.name,
                    known()
                )));
            };
            sources[i] = Some(entry);
        }
        if sources.iter().all(Option::is_none) {
            return Err(RunnerError::Usage(format!(
                "{value} holds none of the files of layer `{}` ({})",
                layer.name,
                known()
            )));
        }
    } else if layer.files.len() == 1 {
        sources[0] = Some(source.to_path_buf());
    } else {
        let name = file_name(source);
        let Some(i) = layer.files.iter().position(|f| file_name(f) == name) else {
            return Err(RunnerError::Usage(format!(
                "{value} is not named like one of the files of layer `{}` ({}); give a directory for several",
                layer.name,
                known()
            )));
        };
        sources[i] = Some(source.to_path_buf());
    }
    let mut files = Vec::new();
    for (path, source) in layer.files.iter().zip(sources) {
        let (now, now_bytes) = read_file(path).map_err(|e| {
            RunnerError::Usage(format!(
                "layer `{}`: {}",
                layer.name,
                rollgate_probe::errors::chain(&e)
            ))
        })?;
        let new_bytes = match &source {
            Some(s) => Some(read_source(s)?),
            None => None,
        };
        files.push(FileChange {
            now,
            now_bytes,
            new_bytes,
            source,
        });
    }
    Ok(ConfigChange {
        layer: layer.name.clone(),
        files,
    })
}

impl Runner {
    /// The value a rollout of `layer` writes: `value` itself for a layer rollgate does not
    /// manage; for a `config` layer with `files`, the stored address of the new content.
    pub(super) async fn stage_config(
        &self,
        layer: &Layer,
        value: &str,
    ) -> Result<String, RunnerError> {
        if layer.kind == rollgate_core::vocab::LayerKind::Env {
            return self.stage_env(layer, value);
        }
        if !manages(layer) {
            return Ok(value.to_string());
        }
        let store = Store::new(&self.config.node.state_dir);
        if value.starts_with("sha256:") && store.has_manifest(value) {
            let m = store.manifest(value).map_err(RunnerError::Driver)?;
            if m.files.iter().map(|f| &f.path).ne(layer.files.iter()) {
                return Err(RunnerError::Usage(format!(
                    "{value} is the content of other files than those of layer `{}`",
                    layer.name
                )));
            }
            self.refuse_hand_edited(layer).await?;
            return Ok(value.to_string());
        }
        let config = self.config.clone();
        let l = layer.clone();
        let v = value.to_string();
        let change = tokio::task::spawn_blocking(move || read_change(&config, &l, &v))
            .await
            .map_err(|e| RunnerError::Internal(e.to_string()))??;
        self.refuse_hand_edited(layer).await?;
        let manifest = change.manifest();
        tokio::task::spawn_blocking(move || {
            for f in &change.files {
                if let Some(b) = &f.new_bytes {
                    store.put(b)?;
                }
            }
            store.put_manifest(&manifest)
        })
        .await
        .map_err(|e| RunnerError::Internal(e.to_string()))?
        .map_err(RunnerError::Driver)
    }

    /// An `env` layer's `KEY=VALUE,…` (or `-`) stored as a set; its address. A stored set's
    /// address is accepted as it is.
    pub fn stage_env(&self, layer: &Layer, value: &str) -> Result<String, RunnerError> {
        let store = Store::new(&self.config.node.state_dir);
        if value.starts_with("sha256:") && envset::get(&store, value).is_ok() {
            return Ok(value.to_string());
        }
        let env = envset::parse(value)
            .map_err(|e| RunnerError::Usage(format!("layer `{}`: {e}", layer.name)))?;
        envset::put(&store, &layer.name, &env).map_err(RunnerError::Driver)
    }

    /// `plan` of an `env` layer: the overrides now and after the change as `KEY=VALUE` lines,
    /// diffed, secret-looking values masked.
    pub async fn env_diff(&self, layer: &Layer, value: &str) -> Result<String, RunnerError> {
        let store = Store::new(&self.config.node.state_dir);
        let now = self
            .driver
            .current(layer)
            .await
            .map_err(RunnerError::Driver)?;
        let now = envset::get(&store, now.digest.as_deref().unwrap_or(&now.value))
            .map_err(RunnerError::Driver)?;
        let new = if value.starts_with("sha256:") {
            envset::get(&store, value).map_err(RunnerError::Driver)?.env
        } else {
            envset::parse(value)
                .map_err(|e| RunnerError::Usage(format!("layer `{}`: {e}", layer.name)))?
        };
        Ok(rollgate_core::confdiff::unified_diff(
            &format!("{} (now)", layer.name),
            &format!("{} (new)", layer.name),
            &envset::lines(&now.env),
            &envset::lines(&new),
            3,
        ))
    }

    /// Exit 3 when the layer's files no longer hold what the last known-good baseline recorded.
    async fn refuse_hand_edited(&self, layer: &Layer) -> Result<(), RunnerError> {
        let Some(known) = self.journal.call(|j| j.last_known_good()).await? else {
            return Ok(());
        };
        let Some(recorded) = known.layers.get(&layer.name) else {
            return Ok(());
        };
        let now = self
            .driver
            .current(layer)
            .await
            .map_err(RunnerError::Driver)?;
        if super::same_value(&now, recorded) {
            return Ok(());
        }
        let store = Store::new(&self.config.node.state_dir);
        let (Ok(then), Ok(now_m)) = (
            store.manifest(recorded.digest.as_deref().unwrap_or(&recorded.value)),
            store.manifest(now.digest.as_deref().unwrap_or(&now.value)),
        ) else {
            return Err(RunnerError::Ambiguous(format!(
                "layer `{}` reads {}, not {} as baseline {} recorded",
                layer.name,
                now.display(),
                recorded.display(),
                known.id
            )));
        };
        let changed: Vec<String> = then
            .files
            .iter()
            .zip(&now_m.files)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| {
                let what = if a.sha256 != b.sha256 {
                    "content".to_string()
                } else if a.mode != b.mode {
                    format!("mode {:o} → {:o}", a.mode, b.mode)
                } else {
                    format!("owner {}:{} → {}:{}", a.uid, a.gid, b.uid, b.gid)
                };
                format!("{} ({what})", a.path.display())
            })
            .collect();
        Err(RunnerError::Ambiguous(format!(
            "not ready, nothing was changed: {} changed on disk since baseline {} was frozen (edited by hand?): the baseline is ambiguous; put the recorded content back (`rollgate rollback` restores it) or accept the edit as known-good (`rollgate baseline freeze`)",
            changed.join(", "),
            known.id,
        )))
    }
}

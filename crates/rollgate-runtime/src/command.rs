//! The command driver: the operator's own shell commands from `[runtime.command]`.
//!
//! Each command runs with `sh -c "<command as configured>"`. The change reaches it only through
//! the environment, never spliced into the command text, so a value containing quotes, `;` or
//! `$(...)` cannot inject anything:
//!
//! | variable | set for | value |
//! |---|---|---|
//! | `ROLLGATE_LAYER` | all | the layer name |
//! | `ROLLGATE_KIND` | all but `restart`, `logs` | `image`, `binary` or `config` |
//! | `ROLLGATE_COMPONENTS` | all | the layer's (or restarted, stopped, started) services, space-separated |
//! | `ROLLGATE_VALUE` | `apply` | the new value; on a restore the recorded value |
//! | `ROLLGATE_DIGEST` | `apply` on a restore | the recorded digest, when there is one |
//! | `ROLLGATE_COMPONENT`, `ROLLGATE_SINCE` | `logs` | one service, RFC 3339 time |
//!
//! `stop` and `start` (optional; required by layers with a database `snapshot`) run around a
//! snapshot or a restore, with the same environment as `restart`.
//!
//! Besides these, a command gets only PATH, HOME, the locale and what `docker` needs from
//! rollgate's environment ([`crate::process::BASE_ENV`]), plus the variables
//! `[runtime.command] env` names.
//!
//! Commands run in the directory of the configuration file. For `binary` and `config` layers
//! whose value is an existing file, the digest is the file's SHA-256 (`sha256:<hex>`), and a
//! restore is verified by reading the value back and comparing value and digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use rollgate_core::baseline::LayerValue;
use rollgate_core::config::{CommandRuntime, Component, Config, Layer};
use rollgate_core::vocab::LayerKind;
use sha2::{Digest, Sha256};

use crate::driver::{ComponentState, DriverOutput, LogCursor, LogRead, RuntimeDriver};
use crate::errors::DriverError;
use crate::process::{Invocation, run};

/// Drives a stack through the operator's shell commands.
#[derive(Debug, Clone)]
pub struct CommandDriver {
    commands: CommandRuntime,
    /// Component name → service (process) name.
    services: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

impl CommandDriver {
    pub fn new(commands: CommandRuntime, config: &Config) -> CommandDriver {
        let services = config
            .components
            .iter()
            .map(|(name, c)| (name.clone(), c.service.clone()))
            .collect();
        let cwd = config
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        CommandDriver {
            commands,
            services,
            cwd,
        }
    }

    /// The services of a layer's components, space-separated.
    fn layer_services(&self, layer: &Layer) -> String {
        layer
            .components
            .iter()
            .map(|c| self.services.get(c).cloned().unwrap_or_else(|| c.clone()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn invocation(&self, what: &str, script: &str, unit: String) -> Invocation {
        let mut inv = Invocation::new("sh", ["-c", script])
            .unit(unit)
            .timeout(self.commands.timeout)
            .pass_env(&self.commands.env)
            .display(format!("{what}: {script}"));
        if let Some(dir) = &self.cwd {
            inv = inv.cwd(dir);
        }
        inv
    }

    fn layer_invocation(&self, what: &str, script: &str, layer: &Layer) -> Invocation {
        self.invocation(what, script, format!("layer {}", layer.name))
            .env("ROLLGATE_LAYER", &layer.name)
            .env("ROLLGATE_KIND", layer.kind.as_str())
            .env("ROLLGATE_COMPONENTS", self.layer_services(layer))
    }

    fn resolve_path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        match &self.cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

#[async_trait]
impl RuntimeDriver for CommandDriver {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        let inv = self.layer_invocation("current", &self.commands.current, layer);
        let out = run(&inv).await?;
        let value = out.stdout.trim().to_string();
        if value.is_empty() {
            return Err(DriverError::Parse {
                command: out.command,
                unit: format!("layer {}", layer.name),
                detail: "the `current` command printed nothing".into(),
            });
        }
        let digest = match layer.kind {
            LayerKind::Binary | LayerKind::Config => {
                file_digest(&self.resolve_path(&value)).await?
            }
            LayerKind::Image | LayerKind::Env => None,
        };
        Ok(LayerValue {
            kind: layer.kind,
            value,
            digest,
        })
    }

    async fn apply(&self, layer: &Layer, value: &str) -> Result<DriverOutput, DriverError> {
        let inv = self
            .layer_invocation("apply", &self.commands.apply, layer)
            .env("ROLLGATE_VALUE", value);
        run(&inv).await
    }

    async fn restore(
        &self,
        layer: &Layer,
        recorded: &LayerValue,
    ) -> Result<DriverOutput, DriverError> {
        let mut inv = self
            .layer_invocation("apply", &self.commands.apply, layer)
            .env("ROLLGATE_VALUE", &recorded.value);
        if let Some(d) = &recorded.digest {
            inv = inv.env("ROLLGATE_DIGEST", d);
        }
        let out = run(&inv).await?;
        // Prove the restore: the value read back must be the recorded one, digest included.
        let now = self.current(layer).await?;
        let digest_differs = recorded.digest.is_some() && now.digest != recorded.digest;
        if now.value != recorded.value || digest_differs {
            return Err(DriverError::Restore {
                layer: layer.name.clone(),
                recorded: recorded.display(),
                detail: format!("after `apply` the layer reads {}", now.display()),
            });
        }
        Ok(out)
    }

    async fn restart(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        let restart = self.commands.restart.clone();
        self.components_command("restart", &restart, components)
            .await
    }

    async fn stop(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        let Some(stop) = self.commands.stop.clone() else {
            return Err(DriverError::CannotStop {
                driver: "command",
                components: crate::driver::component_names(components),
            });
        };
        self.components_command("stop", &stop, components).await
    }

    async fn start(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        match self.commands.start.clone() {
            Some(start) => self.components_command("start", &start, components).await,
            None => self.restart(components).await,
        }
    }

    async fn state(&self, component: &Component) -> Result<ComponentState, DriverError> {
        // `[runtime.command]` has no state command: the gates rely on readiness probes instead.
        Ok(ComponentState::unknown(&component.name))
    }

    async fn logs_since(
        &self,
        component: &Component,
        since: SystemTime,
    ) -> Result<String, DriverError> {
        let out = self.logs(component, since).await?;
        Ok(out.stdout + &out.stderr)
    }

    /// The `logs` command from the cursor on; it prints no timestamps rollgate could trust, so
    /// the next read starts [`crate::driver::LOG_OVERLAP`] before this one started.
    async fn logs_after(
        &self,
        component: &Component,
        cursor: &LogCursor,
    ) -> Result<LogRead, DriverError> {
        let started = SystemTime::now();
        let out = self.logs(component, cursor.since).await?;
        let text = out.stdout + &out.stderr;
        Ok(LogRead::untimed(&text, cursor, started, out.dropped_bytes))
    }
}

impl CommandDriver {
    /// Run `restart`, `stop` or `start` with `$ROLLGATE_COMPONENTS` set to these services.
    async fn components_command(
        &self,
        what: &str,
        script: &str,
        components: &[Component],
    ) -> Result<DriverOutput, DriverError> {
        let services = components
            .iter()
            .map(|c| c.service.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let names = crate::driver::component_names(components);
        let inv = self
            .invocation(what, script, format!("components {names}"))
            .env("ROLLGATE_COMPONENTS", services);
        run(&inv).await
    }

    /// Run the `logs` command (nothing when none is configured), keeping the newest lines.
    async fn logs(
        &self,
        component: &Component,
        since: SystemTime,
    ) -> Result<DriverOutput, DriverError> {
        let Some(logs) = &self.commands.logs else {
            return Ok(DriverOutput::default());
        };
        let inv = self
            .invocation("logs", logs, format!("component {}", component.name))
            .env("ROLLGATE_COMPONENT", &component.service)
            .env("ROLLGATE_COMPONENTS", &component.service)
            .env(
                "ROLLGATE_SINCE",
                humantime::format_rfc3339_millis(since).to_string(),
            )
            .keep_tail();
        run(&inv).await
    }
}

/// `sha256:<hex>` of a regular file, or `None` when the path is not an existing file (then the
/// value is a version string, not a path).
pub async fn file_digest(path: &Path) -> Result<Option<String>, DriverError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => return Ok(None),
        }
        let mut file = std::fs::File::open(&path).map_err(|e| DriverError::io(&path, e))?;
        let mut hasher = HashWriter(Sha256::new());
        std::io::copy(&mut file, &mut hasher).map_err(|e| DriverError::io(&path, e))?;
        Ok(Some(format!("sha256:{}", hex::encode(hasher.0.finalize()))))
    })
    .await
    .map_err(|e| DriverError::io("<hashing task>", std::io::Error::other(e)))?
}

/// Lets `io::copy` stream a file into a hasher (sha2 0.11 no longer implements `io::Write`).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

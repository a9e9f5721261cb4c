//! The Compose driver: the real Docker engine through the `docker` CLI and Docker Compose.
//!
//! - **Which Compose**: `runtime.compose.command` when set, else `docker compose version` (v2)
//!   is tried, then `docker-compose version` (v1). Both are driven with the same flags.
//! - **Finding containers**: by the labels `com.docker.compose.project` and
//!   `com.docker.compose.service` (one-off containers excluded), never by name: v1 names
//!   containers `proj_svc_1`, v2 `proj-svc-1`.
//! - **A layer's value**: the image reference the service's container was created from
//!   (`Config.Image`) and the image ID it actually runs (`Image`, `sha256:…`). All services of
//!   one layer must agree.
//! - **Changing a layer**: rollgate owns one override file,
//!   `<state_dir>/compose/<project>.override.json` (JSON is valid YAML), which pins `image` for
//!   the layer's services. It is passed with `-f` after the operator's files on every Compose
//!   command rollgate runs; the operator's files are never edited.
//! - **Restoring** a recorded value goes by digest: the recorded image ID must still exist
//!   locally; if the recorded tag now points elsewhere (a re-pushed tag), it is re-tagged to the
//!   recorded image ID. When the operator's files alone (`compose config` without the override)
//!   give exactly the recorded reference, the pin is removed (the override file is deleted once
//!   empty); otherwise the service is pinned to the recorded reference.
//! - **Restarting**: `up -d --no-deps --no-build --force-recreate <services>`: only the named
//!   services are recreated, never their dependencies, never a build.
//! - **`env` layers** set `environment` for the layer's services in the same override file
//!   (beside any pinned `image`); the layer's value is the address of the stored set
//!   ([`crate::envset`]), and a restore writes the recorded set back and reads it back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rollgate_core::baseline::LayerValue;
use rollgate_core::config::{Component, ComposeRuntime, Config, Layer};
use rollgate_core::vocab::LayerKind;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};

use crate::driver::{ComponentState, DriverOutput, LogCursor, LogRead, RunStatus, RuntimeDriver};
use crate::envset;
use crate::errors::DriverError;
use crate::process::{Invocation, run};
use crate::store::Store;

const LABEL_PROJECT: &str = "com.docker.compose.project";
const LABEL_SERVICE: &str = "com.docker.compose.service";
const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";

/// What `docker inspect` prints of a container: the fields the driver reads, without
/// `Config.Env`.
const INSPECT_FORMAT: &str = r#"{"Id":{{json .Id}},"Created":{{json .Created}},"Image":{{json .Image}},"Config":{"Image":{{json .Config.Image}}},"State":{"Status":{{json .State.Status}},"StartedAt":{{json .State.StartedAt}},"ExitCode":{{json .State.ExitCode}}},"RestartCount":{{json .RestartCount}}}"#;

/// Which Compose implementation runs the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `docker compose` (the Go plugin).
    V2,
    /// `docker-compose` (the Python tool, 1.x).
    V1,
}

impl Flavor {
    fn program_and_prefix(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Flavor::V2 => ("docker", &["compose"]),
            Flavor::V1 => ("docker-compose", &[]),
        }
    }
}

/// How long the driver lets each kind of command run.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `docker ps`, `docker inspect`, `docker logs`, `docker tag`, version detection.
    pub query: Duration,
    /// `compose up`: stopping and recreating containers.
    pub up: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            query: Duration::from_secs(30),
            up: Duration::from_secs(300),
        }
    }
}

/// Drives a Docker Compose project.
#[derive(Debug)]
pub struct ComposeDriver {
    runtime: ComposeRuntime,
    project: String,
    files: Vec<PathBuf>,
    /// Component name → Compose service.
    services: BTreeMap<String, String>,
    override_path: PathBuf,
    flavor: OnceCell<Flavor>,
    timeouts: Timeouts,
    /// Serializes read-modify-write of the override file within this process.
    files_lock: Mutex<()>,
    /// Where `env` layers' sets of overrides are stored ([`crate::envset`]).
    store: Store,
}

impl ComposeDriver {
    /// A driver for the configured project. Nothing is run until the first call.
    pub fn new(runtime: ComposeRuntime, config: &Config) -> Result<ComposeDriver, DriverError> {
        let project = project_name(&runtime);
        let files = runtime
            .files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    runtime.project_dir.join(f)
                }
            })
            .collect();
        let services = config
            .components
            .iter()
            .map(|(n, c)| (n.clone(), c.service.clone()))
            .collect();
        let dir = config.node.state_dir.join("compose");
        Ok(ComposeDriver {
            override_path: dir.join(format!("{project}.override.json")),
            runtime,
            project,
            files,
            services,
            flavor: OnceCell::new(),
            timeouts: Timeouts::default(),
            files_lock: Mutex::new(()),
            store: Store::new(&config.node.state_dir),
        })
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> ComposeDriver {
        self.timeouts = timeouts;
        self
    }

    /// The Compose project name used for `-p` and the label lookups.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The override file rollgate owns (may not exist).
    pub fn override_path(&self) -> &Path {
        &self.override_path
    }

    /// The detected (or configured) Compose implementation.
    pub async fn flavor(&self) -> Result<Flavor, DriverError> {
        self.flavor
            .get_or_try_init(|| detect(self.runtime.command.as_deref(), self.timeouts.query))
            .await
            .copied()
    }

    /// The Compose command with the project, the operator's files and, when it exists, the
    /// override, followed by `args`.
    pub async fn compose(&self, args: &[&str]) -> Result<Invocation, DriverError> {
        self.compose_with(args, true).await
    }

    async fn compose_with(
        &self,
        args: &[&str],
        with_override: bool,
    ) -> Result<Invocation, DriverError> {
        let (program, prefix) = self.flavor().await?.program_and_prefix();
        let mut all: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        all.extend(["-p".into(), self.project.clone()]);
        all.extend([
            "--project-directory".into(),
            self.runtime.project_dir.display().to_string(),
        ]);
        for f in &self.files {
            all.extend(["-f".into(), f.display().to_string()]);
        }
        if with_override
            && tokio::fs::try_exists(&self.override_path)
                .await
                .unwrap_or(false)
        {
            all.extend(["-f".into(), self.override_path.display().to_string()]);
        }
        all.extend(args.iter().map(|s| s.to_string()));
        Ok(Invocation::new(program, all)
            .pass_env(&self.runtime.env)
            .pass_env(&self.interpolated().await)
            .cwd(&self.runtime.project_dir)
            .unit(format!("Compose project {}", self.project)))
    }

    /// The variables the project's Compose files interpolate (`${NAME}`, `${NAME:-x}`, `$NAME`):
    /// Compose reads them from its environment, so they pass to it like `[runtime.compose] env`
    /// (the child environment is otherwise minimal). A file that cannot be read passes nothing:
    /// Compose itself reports it.
    async fn interpolated(&self) -> Vec<String> {
        let defaults = [
            "compose.yaml",
            "compose.yml",
            "docker-compose.yml",
            "docker-compose.yaml",
        ];
        let files: Vec<PathBuf> = if self.files.is_empty() {
            defaults
                .iter()
                .map(|f| self.runtime.project_dir.join(f))
                .collect()
        } else {
            self.files.clone()
        };
        let mut names = Vec::new();
        for f in files {
            if let Ok(text) = tokio::fs::read_to_string(&f).await {
                names.extend(interpolated_names(&text));
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn docker(&self, args: &[&str], unit: String) -> Invocation {
        Invocation::new("docker", args.iter().copied())
            .pass_env(&self.runtime.env)
            .unit(unit)
            .timeout(self.timeouts.query)
    }

    fn service_of(&self, component: &str) -> Result<String, DriverError> {
        self.services
            .get(component)
            .cloned()
            .ok_or_else(|| DriverError::UnknownComponent(component.to_string()))
    }

    fn layer_services(&self, layer: &Layer) -> Result<Vec<String>, DriverError> {
        layer
            .components
            .iter()
            .map(|c| self.service_of(c))
            .collect()
    }

    /// Container IDs of a service (one-off `run` containers excluded).
    pub async fn containers(&self, service: &str) -> Result<Vec<String>, DriverError> {
        let project = format!("label={LABEL_PROJECT}={}", self.project);
        let svc = format!("label={LABEL_SERVICE}={service}");
        let oneoff = format!("label={LABEL_ONEOFF}=False");
        let inv = self.docker(
            &[
                "ps",
                "-a",
                "-q",
                "--no-trunc",
                "--filter",
                &project,
                "--filter",
                &svc,
                "--filter",
                &oneoff,
            ],
            format!("service {service}"),
        );
        let out = run(&inv).await?;
        Ok(out.stdout.split_whitespace().map(str::to_string).collect())
    }

    /// `docker inspect` of a service's containers, newest first.
    async fn inspect_service(&self, service: &str) -> Result<Vec<Value>, DriverError> {
        let ids = self.containers(service).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only the fields the driver reads, one JSON object per line: the whole document holds
        // the container's environment, whose secrets the output redaction would replace inside
        // JSON strings (and an `env` layer puts them there).
        let mut args = vec!["inspect", "--format", INSPECT_FORMAT];
        args.extend(ids.iter().map(String::as_str));
        let out = run(&self.docker(&args, format!("service {service}"))).await?;
        let mut list = Vec::new();
        for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v @ Value::Object(_)) => list.push(v),
                Ok(_) | Err(_) => {
                    return Err(DriverError::Parse {
                        command: out.command,
                        unit: format!("service {service}"),
                        detail: "expected one JSON object per container".into(),
                    });
                }
            }
        }
        list.sort_by(|a, b| str_at(b, "/Created").cmp(&str_at(a, "/Created")));
        Ok(list)
    }

    /// The image ID a reference resolves to locally, or `None` when it does not exist.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, DriverError> {
        let inv = self.docker(
            &["image", "inspect", "--format", "{{.Id}}", reference],
            format!("image {reference}"),
        );
        match run(&inv).await {
            Ok(out) => Ok(Some(out.stdout.trim().to_string()).filter(|s| !s.is_empty())),
            Err(DriverError::Failed { output, .. })
                if output.stderr.to_ascii_lowercase().contains("no such") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The value one service runs now.
    async fn service_value(&self, service: &str) -> Result<LayerValue, DriverError> {
        let list = self.inspect_service(service).await?;
        let Some(c) = list.first() else {
            return Err(DriverError::NoContainer {
                project: self.project.clone(),
                service: service.to_string(),
            });
        };
        let (Some(value), Some(digest)) = (str_at(c, "/Config/Image"), str_at(c, "/Image")) else {
            return Err(DriverError::Parse {
                command: "docker inspect".into(),
                unit: format!("service {service}"),
                detail: "container has no Config.Image or Image".into(),
            });
        };
        Ok(LayerValue {
            kind: LayerKind::Image,
            value: value.to_string(),
            digest: Some(digest.to_string()),
        })
    }

    /// The image the operator's files alone (no override) give a service, from
    /// `compose config`: JSON with v2, normalized YAML with v1 (read line by line: `config`
    /// prints services at two spaces and their keys at four). `None` when the service has no
    /// `image` (build-only) or does not exist.
    pub async fn files_image(&self, service: &str) -> Result<Option<String>, DriverError> {
        let flavor = self.flavor().await?;
        let args: &[&str] = match flavor {
            Flavor::V2 => &["config", "--format", "json"],
            Flavor::V1 => &["config"],
        };
        let inv = self
            .compose_with(args, false)
            .await?
            .timeout(self.timeouts.query);
        let out = run(&inv).await?;
        let image = match flavor {
            Flavor::V2 => serde_json::from_str::<Value>(&out.stdout)
                .map_err(|e| DriverError::Parse {
                    command: out.command.clone(),
                    unit: format!("service {service}"),
                    detail: e.to_string(),
                })?
                .pointer(&format!(
                    "/services/{}/image",
                    service.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(str::to_string),
            Flavor::V1 => yaml_service_image(&out.stdout, service),
        };
        Ok(image)
    }

    /// The `version:` of the operator's first file, copied into the override: Compose v1 refuses
    /// to merge files of different versions.
    async fn file_version(&self) -> Option<String> {
        let first = self.files.first()?;
        let text = tokio::fs::read_to_string(first).await.ok()?;
        text.lines().find_map(|l| {
            let v = l.strip_prefix("version:")?.trim().trim_matches(['"', '\'']);
            Some(v.to_string()).filter(|v| !v.is_empty())
        })
    }

    async fn read_json<T: for<'de> Deserialize<'de> + Default>(
        path: &Path,
    ) -> Result<T, DriverError> {
        match tokio::fs::read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                DriverError::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(DriverError::io(path, e)),
        }
    }

    async fn read_overrides(&self) -> Result<Overrides, DriverError> {
        let v: Value = Self::read_json::<Option<Value>>(&self.override_path)
            .await?
            .unwrap_or(Value::Null);
        Ok(Overrides::parse(&v))
    }

    /// The pinned images (service → reference) of the override file.
    async fn read_override(&self) -> Result<BTreeMap<String, String>, DriverError> {
        Ok(self.read_overrides().await?.images)
    }

    /// Write the pinned images, keeping the environment overrides.
    async fn write_override(&self, pinned: &BTreeMap<String, String>) -> Result<(), DriverError> {
        let mut overrides = self.read_overrides().await?;
        overrides.images = pinned.clone();
        self.write_overrides(&overrides).await
    }

    /// Write the override file, or delete it when it would be empty.
    async fn write_overrides(&self, overrides: &Overrides) -> Result<(), DriverError> {
        let Some(doc) = overrides.document(self.file_version().await) else {
            return match tokio::fs::remove_file(&self.override_path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DriverError::io(&self.override_path, e)),
            };
        };
        write_atomic(&self.override_path, &doc).await
    }

    /// An `env` layer's overrides now: the same set on every service of the layer, stored; its
    /// address is the value.
    async fn env_current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        let overrides = self.read_overrides().await?;
        let services = self.layer_services(layer)?;
        let sets: Vec<BTreeMap<String, String>> = services
            .iter()
            .map(|s| overrides.env.get(s).cloned().unwrap_or_default())
            .collect();
        if sets.windows(2).any(|w| w[0] != w[1]) {
            return Err(DriverError::Inconsistent {
                layer: layer.name.clone(),
                detail: format!(
                    "services {} have different environment overrides in {}",
                    services.join(", "),
                    self.override_path.display()
                ),
            });
        }
        let env = sets.into_iter().next().unwrap_or_default();
        let address = envset::put(&self.store, &layer.name, &env)?;
        Ok(LayerValue {
            kind: LayerKind::Env,
            value: address.clone(),
            digest: Some(address),
        })
    }

    /// Set an `env` layer's overrides: `value` is a stored set's address or `KEY=VALUE,…`.
    async fn env_apply(&self, layer: &Layer, value: &str) -> Result<DriverOutput, DriverError> {
        let env = if value.starts_with("sha256:") {
            envset::get(&self.store, value)?.env
        } else {
            envset::parse(value).map_err(|detail| DriverError::Parse {
                command: "apply".into(),
                unit: format!("layer {}", layer.name),
                detail,
            })?
        };
        let services = self.layer_services(layer)?;
        let _guard = self.files_lock.lock().await;
        let mut overrides = self.read_overrides().await?;
        for service in &services {
            if env.is_empty() {
                overrides.env.remove(service);
            } else {
                overrides.env.insert(service.clone(), env.clone());
            }
        }
        self.write_overrides(&overrides).await?;
        // Key names only: values may be secret.
        Ok(DriverOutput::note(format!(
            "set environment overrides [{}] for service(s) {} in {}",
            env.keys().cloned().collect::<Vec<_>>().join(", "),
            services.join(", "),
            self.override_path.display()
        )))
    }
}

/// What the override file holds: pinned images and environment overrides, per service.
///
/// ```json
/// {"version": "2.4", "services": {"operator": {"image": "rollgate-sim/operator:v1.1.0",
///   "environment": {"LOG_LEVEL": "debug"}}}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Overrides {
    images: BTreeMap<String, String>,
    env: BTreeMap<String, BTreeMap<String, String>>,
}

impl Overrides {
    fn parse(v: &Value) -> Overrides {
        let mut o = Overrides::default();
        let Some(services) = v.get("services").and_then(Value::as_object) else {
            return o;
        };
        for (name, svc) in services {
            if let Some(image) = svc.get("image").and_then(Value::as_str) {
                o.images.insert(name.clone(), image.to_string());
            }
            if let Some(env) = svc.get("environment").and_then(Value::as_object) {
                let env: BTreeMap<String, String> = env
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
                if !env.is_empty() {
                    o.env.insert(name.clone(), env);
                }
            }
        }
        o
    }

    /// The file's document, `None` when nothing is overridden.
    fn document(&self, version: Option<String>) -> Option<Value> {
        let mut services = serde_json::Map::new();
        for (s, image) in &self.images {
            services.insert(s.clone(), serde_json::json!({ "image": image }));
        }
        for (s, env) in self.env.iter().filter(|(_, e)| !e.is_empty()) {
            let entry = services
                .entry(s.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(m) = entry {
                m.insert("environment".into(), serde_json::json!(env));
            }
        }
        if services.is_empty() {
            return None;
        }
        let mut doc = serde_json::Map::new();
        if let Some(v) = version {
            doc.insert("version".into(), Value::String(v));
        }
        doc.insert("services".into(), Value::Object(services));
        Some(Value::Object(doc))
    }
}

#[async_trait]
impl RuntimeDriver for ComposeDriver {
    fn name(&self) -> &'static str {
        "compose"
    }

    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        if layer.kind == LayerKind::Env {
            return self.env_current(layer).await;
        }
        require_image(layer)?;
        let mut values: Vec<(String, LayerValue)> = Vec::new();
        for service in self.layer_services(layer)? {
            let v = self.service_value(&service).await?;
            values.push((service, v));
        }
        let Some((_, first)) = values.first().cloned() else {
            return Err(DriverError::Inconsistent {
                layer: layer.name.clone(),
                detail: "the layer has no components".into(),
            });
        };
        if values.iter().any(|(_, v)| *v != first) {
            let detail = values
                .iter()
                .map(|(s, v)| format!("{s}: {}", v.display()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DriverError::Inconsistent {
                layer: layer.name.clone(),
                detail,
            });
        }
        Ok(first)
    }

    async fn apply(&self, layer: &Layer, value: &str) -> Result<DriverOutput, DriverError> {
        if layer.kind == LayerKind::Env {
            return self.env_apply(layer, value).await;
        }
        require_image(layer)?;
        let services = self.layer_services(layer)?;
        let _guard = self.files_lock.lock().await;
        let mut pinned = self.read_override().await?;
        for service in &services {
            pinned.insert(service.clone(), value.to_string());
        }
        self.write_override(&pinned).await?;
        Ok(DriverOutput::note(format!(
            "pin image {value} for service(s) {} in {}",
            services.join(", "),
            self.override_path.display()
        )))
    }

    async fn restore(
        &self,
        layer: &Layer,
        recorded: &LayerValue,
    ) -> Result<DriverOutput, DriverError> {
        if layer.kind == LayerKind::Env {
            let address = recorded.digest.as_deref().unwrap_or(&recorded.value);
            let out = self.env_apply(layer, address).await?;
            // Prove it: the overrides read back must be the recorded set.
            let now = self.env_current(layer).await?;
            if now.digest.as_deref() != Some(address) {
                return Err(DriverError::Restore {
                    layer: layer.name.clone(),
                    recorded: recorded.display(),
                    detail: format!("after the write the overrides read {}", now.display()),
                });
            }
            return Ok(out);
        }
        require_image(layer)?;
        let fail = |detail: String| DriverError::Restore {
            layer: layer.name.clone(),
            recorded: recorded.display(),
            detail,
        };
        let Some(digest) = recorded.digest.as_deref() else {
            return Err(fail(
                "no digest was recorded, so the exact image cannot be proven".into(),
            ));
        };
        let services = self.layer_services(layer)?;
        let _guard = self.files_lock.lock().await;
        let mut output = DriverOutput::default();

        if self.image_id(digest).await?.as_deref() != Some(digest) {
            return Err(fail(format!(
                "image {digest} is no longer present on this machine"
            )));
        }
        let by_digest = recorded.value.contains('@');
        let resolved = self.image_id(&recorded.value).await?;
        if resolved.as_deref() != Some(digest) {
            if by_digest {
                return Err(fail(format!(
                    "{} does not resolve to {digest}",
                    recorded.value
                )));
            }
            // The tag was moved (re-pushed, re-built): point it back at the recorded image.
            let inv = self.docker(
                &["tag", digest, &recorded.value],
                format!("layer {}", layer.name),
            );
            output = output.then(run(&inv).await?);
        }

        let mut pinned = self.read_override().await?;
        let mut notes = Vec::new();
        for service in &services {
            // Unpin only when the operator's files alone provably give the recorded reference
            // (which now resolves to the recorded image ID); otherwise pin it.
            if self.files_image(service).await?.as_deref() == Some(recorded.value.as_str()) {
                if pinned.remove(service).is_some() {
                    notes.push(format!("unpin service {service}"));
                }
            } else if pinned.get(service) != Some(&recorded.value) {
                pinned.insert(service.clone(), recorded.value.clone());
                notes.push(format!(
                    "pin image {} for service {service}",
                    recorded.value
                ));
            }
        }
        self.write_override(&pinned).await?;
        if !notes.is_empty() {
            output = output.then(DriverOutput::note(format!(
                "{} in {}",
                notes.join(", "),
                self.override_path.display()
            )));
        }
        if output.command.is_empty() {
            output = DriverOutput::note(
                "nothing to change: the recorded image is what the service is configured with",
            );
        }
        Ok(output)
    }

    async fn restart(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        if components.is_empty() {
            return Ok(DriverOutput::note("no components to restart"));
        }
        let mut args = vec!["up", "-d", "--no-deps", "--no-build", "--force-recreate"];
        args.extend(components.iter().map(|c| c.service.as_str()));
        let inv = self.compose(&args).await?.timeout(self.timeouts.up);
        run(&inv).await
    }

    /// `compose stop SERVICE…`: the containers stay (with their image), so `start` runs the
    /// same value again.
    async fn stop(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        if components.is_empty() {
            return Ok(DriverOutput::note("no components to stop"));
        }
        let mut args = vec!["stop"];
        args.extend(components.iter().map(|c| c.service.as_str()));
        let inv = self.compose(&args).await?.timeout(self.timeouts.up);
        run(&inv).await
    }

    async fn state(&self, component: &Component) -> Result<ComponentState, DriverError> {
        let list = self.inspect_service(&component.service).await?;
        let Some(c) = list.first() else {
            return Ok(ComponentState {
                status: RunStatus::Missing,
                ..ComponentState::unknown(&component.name)
            });
        };
        Ok(ComponentState {
            component: component.name.clone(),
            status: str_at(c, "/State/Status")
                .map(RunStatus::from_docker)
                .unwrap_or(RunStatus::Unknown),
            restart_count: c
                .pointer("/RestartCount")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            started_at: str_at(c, "/State/StartedAt").map(str::to_string),
            exit_code: c
                .pointer("/State/ExitCode")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok()),
            container_id: str_at(c, "/Id").map(str::to_string),
            image_id: str_at(c, "/Image").map(str::to_string),
        })
    }

    async fn logs_since(
        &self,
        component: &Component,
        since: SystemTime,
    ) -> Result<String, DriverError> {
        let out = self.docker_logs(component, since, false).await?;
        Ok(out.stdout + &out.stderr)
    }

    /// `docker logs --timestamps`: the daemon's timestamp of every line, so each poll reads
    /// from shortly before the newest line it saw and skips the lines it already returned.
    async fn logs_after(
        &self,
        component: &Component,
        cursor: &LogCursor,
    ) -> Result<LogRead, DriverError> {
        let out = self.docker_logs(component, cursor.since, true).await?;
        let entries = out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .map(split_timestamp)
            .collect();
        Ok(LogRead::timed(entries, cursor, out.dropped_bytes))
    }
}

impl ComposeDriver {
    /// `docker logs --since` of the service's newest container, keeping the newest lines.
    async fn docker_logs(
        &self,
        component: &Component,
        since: SystemTime,
        timestamps: bool,
    ) -> Result<DriverOutput, DriverError> {
        let ids = self.containers(&component.service).await?;
        let Some(id) = ids.first() else {
            return Err(DriverError::NoContainer {
                project: self.project.clone(),
                service: component.service.clone(),
            });
        };
        let since = since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let since = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
        let mut args = vec!["logs", "--since", &since];
        if timestamps {
            args.push("--timestamps");
        }
        args.push(id);
        let inv = self
            .docker(&args, format!("component {}", component.name))
            .keep_tail();
        run(&inv).await
    }
}

/// A `docker logs --timestamps` line: the daemon's RFC 3339 time, a space, the line.
fn split_timestamp(line: &str) -> (Option<SystemTime>, String) {
    if let Some((ts, rest)) = line.split_once(' ')
        && let Ok(t) = humantime::parse_rfc3339(ts)
    {
        return (Some(t), rest.to_string());
    }
    (None, line.to_string())
}

/// The `image:` of one service in the normalized YAML that `docker-compose config` (v1) prints.
fn yaml_service_image(yaml: &str, service: &str) -> Option<String> {
    let unquote = |s: &str| s.trim().trim_matches(['"', '\'']).to_string();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match indent {
            0 => {
                in_services = text == "services:";
                current = None;
            }
            2 if in_services => current = text.strip_suffix(':').map(unquote),
            4 if in_services && current.as_deref() == Some(service) => {
                if let Some(v) = text.strip_prefix("image:") {
                    return Some(unquote(v));
                }
            }
            _ => {}
        }
    }
    None
}

fn require_image(layer: &Layer) -> Result<(), DriverError> {
    if layer.kind == LayerKind::Image {
        Ok(())
    } else {
        Err(DriverError::Unsupported {
            layer: layer.name.clone(),
            kind: layer.kind.as_str(),
            driver: "compose",
        })
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The project name: configured, else `COMPOSE_PROJECT_NAME`, else Compose's own rule (the
/// directory name, lowercased, with characters other than `a-z0-9_-` removed). Always passed
/// with `-p`, so v1 and v2 agree.
pub fn project_name(runtime: &ComposeRuntime) -> String {
    if let Some(p) = &runtime.project_name {
        return p.clone();
    }
    if let Ok(p) = std::env::var("COMPOSE_PROJECT_NAME")
        && !p.is_empty()
    {
        return p;
    }
    let base = runtime
        .project_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let name: String = base
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    if name.is_empty() {
        "default".to_string()
    } else {
        name
    }
}

async fn detect(configured: Option<&str>, timeout: Duration) -> Result<Flavor, DriverError> {
    match configured {
        Some("docker compose") => return Ok(Flavor::V2),
        Some("docker-compose") => return Ok(Flavor::V1),
        _ => {}
    }
    let mut tried = Vec::new();
    for (flavor, program, args) in [
        (Flavor::V2, "docker", vec!["compose", "version"]),
        (Flavor::V1, "docker-compose", vec!["version"]),
    ] {
        let inv = Invocation::new(program, args)
            .unit("compose detection")
            .timeout(timeout);
        match run(&inv).await {
            Ok(_) => return Ok(flavor),
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(DriverError::NoCompose {
        detail: tried.join("; "),
    })
}

async fn write_atomic(path: &Path, value: &Value) -> Result<(), DriverError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Private like the rest of the state directory, even when the journal has not created it.
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
        .map_err(|e| DriverError::io(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    let write = async {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&text).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, path).await
    };
    write.await.map_err(|e| DriverError::io(path, e))
}

/// The names a Compose file interpolates: `${NAME…}` and `$NAME`, not the escaped `$$`.
fn interpolated_names(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let (name, next) = if let Some(a) = after.strip_prefix('$') {
            (String::new(), a)
        } else if let Some(a) = after.strip_prefix('{') {
            (ident(a), a)
        } else {
            (ident(after), after)
        };
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            names.push(name);
        }
        rest = next;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_variables_a_compose_file_interpolates() {
        let yaml = "image: ${OPERATOR_IMAGE:-op:v1}\nurl: pg://u@/${DB}?port=${PG_PORT-5433}\ncmd: echo $$NOT_THIS $PLAIN_1 $1 ${ }\n";
        assert_eq!(
            interpolated_names(yaml),
            ["OPERATOR_IMAGE", "DB", "PG_PORT", "PLAIN_1"]
        );
        assert!(interpolated_names("no variables, $$ and a trailing $").is_empty());
    }

    #[test]
    fn reads_images_from_v1_config_output() {
        let yaml = "services:\n  app-svc:\n    image: repo/app:v1\n    depends_on: []\n  other:\n    build:\n      context: .\n    image: 'repo/other:v2'\n  third:\n    build: .\nversion: '2.4'\n";
        assert_eq!(
            yaml_service_image(yaml, "app-svc").as_deref(),
            Some("repo/app:v1")
        );
        assert_eq!(
            yaml_service_image(yaml, "other").as_deref(),
            Some("repo/other:v2")
        );
        assert_eq!(yaml_service_image(yaml, "third"), None);
        assert_eq!(yaml_service_image(yaml, "ghost"), None);
    }

    #[test]
    fn override_file_keeps_images_and_environment_apart() {
        let v: Value = serde_json::from_str(
            r#"{"version": "2.4", "services": {
                "operator": {"image": "op:v2", "environment": {"A": "1"}},
                "kyc": {"environment": {"B": "2"}}}}"#,
        )
        .unwrap();
        let mut o = Overrides::parse(&v);
        assert_eq!(o.images["operator"], "op:v2");
        assert_eq!(o.env["kyc"]["B"], "2");
        assert_eq!(o.document(Some("2.4".into())).unwrap(), v);
        // Unpinning the image keeps the service's environment, and the reverse.
        o.images.clear();
        let doc = o.document(None).unwrap();
        assert_eq!(
            doc["services"]["operator"],
            serde_json::json!({"environment": {"A": "1"}})
        );
        o.env.clear();
        assert_eq!(o.document(None), None);
    }

    #[test]
    fn project_name_follows_compose() {
        let rt = |dir: &str, name: Option<&str>| ComposeRuntime {
            project_dir: PathBuf::from(dir),
            files: vec![],
            project_name: name.map(str::to_string),
            command: None,
            env: vec![],
        };
        assert_eq!(project_name(&rt("/srv/node", None)), "node");
        assert_eq!(project_name(&rt("/srv/My.Node 2", None)), "mynode2");
        assert_eq!(project_name(&rt("/srv/node", Some("custom"))), "custom");
    }
}

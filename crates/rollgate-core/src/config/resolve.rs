//! Raw structs → validated [`Config`]: expand `${VAR}`, parse durations and sizes, check every
//! cross-reference, and detect a runtime-mode mismatch. Errors name the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::env::{EnvSource, expand};
use super::model::*;
use super::raw::{self, RawConfig, Str};
use crate::errors::ConfigError;
use crate::units::{parse_duration, parse_size};
use crate::vocab::{LayerKind, Mode};

/// Parse and resolve configuration text read from `path`.
pub fn load_str(path: &Path, text: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
    resolve(path, text, raw, env)
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message: e.message().trim().to_string(),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, column)
}

/// Carries the file, its text and the environment through resolution.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a dyn EnvSource,
}

impl Ctx<'_> {
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        line_col(self.text, s.span().start).0
    }

    fn invalid<T>(&self, at: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(at),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An error for a table-level problem, located at the first line that mentions `needle`.
    fn invalid_at(&self, needle: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self
            .text
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or(1);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A string with `${VAR}` expanded.
    fn s(&self, v: &Str, key: &str) -> Result<String, ConfigError> {
        expand(v.get_ref(), self.env).map_err(|var| ConfigError::MissingEnv {
            path: self.path.to_path_buf(),
            line: self.line(v),
            key: key.to_string(),
            var,
        })
    }

    fn path(&self, v: &Str, key: &str) -> Result<PathBuf, ConfigError> {
        let s = self.s(v, key)?;
        if s.is_empty() {
            return Err(self.invalid(v, key, "a path must not be empty"));
        }
        Ok(PathBuf::from(s))
    }

    fn url(&self, v: &Str, key: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let s = self.s(v, key)?;
        let scheme = s.split_once("://").map(|(sch, _)| sch.to_ascii_lowercase());
        match scheme {
            Some(sch) if schemes.contains(&sch.as_str()) => Ok(s),
            _ => Err(self.invalid(
                v,
                key,
                format!(
                    "`{}` is not a URL with scheme {}",
                    crate::redact::redact_url(&s),
                    schemes.join(", ")
                ),
            )),
        }
    }

    fn http(&self, v: &Str, key: &str) -> Result<String, ConfigError> {
        self.url(v, key, &["http", "https"])
    }

    fn duration(&self, v: &Str, key: &str) -> Result<Duration, ConfigError> {
        let s = self.s(v, key)?;
        parse_duration(&s).map_err(|m| self.invalid(v, key, m))
    }

    fn opt_duration(
        &self,
        v: &Option<Str>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        v.as_ref()
            .map(|v| self.duration(v, key))
            .transpose()
            .map(|d| d.unwrap_or(default))
    }

    fn size(&self, v: &Str, key: &str) -> Result<u64, ConfigError> {
        let s = self.s(v, key)?;
        parse_size(&s).map_err(|m| self.invalid(v, key, m))
    }

    fn pointer(&self, v: &Str, key: &str) -> Result<String, ConfigError> {
        let s = self.s(v, key)?;
        if !s.is_empty() && !s.starts_with('/') {
            return Err(self.invalid(
                v,
                key,
                format!("`{s}` is not a JSON pointer (it must start with `/`)"),
            ));
        }
        Ok(s)
    }

    fn ratio(&self, v: &Option<Spanned<f64>>, key: &str, default: f64) -> Result<f64, ConfigError> {
        match v {
            Some(x) if !x.get_ref().is_finite() || *x.get_ref() < 0.0 => {
                Err(self.invalid(x, key, "must be a non-negative number"))
            }
            Some(x) => Ok(*x.get_ref()),
            None => Ok(default),
        }
    }

    fn count(&self, v: &Option<Spanned<i64>>, key: &str, default: i64) -> Result<i64, ConfigError> {
        match v {
            Some(x) if *x.get_ref() < 0 => Err(self.invalid(x, key, "must not be negative")),
            Some(x) => Ok(*x.get_ref()),
            None => Ok(default),
        }
    }
}

/// Resolve raw configuration into a validated model.
pub fn resolve(
    path: &Path,
    text: &str,
    raw: RawConfig,
    env: &dyn EnvSource,
) -> Result<Config, ConfigError> {
    let cx = Ctx { path, text, env };

    let node = resolve_node(&cx, &raw.node)?;
    let sgx = raw.sgx.as_ref().map(|s| resolve_sgx(&cx, s)).transpose()?;
    let mut dependencies = resolve_dependencies(&cx, &raw.dependencies)?;
    check_mode(&cx, &node, &dependencies)?;
    if node.enclave {
        if sgx.is_none() {
            return Err(cx.invalid(
                &raw.node.name,
                "node.enclave",
                "`enclave = true` requires an [sgx] section",
            ));
        }
        for (present, what) in [
            (dependencies.pccs.is_some(), "pccs"),
            (dependencies.aesm.is_some(), "aesm"),
        ] {
            if !present {
                return Err(cx.invalid(
                    &raw.node.name,
                    "node.enclave",
                    format!("`enclave = true` requires [dependencies].{what}"),
                ));
            }
        }
    }

    let headroom = resolve_headroom(&cx, &raw.headroom)?;
    let readiness = raw
        .readiness
        .iter()
        .map(|(name, r)| resolve_readiness(&cx, name, r))
        .collect::<Result<Vec<_>, _>>()?;
    let probes = resolve_probes(&cx, &raw.probes)?;
    let progression = raw
        .progression
        .iter()
        .enumerate()
        .map(|(i, p)| resolve_progression(&cx, i, p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = std::collections::BTreeSet::new();
    for (p, raw_p) in progression.iter().zip(&raw.progression) {
        if !names.insert(p.name.clone()) {
            return Err(cx.invalid(
                &raw_p.name,
                "progression.name",
                format!("duplicate progression name `{}`", p.name),
            ));
        }
    }
    let faults = resolve_faults(&cx, &raw.faults)?;
    let alerts = resolve_alerts(&cx, &raw.alerts)?;
    let prometheus = raw
        .prometheus
        .as_ref()
        .map(|p| resolve_prometheus(&cx, p))
        .transpose()?;
    let analysis = resolve_analysis(&cx, &raw.analysis, prometheus.is_some())?;
    let alertmanager = raw
        .alertmanager
        .as_ref()
        .map(|a| resolve_alertmanager(&cx, a))
        .transpose()?;
    let runtime = resolve_runtime(&cx, &raw.runtime)?;
    let components = resolve_components(&cx, &raw, &readiness)?;
    let mut layers = resolve_layers(&cx, &raw.layers, &components)?;
    check_layer_files(&cx, &raw.layers, &layers, &node, &runtime)?;
    resolve_snapshots(&cx, &raw.layers, &dependencies, &runtime, &mut layers)?;
    if let Some(pg) = dependencies.postgres.as_mut() {
        pg.snapshot = snapshot_needs(&layers, &node.state_dir);
    }

    let longest_window = progression
        .iter()
        .map(|p| p.window)
        .max()
        .unwrap_or(Duration::from_secs(10));
    // The bake first: the baseline window's default depends on its sampling.
    let bake = resolve_bake(&cx, &raw.bake)?;
    let r = &raw.rollout;
    let idle_progression = match &r.idle_progression {
        None => IdlePolicy::Fail,
        Some(v) => match cx.s(v, "rollout.idle_progression")?.as_str() {
            "fail" => IdlePolicy::Fail,
            "inconclusive" => IdlePolicy::Inconclusive,
            "pass" => IdlePolicy::Pass,
            other => {
                return Err(cx.invalid(
                    v,
                    "rollout.idle_progression",
                    format!("`{other}` is not one of fail, inconclusive, pass"),
                ));
            }
        },
    };
    let rollout = RolloutPolicy {
        readiness_deadline: cx.opt_duration(
            &r.readiness_deadline,
            "rollout.readiness_deadline",
            Duration::from_secs(120),
        )?,
        bake: cx.opt_duration(&r.bake, "rollout.bake", Duration::from_secs(600))?,
        idle_progression,
        // Long enough for the baseline's trends to decide the bake's latency test: at least
        // the samples `n` against `n` need to reach `bake.significance` (5 at 0.01), and
        // `bake.min_samples`, at `bake.sample_interval`.
        baseline_window: cx.opt_duration(
            &r.baseline_window,
            "rollout.baseline_window",
            longest_window.max(
                bake.sample_interval.saturating_mul(
                    crate::stats::samples_to_decide(bake.significance, bake.min_samples)
                        .try_into()
                        .unwrap_or(u32::MAX),
                ),
            ),
        )?,
        poll_interval: cx.opt_duration(
            &r.poll_interval,
            "rollout.poll_interval",
            Duration::from_secs(1),
        )?,
        min_healthy: cx.opt_duration(&r.min_healthy, "rollout.min_healthy", longest_window)?,
        snapshot_retention: cx.opt_duration(
            &r.snapshot_retention,
            "rollout.snapshot_retention",
            Duration::from_secs(7 * 24 * 3600),
        )?,
    };

    let probe_limits = ProbeLimits {
        timeout: cx.opt_duration(&raw.probe.timeout, "probe.timeout", Duration::from_secs(5))?,
        max_body: match &raw.probe.max_body {
            Some(v) => cx.size(v, "probe.max_body")?,
            None => 1024 * 1024,
        },
    };
    if probe_limits.timeout.is_zero() {
        return Err(cx.invalid(
            raw.probe.timeout.as_ref().unwrap(),
            "probe.timeout",
            "must be greater than zero",
        ));
    }

    let serve = Serve {
        listen: raw
            .serve
            .listen
            .as_ref()
            .map(|v| cx.s(v, "serve.listen"))
            .transpose()?,
        token: raw
            .serve
            .token
            .as_ref()
            .map(|v| cx.s(v, "serve.token"))
            .transpose()?,
        token_file: raw
            .serve
            .token_file
            .as_ref()
            .map(|v| cx.path(v, "serve.token_file"))
            .transpose()?,
        webhook_url: raw
            .serve
            .webhook_url
            .as_ref()
            .map(|v| cx.http(v, "serve.webhook_url"))
            .transpose()?,
        read_token: raw
            .serve
            .read_token
            .as_ref()
            .map(|v| cx.s(v, "serve.read_token"))
            .transpose()?,
        read_token_file: raw
            .serve
            .read_token_file
            .as_ref()
            .map(|v| cx.path(v, "serve.read_token_file"))
            .transpose()?,
        allowed_hosts: resolve_hosts(&cx, &raw.serve.allowed_hosts)?,
    };
    if let (Some(_), Some(f)) = (&raw.serve.read_token, &raw.serve.read_token_file) {
        return Err(cx.invalid(
            f,
            "serve.read_token_file",
            "set one of [serve].read_token and [serve].read_token_file, not both",
        ));
    }
    let secrets = resolve_secrets(&cx, &raw.secrets)?;
    let fleet = raw
        .fleet
        .as_ref()
        .map(|f| resolve_fleet(&cx, f))
        .transpose()?;

    Ok(Config {
        source: path.to_path_buf(),
        node,
        sgx,
        dependencies,
        headroom,
        readiness,
        probes,
        progression,
        faults,
        alerts,
        prometheus,
        analysis,
        alertmanager,
        runtime,
        components,
        layers,
        rollout,
        probe_limits,
        bake,
        serve,
        fleet,
        secrets,
    })
}

/// `[fleet]`: every endpoint a URL, a cluster name safe as an etcd key segment, pointers that
/// are pointers, and credentials in pairs.
fn resolve_fleet(cx: &Ctx, f: &raw::RawFleet) -> Result<Fleet, ConfigError> {
    if f.etcd.is_empty() {
        return Err(cx.invalid_at(
            "etcd =",
            "fleet.etcd",
            "list at least one etcd endpoint (\"http://127.0.0.1:2379\")",
        ));
    }
    let etcd = f
        .etcd
        .iter()
        .map(|e| cx.http(e, "fleet.etcd"))
        .collect::<Result<Vec<_>, _>>()?;
    let cluster = cx.s(&f.cluster, "fleet.cluster")?;
    if cluster.is_empty()
        || !cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(cx.invalid(
            &f.cluster,
            "fleet.cluster",
            format!(
                "`{cluster}` is not a cluster name (letters, digits, `.`, `_`, `-`: it becomes \
                 the etcd key prefix /rollgate/v1/<cluster>/)"
            ),
        ));
    }
    let pointer = |v: &Option<Str>,
                   key: &str,
                   default: Option<&str>|
     -> Result<Option<String>, ConfigError> {
        match v {
            Some(v) => {
                let p = cx.pointer(v, key)?;
                if p.is_empty() {
                    return Err(cx.invalid(v, key, "must not be empty"));
                }
                Ok(Some(p))
            }
            None => Ok(default.map(str::to_owned)),
        }
    };
    let node_id_pointer = pointer(
        &f.node_id_pointer,
        "fleet.node_id_pointer",
        Some("/raftMetrics/nodeId"),
    )?
    .unwrap_or_default();
    let voters_pointer = pointer(
        &f.voters_pointer,
        "fleet.voters_pointer",
        Some("/raftMetrics/voterIds"),
    )?
    .unwrap_or_default();
    let leader_pointer = pointer(&f.leader_pointer, "fleet.leader_pointer", None)?;
    let user = f.user.as_ref().map(|v| cx.s(v, "fleet.user")).transpose()?;
    let password = f
        .password
        .as_ref()
        .map(|v| cx.s(v, "fleet.password"))
        .transpose()?;
    match (&f.user, &f.password) {
        (Some(u), None) => {
            return Err(cx.invalid(u, "fleet.user", "set fleet.password with fleet.user"));
        }
        (None, Some(p)) => {
            return Err(cx.invalid(p, "fleet.password", "set fleet.user with fleet.password"));
        }
        _ => {}
    }
    Ok(Fleet {
        etcd,
        cluster,
        node_id_pointer,
        voters_pointer,
        leader_pointer,
        max_lag: cx.count(&f.max_lag, "fleet.max_lag", 50)? as u64,
        stabilization: cx.opt_duration(
            &f.stabilization,
            "fleet.stabilization",
            Duration::from_secs(15),
        )?,
        canary_soak: cx.opt_duration(&f.canary_soak, "fleet.canary_soak", Duration::ZERO)?,
        user,
        password,
        ca_file: f
            .ca_file
            .as_ref()
            .map(|v| cx.path(v, "fleet.ca_file"))
            .transpose()?,
    })
}

/// `secrets = [...]`: each expanded, and long enough to be replaced without destroying the
/// record.
fn resolve_secrets(cx: &Ctx, raw: &[Str]) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("secrets[{i}]");
            let s = cx.s(v, &key)?;
            if s.trim().is_empty() {
                return Err(cx.invalid(v, &key, "a declared secret must not be empty"));
            }
            if s.chars().count() < crate::secrets::MIN_LEN {
                return Err(cx.invalid(
                    v,
                    &key,
                    format!(
                        "a declared secret must have at least {} characters: a shorter one cannot be redacted without destroying the output",
                        crate::secrets::MIN_LEN
                    ),
                ));
            }
            Ok(s)
        })
        .collect()
}

/// `[serve].allowed_hosts`: host names (optionally with a port), no scheme or path.
fn resolve_hosts(cx: &Ctx, raw: &[Str]) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("serve.allowed_hosts[{i}]");
            let s = cx.s(v, &key)?.trim().to_ascii_lowercase();
            if s.is_empty() || s.contains(['/', '@', ' ', ',']) || s.contains("://") {
                return Err(cx.invalid(
                    v,
                    &key,
                    format!(
                        "`{s}` is not a host name (e.g. `node0.internal` or `node0.internal:9810`)"
                    ),
                ));
            }
            Ok(s)
        })
        .collect()
}

/// `env = [...]` of a runtime driver: names of environment variables.
fn resolve_env_names(cx: &Ctx, raw: &[Str], table: &str) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v.get_ref();
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(cx.invalid(
                    v,
                    &format!("{table}.env[{i}]"),
                    format!("`{name}` is not an environment variable name (letters, digits, `_`)"),
                ));
            }
            Ok(name.clone())
        })
        .collect()
}

fn resolve_node(cx: &Ctx, n: &raw::RawNode) -> Result<Node, ConfigError> {
    let mode_s = cx.s(&n.mode, "node.mode")?;
    let mode = Mode::parse(&mode_s).ok_or_else(|| {
        cx.invalid(
            &n.mode,
            "node.mode",
            format!("`{mode_s}` is not one of localnet.loopback, localnet.compose, host"),
        )
    })?;
    let app_config = cx.path(&n.app_config, "node.app_config")?;
    let rel = cx.path(&n.deployment_metadata, "node.deployment_metadata")?;
    let owner_s = cx.s(
        &n.deployment_metadata_owner,
        "node.deployment_metadata_owner",
    )?;
    if owner_s.is_empty() {
        return Err(cx.invalid(
            &n.deployment_metadata_owner,
            "node.deployment_metadata_owner",
            "must name a user or a uid",
        ));
    }
    let owner = match owner_s.parse::<u32>() {
        Ok(uid) => Owner::Uid(uid),
        Err(_) => Owner::Name(owner_s),
    };
    Ok(Node {
        name: cx.s(&n.name, "node.name")?,
        mode,
        deployment_metadata: app_config.join(rel),
        app_config,
        deployment_metadata_owner: owner,
        enclave: n.enclave,
        state_dir: cx.path(&n.state_dir, "node.state_dir")?,
    })
}

fn resolve_sgx(cx: &Ctx, s: &raw::RawSgx) -> Result<Sgx, ConfigError> {
    let report_type = match &s.report_type {
        Some(v) => cx.s(v, "sgx.report_type")?,
        None => "SELF".to_string(),
    };
    let attestation = match &s.attestation {
        Some(v) => match cx.s(v, "sgx.attestation")?.to_ascii_lowercase().as_str() {
            "self" => Attestation::SelfReport,
            "dcap" => Attestation::Dcap,
            other => {
                return Err(cx.invalid(
                    v,
                    "sgx.attestation",
                    format!("`{other}` is not one of self, dcap"),
                ));
            }
        },
        None if report_type.eq_ignore_ascii_case("SELF") => Attestation::SelfReport,
        None => Attestation::Dcap,
    };
    Ok(Sgx {
        build_flags: cx.path(&s.build_flags, "sgx.build_flags")?,
        runtime_env: cx.path(&s.runtime_env, "sgx.runtime_env")?,
        report_type,
        devices: s
            .devices
            .iter()
            .map(|d| cx.path(d, "sgx.devices"))
            .collect::<Result<_, _>>()?,
        attestation,
    })
}

fn resolve_dependencies(cx: &Ctx, d: &raw::RawDependencies) -> Result<Dependencies, ConfigError> {
    let chain = d
        .chain
        .as_ref()
        .map(|c| -> Result<Chain, ConfigError> {
            let url = cx.http(&c.url, "dependencies.chain.url")?;
            let probe_url = match &c.probe_url {
                Some(p) => cx.http(p, "dependencies.chain.probe_url")?,
                None => url.clone(),
            };
            let chain_id = match &c.chain_id {
                Some(v) => {
                    let s = cx.s(v, "dependencies.chain.chain_id")?;
                    let parsed = match s.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16).ok(),
                        None => s.parse().ok(),
                    };
                    Some(parsed.ok_or_else(|| {
                        cx.invalid(
                            v,
                            "dependencies.chain.chain_id",
                            format!("`{s}` is not a chain id"),
                        )
                    })?)
                }
                None => None,
            };
            let max_block_age = cx.opt_duration(
                &c.max_block_age,
                "dependencies.chain.max_block_age",
                Chain::DEFAULT_MAX_BLOCK_AGE,
            )?;
            if let Some(v) = c.max_block_age.as_ref().filter(|_| max_block_age.is_zero()) {
                return Err(cx.invalid(
                    v,
                    "dependencies.chain.max_block_age",
                    "must be greater than zero",
                ));
            }
            let advance_window = c
                .advance_window
                .as_ref()
                .map(|v| cx.duration(v, "dependencies.chain.advance_window"))
                .transpose()?;
            Ok(Chain {
                url,
                probe_url,
                chain_id,
                max_block_age,
                advance_window,
            })
        })
        .transpose()?;
    let deployment_service = d
        .deployment_service
        .as_ref()
        .map(|s| -> Result<DeploymentService, ConfigError> {
            let url = cx.http(&s.url, "dependencies.deployment_service.url")?;
            let probe_url = match &s.probe_url {
                Some(p) => cx.http(p, "dependencies.deployment_service.probe_url")?,
                None => url.clone(),
            };
            let path = match &s.path {
                Some(p) => cx.s(p, "dependencies.deployment_service.path")?,
                None => "/health".to_string(),
            };
            Ok(DeploymentService {
                url,
                probe_url,
                path,
            })
        })
        .transpose()?;
    let postgres = d
        .postgres
        .as_ref()
        .map(|p| -> Result<Postgres, ConfigError> {
            Ok(Postgres {
                url: cx.url(
                    &p.url,
                    "dependencies.postgres.url",
                    &["postgres", "postgresql"],
                )?,
                databases: p
                    .databases
                    .iter()
                    .map(|db| cx.s(db, "dependencies.postgres.databases"))
                    .collect::<Result<_, _>>()?,
                snapshot: SnapshotNeeds::default(),
            })
        })
        .transpose()?;
    let redis = d
        .redis
        .as_ref()
        .map(|r| -> Result<Redis, ConfigError> {
            Ok(Redis {
                url: cx.url(
                    &r.url,
                    "dependencies.redis.url",
                    &["redis", "rediss", "redis+unix", "unix"],
                )?,
            })
        })
        .transpose()?;
    let pccs = d.pccs.as_ref().map(|p| resolve_pccs(cx, p)).transpose()?;
    let aesm = d
        .aesm
        .as_ref()
        .map(|a| -> Result<Aesm, ConfigError> {
            Ok(Aesm {
                socket: cx.path(&a.socket, "dependencies.aesm.socket")?,
            })
        })
        .transpose()?;
    Ok(Dependencies {
        chain,
        deployment_service,
        postgres,
        redis,
        pccs,
        aesm,
    })
}

fn resolve_pccs(cx: &Ctx, p: &raw::RawPccs) -> Result<Pccs, ConfigError> {
    let url = cx.url(&p.url, "dependencies.pccs.url", &["https"])?;
    let insecure = p.insecure.as_ref().map(|b| *b.get_ref()).unwrap_or(false);
    let set = [p.pin_sha256.is_some(), p.ca_file.is_some(), insecure]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        return Err(cx.invalid(
            &p.url,
            "dependencies.pccs",
            "set exactly one of pin_sha256, ca_file or insecure = true (PCCS usually has a self-signed certificate: pin it)",
        ));
    }
    let trust = if let Some(pin) = &p.pin_sha256 {
        let s = cx.s(pin, "dependencies.pccs.pin_sha256")?;
        let hex: String = s
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        let bytes = decode_hex32(&hex).ok_or_else(|| {
            cx.invalid(
                pin,
                "dependencies.pccs.pin_sha256",
                "must be the 64 hex digits of a SHA-256 (colons allowed)",
            )
        })?;
        PccsTrust::Pin(bytes)
    } else if let Some(ca) = &p.ca_file {
        PccsTrust::CaFile(cx.path(ca, "dependencies.pccs.ca_file")?)
    } else {
        PccsTrust::Insecure
    };
    let path = match &p.path {
        Some(v) => cx.s(v, "dependencies.pccs.path")?,
        None => "/sgx/certification/v4/rootcacrl".to_string(),
    };
    Ok(Pccs { url, path, trust })
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The chain and deployment-service URLs must belong to one mode, and that mode must be the
/// declared one. `host` is diagnostic only and accepts any URLs.
fn check_mode(cx: &Ctx, node: &Node, deps: &Dependencies) -> Result<(), ConfigError> {
    let chain = deps
        .chain
        .as_ref()
        .map(|c| (Mode::of_url(&c.url), crate::redact::redact_url(&c.url)));
    let deploy = deps
        .deployment_service
        .as_ref()
        .map(|d| (Mode::of_url(&d.url), crate::redact::redact_url(&d.url)));
    let mismatch = |detail: String| ConfigError::ModeMismatch {
        path: cx.path.to_path_buf(),
        detail,
    };
    if let (Some((cm, cu)), Some((dm, du))) = (&chain, &deploy)
        && cm != dm
    {
        return Err(mismatch(format!(
            "chain URL {cu} is {cm} but deployment-service URL {du} is {dm}; both must come from one runtime mode"
        )));
    }
    if node.mode == Mode::Host {
        return Ok(());
    }
    for (what, dep) in [("chain", &chain), ("deployment-service", &deploy)] {
        if let Some((m, u)) = dep
            && *m != node.mode
        {
            return Err(mismatch(format!(
                "node.mode is {} but the {what} URL {u} is {m} (expected like {})",
                node.mode,
                if what == "chain" {
                    node.mode.canonical_chain_url()
                } else {
                    node.mode.canonical_deployment_url()
                }
                .unwrap_or("-")
            )));
        }
    }
    Ok(())
}

fn resolve_headroom(cx: &Ctx, h: &raw::RawHeadroom) -> Result<Headroom, ConfigError> {
    let disk = h
        .disk
        .iter()
        .map(|d| -> Result<DiskHeadroom, ConfigError> {
            let pct = |v: &Option<Spanned<f64>>, key: &str| -> Result<Option<f64>, ConfigError> {
                match v {
                    Some(x) if !(0.0..=100.0).contains(x.get_ref()) => {
                        Err(cx.invalid(x, key, "must be a percentage from 0 to 100"))
                    }
                    Some(x) => Ok(Some(*x.get_ref())),
                    None => Ok(None),
                }
            };
            Ok(DiskHeadroom {
                path: cx.path(&d.path, "headroom.disk.path")?,
                min_free_bytes: d
                    .min_free
                    .as_ref()
                    .map(|v| cx.size(v, "headroom.disk.min_free"))
                    .transpose()?,
                min_free_percent: pct(&d.min_free_percent, "headroom.disk.min_free_percent")?,
                min_free_inodes_percent: pct(
                    &d.min_free_inodes_percent,
                    "headroom.disk.min_free_inodes_percent",
                )?,
            })
        })
        .collect::<Result<_, _>>()?;
    let database = h
        .database
        .as_ref()
        .map(|d| -> Result<DatabaseHeadroom, ConfigError> {
            Ok(DatabaseHeadroom {
                max_growth_during_window: cx.size(
                    &d.max_growth_during_window,
                    "headroom.database.max_growth_during_window",
                )?,
            })
        })
        .transpose()?;
    Ok(Headroom { disk, database })
}

fn resolve_readiness(
    cx: &Ctx,
    name: &str,
    r: &raw::RawReadiness,
) -> Result<Readiness, ConfigError> {
    let key = format!("readiness.{name}");
    let expect = r
        .expect
        .iter()
        .map(|e| -> Result<Expect, ConfigError> {
            let pointer = cx.pointer(&e.pointer, &format!("{key}.expect.pointer"))?;
            let set = [e.equals.is_some(), e.one_of.is_some(), e.present.is_some(), e.type_.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set != 1 {
                return Err(cx.invalid(&e.pointer, &format!("{key}.expect"), "set exactly one of equals, one_of, present, type"));
            }
            let check = if let Some(v) = &e.equals {
                Expectation::Equals(toml_to_json(v))
            } else if let Some(vs) = &e.one_of {
                Expectation::OneOf(vs.iter().map(toml_to_json).collect())
            } else if let Some(p) = e.present {
                Expectation::Present(p)
            } else {
                let t = e.type_.as_ref().unwrap();
                let ts = cx.s(t, &format!("{key}.expect.type"))?;
                Expectation::Type(JsonType::parse(&ts).ok_or_else(|| {
                    cx.invalid(t, &format!("{key}.expect.type"), format!("`{ts}` is not one of null, boolean, number, integer, string, array, object"))
                })?)
            };
            Ok(Expect { pointer, check })
        })
        .collect::<Result<_, _>>()?;
    Ok(Readiness {
        name: name.to_string(),
        url: cx.http(&r.url, &format!("{key}.url"))?,
        expect,
    })
}

/// TOML values become JSON values for comparison with JSON responses.
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn resolve_probes(cx: &Ctx, p: &raw::RawProbes) -> Result<Probes, ConfigError> {
    let encryption_key = p
        .encryption_key
        .as_ref()
        .map(|e| -> Result<EncryptionKeyProbe, ConfigError> {
            Ok(EncryptionKeyProbe {
                url: cx.http(&e.url, "probes.encryption_key.url")?,
            })
        })
        .transpose()?;
    let mark_price = p
        .mark_price
        .as_ref()
        .map(|m| -> Result<MarkPriceProbe, ConfigError> {
            if m.symbols.is_empty() {
                return Err(cx.invalid(
                    &m.url,
                    "probes.mark_price.symbols",
                    "must name at least one symbol",
                ));
            }
            let template = |v: &Str, key: &str| -> Result<String, ConfigError> {
                let s = cx.pointer(v, key)?;
                if !s.contains("{symbol}") && m.symbols.len() > 1 {
                    return Err(cx.invalid(
                        v,
                        key,
                        "must contain `{symbol}` when several symbols are configured",
                    ));
                }
                Ok(s)
            };
            Ok(MarkPriceProbe {
                url: cx.http(&m.url, "probes.mark_price.url")?,
                symbols: m
                    .symbols
                    .iter()
                    .map(|s| cx.s(s, "probes.mark_price.symbols"))
                    .collect::<Result<_, _>>()?,
                price_pointer: template(&m.price_pointer, "probes.mark_price.price_pointer")?,
                timestamp_pointer: template(
                    &m.timestamp_pointer,
                    "probes.mark_price.timestamp_pointer",
                )?,
                max_age: cx.duration(&m.max_age, "probes.mark_price.max_age")?,
            })
        })
        .transpose()?;
    Ok(Probes {
        encryption_key,
        mark_price,
    })
}

fn resolve_progression(
    cx: &Ctx,
    _i: usize,
    p: &raw::RawProgression,
) -> Result<Progression, ConfigError> {
    let mode = match &p.mode {
        None => ProgressionMode::Increases,
        Some(v) => match cx.s(v, "progression.mode")?.as_str() {
            "increases" => ProgressionMode::Increases,
            "changes" => ProgressionMode::Changes,
            other => {
                return Err(cx.invalid(
                    v,
                    "progression.mode",
                    format!("`{other}` is not one of increases, changes"),
                ));
            }
        },
    };
    let window = cx.duration(&p.window, "progression.window")?;
    if window.is_zero() {
        return Err(cx.invalid(&p.window, "progression.window", "must be greater than zero"));
    }
    Ok(Progression {
        name: cx.s(&p.name, "progression.name")?,
        url: cx.http(&p.url, "progression.url")?,
        pointer: cx.pointer(&p.pointer, "progression.pointer")?,
        mode,
        window,
    })
}

fn resolve_faults(cx: &Ctx, f: &raw::RawFaults) -> Result<Faults, ConfigError> {
    let mut log_patterns = Vec::new();
    for p in &f.log_patterns {
        let s = cx.s(p, "faults.log_patterns")?;
        regex::Regex::new(&s).map_err(|e| {
            cx.invalid(
                p,
                "faults.log_patterns",
                format!("invalid regular expression: {e}"),
            )
        })?;
        log_patterns.push(s);
    }
    Ok(Faults {
        pointers: f
            .pointers
            .iter()
            .map(|p| cx.pointer(p, "faults.pointers"))
            .collect::<Result<_, _>>()?,
        log_patterns,
        url: f
            .url
            .as_ref()
            .map(|u| cx.http(u, "faults.url"))
            .transpose()?,
    })
}

fn resolve_alerts(cx: &Ctx, a: &raw::RawAlerts) -> Result<Alerts, ConfigError> {
    Ok(Alerts {
        fields: a
            .fields
            .iter()
            .map(|p| cx.pointer(p, "alerts.fields"))
            .collect::<Result<_, _>>()?,
        rules_files: a
            .rules_files
            .iter()
            .map(|p| cx.path(p, "alerts.rules_files"))
            .collect::<Result<_, _>>()?,
        url: a
            .url
            .as_ref()
            .map(|u| cx.http(u, "alerts.url"))
            .transpose()?,
        metrics_urls: a
            .metrics_urls
            .iter()
            .map(|u| cx.http(u, "alerts.metrics_urls"))
            .collect::<Result<_, _>>()?,
    })
}

fn resolve_runtime(cx: &Ctx, r: &raw::RawRuntime) -> Result<Runtime, ConfigError> {
    let driver = cx.s(&r.driver, "runtime.driver")?;
    match driver.as_str() {
        "compose" => {
            let c = r.compose.as_ref().ok_or_else(|| {
                cx.invalid(
                    &r.driver,
                    "runtime.compose",
                    "`driver = \"compose\"` requires a [runtime.compose] section",
                )
            })?;
            let project_dir = cx.path(&c.project_dir, "runtime.compose.project_dir")?;
            let mut files: Vec<PathBuf> = c
                .files
                .iter()
                .map(|f| cx.path(f, "runtime.compose.files"))
                .collect::<Result<_, _>>()?;
            if files.is_empty() {
                files.push(PathBuf::from("docker-compose.yml"));
            }
            let command = c
                .command
                .as_ref()
                .map(|v| cx.s(v, "runtime.compose.command"))
                .transpose()?;
            if let (Some(cmd), Some(v)) = (&command, &c.command)
                && cmd != "docker compose"
                && cmd != "docker-compose"
            {
                return Err(cx.invalid(
                    v,
                    "runtime.compose.command",
                    format!("`{cmd}` is not one of `docker compose`, `docker-compose`"),
                ));
            }
            Ok(Runtime::Compose(ComposeRuntime {
                project_dir,
                files,
                project_name: c
                    .project_name
                    .as_ref()
                    .map(|v| cx.s(v, "runtime.compose.project_name"))
                    .transpose()?,
                command,
                env: resolve_env_names(cx, &c.env, "runtime.compose")?,
            }))
        }
        "command" => {
            let c = r.command.as_ref().ok_or_else(|| {
                cx.invalid(
                    &r.driver,
                    "runtime.command",
                    "`driver = \"command\"` requires a [runtime.command] section",
                )
            })?;
            let nonempty = |v: &Str, key: &str| -> Result<String, ConfigError> {
                if v.get_ref().trim().is_empty() {
                    return Err(cx.invalid(v, key, "must not be empty"));
                }
                Ok(v.get_ref().clone())
            };
            Ok(Runtime::Command(CommandRuntime {
                current: nonempty(&c.current, "runtime.command.current")?,
                apply: nonempty(&c.apply, "runtime.command.apply")?,
                restart: nonempty(&c.restart, "runtime.command.restart")?,
                logs: c
                    .logs
                    .as_ref()
                    .map(|v| nonempty(v, "runtime.command.logs"))
                    .transpose()?,
                stop: c
                    .stop
                    .as_ref()
                    .map(|v| nonempty(v, "runtime.command.stop"))
                    .transpose()?,
                start: c
                    .start
                    .as_ref()
                    .map(|v| nonempty(v, "runtime.command.start"))
                    .transpose()?,
                timeout: cx.opt_duration(
                    &c.timeout,
                    "runtime.command.timeout",
                    Duration::from_secs(60),
                )?,
                env: resolve_env_names(cx, &c.env, "runtime.command")?,
            }))
        }
        "systemd" => Err(cx.invalid(
            &r.driver,
            "runtime.driver",
            "the systemd driver is not available yet: use `command` with systemctl",
        )),
        other => Err(cx.invalid(
            &r.driver,
            "runtime.driver",
            format!("`{other}` is not one of compose, command"),
        )),
    }
}

fn resolve_components(
    cx: &Ctx,
    raw: &RawConfig,
    readiness: &[Readiness],
) -> Result<BTreeMap<String, Component>, ConfigError> {
    let mut out = BTreeMap::new();
    match &raw.components {
        Some(table) => {
            for (name, c) in table {
                let readiness_name = match &c.readiness {
                    Some(v) => {
                        let r = cx.s(v, &format!("components.{name}.readiness"))?;
                        if !readiness.iter().any(|x| x.name == r) {
                            return Err(cx.invalid(
                                v,
                                &format!("components.{name}.readiness"),
                                format!("no [readiness.{r}] entry"),
                            ));
                        }
                        Some(r)
                    }
                    None => readiness
                        .iter()
                        .find(|x| &x.name == name)
                        .map(|x| x.name.clone()),
                };
                let service = match &c.service {
                    Some(v) => cx.s(v, &format!("components.{name}.service"))?,
                    None => name.clone(),
                };
                out.insert(
                    name.clone(),
                    Component {
                        name: name.clone(),
                        service,
                        readiness: readiness_name,
                    },
                );
            }
        }
        None => {
            for r in readiness {
                out.insert(
                    r.name.clone(),
                    Component {
                        name: r.name.clone(),
                        service: r.name.clone(),
                        readiness: Some(r.name.clone()),
                    },
                );
            }
        }
    }
    Ok(out)
}

fn resolve_layers(
    cx: &Ctx,
    raw_layers: &BTreeMap<String, raw::RawLayer>,
    components: &BTreeMap<String, Component>,
) -> Result<BTreeMap<String, Layer>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, l) in raw_layers {
        let key = format!("layers.{name}");
        let kind_s = cx.s(&l.kind, &format!("{key}.kind"))?;
        let kind = match kind_s.as_str() {
            "image" => LayerKind::Image,
            "binary" => LayerKind::Binary,
            "config" => LayerKind::Config,
            "env" => LayerKind::Env,
            other => {
                return Err(cx.invalid(
                    &l.kind,
                    &format!("{key}.kind"),
                    format!("`{other}` is not one of image, binary, config, env"),
                ));
            }
        };
        if l.components.is_empty() {
            return Err(cx.invalid(
                &l.kind,
                &format!("{key}.components"),
                "a layer must name at least one component to restart",
            ));
        }
        let mut comps = Vec::new();
        for c in &l.components {
            let cname = cx.s(c, &format!("{key}.components"))?;
            if !components.contains_key(&cname) {
                return Err(ConfigError::UnknownComponent {
                    path: cx.path.to_path_buf(),
                    line: cx.line(c),
                    key: format!("{key}.components"),
                    detail: format!(
                        "layer `{name}` names unknown component `{cname}` (known components: {})",
                        if components.is_empty() {
                            "none".to_string()
                        } else {
                            components.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                });
            }
            if !comps.contains(&cname) {
                comps.push(cname);
            }
        }
        out.insert(
            name.clone(),
            Layer {
                name: name.clone(),
                kind,
                components: comps,
                snapshot: None,
                files: layer_files(cx, name, l, kind)?,
            },
        );
    }
    if out.is_empty() {
        return Err(cx.invalid_at(
            "[layers",
            "layers",
            "at least one [layers.NAME] section is required",
        ));
    }
    Ok(out)
}

/// `snapshot` and `snapshot_method` of each layer: the names must be databases of
/// `[dependencies.postgres]`, and the runtime must be able to stop and start the layer's
/// components (the command driver needs `stop` and `start` commands).
fn resolve_snapshots(
    cx: &Ctx,
    raw_layers: &BTreeMap<String, raw::RawLayer>,
    dependencies: &Dependencies,
    runtime: &Runtime,
    layers: &mut BTreeMap<String, Layer>,
) -> Result<(), ConfigError> {
    for (name, l) in raw_layers {
        let key = format!("layers.{name}");
        let method = match &l.snapshot_method {
            None => SnapshotMethod::Dump,
            Some(v) => match cx.s(v, &format!("{key}.snapshot_method"))?.as_str() {
                "template" => SnapshotMethod::Template,
                "dump" => SnapshotMethod::Dump,
                other => {
                    return Err(cx.invalid(
                        v,
                        &format!("{key}.snapshot_method"),
                        format!("`{other}` is not one of template, dump"),
                    ));
                }
            },
        };
        if l.snapshot.is_empty() {
            if let Some(v) = &l.snapshot_method {
                return Err(cx.invalid(
                    v,
                    &format!("{key}.snapshot_method"),
                    "has no effect without `snapshot = [DATABASE, …]`",
                ));
            }
            continue;
        }
        let known = dependencies
            .postgres
            .as_ref()
            .map(|p| p.databases.clone())
            .unwrap_or_default();
        let mut databases = Vec::new();
        for db in &l.snapshot {
            let d = cx.s(db, &format!("{key}.snapshot"))?;
            if !known.contains(&d) {
                return Err(cx.invalid(
                    db,
                    &format!("{key}.snapshot"),
                    if known.is_empty() {
                        format!(
                            "`{d}` is not a database of [dependencies.postgres] (none configured)"
                        )
                    } else {
                        format!(
                            "`{d}` is not a database of [dependencies.postgres] (configured: {})",
                            known.join(", ")
                        )
                    },
                ));
            }
            if !databases.contains(&d) {
                databases.push(d);
            }
        }
        if let Runtime::Command(c) = runtime
            && (c.stop.is_none() || c.start.is_none())
        {
            return Err(cx.invalid(
                &l.snapshot[0],
                &format!("{key}.snapshot"),
                "a layer with a snapshot needs `stop` and `start` in [runtime.command] (the \
                 components are stopped around the snapshot and the restore)",
            ));
        }
        if let Some(layer) = layers.get_mut(name) {
            layer.snapshot = Some(SnapshotPlan { databases, method });
        }
    }
    Ok(())
}

/// What the layers' snapshots need, for the Postgres check's headroom.
fn snapshot_needs(layers: &BTreeMap<String, Layer>, state_dir: &Path) -> SnapshotNeeds {
    let mut needs = SnapshotNeeds::default();
    for plan in layers.values().filter_map(|l| l.snapshot.as_ref()) {
        let list = match plan.method {
            SnapshotMethod::Template => &mut needs.template,
            SnapshotMethod::Dump => &mut needs.dump,
        };
        for db in &plan.databases {
            if !list.contains(db) {
                list.push(db.clone());
            }
        }
    }
    if !needs.dump.is_empty() {
        needs.dump_dir = Some(state_dir.join("snapshots"));
    }
    needs
}

fn resolve_matchers(cx: &Ctx, raw: &[Str], key: &str) -> Result<Vec<LabelMatcher>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, m)| {
            let key = format!("{key}[{i}]");
            cx.s(m, &key)?
                .parse::<LabelMatcher>()
                .map_err(|msg| cx.invalid(m, &key, msg))
        })
        .collect()
}

fn resolve_prometheus(cx: &Ctx, p: &raw::RawPrometheus) -> Result<Prometheus, ConfigError> {
    let url = cx.http(&p.url, "prometheus.url")?;
    Ok(Prometheus {
        alert_selectors: resolve_matchers(cx, &p.alert_selectors, "prometheus.alert_selectors")?,
        url: url.trim_end_matches('/').to_string(),
        bearer_token_file: p
            .bearer_token_file
            .as_ref()
            .map(|v| cx.path(v, "prometheus.bearer_token_file"))
            .transpose()?,
        ca_file: p
            .ca_file
            .as_ref()
            .map(|v| cx.path(v, "prometheus.ca_file"))
            .transpose()?,
    })
}

fn resolve_alertmanager(cx: &Ctx, a: &raw::RawAlertmanager) -> Result<Alertmanager, ConfigError> {
    let url = cx.http(&a.url, "alertmanager.url")?;
    let silence = a.silence.as_ref().is_some_and(|s| *s.get_ref());
    let matchers = resolve_matchers(cx, &a.matchers, "alertmanager.matchers")?;
    if let Some(s) = &a.silence
        && *s.get_ref()
    {
        // Alertmanager refuses a silence whose matchers all match the empty string, and one
        // without matchers would silence everything: at least one positive matcher.
        if !matchers.iter().any(|m| m.is_equal && !m.value.is_empty()) {
            return Err(cx.invalid(
                s,
                "alertmanager.matchers",
                "`silence = true` needs at least one matcher selecting this node's alerts, e.g. matchers = ['node=\"node0\"']",
            ));
        }
    }
    Ok(Alertmanager {
        url: url.trim_end_matches('/').to_string(),
        silence,
        matchers,
        bearer_token_file: a
            .bearer_token_file
            .as_ref()
            .map(|v| cx.path(v, "alertmanager.bearer_token_file"))
            .transpose()?,
        ca_file: a
            .ca_file
            .as_ref()
            .map(|v| cx.path(v, "alertmanager.ca_file"))
            .transpose()?,
    })
}

/// A `no_data`-style policy: `pass`, `inconclusive` or `fail`.
fn no_data_policy(
    cx: &Ctx,
    v: &Option<Str>,
    key: &str,
    default: NoDataPolicy,
) -> Result<NoDataPolicy, ConfigError> {
    let Some(v) = v else {
        return Ok(default);
    };
    match cx.s(v, key)?.as_str() {
        "pass" => Ok(NoDataPolicy::Pass),
        "inconclusive" => Ok(NoDataPolicy::Inconclusive),
        "fail" => Ok(NoDataPolicy::Fail),
        other => Err(cx.invalid(
            v,
            key,
            format!("`{other}` is not one of pass, inconclusive, fail"),
        )),
    }
}

fn resolve_analysis(
    cx: &Ctx,
    raw: &[raw::RawAnalysis],
    have_prometheus: bool,
) -> Result<Vec<Analysis>, ConfigError> {
    let mut out: Vec<Analysis> = Vec::new();
    for a in raw {
        if !have_prometheus {
            return Err(cx.invalid(
                &a.name,
                "analysis",
                "[[analysis]] gates query Prometheus: add a [prometheus] section with its url",
            ));
        }
        let name = cx.s(&a.name, "analysis.name")?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(cx.invalid(
                &a.name,
                "analysis.name",
                "must be a non-empty name without spaces",
            ));
        }
        if out.iter().any(|x| x.name == name) {
            return Err(cx.invalid(
                &a.name,
                "analysis.name",
                format!("duplicate analysis name `{name}`"),
            ));
        }
        let query = cx.s(&a.query, "analysis.query")?;
        if query.trim().is_empty() {
            return Err(cx.invalid(&a.query, "analysis.query", "must not be empty"));
        }
        let success = cx
            .s(&a.success, "analysis.success")?
            .parse()
            .map_err(|m: String| cx.invalid(&a.success, "analysis.success", m))?;
        let interval = cx.opt_duration(&a.interval, "analysis.interval", Duration::from_secs(5))?;
        if interval.is_zero() {
            return Err(cx.invalid(
                a.interval.as_ref().unwrap(),
                "analysis.interval",
                "must be greater than zero",
            ));
        }
        let limit = |v: &Option<Spanned<i64>>, key: &str| -> Result<u32, ConfigError> {
            let n = cx.count(v, key, 0)?;
            u32::try_from(n).map_err(|_| cx.invalid(v.as_ref().unwrap(), key, "too large"))
        };
        out.push(Analysis {
            name,
            query,
            success,
            interval,
            failure_limit: limit(&a.failure_limit, "analysis.failure_limit")?,
            inconclusive_limit: limit(&a.inconclusive_limit, "analysis.inconclusive_limit")?,
            no_data: no_data_policy(cx, &a.no_data, "analysis.no_data", NoDataPolicy::Fail)?,
        });
    }
    Ok(out)
}

fn resolve_bake(cx: &Ctx, b: &raw::RawBake) -> Result<BakePolicy, ConfigError> {
    let no_data = no_data_policy(cx, &b.no_data, "bake.no_data", NoDataPolicy::Inconclusive)?;
    let significance = cx.ratio(&b.significance, "bake.significance", 0.01)?;
    if !(0.0..1.0).contains(&significance) || significance == 0.0 {
        return Err(cx.invalid(
            b.significance.as_ref().unwrap(),
            "bake.significance",
            "must be between 0 and 1",
        ));
    }
    Ok(BakePolicy {
        sample_interval: cx.opt_duration(
            &b.sample_interval,
            "bake.sample_interval",
            Duration::from_secs(2),
        )?,
        min_samples: cx.count(&b.min_samples, "bake.min_samples", 4)? as usize,
        max_latency_ratio: cx.ratio(&b.max_latency_ratio, "bake.max_latency_ratio", 3.0)?,
        significance,
        min_progression_ratio: cx.ratio(
            &b.min_progression_ratio,
            "bake.min_progression_ratio",
            0.5,
        )?,
        max_storage_growth_ratio: cx.ratio(
            &b.max_storage_growth_ratio,
            "bake.max_storage_growth_ratio",
            3.0,
        )?,
        max_error_rate: cx.ratio(&b.max_error_rate, "bake.max_error_rate", 0.05)?,
        max_restarts: cx.count(&b.max_restarts, "bake.max_restarts", 0)? as u32,
        max_memory_growth_ratio: cx.ratio(
            &b.max_memory_growth_ratio,
            "bake.max_memory_growth_ratio",
            2.0,
        )?,
        headroom_horizon: cx.opt_duration(
            &b.headroom_horizon,
            "bake.headroom_horizon",
            Duration::from_secs(24 * 3600),
        )?,
        no_data,
    })
}

/// `[layers.NAME] files`: only a `config` layer owns files; each is made absolute against the
/// configuration file's directory, and a file named twice is an error.
fn layer_files(
    cx: &Ctx,
    name: &str,
    l: &raw::RawLayer,
    kind: LayerKind,
) -> Result<Vec<PathBuf>, ConfigError> {
    let key = format!("layers.{name}.files");
    if !l.files.is_empty() && kind != LayerKind::Config {
        return Err(cx.invalid(
            &l.files[0],
            &key,
            format!(
                "only a `config` layer owns files; `{name}` is `{}`",
                kind.as_str()
            ),
        ));
    }
    let base = cx.path.parent().unwrap_or(Path::new(""));
    let mut out: Vec<PathBuf> = Vec::new();
    for f in &l.files {
        let p = normalize(&base.join(cx.path(f, &key)?));
        if out.contains(&p) {
            return Err(cx.invalid(f, &key, format!("{} is named twice", p.display())));
        }
        if out.iter().any(|o| o.file_name() == p.file_name()) {
            return Err(cx.invalid(
                f,
                &key,
                format!(
                    "two files are named {:?}: a directory given to `rollout` maps onto the layer's files by file name",
                    p.file_name().unwrap_or_default()
                ),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

/// Config layers never touch the deployment metadata or `APP_CONFIG/ethereum` (judged here by
/// the path as written; the runner judges it again with symlinks resolved); `env` layers need
/// the compose driver.
fn check_layer_files(
    cx: &Ctx,
    raw_layers: &BTreeMap<String, raw::RawLayer>,
    layers: &BTreeMap<String, Layer>,
    node: &Node,
    runtime: &Runtime,
) -> Result<(), ConfigError> {
    for (name, layer) in layers {
        let Some(raw_l) = raw_layers.get(name) else {
            continue;
        };
        let key = format!("layers.{name}.files");
        if layer.kind == LayerKind::Env && !matches!(runtime, Runtime::Compose(_)) {
            return Err(cx.invalid(
                &raw_l.kind,
                &format!("layers.{name}.kind"),
                "an `env` layer sets environment overrides through the compose driver's override file: it needs `[runtime] driver = \"compose\"`",
            ));
        }
        for (f, raw_f) in layer.files.iter().zip(&raw_l.files) {
            if let Some(why) = protected_path(f, node) {
                return Err(cx.invalid(raw_f, &key, why));
            }
        }
    }
    Ok(())
}

/// Why rollgate must never write `path`: it is the deployment metadata (written only by the
/// deployment-service) or under `APP_CONFIG/ethereum`. Both paths are compared as given, so
/// the caller resolves symlinks first when it can.
pub fn protected_path(path: &Path, node: &Node) -> Option<String> {
    let path = normalize(path);
    let metadata = normalize(&node.deployment_metadata);
    let ethereum = normalize(&node.app_config.join("ethereum"));
    if path == metadata || metadata.starts_with(&path) {
        return Some(format!(
            "{} is (or holds) the deployment metadata {}: only the deployment-service writes it",
            path.display(),
            metadata.display()
        ));
    }
    if path.starts_with(&ethereum) || ethereum.starts_with(&path) {
        return Some(format!(
            "{} is (or holds) {}: rollgate never writes under APP_CONFIG/ethereum",
            path.display(),
            ethereum.display()
        ));
    }
    None
}

/// `.` and `..` removed without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component as C;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            C::CurDir => {}
            C::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

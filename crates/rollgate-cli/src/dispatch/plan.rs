//! `rollgate plan LAYER=VALUE`: the dry run. Validates the change, shows the restart set and
//! every gate with its threshold, runs every read-only check now and every analysis query once
//! (its current value, judged as a measurement would be). Changes nothing.
//!
//! For a `config` layer with `files`, `diff` holds a unified diff of each file the change
//! replaces (`[{"file": PATH, "diff": "--- …"}]`, empty text when the file would not change),
//! with the values of secret-looking keys and every configured secret masked
//! (`rollgate_core::confdiff`). For an `env` layer, one entry whose `file` is the layer's name
//! and whose diff compares the overrides as `KEY=VALUE` lines.
//!
//! For a layer with `snapshot`, `snapshot` says what the rollout will save before the change:
//! `{"method": "template", "databases": [{"name": "node0", "size_bytes": 8388608}],
//! "size_error": null, "stops": ["operator"]}` (`size_bytes` is `pg_database_size` now, `null`
//! when the server cannot be reached — `size_error` then says why — or the database does not
//! exist); `null` for a layer without one. The components in `stops` are stopped while the
//! databases are saved and started again on the new version by the restart.
//!
//! JSON: `{"ok": bool, "layer": "operator-image", "kind": "image", "from": "…", "to": "…",
//! "restart": [{"component": "operator", "service": "operator"}], "snapshot": null,
//! "gates": [{"name": "progression:requestIndex", "threshold": "must increase within 60s"},
//! {"name": "analysis:errors", "threshold": "…", "now": {"verdict": "successful",
//! "detail": "0 < 1", "no_data": false, "samples": [{"labels": "", "value": 0}]}}],
//! "checks": [CheckResult, …], "warnings": ["…"]}`. Exit 0 when every check is green, 3
//! otherwise. `warnings` names the configuration keys that leave a bake signal undecidable
//! (`rollgate_runner::bake::undecidable_warnings`) and the analysis queries that would fail on
//! the running version now; they do not change `ok`.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_core::config::ProgressionMode;
use rollgate_core::units::format_duration;
use rollgate_core::vocab::{CheckGroup, CheckStatus};
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::common::{open_runner, parse_change};
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The change to plan: one LAYER=VALUE
    #[arg(value_name = "LAYER=VALUE", num_args = 0..)]
    pub change: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &PlanArgs) -> CmdResult {
    let (layer_name, value) = parse_change(&args.change)?;
    let runner = open_runner(ctx)?;
    let config = runner.config.clone();
    let layer = config
        .layer(&layer_name)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "unknown layer `{layer_name}` (configured layers: {})",
                config.layers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?
        .clone();
    let diffs = config_diffs(&runner, &layer, &value).await?;
    // An `env` layer's values may be secret: shown masked like its diff.
    let value = if layer.kind == rollgate_core::vocab::LayerKind::Env {
        rollgate_core::confdiff::mask_env_list(&value)
    } else {
        value
    };
    let current = runner.driver.current(&layer).await;
    let from = match &current {
        Ok(v) => json!(v.display()),
        Err(e) => json!(format!("unreadable: {}", rollgate_probe::errors::chain(e))),
    };
    let restart: Vec<_> = layer
        .components
        .iter()
        .filter_map(|c| config.components.get(c))
        .map(|c| json!({"component": c.name, "service": c.service}))
        .collect();
    let snapshot = snapshot_plan(&config, &layer).await;

    let r = &config.rollout;
    let mut gates = Vec::new();
    for rd in &config.readiness {
        let expects: Vec<String> = rd
            .expect
            .iter()
            .map(|e| format!("{} {:?}", e.pointer, e.check))
            .collect();
        gates.push(json!({"name": format!("readiness:{}", rd.name), "threshold": format!("green within {} ({})", format_duration(r.readiness_deadline), expects.join(", "))}));
    }
    for name in rollgate_runner::checks::readiness_extra_names(&config) {
        gates.push(json!({"name": format!("readiness:{name}"), "threshold": format!("passes within {}", format_duration(r.readiness_deadline))}));
    }
    for p in &config.progression {
        let verb = if p.mode == ProgressionMode::Increases {
            "increase"
        } else {
            "change"
        };
        gates.push(json!({"name": format!("progression:{}", p.name), "threshold": format!("{} must {verb} within {} of readiness; idle baseline: {}", p.pointer, format_duration(p.window), r.idle_progression.as_str())}));
    }
    gates.push(json!({"name": "stable", "threshold": format!("every readiness check stays green for {} before a promotion", format_duration(r.min_healthy))}));
    gates.push(json!({"name": "dependency:*", "threshold": "every prerequisite stays healthy (two failed polls in a row fail)"}));
    gates.push(json!({"name": "faults", "threshold": format!("no fault absent from the baseline at {:?} or in logs matching {:?}", config.faults.pointers, config.faults.log_patterns)}));
    let mut warnings = rollgate_runner::bake::undecidable_warnings(&config);
    if !config.analysis.is_empty() {
        let clients = rollgate_runner::checks::ProbeClients::new(&config)
            .map_err(|e| CliError::Internal(anyhow::anyhow!(e.detail())))?;
        let now = rollgate_runner::analysis::measure_all(&config, &clients).await;
        for a in &config.analysis {
            let sampled = now.get(&a.name).cloned().unwrap_or_else(|| {
                rollgate_core::analysis::Sampled::Unavailable("not measured".into())
            });
            let judged = rollgate_core::analysis::judge(&a.success, a.no_data, &sampled);
            if judged.verdict == rollgate_core::analysis::MeasurementVerdict::Failed {
                warnings.push(format!(
                    "analysis:{} fails on the running version now: {}",
                    a.name, judged.detail
                ));
            }
            let samples = match &sampled {
                rollgate_core::analysis::Sampled::Values(v) => json!(v),
                rollgate_core::analysis::Sampled::Unavailable(_) => json!(null),
            };
            gates.push(json!({
                "name": format!("analysis:{}", a.name),
                "threshold": format!(
                    "every sample of `{}` {} (every {}, from readiness through the {} hold; failure_limit {}, inconclusive_limit {}, no_data {})",
                    a.query,
                    a.success,
                    format_duration(a.interval),
                    format_duration(r.min_healthy),
                    a.failure_limit,
                    a.inconclusive_limit,
                    rollgate_core::analysis::no_data_str(a.no_data)
                ),
                "now": {"verdict": judged.verdict, "detail": judged.detail, "no_data": judged.no_data, "samples": samples},
            }));
        }
    }
    if !r.bake.is_zero() {
        gates.push(json!({"name": "bake", "threshold": format!("{} of no regression against the baseline", format_duration(r.bake))}));
    }

    let checks = rollgate_runner::checks::run_checks(
        &config,
        &[
            CheckGroup::Prerequisites,
            CheckGroup::Readiness,
            CheckGroup::Baseline,
        ],
    )
    .await;
    let ok = current.is_ok() && checks.iter().all(|c| c.status != CheckStatus::Fail);
    if ctx.out.is_json() {
        ctx.out.json(&json!({"ok": ok, "layer": layer.name, "kind": layer.kind, "from": from, "to": value, "restart": restart, "snapshot": snapshot, "diff": diffs.iter().map(|(f, d)| json!({"file": f, "diff": d})).collect::<Vec<_>>(), "gates": gates, "checks": checks, "warnings": warnings}))?;
    } else {
        crate::outln!(
            "plan: {} ({}) {} → {}",
            layer.name,
            layer.kind.as_str(),
            from.as_str().unwrap_or("?"),
            value
        );
        crate::outln!("restarts: {}", layer.components.join(", "));
        if let Some(line) = snapshot_line(&snapshot) {
            crate::outln!("{line}");
        }
        for (file, diff) in &diffs {
            if diff.is_empty() {
                crate::outln!("\n{}: unchanged", file.display());
            } else {
                crate::outln!("\n{}", diff.trim_end());
            }
        }
        crate::outln!("\ngates:");
        for g in &gates {
            crate::outln!(
                "  {:<34} {}",
                g["name"].as_str().unwrap_or(""),
                g["threshold"].as_str().unwrap_or("")
            );
            if let Some(now) = g["now"]["detail"].as_str() {
                crate::outln!("  {:<34} now: {now}", "");
            }
        }
        crate::outln!("\nchecks now:");
        crate::outln!("{}", crate::render::checks_table(&ctx.out, &checks));
        for w in &warnings {
            crate::outln!("{}: {w}", ctx.out.status("warn"));
        }
        crate::outln!(
            "\n{}",
            if ok {
                "ready: `rollgate rollout` would start from here"
            } else {
                "not ready: a rollout would refuse to start"
            }
        );
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::NotReady
    })
}

/// The masked diffs of a `config` layer change, or of an `env` layer's overrides (`file` is
/// then the layer's name); none for other layers. An unknown file name
/// or a protected path is refused (exit 2) like the rollout would.
async fn config_diffs(
    runner: &rollgate_runner::Runner,
    layer: &rollgate_core::config::Layer,
    value: &str,
) -> Result<Vec<(std::path::PathBuf, String)>, CliError> {
    if layer.kind == rollgate_core::vocab::LayerKind::Env {
        let diff = runner
            .env_diff(layer, value)
            .await
            .map_err(crate::dispatch::common::runner_error)?;
        return Ok(vec![(layer.name.clone().into(), diff)]);
    }
    if !rollgate_runtime::files::manages(layer) {
        return Ok(Vec::new());
    }
    let change = rollgate_runner::rollout::config_files::read_change(&runner.config, layer, value)
        .map_err(crate::dispatch::common::runner_error)?;
    Ok(change.diffs())
}

/// What the rollout will snapshot before changing `layer` (see the module doc), with each
/// database's current size; `null` when the layer has no `snapshot`. An unreachable server is
/// reported in `size_error`, never a failure of the plan: the preflight's Postgres check says
/// whether a rollout could start.
async fn snapshot_plan(
    config: &rollgate_core::config::Config,
    layer: &rollgate_core::config::Layer,
) -> serde_json::Value {
    let Some(plan) = &layer.snapshot else {
        return serde_json::Value::Null;
    };
    let (sizes, size_error) =
        match rollgate_runner::snapshot::database_sizes(config, &plan.databases).await {
            Ok(sizes) => (sizes, None),
            Err(e) => (Vec::new(), Some(rollgate_probe::errors::chain(&e))),
        };
    let databases: Vec<_> = plan
        .databases
        .iter()
        .map(|db| {
            let size = sizes.iter().find(|(n, _)| n == db).map(|(_, s)| *s);
            json!({"name": db, "size_bytes": size})
        })
        .collect();
    json!({
        "method": plan.method.as_str(),
        "databases": databases,
        "size_error": size_error,
        "stops": layer.components,
    })
}

/// The human line of [`snapshot_plan`], none without a snapshot.
fn snapshot_line(snapshot: &serde_json::Value) -> Option<String> {
    let method = snapshot["method"].as_str()?;
    let reachable = snapshot["size_error"].is_null();
    let databases: Vec<String> = snapshot["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let name = d["name"].as_str().unwrap_or("?");
            match d["size_bytes"].as_u64() {
                Some(n) => format!("{name} ({})", rollgate_core::units::format_size(n)),
                None if reachable => format!("{name} (no such database now)"),
                None => format!("{name} (size unknown)"),
            }
        })
        .collect();
    let stops: Vec<&str> = snapshot["stops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    let mut line = format!(
        "snapshot: {} by {method}, with {} stopped while it is taken",
        databases.join(", "),
        stops.join(", ")
    );
    if let Some(why) = snapshot["size_error"].as_str() {
        line.push_str(&format!(
            "\n  sizes unknown: the database server is not reachable: {why}"
        ));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_line_names_databases_sizes_method_and_stopped_components() {
        let reachable = json!({"method": "template", "databases": [
            {"name": "node0", "size_bytes": 8 * 1024 * 1024}, {"name": "gone", "size_bytes": null}],
            "size_error": null, "stops": ["operator", "worker"]});
        let line = snapshot_line(&reachable).unwrap();
        assert!(line.starts_with("snapshot: node0 (8"), "{line}");
        assert!(line.contains("gone (no such database now)"), "{line}");
        assert!(
            line.contains("by template, with operator, worker stopped"),
            "{line}"
        );
        let unreachable = json!({"method": "dump", "databases": [{"name": "node0", "size_bytes": null}],
            "size_error": "cannot connect for a snapshot on postgres://127.0.0.1:1/x", "stops": ["operator"]});
        let line = snapshot_line(&unreachable).unwrap();
        assert!(line.contains("node0 (size unknown) by dump"), "{line}");
        assert!(
            line.contains("sizes unknown: the database server is not reachable: cannot connect"),
            "{line}"
        );
        assert_eq!(snapshot_line(&serde_json::Value::Null), None);
    }
}

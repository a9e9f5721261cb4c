//! Plan files for `rollout --plan`: several layers, one per step.
//!
//! ```toml
//! [[step]]
//! layer = "operator-config"
//! value = "/srv/node/config/operator-v2.toml"
//!
//! [[step]]
//! layer = "operator-image"
//! value = "registry.local/operator:v1.1.0"
//! ```
//! Each step changes exactly one layer; a step naming two layers (configuration bundled with
//! software) is refused before anything runs.

use std::path::Path;

use serde::Deserialize;

use crate::errors::CliError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    step: Vec<PlanStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanStep {
    layer: String,
    value: String,
}

/// The `(layer, value)` steps of a plan file.
pub fn load(path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("failed to read plan {}: {e}", path.display())))?;
    parse(path, &text)
}

/// The `(layer, value)` steps of plan-file text read from `path` (named in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, CliError> {
    let plan: PlanFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1);
        let hint = if e.message().contains("unknown field") {
            " (each [[step]] changes exactly one layer: `layer` and `value` only; put each change in its own step)"
        } else {
            ""
        };
        CliError::Usage(format!("{}:{line}: {}{hint}", path.display(), e.message().trim()))
    })?;
    if plan.step.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: a plan needs at least one [[step]]",
            path.display()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &plan.step {
        if s.value.trim().is_empty() {
            return Err(CliError::Usage(format!(
                "{}: step for layer `{}` has an empty value",
                path.display(),
                s.layer
            )));
        }
        if !seen.insert(s.layer.clone()) {
            return Err(CliError::Usage(format!(
                "{}: layer `{}` appears in two steps",
                path.display(),
                s.layer
            )));
        }
    }
    Ok(plan.step.into_iter().map(|s| (s.layer, s.value)).collect())
}

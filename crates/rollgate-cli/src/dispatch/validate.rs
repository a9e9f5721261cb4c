//! `rollgate validate`: load and resolve the configuration, print what it means; changes nothing.
//!
//! JSON: `{"ok": true, "config": PATH, "node": "node0", "mode": "localnet.loopback",
//! "driver": "compose", "enclave": true, "layers": {"operator-image": {"kind": "image",
//! "components": ["operator"]}}}`. A bad file exits 2 (3 for a mode mismatch) naming the line
//! and key.

use clap::Args;
use rollgate_core::ExitCode;

use crate::app::Ctx;
use crate::errors::CmdResult;

#[derive(Debug, Args)]
pub struct ValidateArgs {}

pub async fn run(ctx: &Ctx, _args: &ValidateArgs) -> CmdResult {
    let config = ctx.config()?;
    let layers: serde_json::Map<String, serde_json::Value> = config
        .layers
        .values()
        .map(|l| {
            (
                l.name.clone(),
                serde_json::json!({"kind": l.kind, "components": l.components}),
            )
        })
        .collect();
    if ctx.out.is_json() {
        ctx.out.json(&serde_json::json!({
            "ok": true,
            "config": config.source,
            "node": config.node.name,
            "mode": config.node.mode,
            "driver": config.runtime.driver_name(),
            "enclave": config.node.enclave,
            "layers": layers,
        }))?;
    } else {
        crate::outln!("{}: ok", config.source.display());
        crate::outln!(
            "node {} in mode {}, driver {}, enclave {}",
            config.node.name,
            config.node.mode,
            config.runtime.driver_name(),
            config.node.enclave
        );
        let rows = config
            .layers
            .values()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.kind.as_str().to_string(),
                    l.components.join(" "),
                ]
            })
            .collect();
        crate::outln!("{}", ctx.out.table(&["layer", "kind", "restarts"], rows));
    }
    Ok(ExitCode::Success)
}

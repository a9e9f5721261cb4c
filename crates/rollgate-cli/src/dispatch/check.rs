//! `rollgate check [--group prerequisites|readiness|baseline|all]`: run the checks
//! concurrently and print a table, or one JSON document. Changes nothing.
//!
//! JSON (product.md): `{"ok": bool, "checks": [{"name", "group", "status", "detail",
//! "latency_ms", "observed"}], "warnings": ["…"]}`. Exit 0 when no check failed (`warn` and
//! `skip` are green), 3 otherwise. `warnings` names the configuration keys that leave a bake
//! signal undecidable (`rollgate_runner::bake::undecidable_warnings`); they do not change `ok`.

use clap::{Args, ValueEnum};
use rollgate_core::ExitCode;
use rollgate_core::vocab::CheckGroup;
use serde_json::json;

use crate::app::Ctx;
use crate::errors::CmdResult;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which checks to run
    #[arg(long, value_enum, default_value_t = GroupArg::All)]
    pub group: GroupArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupArg {
    Prerequisites,
    Readiness,
    Baseline,
    All,
}

impl GroupArg {
    fn groups(self) -> Vec<CheckGroup> {
        match self {
            GroupArg::Prerequisites => vec![CheckGroup::Prerequisites],
            GroupArg::Readiness => vec![CheckGroup::Readiness],
            GroupArg::Baseline => vec![CheckGroup::Baseline],
            GroupArg::All => vec![],
        }
    }
}

pub async fn run(ctx: &Ctx, args: &CheckArgs) -> CmdResult {
    let config = ctx.config()?;
    let checks = rollgate_runner::checks::run_checks(&config, &args.group.groups()).await;
    let ok = rollgate_runner::checks::all_green(&checks);
    let warnings = rollgate_runner::bake::undecidable_warnings(&config);
    if ctx.out.is_json() {
        ctx.out
            .json(&json!({"ok": ok, "checks": checks, "warnings": warnings}))?;
    } else {
        crate::outln!("{}", crate::render::checks_table(&ctx.out, &checks));
        for w in &warnings {
            crate::outln!("{}: {w}", ctx.out.status("warn"));
        }
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status.as_str() == "fail")
            .map(|c| c.name.as_str())
            .collect();
        if ok {
            crate::outln!(
                "\n{}: {} check(s) green",
                ctx.out.status("ok"),
                checks.len()
            );
        } else {
            crate::outln!(
                "\n{}: {} of {} check(s) failed: {}",
                ctx.out.status("fail"),
                failed.len(),
                checks.len(),
                failed.join(", ")
            );
        }
    }
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::NotReady
    })
}

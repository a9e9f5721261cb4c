//! `rollgate show ROLLOUT_ID`: one rollout's decision record: every step's intent and outcome
//! with the driver's output, every gate with its evidence, the reason. Reads only.
//!
//! JSON: [`rollgate_journal::RolloutDetail`] (documented there with an example).

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_journal::report::show_human;

use crate::app::Ctx;
use crate::dispatch::common::runner_error;
use crate::dispatch::history::open_journal;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The rollout id (from `rollgate history`)
    pub rollout_id: String,
    /// Also write the HTML report (timeline chart, gates, steps) to FILE ("-": stdout only)
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

pub async fn run(ctx: &Ctx, args: &ShowArgs) -> CmdResult {
    let id = args.rollout_id.clone();
    let detail = open_journal(ctx)?
        .call(move |j| j.rollout(&id))
        .await
        .map_err(runner_error)?;
    let Some(detail) = detail else {
        return Err(CliError::Usage(format!(
            "no rollout `{}` (see `rollgate history`)",
            args.rollout_id
        )));
    };
    if let Some(file) = &args.html {
        let page = rollgate_serve::render_report_html(&detail);
        if file.as_os_str() == "-" {
            crate::out!("{page}");
            return Ok(ExitCode::Success);
        }
        std::fs::write(file, page)
            .map_err(|e| CliError::Usage(format!("failed to write {}: {e}", file.display())))?;
        crate::errln!(
            "rollgate: wrote the report of {} to {}",
            detail.rollout_id,
            file.display()
        );
    }
    if ctx.out.is_json() {
        ctx.out.json(&detail)?;
    } else {
        crate::out!("{}", show_human(&detail));
    }
    Ok(ExitCode::Success)
}

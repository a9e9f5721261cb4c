//! `rollgate init`: write the commented configuration of a built-in profile.

use std::io::Write;

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_core::config::{PROFILES, default_profile};
use rollgate_core::vocab::Mode;

use crate::app::Ctx;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Built-in profile
    #[arg(long, default_value = "operator-localnet")]
    pub profile: String,
    /// Runtime mode whose chain and deployment-service URLs the file gets
    #[arg(long, default_value = "localnet.loopback", value_parser = parse_mode)]
    pub mode: Mode,
    /// Where to write [default: --config, $ROLLGATE_CONFIG, or ./rollgate.toml]; `-` for stdout
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match Mode::parse(s) {
        Some(Mode::Host) => {
            Err("host is diagnostic only; choose localnet.loopback or localnet.compose".into())
        }
        Some(m) => Ok(m),
        None => Err(format!(
            "`{s}` is not one of localnet.loopback, localnet.compose"
        )),
    }
}

pub async fn run(ctx: &Ctx, args: &InitArgs) -> CmdResult {
    let text = default_profile(&args.profile, args.mode).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown profile `{}` (known: {})",
            args.profile,
            PROFILES.join(", ")
        ))
    })?;
    let path = args.output.clone().unwrap_or_else(|| ctx.init_path());
    if path.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(anyhow::Error::from)?;
        return Ok(ExitCode::Success);
    }
    if path.exists() && !args.force {
        return Err(CliError::Usage(format!(
            "{} already exists (use --force to overwrite)",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Usage(format!("failed to create {}: {e}", dir.display())))?;
    }
    // Write to a temporary file first so an interrupted init never leaves half a config.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::Usage(format!("failed to write {}: {e}", path.display())))?;
    if ctx.out.is_json() {
        ctx.out
            .json(&serde_json::json!({"path": path, "profile": args.profile, "mode": args.mode}))?;
    } else {
        crate::outln!(
            "wrote {} (profile {}, mode {})",
            path.display(),
            args.profile,
            args.mode
        );
    }
    Ok(ExitCode::Success)
}

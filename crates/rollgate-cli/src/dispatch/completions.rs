//! `rollgate completions SHELL`: a completion script generated from the CLI definition, and
//! the hidden `rollgate man [--dir DIR]`: man pages (`rollgate.1`, one `rollgate-CMD.1` per
//! subcommand with `--dir`). Packaging: see `docs/operations.md`.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use rollgate_core::ExitCode;

use crate::app::{Cli, Ctx};
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub async fn run(_ctx: &Ctx, args: &CompletionsArgs) -> CmdResult {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "rollgate", &mut out);
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| CliError::Internal(e.into()))?;
    Ok(ExitCode::Success)
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write rollgate.1 and one rollgate-CMD.1 per subcommand into DIR [default: rollgate.1 on stdout]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub async fn man(_ctx: &Ctx, args: &ManArgs) -> CmdResult {
    let cmd = Cli::command();
    match &args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| CliError::Internal(e.into()))?;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| CliError::Internal(e.into()))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Usage(format!("failed to create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                CliError::Usage(format!(
                    "failed to write man pages to {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    Ok(ExitCode::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_every_subcommand() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "rollgate", &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in [
                "rollout",
                "rollback",
                "serve",
                "freeze",
                "unfreeze",
                "completions",
            ] {
                assert!(text.contains(sub), "{shell:?} completion lacks {sub}");
            }
        }
    }

    #[test]
    fn man_pages_render_for_the_command_and_its_subcommands() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.starts_with(".ie") && page.contains(".TH rollgate 1"));
        assert!(page.contains("rollgate\\-serve") || page.contains("serve"));
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
        for page in [
            "rollgate.1",
            "rollgate-serve.1",
            "rollgate-freeze.1",
            "rollgate-show.1",
        ] {
            assert!(dir.path().join(page).exists(), "{page}");
        }
    }
}

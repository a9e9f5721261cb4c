//! The root parser, the global options and dispatch to one file per subcommand.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use rollgate_core::config::{Config, EnvSource, ProcessEnv, load_str};
use rollgate_core::{ConfigError, ExitCode};

use crate::dispatch;
use crate::errors::{CliError, CmdResult};
use crate::output::{Format, Output};

/// `rollgate --version`: the crate version and the git commit it was built from (`build.rs`;
/// `unknown` for a build outside a git checkout without `$ROLLGATE_GIT_COMMIT`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ROLLGATE_GIT_COMMIT"),
    ")"
);

/// Update a node software stack in a controlled rollout: prove the node healthy, freeze a
/// baseline, change one layer, gate it on readiness, progression and dependencies, and roll back
/// automatically when a gate fails.
#[derive(Debug, Parser)]
#[command(
    name = "rollgate",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Configuration file [default: $ROLLGATE_CONFIG, then ./rollgate.toml, then /etc/rollgate/rollgate.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format [default: human on a terminal, json otherwise]
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Short for --format json
    #[arg(long, global = true, conflicts_with = "format")]
    pub json: bool,
    /// More log output on stderr (-v, -vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No ANSI colors (also NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented configuration for a profile
    Init(dispatch::init::InitArgs),
    /// Load the configuration and show what it means; changes nothing
    Validate(dispatch::validate::ValidateArgs),
    /// Run the checks concurrently and print a table or JSON; changes nothing
    Check(dispatch::check::CheckArgs),
    /// Record (freeze) and inspect baselines
    Baseline(dispatch::baseline::BaselineArgs),
    /// Dry run: validate a change, show its restart set and gates, run every read-only check
    Plan(dispatch::plan::PlanArgs),
    /// The full procedure: preflight, baseline, one-layer change, gates, promote or roll back
    Rollout(dispatch::rollout::RolloutArgs),
    /// Restore the latest rollout's baseline (or the one named) and re-verify it
    Rollback(dispatch::rollback::RollbackArgs),
    /// Finish an interrupted rollout: re-verify and promote, or roll back
    Resume(dispatch::resume::ResumeArgs),
    /// Current layer values, the active rollout and its step, the last known-good baseline
    Status(dispatch::status::StatusArgs),
    /// The journal's rollouts, newest first
    History(dispatch::history::HistoryArgs),
    /// One rollout's decision record with evidence
    Show(dispatch::show::ShowArgs),
    /// Step 6 on demand: the bake's signals against the last known-good baseline; changes nothing
    Watch(dispatch::watch::WatchArgs),
    /// HTTP API, Prometheus /metrics and status page (loopback by default)
    Serve(dispatch::serve::ServeArgs),
    /// Kill switch: no rollout starts, a running one rolls back at its next step
    Freeze(dispatch::freeze::FreezeArgs),
    /// Lift the kill switch
    Unfreeze(dispatch::unfreeze::UnfreezeArgs),
    /// Database snapshots of layers that migrate: list them, prune the expired ones
    Snapshot(dispatch::snapshot::SnapshotArgs),
    /// Roll a Raft cluster of nodes one at a time through etcd (agent, status, halt, unhalt)
    Fleet(dispatch::fleet::FleetArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(dispatch::completions::CompletionsArgs),
    /// Print the man page (or write all of them with --dir)
    #[command(hide = true)]
    Man(dispatch::completions::ManArgs),
}

/// Everything a subcommand needs from the global options.
#[derive(Debug)]
pub struct Ctx {
    pub out: Output,
    pub verbose: u8,
    config_arg: Option<PathBuf>,
}

impl Ctx {
    pub fn new(global: &GlobalOpts) -> Ctx {
        let format = if global.json {
            Some(Format::Json)
        } else {
            global.format
        };
        Ctx {
            out: Output::detect(format, global.no_color),
            verbose: global.verbose,
            config_arg: global.config.clone(),
        }
    }

    /// The configuration file: `--config`, then `$ROLLGATE_CONFIG`, then `./rollgate.toml`,
    /// then `/etc/rollgate/rollgate.toml`. For `init`, the first of those that is named is
    /// where the file is written.
    pub fn config_path(&self, env: &dyn EnvSource) -> Result<PathBuf, ConfigError> {
        if let Some(p) = &self.config_arg {
            return Ok(p.clone());
        }
        if let Some(p) = env.var("ROLLGATE_CONFIG").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let candidates = [
            PathBuf::from("rollgate.toml"),
            PathBuf::from("/etc/rollgate/rollgate.toml"),
        ];
        candidates
            .iter()
            .find(|p| p.exists())
            .cloned()
            .ok_or(ConfigError::NotFound {
                tried: candidates.to_vec(),
            })
    }

    /// Where `init` writes when no path is named: `--config`, `$ROLLGATE_CONFIG`, else `./rollgate.toml`.
    pub fn init_path(&self) -> PathBuf {
        self.config_arg
            .clone()
            .or_else(|| {
                std::env::var_os("ROLLGATE_CONFIG")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("rollgate.toml"))
    }

    /// Load and resolve the configuration from the process environment.
    pub fn config(&self) -> Result<Config, CliError> {
        let path = self.config_path(&ProcessEnv)?;
        Ok(load_config_file(&path, &ProcessEnv)?)
    }
}

/// Read and resolve one configuration file.
pub fn load_config_file(path: &Path, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = load_str(path, &text, env)?;
    // From here on, every output path replaces this configuration's secrets.
    rollgate_journal::redact::install(&config);
    Ok(config)
}

fn init_logging(verbose: u8, json: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info,rollgate=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::output::ScrubbedStderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Parse the command line, run the subcommand, and return the process exit code.
pub fn main() -> i32 {
    // A panic message may quote anything (a child's output, a URL): scrubbed like all output.
    std::panic::set_hook(Box::new(|info| {
        crate::errln!("{info}");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            crate::errln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                ExitCode::Success.code()
            };
        }
    };
    run(cli).code()
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let ctx = Ctx::new(&cli.global);
    init_logging(
        ctx.verbose,
        ctx.out.is_json() && std::env::var_os("ROLLGATE_LOG_JSON").is_some(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::errln!("rollgate: failed to start the async runtime: {e}");
            return ExitCode::Internal;
        }
    };
    let result: CmdResult = runtime.block_on(async {
        match &cli.command {
            Command::Init(args) => dispatch::init::run(&ctx, args).await,
            Command::Validate(args) => dispatch::validate::run(&ctx, args).await,
            Command::Check(args) => dispatch::check::run(&ctx, args).await,
            Command::Baseline(args) => dispatch::baseline::run(&ctx, args).await,
            Command::Plan(args) => dispatch::plan::run(&ctx, args).await,
            Command::Rollout(args) => dispatch::rollout::run(&ctx, args).await,
            Command::Rollback(args) => dispatch::rollback::run(&ctx, args).await,
            Command::Resume(args) => dispatch::resume::run(&ctx, args).await,
            Command::Status(args) => dispatch::status::run(&ctx, args).await,
            Command::History(args) => dispatch::history::run(&ctx, args).await,
            Command::Show(args) => dispatch::show::run(&ctx, args).await,
            Command::Watch(args) => dispatch::watch::run(&ctx, args).await,
            Command::Serve(args) => dispatch::serve::run(&ctx, args).await,
            Command::Freeze(args) => dispatch::freeze::run(&ctx, args).await,
            Command::Unfreeze(args) => dispatch::unfreeze::run(&ctx, args).await,
            Command::Snapshot(args) => dispatch::snapshot::run(&ctx, args).await,
            Command::Fleet(args) => dispatch::fleet::run(&ctx, args).await,
            Command::Completions(args) => dispatch::completions::run(&ctx, args).await,
            Command::Man(args) => dispatch::completions::man(&ctx, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&ctx, &e);
            e.exit_code()
        }
    }
}

fn report_error(ctx: &Ctx, e: &CliError) {
    let code = e.exit_code();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    let message = rollgate_core::redact::redact_text(&message);
    if ctx.out.is_json() {
        let _ = ctx.out.json(&serde_json::json!({"error": {"message": message, "exit_code": code.code(), "kind": code.name()}}));
    }
    crate::errln!("rollgate: error: {message}");
}

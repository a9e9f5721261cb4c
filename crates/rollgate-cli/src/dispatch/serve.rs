//! `rollgate serve [--listen ADDR]`: the HTTP server — status page, rollout reports,
//! Prometheus `/metrics`, `/live`, `/ready` and the JSON API (see `rollgate_serve::server` for
//! the endpoints and `docs/operations.md` for the set-up).
//!
//! Listens on `--listen`, else `[serve].listen`, else `127.0.0.1:9810`. A non-loopback address
//! is refused (exit 2) unless `[serve].read_token` or `[serve].read_token_file` is set; without
//! `[serve].token` every endpoint that changes the node answers 403. On loopback, requests must
//! name this machine in `Host` (or one of `[serve].allowed_hosts`). Runs until SIGINT or SIGTERM.

use std::time::Duration;

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_serve::{ServeOptions, Token};

use crate::app::Ctx;
use crate::dispatch::common::open_runner;
use crate::errors::{CliError, CmdResult};

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: [serve].listen, then 127.0.0.1:9810]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Run the readiness probes this often for /metrics and the status page ("0s": never)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Serve reads only: every endpoint that changes the node answers 503
    #[arg(long)]
    pub read_only: bool,
}

pub async fn run(ctx: &Ctx, args: &ServeArgs) -> CmdResult {
    let mut runner = open_runner(ctx)?;
    runner.progress = std::sync::Arc::new(rollgate_runner::Silent);
    let config = runner.config.clone();
    let token = Token::from_config(&config.serve)
        .map_err(|e| CliError::Usage(rollgate_probe::errors::chain(&e)))?;
    let read_token = Token::read_from_config(&config.serve)
        .map_err(|e| CliError::Usage(rollgate_probe::errors::chain(&e)))?;
    let listen = args
        .listen
        .clone()
        .or_else(|| config.serve.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());

    // Judge the address before binding it.
    let addrs: Vec<_> = tokio::net::lookup_host(&listen)
        .await
        .map_err(|e| CliError::Usage(format!("invalid listen address `{listen}`: {e}")))?
        .collect();
    for addr in &addrs {
        rollgate_serve::check_listen(*addr, read_token.is_some())
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| CliError::Usage(format!("failed to listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::Internal(e.into()))?;

    let has_token = token.is_some();
    let reads = if read_token.is_some() {
        "reads need a token"
    } else {
        "reads open"
    };
    let mut options = ServeOptions::for_runner(runner, token);
    options.read_token = read_token;
    options.allowed_hosts = config.serve.allowed_hosts.clone();
    options.probe_interval = Some(args.probe_interval).filter(|d| !d.is_zero());
    if args.read_only {
        options.runner = None;
    }
    let changes = match (args.read_only, has_token) {
        (true, _) => "read-only",
        (false, true) => "changes need the bearer token",
        (false, false) => "changes disabled: no [serve].token",
    };
    crate::errln!(
        "rollgate serve: node {} on http://{bound}/ ({changes}; {reads})",
        config.node.name
    );
    rollgate_serve::run(listener, shutdown_signal(), options)
        .await
        .map_err(|e| CliError::Internal(anyhow::anyhow!(rollgate_probe::errors::chain(&e))))?;
    Ok(ExitCode::Success)
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}

//! Command line of `rollgate-sim`. Each service subcommand runs one service until SIGTERM or
//! SIGINT (or until a crash-loop version exits by itself, with its exit status); `localnet`
//! manages the whole stack as background processes. Every flag also reads an environment
//! variable, so a `FROM scratch` image selects its service and version with `SIM_SERVICE` and
//! `SIM_VERSION` alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rollgate_sim::cert::{CertKind, PccsCert};
use rollgate_sim::localnet::{Localnet, LocalnetConfig};
use rollgate_sim::services::aesm::RunningAesm;
use rollgate_sim::services::chain::{ChainOptions, RunningChain};
use rollgate_sim::services::deployment::{DeploymentOptions, RunningDeployment};
use rollgate_sim::services::kyc::{KycOptions, RunningKyc};
use rollgate_sim::services::operator::{OperatorOptions, RunningOperator};
use rollgate_sim::services::pccs::{PccsOptions, RunningPccs};
use rollgate_sim::{Endpoint, FaultProxy, KycVersion, OperatorVersion, SimError};

#[derive(Debug, Parser)]
#[command(
    name = "rollgate-sim",
    about = "A simulated operator node stack that speaks the real protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The operator (REST on 127.0.0.1:8080).
    Operator(OperatorArgs),
    /// The KYC service (REST on 127.0.0.1:8090).
    Kyc(KycArgs),
    /// The chain (JSON-RPC on 127.0.0.1:8545).
    Chain(ChainArgs),
    /// The deployment-service (127.0.0.1:4040); writes APP_CONFIG/ethereum/addresses.json.
    Deployment(DeploymentArgs),
    /// The PCCS (HTTPS on 127.0.0.1:8081).
    Pccs(PccsArgs),
    /// The AESM unix socket.
    Aesm(AesmArgs),
    /// A TCP/unix forwarding proxy (the FaultProxy, without faults).
    Proxy(ProxyArgs),
    /// Print the versions and their behaviours.
    Versions,
    /// The whole stack as background processes on loopback.
    Localnet(LocalnetArgs),
    /// The shared Raft state of N operators in cluster mode (`operator --cluster-file`).
    Cluster(ClusterArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
struct OperatorArgs {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long, env = "SIM_VERSION", default_value = "v1.0.0")]
    version: String,
    /// The operator's database (node0); created when missing.
    #[arg(long, env = "SIM_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "SIM_REDIS_URL")]
    redis_url: Option<String>,
    #[arg(long, env = "SIM_REDIS_PREFIX", default_value = "node0")]
    redis_prefix: String,
    #[arg(long, env = "APP_CONFIG")]
    app_config: Option<PathBuf>,
    #[arg(long, env = "SIM_TRAFFIC", value_enum, default_value = "on")]
    traffic: OnOff,
    #[arg(long, env = "SIM_TRAFFIC_INTERVAL_MS", default_value_t = 250)]
    traffic_interval_ms: u64,
    /// How long v1.1.0-slow-start stays Starting.
    #[arg(long, env = "SIM_SLOW_START_MS", default_value_t = 5000)]
    slow_start_ms: u64,
    #[arg(long, env = "SIM_CRASH_AFTER_MS", default_value_t = 1000)]
    crash_after_ms: u64,
    #[arg(long, env = "SIM_HEALTH_INTERVAL_MS", default_value_t = 500)]
    health_interval_ms: u64,
    /// Model a missing oracle: no mark prices, requests answer 503.
    #[arg(long, env = "SIM_NO_MARK_PRICE")]
    no_mark_price: bool,
    /// How the status document spells its values: `tidy`, or `terse` (`false`/`""` for no
    /// fault, requestIndex a decimal string past 2^64)
    #[arg(long, env = "SIM_STATUS_SHAPE", default_value = "tidy")]
    status_shape: String,
    /// The operator's configuration file (`KEY=VALUE` lines), read at start: the file a
    /// `config` layer changes. `OPERATOR_MARK_PRICE=on|off` (off: no mark prices, requests
    /// answer 503), `OPERATOR_SLOW_START_MS=N`; other keys are ignored, a bad value of a known
    /// key makes the operator refuse to start.
    #[arg(long, env = "SIM_ENV_FILE")]
    env_file: Option<PathBuf>,
    /// The node's Raft id (`raftMetrics.nodeId`).
    #[arg(long, env = "SIM_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Cluster mode: the cluster's shared state file (`rollgate-sim cluster init`).
    #[arg(long, env = "SIM_CLUSTER_FILE")]
    cluster_file: Option<PathBuf>,
    /// Cluster mode: how often the node heartbeats into the cluster.
    #[arg(long, env = "SIM_HEARTBEAT_MS", default_value_t = 100)]
    heartbeat_ms: u64,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// The cluster's shared state file.
    #[arg(long, env = "SIM_CLUSTER_FILE", global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Create the cluster with its voter set (e.g. `--voters 1,2,3`).
    Init {
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// Start over when the file exists.
        #[arg(long)]
        force: bool,
        /// The leader commits one entry per tick.
        #[arg(long, default_value_t = 250)]
        tick_ms: u64,
        /// A node silent for longer than this is not running.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Print the shared state as JSON, with the nodes running now.
    Show,
}

#[derive(Debug, Args)]
struct KycArgs {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    #[arg(long, env = "SIM_VERSION", default_value = "v1.0.0")]
    version: String,
    /// The kyc database; created when missing.
    #[arg(long, env = "SIM_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "SIM_CRASH_AFTER_MS", default_value_t = 1000)]
    crash_after_ms: u64,
}

#[derive(Debug, Args)]
struct ChainArgs {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8545")]
    listen: String,
    #[arg(long, env = "SIM_CHAIN_ID", default_value_t = 1337)]
    chain_id: u64,
    #[arg(long, env = "SIM_BLOCK_INTERVAL_MS", default_value_t = 1000)]
    block_interval_ms: u64,
    /// Stop making blocks this long after the start: the latest block then ages (a stalled chain).
    #[arg(long, env = "SIM_STALL_AFTER_MS")]
    stall_after_ms: Option<u64>,
    /// How old the first block is at the start (with `--stall-after-ms 0`: a chain stalled that long ago).
    #[arg(long, env = "SIM_HEAD_AGE_MS", default_value_t = 0)]
    head_age_ms: u64,
    /// Answer a JSON-RPC batch with one "invalid request" error, as providers without batches do.
    #[arg(long, env = "SIM_NO_BATCH")]
    no_batch: bool,
}

#[derive(Debug, Args)]
struct DeploymentArgs {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:4040")]
    listen: String,
    #[arg(long, env = "APP_CONFIG", default_value = "/opt/dexlabs")]
    app_config: PathBuf,
    #[arg(long, env = "SIM_CHAIN_ID", default_value_t = 1337)]
    chain_id: u64,
}

#[derive(Debug, Args)]
struct PccsArgs {
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// Certificate kind: v3 (SAN IP:127.0.0.1) or v1 (no extensions, as `openssl x509 -req`).
    #[arg(long, env = "SIM_PCCS_CERT", default_value = "v1")]
    cert: String,
    /// Keep the certificate here (cert.der, key.der, cert.pem, cert.sha256), reusing it when
    /// present so the pin survives restarts.
    #[arg(long, env = "SIM_PCCS_CERT_DIR")]
    cert_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct AesmArgs {
    #[arg(
        long,
        env = "SIM_AESM_SOCKET",
        default_value = "/var/run/aesmd/aesm.socket"
    )]
    socket: PathBuf,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// `host:port` or `unix:/path`.
    #[arg(long, env = "SIM_LISTEN")]
    listen: String,
    /// `host:port` or `unix:/path`.
    #[arg(long, env = "SIM_UPSTREAM")]
    upstream: String,
}

#[derive(Debug, Args)]
struct LocalnetArgs {
    /// The localnet directory (pid files, logs, versions, APP_CONFIG).
    #[arg(long, env = "ROLLGATE_SIM_DIR", global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LocalnetCommand,
}

#[derive(Debug, Subcommand)]
enum LocalnetCommand {
    /// Start every component that is not running.
    Up(Box<UpArgs>),
    /// Stop every component.
    Down,
    /// Show each component; exits 3 when one is not running.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a layer's recorded value (operator-image, operator-binary, kyc-image).
    Current {
        #[arg(env = "ROLLGATE_LAYER")]
        layer: String,
    },
    /// Record a new value for a layer (takes effect on restart).
    Set {
        #[arg(env = "ROLLGATE_LAYER")]
        layer: String,
        #[arg(env = "ROLLGATE_VALUE")]
        value: String,
    },
    /// Restart only these components with their recorded versions
    /// (default: $ROLLGATE_COMPONENTS, space-separated).
    Restart { components: Vec<String> },
    /// Stop only these components (default: $ROLLGATE_COMPONENTS)
    Stop { components: Vec<String> },
    /// Start only these components with their recorded versions (default: $ROLLGATE_COMPONENTS)
    Start { components: Vec<String> },
}

#[derive(Debug, Args)]
struct UpArgs {
    #[arg(long, env = "SIM_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "SIM_OPERATOR_PORT", default_value_t = 8080)]
    operator_port: u16,
    #[arg(long, env = "SIM_KYC_PORT", default_value_t = 8090)]
    kyc_port: u16,
    #[arg(long, env = "SIM_CHAIN_PORT", default_value_t = 8545)]
    chain_port: u16,
    #[arg(long, env = "SIM_DEPLOYMENT_PORT", default_value_t = 4040)]
    deployment_port: u16,
    #[arg(long, env = "SIM_PCCS_PORT", default_value_t = 8081)]
    pccs_port: u16,
    /// Any URL of the Postgres server; the databases below are created on it when missing.
    #[arg(long, env = "SIM_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "SIM_OPERATOR_DATABASE", default_value = "node0")]
    operator_database: String,
    #[arg(long, env = "SIM_KYC_DATABASE", default_value = "kyc")]
    kyc_database: String,
    #[arg(long, env = "SIM_REDIS_URL")]
    redis_url: Option<String>,
    #[arg(long, env = "SIM_REDIS_PREFIX", default_value = "node0")]
    redis_prefix: String,
    /// Initial operator version (kept when the localnet already recorded one).
    #[arg(long, env = "SIM_OPERATOR_VERSION", default_value = "v1.0.0")]
    operator_version: String,
    #[arg(long, env = "SIM_KYC_VERSION", default_value = "v1.0.0")]
    kyc_version: String,
    #[arg(long, env = "SIM_TRAFFIC", value_enum, default_value = "on")]
    traffic: OnOff,
    #[arg(long, env = "SIM_TRAFFIC_INTERVAL_MS", default_value_t = 250)]
    traffic_interval_ms: u64,
    #[arg(long, env = "SIM_SLOW_START_MS", default_value_t = 5000)]
    slow_start_ms: u64,
    #[arg(long, env = "SIM_PCCS_CERT", default_value = "v1")]
    pccs_cert: String,
    /// The operator's status shape (`tidy`, `terse`: see `rollgate-sim operator --help`)
    #[arg(long, default_value = "tidy")]
    status_shape: String,
    /// The chain's block interval.
    #[arg(long, env = "SIM_CHAIN_BLOCK_MS", default_value_t = 1000)]
    chain_block_ms: u64,
    /// The chain stops making blocks this long after it starts (its latest block then ages).
    #[arg(long, env = "SIM_CHAIN_STALL_AFTER_MS")]
    chain_stall_after_ms: Option<u64>,
    /// The chain answers batches with one "invalid request" error.
    #[arg(long, env = "SIM_CHAIN_NO_BATCH")]
    chain_no_batch: bool,
    /// The operator's Raft id.
    #[arg(long, env = "SIM_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Cluster mode: the operator joins the cluster of this shared state file.
    #[arg(long, env = "SIM_CLUSTER_FILE")]
    cluster_file: Option<PathBuf>,
}

/// Exit status for a usage or configuration error (as rollgate's own).
const EXIT_USAGE: u8 = 2;
/// Exit status of `localnet status` when a component is down.
const EXIT_NOT_READY: u8 = 3;

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_service(std::env::args_os().collect()));
    let Some(command) = cli.command else {
        eprintln!("rollgate-sim: no service given (a subcommand, or SIM_SERVICE); see --help");
        return ExitCode::from(EXIT_USAGE);
    };
    init_logging();
    let result = match command {
        Command::Localnet(args) => localnet(args),
        Command::Cluster(args) => cluster(args),
        Command::Versions => {
            print_versions();
            Ok(ExitCode::SUCCESS)
        }
        service => run_service(service),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rollgate-sim: error: {e:#}");
            // Bad input (unknown version, layer, component) is a usage error; the rest fails.
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<SimError>(),
                    Some(
                        SimError::UnknownVersion { .. }
                            | SimError::Localnet(_)
                            | SimError::Cluster(_)
                    )
                )
            }) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A FROM-scratch image runs the bare binary, maybe with flags only (`docker run IMAGE
/// --traffic off`): the service then comes from `SIM_SERVICE`.
fn with_default_service(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(service) = std::env::var_os("SIM_SERVICE").filter(|s| !s.is_empty()) else {
        return args;
    };
    let first_is_flag = args.get(1).is_none_or(|a| {
        let a = a.to_string_lossy();
        a.starts_with('-') && a != "-h" && a != "--help"
    });
    if first_is_flag {
        args.insert(1.min(args.len()), service);
    }
    args
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn print_versions() {
    println!("component  version                    behaviour");
    for v in OperatorVersion::ALL {
        println!("operator   {:<26} {}", v.as_str(), v.behaviour());
    }
    for v in KycVersion::ALL {
        println!("kyc        {:<26} {}", v.as_str(), v.behaviour());
    }
}

fn run_service(command: Command) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    rt.block_on(serve(command))
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// The operator's `KEY=VALUE` configuration file (see `OperatorArgs::env_file`).
fn apply_env_file(path: &std::path::Path, opts: &mut OperatorOptions) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the operator configuration {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}:{}: not KEY=VALUE: {line}", path.display(), n + 1);
        };
        let value = value.trim().trim_matches(['"', '\'']);
        match key.trim() {
            "OPERATOR_MARK_PRICE" => {
                opts.mark_price = match value {
                    "on" => true,
                    "off" => false,
                    other => bail!(
                        "{}:{}: OPERATOR_MARK_PRICE must be on or off, not {other:?}",
                        path.display(),
                        n + 1
                    ),
                }
            }
            "OPERATOR_SLOW_START_MS" => {
                opts.slow_start = ms(value.parse().with_context(|| {
                    format!("{}:{}: OPERATOR_SLOW_START_MS", path.display(), n + 1)
                })?)
            }
            _ => {}
        }
    }
    Ok(())
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn serve(command: Command) -> Result<ExitCode> {
    match command {
        Command::Operator(a) => {
            let env_file = a.env_file.clone();
            let mut opts = OperatorOptions {
                listen: a.listen,
                version: a.version.parse()?,
                database_url: a.database_url,
                redis_url: a.redis_url,
                redis_prefix: a.redis_prefix,
                app_config: a.app_config,
                traffic: matches!(a.traffic, OnOff::On),
                traffic_interval: ms(a.traffic_interval_ms),
                slow_start: ms(a.slow_start_ms),
                crash_after: ms(a.crash_after_ms),
                health_interval: ms(a.health_interval_ms),
                mark_price: !a.no_mark_price,
                shape: a.status_shape.parse().map_err(anyhow::Error::msg)?,
                node_id: a.node_id,
                cluster_file: a.cluster_file,
                heartbeat_interval: ms(a.heartbeat_ms),
                ..OperatorOptions::default()
            };
            if let Some(path) = env_file {
                apply_env_file(&path, &mut opts)?;
            }
            let op = RunningOperator::start(opts).await?;
            tokio::select! {
                code = op.wait_exit() => return Ok(ExitCode::from(code.clamp(1, 255) as u8)),
                _ = terminated() => {}
            }
            op.shutdown().await;
        }
        Command::Kyc(a) => {
            let kyc = RunningKyc::start(KycOptions {
                listen: a.listen,
                version: a.version.parse()?,
                database_url: a.database_url,
                crash_after: ms(a.crash_after_ms),
                ..KycOptions::default()
            })
            .await?;
            tokio::select! {
                code = kyc.wait_exit() => return Ok(ExitCode::from(code.clamp(1, 255) as u8)),
                _ = terminated() => {}
            }
            kyc.shutdown().await;
        }
        Command::Chain(a) => {
            let chain = RunningChain::start(ChainOptions {
                listen: a.listen,
                chain_id: a.chain_id,
                block_interval: ms(a.block_interval_ms),
                stall_after: a.stall_after_ms.map(ms),
                head_age: ms(a.head_age_ms),
                batches: !a.no_batch,
                ..ChainOptions::default()
            })
            .await?;
            terminated().await;
            chain.shutdown().await;
        }
        Command::Deployment(a) => {
            let d = RunningDeployment::start(DeploymentOptions {
                listen: a.listen,
                app_config: a.app_config,
                chain_id: a.chain_id,
            })
            .await?;
            terminated().await;
            d.shutdown().await;
        }
        Command::Pccs(a) => {
            let kind: CertKind = a.cert.parse()?;
            let cert = match &a.cert_dir {
                Some(dir) => Some(load_or_create_cert(dir, kind)?),
                None => None,
            };
            let pccs = RunningPccs::start(PccsOptions {
                listen: a.listen,
                cert_kind: kind,
                cert,
            })
            .await?;
            terminated().await;
            pccs.shutdown().await;
        }
        Command::Aesm(a) => {
            let aesm = RunningAesm::start(&a.socket)?;
            terminated().await;
            aesm.shutdown();
        }
        Command::Proxy(a) => {
            let proxy =
                FaultProxy::start_on(Endpoint::parse(&a.listen), Endpoint::parse(&a.upstream))
                    .await?;
            tracing::info!(listen = %proxy.endpoint(), upstream = %a.upstream, "proxy started");
            terminated().await;
            proxy.shutdown();
        }
        Command::Versions | Command::Localnet(_) | Command::Cluster(_) => {
            unreachable!("dispatched in main")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reuses the certificate in `dir` when it is of the requested kind; otherwise generates one and
/// saves it, with its pin, for rollgate's configuration to read.
fn load_or_create_cert(dir: &std::path::Path, kind: CertKind) -> Result<PccsCert> {
    let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path))
        && let Ok(cert) = PccsCert::from_der(&c, &k)
        && cert.kind() == kind
    {
        return Ok(cert);
    }
    let cert = PccsCert::generate(kind)?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for (name, bytes) in [
        ("cert.der", cert.der().to_vec()),
        ("key.der", cert.key_der().to_vec()),
        ("cert.pem", cert.pem().into_bytes()),
        ("key.pem", cert.key_pem().into_bytes()),
        (
            "cert.sha256",
            format!("{}\n", cert.sha256_hex()).into_bytes(),
        ),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("failed to write {}", p.display()))?;
    }
    Ok(cert)
}

fn cluster(args: ClusterArgs) -> Result<ExitCode> {
    let Some(path) = args.file else {
        bail!(SimError::Cluster(
            "no cluster file: pass --file FILE or set SIM_CLUSTER_FILE".into()
        ));
    };
    let file = rollgate_sim::cluster::ClusterFile::new(path);
    match args.command {
        ClusterCommand::Init {
            voters,
            force,
            tick_ms,
            timeout_ms,
        } => {
            let timings = rollgate_sim::cluster::ClusterTimings {
                tick: ms(tick_ms),
                timeout: ms(timeout_ms),
            };
            file.init(&voters, timings, force)?;
        }
        ClusterCommand::Show => {
            let state = file.read()?;
            let running = state.running_ids(rollgate_sim::server::now_ms());
            let mut doc = serde_json::to_value(&state)?;
            doc["running"] = serde_json::json!(running);
            println!("{doc:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn localnet(args: LocalnetArgs) -> Result<ExitCode> {
    let Some(dir) = args.dir else {
        bail!(SimError::Localnet(
            "no localnet directory: pass --dir DIR or set ROLLGATE_SIM_DIR".into()
        ));
    };
    let net = Localnet::new(dir);
    match args.command {
        LocalnetCommand::Up(a) => {
            let config = LocalnetConfig {
                host: a.host,
                operator_port: a.operator_port,
                kyc_port: a.kyc_port,
                chain_port: a.chain_port,
                deployment_port: a.deployment_port,
                pccs_port: a.pccs_port,
                database_url: a.database_url,
                operator_database: a.operator_database,
                kyc_database: a.kyc_database,
                redis_url: a.redis_url,
                redis_prefix: a.redis_prefix,
                traffic: matches!(a.traffic, OnOff::On),
                traffic_interval_ms: a.traffic_interval_ms,
                slow_start_ms: a.slow_start_ms,
                pccs_cert: a.pccs_cert.parse::<CertKind>()?.as_str().to_owned(),
                status_shape: a
                    .status_shape
                    .parse::<rollgate_sim::services::operator::StatusShape>()
                    .map_err(anyhow::Error::msg)?
                    .as_str()
                    .to_owned(),
                exe: std::env::current_exe().context("failed to locate rollgate-sim")?,
                chain_block_ms: a.chain_block_ms,
                chain_stall_after_ms: a.chain_stall_after_ms,
                chain_batches: !a.chain_no_batch,
                node_id: a.node_id,
                cluster_file: a.cluster_file,
            };
            net.up(&config, a.operator_version.parse()?, a.kyc_version.parse()?)?;
            print_status(&net, false)?;
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Down => {
            net.down()?;
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Status { json } => print_status(&net, json),
        LocalnetCommand::Current { layer } => {
            println!("{}", net.current(&layer)?);
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Set { layer, value } => {
            net.set(&layer, &value)?;
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Restart { components } => {
            net.restart(&named_components(components, "restart")?)?;
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Stop { components } => {
            net.stop_components(&named_components(components, "stop")?)?;
            Ok(ExitCode::SUCCESS)
        }
        LocalnetCommand::Start { components } => {
            net.start_components(&named_components(components, "start")?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The components given as arguments, else `$ROLLGATE_COMPONENTS` (space-separated).
fn named_components(components: Vec<String>, what: &str) -> Result<Vec<String>> {
    let components: Vec<String> = if components.is_empty() {
        std::env::var("ROLLGATE_COMPONENTS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    } else {
        components
    };
    if components.is_empty() {
        bail!(SimError::Localnet(format!(
            "no component to {what} (arguments or ROLLGATE_COMPONENTS)"
        )));
    }
    Ok(components)
}

fn print_status(net: &Localnet, json: bool) -> Result<ExitCode> {
    let status = net.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "{:<11} {:<8} {:<8} {:<28} version",
            "component", "state", "pid", "endpoint"
        );
        for s in &status {
            println!(
                "{:<11} {:<8} {:<8} {:<28} {}",
                s.component,
                if s.running { "running" } else { "stopped" },
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.endpoint,
                s.version.as_deref().unwrap_or("-"),
            );
        }
    }
    Ok(if status.iter().all(|s| s.running) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_READY)
    })
}

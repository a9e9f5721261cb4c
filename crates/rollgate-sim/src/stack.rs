//! The whole simulated node in one process, for tests: every service on an ephemeral loopback
//! port, with [`FaultProxy`]s between the operator/KYC and the real Postgres and Redis so a test
//! can cut or slow a dependency without touching the shared servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cert::{CertKind, PccsCert};
use crate::db;
use crate::errors::SimError;
use crate::proxy::FaultProxy;
use crate::services::aesm::RunningAesm;
use crate::services::chain::{ChainOptions, RunningChain};
use crate::services::deployment::{DeploymentOptions, RunningDeployment};
use crate::services::kyc::{KycOptions, RunningKyc};
use crate::services::operator::{OperatorOptions, RunningOperator};
use crate::services::pccs::{PccsOptions, RunningPccs};
use crate::version::{KycVersion, OperatorVersion};

/// Everything [`SimStack::start`] needs. Public fields; start from [`StackOptions::new`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Any URL of the Postgres server (its database part is replaced). None: no persistence.
    pub database_url: Option<String>,
    /// Database of the operator (`node0`) and of KYC (`kyc`); created when missing.
    pub operator_database: String,
    pub kyc_database: String,
    /// None: the operator runs without Redis.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// `APP_CONFIG` (deployment metadata, enclave build flags).
    pub app_config: PathBuf,
    pub aesm_socket: PathBuf,
    pub operator_version: OperatorVersion,
    pub kyc_version: KycVersion,
    pub traffic: bool,
    pub traffic_interval: Duration,
    pub pccs_cert: CertKind,
    /// Host to bind every service on.
    pub host: String,
    /// Ports; 0 (the default) picks free ones.
    pub operator_port: u16,
    pub kyc_port: u16,
    pub chain_port: u16,
    pub deployment_port: u16,
    pub pccs_port: u16,
    /// Put fault proxies in front of Postgres and Redis (on by default).
    pub proxy_dependencies: bool,
    pub slow_start: Duration,
    pub crash_after: Duration,
    pub health_interval: Duration,
    pub dependency_timeout: Duration,
    pub block_interval: Duration,
    pub chain_id: u64,
    pub mark_price: bool,
}

impl StackOptions {
    /// Defaults for a test: everything under `dir` (`dir/app_config`, `dir/aesm/aesm.socket`),
    /// ephemeral ports, fast intervals, baseline versions, no Postgres/Redis until set.
    pub fn new(dir: impl AsRef<Path>) -> StackOptions {
        let dir = dir.as_ref();
        StackOptions {
            database_url: None,
            operator_database: "node0".into(),
            kyc_database: "kyc".into(),
            redis_url: None,
            redis_prefix: "node0".into(),
            app_config: dir.join("app_config"),
            aesm_socket: dir.join("aesm").join("aesm.socket"),
            operator_version: OperatorVersion::V1_0_0,
            kyc_version: KycVersion::V1_0_0,
            traffic: true,
            traffic_interval: Duration::from_millis(100),
            pccs_cert: CertKind::V3San,
            host: "127.0.0.1".into(),
            operator_port: 0,
            kyc_port: 0,
            chain_port: 0,
            deployment_port: 0,
            pccs_port: 0,
            proxy_dependencies: true,
            slow_start: Duration::from_secs(5),
            crash_after: Duration::from_secs(1),
            health_interval: Duration::from_millis(100),
            dependency_timeout: Duration::from_millis(500),
            block_interval: Duration::from_millis(200),
            chain_id: 1337,
            mark_price: true,
        }
    }

    /// Points the stack at fresh per-test databases and a Redis prefix.
    pub fn with_databases(
        mut self,
        admin_url: &str,
        dbs: &crate::testenv::NodeDatabases,
        redis_url: &str,
    ) -> StackOptions {
        self.database_url = Some(admin_url.to_owned());
        self.operator_database = dbs.node0.name().to_owned();
        self.kyc_database = dbs.kyc.name().to_owned();
        self.redis_url = Some(redis_url.to_owned());
        self.redis_prefix = dbs.redis_prefix.clone();
        self
    }
}

/// Entry point: `SimStack::start(opts)`.
#[derive(Debug)]
pub struct SimStack;

impl SimStack {
    pub async fn start(opts: StackOptions) -> Result<RunningStack, SimError> {
        RunningStack::start(opts).await
    }
}

/// A running simulated node. Call [`RunningStack::shutdown`] at the end of a test.
#[derive(Debug)]
pub struct RunningStack {
    opts: StackOptions,
    operator: Option<RunningOperator>,
    operator_addr: SocketAddr,
    kyc: Option<RunningKyc>,
    kyc_addr: SocketAddr,
    chain: RunningChain,
    deployment: RunningDeployment,
    pccs: RunningPccs,
    aesm: RunningAesm,
    postgres_proxy: Option<FaultProxy>,
    redis_proxy: Option<FaultProxy>,
    /// URLs the operator and KYC use (through the proxies when enabled).
    operator_db_url: Option<String>,
    kyc_db_url: Option<String>,
    redis_url: Option<String>,
}

impl RunningStack {
    async fn start(opts: StackOptions) -> Result<RunningStack, SimError> {
        let addr = |port: u16| format!("{}:{port}", opts.host);
        let chain = RunningChain::start(ChainOptions {
            listen: addr(opts.chain_port),
            chain_id: opts.chain_id,
            block_interval: opts.block_interval,
            ..ChainOptions::default()
        })
        .await?;
        let deployment = RunningDeployment::start(DeploymentOptions {
            listen: addr(opts.deployment_port),
            app_config: opts.app_config.clone(),
            chain_id: opts.chain_id,
        })
        .await?;
        let pccs = RunningPccs::start(PccsOptions {
            listen: addr(opts.pccs_port),
            cert_kind: opts.pccs_cert,
            cert: None,
        })
        .await?;
        let aesm = RunningAesm::start(&opts.aesm_socket)?;

        let mut postgres_proxy = None;
        let (mut operator_db_url, mut kyc_db_url) = (None, None);
        if let Some(base) = &opts.database_url {
            let node0 = db::with_dbname(base, &opts.operator_database);
            let kyc = db::with_dbname(base, &opts.kyc_database);
            if opts.proxy_dependencies {
                let proxy = FaultProxy::start("127.0.0.1:0", db::pg_endpoint(base)?).await?;
                let via = proxy
                    .local_addr()
                    .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
                operator_db_url = Some(db::pg_url_via(&node0, via)?);
                kyc_db_url = Some(db::pg_url_via(&kyc, via)?);
                postgres_proxy = Some(proxy);
            } else {
                operator_db_url = Some(node0);
                kyc_db_url = Some(kyc);
            }
        }
        let mut redis_proxy = None;
        let mut redis_url = opts.redis_url.clone();
        if let Some(url) = &opts.redis_url
            && opts.proxy_dependencies
        {
            let proxy = FaultProxy::start("127.0.0.1:0", db::redis_endpoint(url)?).await?;
            let via = proxy
                .local_addr()
                .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
            redis_url = Some(db::redis_url_via(url, via)?);
            redis_proxy = Some(proxy);
        }

        let mut stack = RunningStack {
            operator_addr: ([127, 0, 0, 1], 0).into(),
            kyc_addr: ([127, 0, 0, 1], 0).into(),
            operator: None,
            kyc: None,
            chain,
            deployment,
            pccs,
            aesm,
            postgres_proxy,
            redis_proxy,
            operator_db_url,
            kyc_db_url,
            redis_url,
            opts,
        };
        let operator_listen = addr_of(&stack.opts.host, stack.opts.operator_port);
        let kyc_listen = addr_of(&stack.opts.host, stack.opts.kyc_port);
        let operator = RunningOperator::start(
            stack.operator_options(stack.opts.operator_version, operator_listen),
        )
        .await?;
        stack.operator_addr = operator.local_addr();
        stack.operator = Some(operator);
        let kyc = RunningKyc::start(stack.kyc_options(stack.opts.kyc_version, kyc_listen)).await?;
        stack.kyc_addr = kyc.local_addr();
        stack.kyc = Some(kyc);
        Ok(stack)
    }

    fn operator_options(&self, version: OperatorVersion, listen: String) -> OperatorOptions {
        let o = &self.opts;
        OperatorOptions {
            listen,
            version,
            database_url: self.operator_db_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: o.redis_prefix.clone(),
            app_config: Some(o.app_config.clone()),
            traffic: o.traffic,
            traffic_interval: o.traffic_interval,
            slow_start: o.slow_start,
            crash_after: o.crash_after,
            health_interval: o.health_interval,
            dependency_timeout: o.dependency_timeout,
            mark_price: o.mark_price,
            node_id: 1,
            shape: Default::default(),
            ..OperatorOptions::default()
        }
    }

    fn kyc_options(&self, version: KycVersion, listen: String) -> KycOptions {
        KycOptions {
            listen,
            version,
            database_url: self.kyc_db_url.clone(),
            crash_after: self.opts.crash_after,
            dependency_timeout: self.opts.dependency_timeout,
        }
    }

    pub fn operator_url(&self) -> String {
        format!("http://{}", self.operator_addr)
    }
    pub fn kyc_url(&self) -> String {
        format!("http://{}", self.kyc_addr)
    }
    pub fn chain_url(&self) -> String {
        self.chain.url()
    }
    pub fn deployment_url(&self) -> String {
        self.deployment.url()
    }
    /// `https://127.0.0.1:PORT`.
    pub fn pccs_url(&self) -> String {
        self.pccs.url()
    }
    pub fn pccs_cert(&self) -> &PccsCert {
        self.pccs.cert()
    }
    /// Lowercase hex SHA-256 of the PCCS certificate (DER): the pin.
    pub fn pccs_cert_sha256(&self) -> String {
        self.pccs.cert().sha256_hex()
    }
    pub fn aesm_socket(&self) -> &Path {
        self.aesm.path()
    }
    /// The AESM, to `cut()` and `restore()` it.
    pub fn aesm(&mut self) -> &mut RunningAesm {
        &mut self.aesm
    }
    pub fn app_config(&self) -> &Path {
        &self.opts.app_config
    }
    /// `<app_config>/ethereum/addresses.json`.
    pub fn deployment_metadata(&self) -> &Path {
        self.deployment.metadata_path()
    }
    /// `<app_config>/enclave/build-flags.env`.
    pub fn build_flags_path(&self) -> PathBuf {
        self.opts.app_config.join("enclave").join("build-flags.env")
    }
    pub fn operator(&self) -> Option<&RunningOperator> {
        self.operator.as_ref()
    }
    pub fn kyc(&self) -> Option<&RunningKyc> {
        self.kyc.as_ref()
    }
    /// The proxy between the services and Postgres (None without a database or proxies).
    pub fn postgres_proxy(&self) -> Option<&FaultProxy> {
        self.postgres_proxy.as_ref()
    }
    /// The proxy between the operator and Redis.
    pub fn redis_proxy(&self) -> Option<&FaultProxy> {
        self.redis_proxy.as_ref()
    }
    /// Direct (unproxied) URL of the operator's database, for a test to inspect rows.
    pub fn operator_database_url(&self) -> Option<String> {
        self.opts
            .database_url
            .as_deref()
            .map(|b| db::with_dbname(b, &self.opts.operator_database))
    }
    /// Direct (unproxied) URL of the KYC database.
    pub fn kyc_database_url(&self) -> Option<String> {
        self.opts
            .database_url
            .as_deref()
            .map(|b| db::with_dbname(b, &self.opts.kyc_database))
    }
    /// Prefix of the operator's Redis keys.
    pub fn redis_prefix(&self) -> &str {
        &self.opts.redis_prefix
    }
    pub fn options(&self) -> &StackOptions {
        &self.opts
    }

    /// Stops the operator (its port goes dark) without starting another.
    pub async fn stop_operator(&mut self) {
        if let Some(op) = self.operator.take() {
            op.shutdown().await;
        }
    }

    /// Replaces the operator with `version` on the same address, as an image swap does.
    pub async fn restart_operator(&mut self, version: OperatorVersion) -> Result<(), SimError> {
        self.stop_operator().await;
        let listener = rebind(self.operator_addr).await?;
        let op = RunningOperator::start_on(listener, self.operator_options(version, String::new()))
            .await?;
        self.operator = Some(op);
        Ok(())
    }

    /// Replaces the KYC service with `version` on the same address.
    pub async fn restart_kyc(&mut self, version: KycVersion) -> Result<(), SimError> {
        if let Some(k) = self.kyc.take() {
            k.shutdown().await;
        }
        let listener = rebind(self.kyc_addr).await?;
        self.kyc =
            Some(RunningKyc::start_on(listener, self.kyc_options(version, String::new())).await?);
        Ok(())
    }

    /// Stops every service and proxy.
    pub async fn shutdown(mut self) {
        self.stop_operator().await;
        if let Some(k) = self.kyc.take() {
            k.shutdown().await;
        }
        let RunningStack {
            chain,
            deployment,
            pccs,
            aesm,
            postgres_proxy,
            redis_proxy,
            ..
        } = self;
        chain.shutdown().await;
        deployment.shutdown().await;
        pccs.shutdown().await;
        aesm.shutdown();
        drop(postgres_proxy);
        drop(redis_proxy);
    }
}

fn addr_of(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Binds the address a stopped service used. The old socket is closed by then, but retry
/// briefly in case the kernel has not released it yet.
async fn rebind(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let mut last = None;
    for _ in 0..40 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(SimError::Bind {
        addr: addr.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("bind failed")),
    })
}

//! Dependency outages for one test node. rollgate's probes of each dependency go through a
//! [`FaultProxy`] the node owns, so a test stops a dependency for rollgate alone: the shared
//! Postgres and Redis, the simulated operator and the other tests' nodes never notice.
//!
//! A TCP dependency (Postgres, Redis, chain RPC, deployment service, PCCS) is stopped with
//! [`FaultProxy::cut`]: open connections are closed and new ones are reset at once, as when the
//! server goes away. AESM is a unix socket that its probe only connects to, and a cut proxy still
//! accepts connections, so AESM is stopped the way a stopped aesmd looks: its socket disappears
//! (the proxy is dropped, which removes it) and comes back at the same path on restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rollgate_sim::proxy::{Endpoint, FaultProxy};

/// A dependency of the node, as rollgate's configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    Postgres,
    Redis,
    Chain,
    DeploymentService,
    Pccs,
    Aesm,
}

impl Dependency {
    pub const ALL: [Dependency; 6] = [
        Dependency::Postgres,
        Dependency::Redis,
        Dependency::Chain,
        Dependency::DeploymentService,
        Dependency::Pccs,
        Dependency::Aesm,
    ];

    /// The prerequisite check's name: its gate is `dependency:NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
            Dependency::Chain => "chain",
            Dependency::DeploymentService => "deployment-service",
            Dependency::Pccs => "pccs",
            Dependency::Aesm => "aesm",
        }
    }
}

/// Where each dependency really is.
pub struct Upstreams<'a> {
    pub postgres: &'a str,
    pub redis: &'a str,
    pub chain: u16,
    pub deployment: u16,
    pub pccs: u16,
    pub aesm: PathBuf,
}

struct Proxied {
    listen: Endpoint,
    upstream: Endpoint,
    /// `None` while a unix socket dependency is stopped.
    proxy: Option<FaultProxy>,
    /// Connections the proxy had accepted when it was cut: any more were refused.
    accepted_at_cut: Option<u64>,
    /// The dependency's URL through the proxy (Postgres and Redis, configured by URL).
    url: Option<String>,
}

/// The fault proxies of one node. Dropping it stops them.
pub struct Outages {
    // Declared before the runtime: the proxies are dropped first.
    proxies: Mutex<BTreeMap<Dependency, Proxied>>,
    runtime: tokio::runtime::Runtime,
}

/// `scheme://user@host:port/path` → (`scheme://user@`, `host:port`, `/path`).
fn split_authority(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find(['/', '?'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    let host = url[start..end]
        .rfind('@')
        .map(|i| start + i + 1)
        .unwrap_or(start);
    (&url[..host], &url[host..end], &url[end..])
}

impl Outages {
    /// A proxy in front of each of `deps`; unix sockets are created under `dir`.
    pub fn start(deps: &[Dependency], up: &Upstreams<'_>, dir: &Path) -> Outages {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut proxies = BTreeMap::new();
        for &d in deps {
            let tcp = |port: u16| Endpoint::Tcp(format!("127.0.0.1:{port}"));
            let (upstream, url) = match d {
                Dependency::Postgres => (
                    Endpoint::Tcp(split_authority(up.postgres).1.to_string()),
                    Some(up.postgres),
                ),
                Dependency::Redis => (
                    Endpoint::Tcp(split_authority(up.redis).1.to_string()),
                    Some(up.redis),
                ),
                Dependency::Chain => (tcp(up.chain), None),
                Dependency::DeploymentService => (tcp(up.deployment), None),
                Dependency::Pccs => (tcp(up.pccs), None),
                Dependency::Aesm => (Endpoint::Unix(up.aesm.clone()), None),
            };
            let listen = match d {
                Dependency::Aesm => Endpoint::Unix(dir.join("aesm.socket")),
                _ => Endpoint::Tcp("127.0.0.1:0".into()),
            };
            let proxy = runtime
                .block_on(FaultProxy::start_on(listen, upstream.clone()))
                .unwrap_or_else(|e| panic!("start a fault proxy for {}: {e}", d.name()));
            let listen = proxy.endpoint().clone();
            let url = url.map(|u| {
                let (head, _, tail) = split_authority(u);
                format!("{head}{listen}{tail}")
            });
            proxies.insert(
                d,
                Proxied {
                    listen,
                    upstream,
                    proxy: Some(proxy),
                    accepted_at_cut: None,
                    url,
                },
            );
        }
        Outages {
            proxies: Mutex::new(proxies),
            runtime,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Dependency, Proxied>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TCP port rollgate reaches `d` on, when it is proxied over TCP.
    pub fn port(&self, d: Dependency) -> Option<u16> {
        match &self.lock().get(&d)?.listen {
            Endpoint::Tcp(a) => a.rsplit_once(':')?.1.parse().ok(),
            Endpoint::Unix(_) => None,
        }
    }

    /// The unix socket rollgate reaches `d` on, when it is proxied over a unix socket.
    pub fn socket(&self, d: Dependency) -> Option<PathBuf> {
        match &self.lock().get(&d)?.listen {
            Endpoint::Unix(p) => Some(p.clone()),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The URL rollgate reaches `d` by, when it is configured by URL (Postgres, Redis).
    pub fn url(&self, d: Dependency) -> Option<String> {
        self.lock().get(&d)?.url.clone()
    }

    /// Stop `d` for rollgate.
    pub fn stop(&self, d: Dependency) {
        let mut proxies = self.lock();
        let p = proxies.get_mut(&d).expect("dependency is not proxied");
        match &p.listen {
            Endpoint::Unix(_) => p.proxy = None,
            Endpoint::Tcp(_) => {
                let proxy = p.proxy.as_ref().expect("tcp proxy");
                proxy.cut();
                p.accepted_at_cut = Some(proxy.connections_accepted());
            }
        }
    }

    /// Bring `d` back. Returns how many connections the outage refused, for a TCP dependency
    /// (`None` for a unix socket, whose refused connections never reach a listener).
    pub fn restore(&self, d: Dependency) -> Option<u64> {
        let mut proxies = self.lock();
        let p = proxies.get_mut(&d).expect("dependency is not proxied");
        match &p.proxy {
            Some(proxy) => {
                let refused = p
                    .accepted_at_cut
                    .take()
                    .map(|at_cut| proxy.connections_accepted() - at_cut);
                proxy.restore();
                refused
            }
            None => {
                let proxy = self
                    .runtime
                    .block_on(FaultProxy::start_on(p.listen.clone(), p.upstream.clone()))
                    .unwrap_or_else(|e| panic!("restart the proxy for {}: {e}", d.name()));
                p.proxy = Some(proxy);
                None
            }
        }
    }
}

#[test]
fn authority_of_urls() {
    assert_eq!(
        split_authority("postgres://postgres@127.0.0.1:5433/postgres"),
        ("postgres://postgres@", "127.0.0.1:5433", "/postgres")
    );
    assert_eq!(
        split_authority("redis://127.0.0.1:6379"),
        ("redis://", "127.0.0.1:6379", "")
    );
}

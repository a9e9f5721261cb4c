//! A fault-injecting TCP (or unix socket) proxy. Put it in front of Postgres, Redis or any
//! service to "stop" a dependency for one test without touching the shared real server:
//! [`FaultProxy::cut`] closes every open connection and refuses new ones (they are accepted and
//! closed at once, which clients see as a reset), [`FaultProxy::delay`] adds latency to every
//! chunk in both directions, [`FaultProxy::restore`] returns to a clean pass-through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::errors::SimError;

/// Where a proxy listens or forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`, resolved on every connection.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Endpoint {
        match s.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(PathBuf::from(path)),
            None => Endpoint::Tcp(s.to_owned()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => f.write_str(a),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mode {
    cut: bool,
    delay: Duration,
    /// Bumped on every cut so connections opened before it notice and close.
    epoch: u64,
}

/// Handle to a running fault proxy. Dropping it stops the proxy.
#[derive(Debug)]
pub struct FaultProxy {
    listen: Endpoint,
    local_addr: Option<SocketAddr>,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Listener::Unix(l) => Box::new(l.accept().await?.0),
        })
    }
}

async fn connect(to: &Endpoint) -> std::io::Result<Box<dyn Stream>> {
    Ok(match to {
        Endpoint::Tcp(a) => {
            let s = TcpStream::connect(a.as_str()).await?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Endpoint::Unix(p) => Box::new(UnixStream::connect(p).await?),
    })
}

impl FaultProxy {
    /// Starts a TCP proxy on `listen` (e.g. `127.0.0.1:0`) forwarding to `upstream`.
    pub async fn start(listen: &str, upstream: Endpoint) -> Result<FaultProxy, SimError> {
        Self::start_on(Endpoint::Tcp(listen.to_owned()), upstream).await
    }

    /// Starts a proxy listening on a TCP address or a unix socket path.
    pub async fn start_on(listen: Endpoint, upstream: Endpoint) -> Result<FaultProxy, SimError> {
        let (listener, local_addr) = match &listen {
            Endpoint::Tcp(a) => {
                let l = crate::server::bind(a).await?;
                let addr = l.local_addr().map_err(SimError::LocalAddr)?;
                (Listener::Tcp(l), Some(addr))
            }
            Endpoint::Unix(p) => (Listener::Unix(bind_unix(p)?), None),
        };
        let listen = match local_addr {
            Some(a) => Endpoint::Tcp(a.to_string()),
            None => listen,
        };
        let (mode, mode_rx) = watch::channel(Mode::default());
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, upstream, mode_rx, accepted.clone()));
        Ok(FaultProxy {
            listen,
            local_addr,
            mode,
            accepted,
            task,
        })
    }

    /// The TCP address the proxy listens on (None for a unix socket proxy).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// What the proxy listens on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.listen
    }

    /// Closes every open connection and refuses new ones until [`FaultProxy::restore`].
    pub fn cut(&self) {
        self.mode.send_modify(|m| {
            m.cut = true;
            m.epoch += 1;
        });
    }

    /// Back to a clean pass-through (no cut, no delay).
    pub fn restore(&self) {
        self.mode.send_modify(|m| {
            m.cut = false;
            m.delay = Duration::ZERO;
        });
    }

    /// Adds `d` of latency to each forwarded chunk, in both directions.
    pub fn delay(&self, d: Duration) {
        self.mode.send_modify(|m| m.delay = d);
    }

    pub fn is_cut(&self) -> bool {
        self.mode.borrow().cut
    }

    /// Connections accepted so far (including refused ones).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Close open connections too, not only the listener.
        self.mode.send_modify(|m| {
            m.cut = true;
            m.epoch += 1;
        });
        self.task.abort();
        if let Endpoint::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds a unix socket, replacing a stale socket file left by a dead process.
pub(crate) fn bind_unix(path: &Path) -> Result<UnixListener, SimError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| SimError::io(format!("create {}", dir.display()), e))?;
    }
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path).map_err(|source| SimError::BindUnix {
        path: path.to_owned(),
        source,
    })
}

async fn accept_loop(
    listener: Listener,
    upstream: Endpoint,
    mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicU64>,
) {
    let upstream = Arc::new(upstream);
    loop {
        let client = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        if mode.borrow().cut {
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, upstream.clone(), mode.clone()));
    }
}

async fn relay(client: Box<dyn Stream>, upstream: Arc<Endpoint>, mut mode: watch::Receiver<Mode>) {
    let epoch = mode.borrow().epoch;
    let server = match connect(&upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, %upstream, "proxy upstream connect failed");
            return;
        }
    };
    let (cr, cw) = tokio::io::split(client);
    let (sr, sw) = tokio::io::split(server);
    let up = pump(cr, sw, mode.clone());
    let down = pump(sr, cw, mode.clone());
    let cut = async move {
        let _ = mode.wait_for(|m| m.epoch != epoch).await;
    };
    // Whichever ends first ends the connection: both halves are dropped together.
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut => {}
    }
}

async fn pump<R, W>(mut r: R, mut w: W, mode: watch::Receiver<Mode>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = mode.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

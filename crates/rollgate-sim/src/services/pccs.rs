//! The simulated PCCS: HTTPS serving the DCAP collateral paths
//! (`/sgx/certification/v4/rootcacrl`, `/pckcrl?ca=processor|platform`, `/tcb`, `/qe/identity`)
//! behind a generated self-signed certificate of either [`CertKind`].
//!
//! rustls needs a custom certificate resolver here, because its `with_single_cert` parses the
//! certificate with webpki, which refuses the v1 certificate this service must be able to
//! present; [`CertifiedKey::new`] skips that check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::cert::{CertKind, PccsCert};
use crate::errors::SimError;
use crate::server::HttpServer;

/// How to run the PCCS.
#[derive(Debug, Clone)]
pub struct PccsOptions {
    pub listen: String,
    pub cert_kind: CertKind,
    /// Present this certificate instead of generating one (e.g. to keep a pin across restarts).
    pub cert: Option<PccsCert>,
}

impl Default for PccsOptions {
    fn default() -> Self {
        PccsOptions {
            listen: "127.0.0.1:8081".into(),
            cert_kind: CertKind::V3San,
            cert: None,
        }
    }
}

/// A running PCCS.
#[derive(Debug)]
pub struct RunningPccs {
    addr: SocketAddr,
    server: Option<HttpServer>,
    cert: PccsCert,
    handshakes: JoinHandle<()>,
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A rustls server configuration presenting `cert`, whatever its X.509 version.
pub fn server_config(cert: &PccsCert) -> Result<rustls::ServerConfig, SimError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der().to_vec()));
    let signing_key = provider.key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing_key);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An axum listener yielding finished TLS streams. Handshakes run in their own tasks so one
/// slow or hostile client cannot hold up the others.
struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The handshake task is gone: the server is stopping.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "pccs accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                // A client that rejects our certificate aborts the handshake: expected.
                Ok(Err(e)) => tracing::debug!(error = %e, "pccs tls handshake failed"),
                Err(_) => tracing::debug!("pccs tls handshake timed out"),
            }
        });
    }
}

impl RunningPccs {
    pub async fn start(opts: PccsOptions) -> Result<RunningPccs, SimError> {
        let listener = crate::server::bind(&opts.listen).await?;
        Self::start_on(listener, opts)
    }

    pub fn start_on(listener: TcpListener, opts: PccsOptions) -> Result<RunningPccs, SimError> {
        let cert = match opts.cert {
            Some(c) => c,
            None => PccsCert::generate(opts.cert_kind)?,
        };
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert)?));
        let addr = listener.local_addr().map_err(SimError::LocalAddr)?;
        let (tx, rx) = mpsc::channel(64);
        let handshakes = tokio::spawn(handshakes(listener, acceptor, tx));
        let server = HttpServer::spawn_on(TlsListener { addr, ready: rx }, router())?;
        tracing::info!(%addr, kind = cert.kind().as_str(), sha256 = %cert.sha256_hex(), "pccs started");
        Ok(RunningPccs {
            addr,
            server: Some(server),
            cert,
            handshakes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr())
    }

    pub fn cert(&self) -> &PccsCert {
        &self.cert
    }

    pub async fn shutdown(mut self) {
        self.handshakes.abort();
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

impl Drop for RunningPccs {
    fn drop(&mut self) {
        self.handshakes.abort();
    }
}

fn router() -> Router {
    Router::new()
        .route("/sgx/certification/v4/rootcacrl", get(root_ca_crl))
        .route("/sgx/certification/v3/rootcacrl", get(root_ca_crl))
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/tcb", get(tcb))
        .route("/sgx/certification/v4/qe/identity", get(qe_identity))
}

/// A stable stand-in for collateral bytes: hex of a hash chain, shaped like the DER hex the real
/// PCCS returns for CRLs.
fn fake_der_hex(label: &str) -> String {
    let mut out = String::new();
    let mut block: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    for _ in 0..8 {
        out.push_str(&hex::encode(block));
        block = Sha256::digest(block).into();
    }
    format!("308201{out}")
}

const ISSUER_CHAIN: &str =
    "-----BEGIN%20CERTIFICATE-----%0Arollgate-sim%0A-----END%20CERTIFICATE-----%0A";

async fn root_ca_crl() -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        fake_der_hex("rootcacrl"),
    )
        .into_response()
}

async fn pck_crl(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let ca = q.get("ca").map(String::as_str).unwrap_or("");
    if ca != "processor" && ca != "platform" {
        return (
            StatusCode::BAD_REQUEST,
            "invalid or missing parameter: ca (processor|platform)",
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::HeaderName::from_static("sgx-pck-crl-issuer-chain"),
                ISSUER_CHAIN,
            ),
        ],
        fake_der_hex(&format!("pckcrl/{ca}")),
    )
        .into_response()
}

async fn tcb(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let Some(fmspc) = q.get("fmspc") else {
        return (StatusCode::BAD_REQUEST, "missing parameter: fmspc").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("tcb-info-issuer-chain"),
                ISSUER_CHAIN,
            ),
        ],
        json!({"tcbInfo": {"id": "SGX", "version": 3, "fmspc": fmspc, "tcbType": 0, "tcbEvaluationDataNumber": 17}, "signature": fake_der_hex("tcb")}).to_string(),
    )
        .into_response()
}

async fn qe_identity() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"enclaveIdentity": {"id": "QE", "version": 2, "tcbEvaluationDataNumber": 17}, "signature": fake_der_hex("qe")}).to_string(),
    )
        .into_response()
}

//! The PCCS over real HTTPS, with both certificate kinds: the v3 certificate validates with an
//! ordinary trust store; the v1 one is refused by it (as rustls refuses such certificates) and
//! accepted through a SHA-256 pin verifier that checks the handshake signature against the
//! pinned key.

use std::sync::Arc;

use rollgate_sim::services::pccs::{PccsOptions, RunningPccs};
use rollgate_sim::{CertKind, PccsCert};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts exactly the pinned certificate (by DER SHA-256) and verifies the TLS 1.3 handshake
/// signature with its raw public key, so a v1 certificate works without webpki parsing it.
#[derive(Debug)]
struct Pin {
    sha256: [u8; 32],
    spki: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("certificate pin mismatch".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "the pin verifier only speaks TLS 1.3".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(self.spki.as_slice()),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn trusting(cert: &PccsCert) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn pinned(cert: &PccsCert) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pin {
            sha256: cert.sha256(),
            spki: cert.spki_der().to_vec(),
            provider: provider(),
        }))
        .with_no_client_auth()
}

/// GET over HTTPS with a raw HTTP/1.1 request; returns (status code, body).
async fn https_get(
    pccs: &RunningPccs,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<(u16, String), String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(pccs.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    // The server may close without close_notify; what was read is still the full response.
    let _ = tls.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

async fn start(kind: CertKind) -> RunningPccs {
    RunningPccs::start(PccsOptions {
        listen: "127.0.0.1:0".into(),
        cert_kind: kind,
        cert: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pccs_v3_certificate_validates_with_a_trust_store() {
    let pccs = start(CertKind::V3San).await;
    assert!(pccs.url().starts_with("https://127.0.0.1:"));
    let (code, body) = https_get(
        &pccs,
        trusting(pccs.cert()),
        "/sgx/certification/v4/rootcacrl",
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(!body.is_empty());
    let (code, _) = https_get(
        &pccs,
        pinned(pccs.cert()),
        "/sgx/certification/v4/pckcrl?ca=processor",
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let (code, _) = https_get(
        &pccs,
        pinned(pccs.cert()),
        "/sgx/certification/v4/pckcrl?ca=nope",
    )
    .await
    .unwrap();
    assert_eq!(code, 400);
    pccs.shutdown().await;
}

#[tokio::test]
async fn pccs_v1_certificate_needs_a_pin() {
    let pccs = start(CertKind::V1NoSan).await;
    let cert = pccs.cert().clone();
    assert_eq!(cert.kind(), CertKind::V1NoSan);
    assert_eq!(cert.sha256_hex(), hex::encode(Sha256::digest(cert.der())));
    assert!(cert.pem().contains("BEGIN CERTIFICATE"));

    // An ordinary trust store refuses a v1 certificate even as its only anchor.
    let err = https_get(&pccs, trusting(&cert), "/sgx/certification/v4/rootcacrl")
        .await
        .unwrap_err();
    assert!(
        err.contains("UnsupportedCertVersion") || err.to_lowercase().contains("certificate"),
        "{err}"
    );

    // The pin works.
    let (code, body) = https_get(&pccs, pinned(&cert), "/sgx/certification/v4/rootcacrl")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.chars().all(|c| c.is_ascii_hexdigit()), "{body}");

    // A wrong pin is refused.
    let other = PccsCert::generate(CertKind::V1NoSan).unwrap();
    assert!(
        https_get(&pccs, pinned(&other), "/sgx/certification/v4/rootcacrl")
            .await
            .is_err()
    );
    pccs.shutdown().await;
}

//! The PCCS probe: HTTPS with rustls, trusting the server by a SHA-256 pin, a CA file, or —
//! loudly — not at all.
//!
//! The certificate recipe commonly used for PCCS produces a self-signed X.509 **version 1**
//! certificate, which webpki refuses to parse (`UnsupportedCertVersion`) even as a trust anchor
//! (see `dependencies.md`). So trust is decided by [`PccsVerifier`]:
//!
//! - the leaf's DER hashes to the pin, or is byte-for-byte one of the certificates in
//!   `ca_file` (a self-signed leaf given as its own CA: equivalent to pinning) → trusted;
//! - otherwise, with `ca_file`, ordinary webpki chain validation against the file's certificates;
//! - `insecure` accepts anything, and the check says so in every output (status `warn`).
//!
//! When the leaf was trusted by exact match, the handshake signatures are verified against the
//! leaf's raw public key (extracted with x509-parser, which reads version 1 certificates), so a
//! peer that replays the pinned certificate without its private key still fails the handshake.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rollgate_core::config::{Pccs, PccsTrust, ProbeLimits};
use rollgate_core::redact::redact_url;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::errors::{ProbeError, chain};
use crate::http::{HttpClient, base_builder};
use crate::outcome::Outcome;

/// SHA-256 of a certificate's DER: what `openssl x509 -noout -fingerprint -sha256` prints.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The certificates of a PEM file (or of a single DER certificate), as DER.
pub fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, std::io::Error> {
    Ok(parse_certificates(&std::fs::read(path)?))
}

/// The certificates of PEM text (or of a single DER certificate), as DER.
pub fn parse_certificates(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(data) {
        match pem {
            Ok(p) if p.label == "CERTIFICATE" || p.label == "TRUSTED CERTIFICATE" => {
                out.push(p.contents)
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if out.is_empty() && x509_parser::parse_x509_certificate(data).is_ok() {
        out.push(data.to_vec());
    }
    out
}

/// The certificate verifier of the PCCS probe. It remembers the leaf it was shown, so a
/// failure can say which certificate was not trusted.
#[derive(Debug)]
pub struct PccsVerifier {
    exact: Vec<[u8; 32]>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    insecure: bool,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<[u8; 32]>>,
}

impl PccsVerifier {
    /// Trust exactly the certificates with these SHA-256 hashes.
    pub fn pinned(pins: Vec<[u8; 32]>) -> PccsVerifier {
        PccsVerifier::build(pins, None, false)
    }

    /// Trust the certificates of a CA file: exactly (self-signed leaves), or as roots.
    pub fn from_ca_certs(certs: &[Vec<u8>]) -> PccsVerifier {
        let exact = certs.iter().map(|c| cert_sha256(c)).collect();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) =
            roots.add_parsable_certificates(certs.iter().map(|c| CertificateDer::from(c.clone())));
        let webpki = (added > 0)
            .then(|| {
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .ok()
            })
            .flatten();
        PccsVerifier::build(exact, webpki, false)
    }

    /// Accept any certificate.
    pub fn insecure() -> PccsVerifier {
        PccsVerifier::build(Vec::new(), None, true)
    }

    fn build(
        exact: Vec<[u8; 32]>,
        webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
        insecure: bool,
    ) -> PccsVerifier {
        PccsVerifier {
            exact,
            webpki,
            insecure,
            algorithms: provider().signature_verification_algorithms,
            seen: Mutex::new(None),
        }
    }

    /// The SHA-256 of the last leaf certificate the server presented.
    pub fn seen(&self) -> Option<[u8; 32]> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a leaf is trusted without chain validation (pinned, exact, or insecure).
    fn trusted_exactly(&self, cert: &CertificateDer<'_>) -> bool {
        self.insecure || self.exact.contains(&cert_sha256(cert))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The raw SubjectPublicKeyInfo of a certificate of any version.
fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

fn public_key_bits(spki_der: &[u8]) -> Result<Vec<u8>, TlsError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(spki.subject_public_key.data.to_vec())
}

impl ServerCertVerifier for PccsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(cert_sha256(end_entity));
        if self.trusted_exactly(end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(TlsError::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        if !self.trusted_exactly(cert) {
            return rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms);
        }
        // TLS 1.2 does not fix the algorithm from the scheme: try each candidate, as rustls does.
        let key = public_key_bits(&spki_of(cert)?)?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(TlsError::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        if candidates
            .iter()
            .any(|alg| alg.verify_signature(&key, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(TlsError::InvalidCertificate(CertificateError::BadSignature))
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        if !self.trusted_exactly(cert) {
            return rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms);
        }
        let spki = spki_of(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki.as_slice()),
            dss,
            &self.algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration using `verifier`.
pub fn client_config(verifier: Arc<PccsVerifier>) -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Find the rustls error behind a request failure. It hides inside `io::Error`s (nested, one
/// per layer), whose `source()` skips the wrapped error itself, so those are opened by hand.
fn tls_error(err: &(dyn std::error::Error + 'static)) -> Option<TlsError> {
    if let Some(t) = err.downcast_ref::<TlsError>() {
        return Some(t.clone());
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(t) = tls_error(inner)
    {
        return Some(t);
    }
    err.source().and_then(tls_error)
}

fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

/// A PCCS client: its TLS configuration and verifier, built once and reused by every probe of
/// a check run or a gate loop (a clone shares the connection).
#[derive(Debug, Clone)]
pub struct PccsClient {
    http: HttpClient,
    verifier: Arc<PccsVerifier>,
    trust: String,
}

impl PccsClient {
    /// Build the client for `pccs`; the error is the failed check's detail (an unreadable
    /// `ca_file`, a TLS configuration that cannot be built).
    pub fn new(pccs: &Pccs, limits: &ProbeLimits) -> Result<PccsClient, String> {
        let endpoint = redact_url(&pccs_url(pccs));
        let (verifier, trust) = match &pccs.trust {
            PccsTrust::Pin(pin) => (PccsVerifier::pinned(vec![*pin]), "pin_sha256".to_string()),
            PccsTrust::Insecure => (PccsVerifier::insecure(), "insecure".to_string()),
            PccsTrust::CaFile(path) => match read_certificates(path) {
                Ok(certs) if !certs.is_empty() => (
                    PccsVerifier::from_ca_certs(&certs),
                    format!("ca_file {}", path.display()),
                ),
                Ok(_) => {
                    return Err(format!(
                        "{endpoint}: ca_file {} holds no certificate",
                        path.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "{endpoint}: cannot read ca_file {}: {e}",
                        path.display()
                    ));
                }
            },
        };
        let verifier = Arc::new(verifier);
        let config = client_config(verifier.clone())
            .map_err(|e| format!("{endpoint}: cannot configure TLS: {e}"))?;
        let client = base_builder(limits)
            .tls_backend_preconfigured(config)
            .build()
            .map_err(|e| format!("{endpoint}: cannot build the HTTPS client: {}", chain(&e)))?;
        Ok(PccsClient {
            http: HttpClient::with_client(client, limits),
            verifier,
            trust,
        })
    }
}

fn pccs_url(pccs: &Pccs) -> String {
    format!("{}{}", pccs.url.trim_end_matches('/'), pccs.path)
}

/// Probe the PCCS with a client built for this one probe.
pub async fn probe_pccs(pccs: &Pccs, limits: &ProbeLimits) -> Outcome {
    match PccsClient::new(pccs, limits) {
        Ok(client) => probe_pccs_with(&client, pccs).await,
        Err(detail) => Outcome::fail(detail, json!(null)),
    }
}

/// Probe the PCCS through `client` (built by [`PccsClient::new`] for this `pccs`).
pub async fn probe_pccs_with(client: &PccsClient, pccs: &Pccs) -> Outcome {
    let url = pccs_url(pccs);
    let endpoint = redact_url(&url);
    let (verifier, trust) = (&client.verifier, &client.trust);
    let client = &client.http;
    let result = client.get(&url).await;
    let seen = verifier.seen();
    let seen_hex = seen.map(hex::encode);
    let observed =
        |status: Option<u16>| json!({"status": status, "cert_sha256": seen_hex, "trust": trust});
    let insecure = pccs.trust == PccsTrust::Insecure;
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            return Outcome::fail(untrusted_detail(&endpoint, pccs, seen, &e), observed(None));
        }
    };
    let status = fetched.status;
    let cert = seen
        .map(|h| format!(", certificate sha256 {}…", short(&h)))
        .unwrap_or_default();
    if insecure {
        return Outcome::warn(
            format!(
                "{endpoint}: INSECURE: certificate NOT verified (dependencies.pccs.insecure = true){cert}; HTTP {status}"
            ),
            observed(Some(status)),
        );
    }
    match status {
        200..=299 => Outcome::pass(
            format!("{endpoint}: HTTP {status}, trusted by {trust}{cert}"),
            observed(Some(status)),
        ),
        400..=499 => Outcome::warn(
            format!(
                "{endpoint}: reachable and trusted, but answered HTTP {status} (is dependencies.pccs.path right?)"
            ),
            observed(Some(status)),
        ),
        _ => Outcome::fail(
            format!("{endpoint}: answered HTTP {status}"),
            observed(Some(status)),
        ),
    }
}

/// The detail of a failed PCCS request: an untrusted certificate says so plainly.
fn untrusted_detail(
    endpoint: &str,
    pccs: &Pccs,
    seen: Option<[u8; 32]>,
    err: &ProbeError,
) -> String {
    let Some(tls) = tls_error(err) else {
        return err.detail();
    };
    let served = seen
        .map(|h| format!("sha256 {}", hex::encode(h)))
        .unwrap_or_else(|| "unknown".into());
    match (&tls, &pccs.trust) {
        (TlsError::InvalidCertificate(_), PccsTrust::Pin(pin)) => format!(
            "{endpoint}: untrusted certificate: the server presented {served}, not the pinned sha256 {}",
            hex::encode(pin)
        ),
        (TlsError::InvalidCertificate(why), PccsTrust::CaFile(path)) => format!(
            "{endpoint}: untrusted certificate: the server presented {served}, which is not in {} and does not chain to it ({why:?})",
            path.display()
        ),
        _ => format!("{endpoint}: TLS handshake failed: {tls}"),
    }
}

//! The PCCS probe against the simulator's real HTTPS server, with both certificate kinds a
//! PCCS is found with (X.509 v3 with SAN, and the v1 certificate the usual recipe makes).

use std::path::PathBuf;
use std::time::Duration;

use rollgate_core::config::{Pccs, PccsTrust, ProbeLimits};
use rollgate_core::vocab::CheckStatus;
use rollgate_probe::pccs::probe_pccs;
use rollgate_sim::CertKind;
use rollgate_sim::services::pccs::{PccsOptions, RunningPccs};

fn limits() -> ProbeLimits {
    ProbeLimits {
        timeout: Duration::from_secs(3),
        max_body: 1024 * 1024,
    }
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

fn pccs(url: String, trust: PccsTrust) -> Pccs {
    Pccs {
        url,
        path: "/sgx/certification/v4/rootcacrl".into(),
        trust,
    }
}

fn write_pem(dir: &tempfile::TempDir, name: &str, pem: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

#[tokio::test]
async fn pinned_v1_and_v3_certificates_are_trusted() {
    for kind in [CertKind::V1NoSan, CertKind::V3San] {
        let server = start(kind).await;
        let o = probe_pccs(
            &pccs(server.url(), PccsTrust::Pin(server.cert().sha256())),
            &limits(),
        )
        .await;
        assert_eq!(o.status, CheckStatus::Pass, "{kind:?}: {}", o.detail);
        assert!(o.detail.contains("trusted by pin_sha256"), "{}", o.detail);
        assert_eq!(o.observed["cert_sha256"], server.cert().sha256_hex());
    }
}

#[tokio::test]
async fn ca_file_holding_the_self_signed_leaf_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [CertKind::V1NoSan, CertKind::V3San] {
        let server = start(kind).await;
        let ca = write_pem(
            &dir,
            &format!("{}.crt", kind.as_str()),
            &server.cert().pem(),
        );
        let o = probe_pccs(&pccs(server.url(), PccsTrust::CaFile(ca)), &limits()).await;
        assert_eq!(o.status, CheckStatus::Pass, "{kind:?}: {}", o.detail);
    }
}

#[tokio::test]
async fn wrong_pin_and_foreign_ca_are_untrusted_failures() {
    let server = start(CertKind::V1NoSan).await;
    let o = probe_pccs(&pccs(server.url(), PccsTrust::Pin([7u8; 32])), &limits()).await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(o.detail.contains("untrusted certificate"), "{}", o.detail);
    assert!(
        o.detail.contains(&server.cert().sha256_hex()),
        "names the served certificate: {}",
        o.detail
    );

    let other = start(CertKind::V3San).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(&dir, "other.crt", &other.cert().pem());
    for url in [server.url(), start(CertKind::V3San).await.url()] {
        let o = probe_pccs(&pccs(url, PccsTrust::CaFile(ca.clone())), &limits()).await;
        assert_eq!(o.status, CheckStatus::Fail, "{}", o.detail);
        assert!(
            o.detail.contains("untrusted certificate") && o.detail.contains("other.crt"),
            "{}",
            o.detail
        );
    }
}

#[tokio::test]
async fn insecure_passes_loudly() {
    let server = start(CertKind::V1NoSan).await;
    let o = probe_pccs(&pccs(server.url(), PccsTrust::Insecure), &limits()).await;
    assert_eq!(o.status, CheckStatus::Warn, "{}", o.detail);
    assert!(o.detail.contains("INSECURE"), "{}", o.detail);
}

#[tokio::test]
async fn down_or_unreadable_ca_file_fails() {
    let url = crate::support::closed_port()
        .await
        .replace("http://", "https://");
    let o = probe_pccs(&pccs(url, PccsTrust::Insecure), &limits()).await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(o.detail.contains("cannot connect"), "{}", o.detail);
    let server = start(CertKind::V3San).await;
    let o = probe_pccs(
        &pccs(
            server.url(),
            PccsTrust::CaFile("/nonexistent/ca.crt".into()),
        ),
        &limits(),
    )
    .await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(
        o.detail.contains("cannot read ca_file /nonexistent/ca.crt"),
        "{}",
        o.detail
    );
}

/// An HTTPS server on loopback that presents `cert_der`, signs its handshakes with
/// `key_pkcs8_der` (which need not belong to the certificate: a replay), speaks only
/// `versions`, and answers `200 {}` to every request. Returns `https://ADDR`.
async fn tls_server(
    cert_der: Vec<u8>,
    key_pkcs8_der: Vec<u8>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug)]
    struct OneCert(Arc<CertifiedKey>);
    impl ResolvesServerCert for OneCert {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key_pkcs8_der,
        )))
        .unwrap();
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der)], key);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{addr}")
}

static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A v1 certificate and its PKCS#8 key made by the usual PCCS recipe
/// (`openssl x509 -req -signkey`, RSA), or `None` when `openssl` is missing outside CI.
fn openssl_v1_rsa(dir: &std::path::Path) -> Option<(Vec<u8>, Vec<u8>)> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
    };
    match run(&["version"]) {
        Ok(o) if o.status.success() => {}
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("openssl is not on PATH; required under CI=true")
        }
        _ => {
            eprintln!("skipping the openssl-made certificate: no openssl on PATH");
            return None;
        }
    }
    for args in [
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-subj",
            "/CN=127.0.0.1",
            "-out",
            "req.csr",
        ][..],
        &[
            "x509", "-req", "-in", "req.csr", "-signkey", "key.pem", "-days", "30", "-out",
            "cert.pem",
        ],
    ] {
        let out = run(args).unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    let pem = |name: &str| {
        let data = std::fs::read(dir.join(name)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&data).unwrap();
        pem.contents
    };
    let cert = pem("cert.pem");
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    assert_eq!(parsed.version(), x509_parser::x509::X509Version::V1);
    Some((cert, pem("key.pem")))
}

/// A PCCS that speaks only TLS 1.2 and presents a pinned X.509 v1 certificate (the simulator's
/// ECDSA one, and an RSA one made by the openssl recipe): trusted by the pin, the handshake
/// signature checked against the certificate's raw key.
#[tokio::test]
async fn tls12_only_pccs_with_a_pinned_v1_certificate_passes() {
    let dir = tempfile::tempdir().unwrap();
    let sim = rollgate_sim::PccsCert::generate(CertKind::V1NoSan).unwrap();
    let mut certs = vec![(sim.der().to_vec(), sim.key_der().to_vec())];
    certs.extend(openssl_v1_rsa(dir.path()));
    for (cert, key) in certs {
        let pin = rollgate_probe::pccs::cert_sha256(&cert);
        for versions in [TLS12, TLS13] {
            let url = tls_server(cert.clone(), key.clone(), versions).await;
            let o = probe_pccs(&pccs(url, PccsTrust::Pin(pin)), &limits()).await;
            assert_eq!(o.status, CheckStatus::Pass, "{versions:?}: {}", o.detail);
            assert!(o.detail.contains("trusted by pin_sha256"), "{}", o.detail);
        }
    }
}

/// A server that replays the pinned certificate but does not hold its private key (it signs
/// with another key) fails the handshake, over TLS 1.2 and TLS 1.3.
#[tokio::test]
async fn a_replayed_pinned_certificate_without_its_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = rollgate_sim::PccsCert::generate(CertKind::V1NoSan).unwrap();
    let impostor = rollgate_sim::PccsCert::generate(CertKind::V1NoSan).unwrap();
    let mut cases = vec![(pinned.der().to_vec(), impostor.key_der().to_vec())];
    if let Some((cert, _)) = openssl_v1_rsa(dir.path()) {
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = openssl_v1_rsa(other.path()).unwrap();
        cases.push((cert, other_key));
    }
    for (cert, wrong_key) in cases {
        let pin = rollgate_probe::pccs::cert_sha256(&cert);
        for versions in [TLS12, TLS13] {
            let url = tls_server(cert.clone(), wrong_key.clone(), versions).await;
            let o = probe_pccs(&pccs(url, PccsTrust::Pin(pin)), &limits()).await;
            assert_eq!(o.status, CheckStatus::Fail, "{versions:?}: {}", o.detail);
            assert!(
                o.detail.contains("TLS handshake failed") || o.detail.contains("untrusted"),
                "{versions:?}: {}",
                o.detail
            );
        }
    }
}

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

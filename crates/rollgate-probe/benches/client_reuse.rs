//! Benchmark: what a gate poll costs when it builds its HTTP clients anew (as the gate loop did
//! before) against reusing one client per endpoint, in one run, against the simulator's
//! deployment-service (HTTP, kept alive) and PCCS (HTTPS, pinned v1 certificate) on loopback.
//!
//! `cargo bench -p rollgate-probe --bench client_reuse`. Modes, each `POLLS` polls, medians
//! of `ROUNDS` rounds:
//! - `old build + GET`: a reqwest client built as the probes built it before (the platform
//!   verifier, which reads and parses the system's CA bundle on every build), then one GET;
//! - `new build + GET`: `HttpClient::new` (roots read once per process) and one GET;
//! - `reused GET`: one `HttpClient`, one GET per poll over its kept-alive connection;
//! - `PCCS build + probe` / `PCCS reused`: the PCCS probe (TLS, pinned) with a client per
//!   probe against one `PccsClient` reused, against the simulator's PCCS.
//!
//! Results are recorded in `docs/checks.md`.

use std::time::{Duration, Instant};

use rollgate_core::config::{Pccs, PccsTrust, ProbeLimits};
use rollgate_probe::HttpClient;
use rollgate_probe::pccs::{PccsClient, probe_pccs_with};

const POLLS: usize = 50;
const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_poll_us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / POLLS as f64
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let limits = ProbeLimits {
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
        };
        let app_config = tempfile::tempdir().unwrap();
        let deployment = rollgate_sim::services::deployment::RunningDeployment::start(
            rollgate_sim::services::deployment::DeploymentOptions {
                listen: "127.0.0.1:0".into(),
                app_config: app_config.path().to_path_buf(),
                chain_id: 1337,
            },
        )
        .await
        .unwrap();
        let url = format!("http://{}/health", deployment.local_addr());
        let pccs_server =
            rollgate_sim::services::pccs::RunningPccs::start(rollgate_sim::services::pccs::PccsOptions {
                listen: "127.0.0.1:0".into(),
                cert_kind: rollgate_sim::CertKind::V1NoSan,
                cert: None,
            })
            .await
            .unwrap();
        let pccs = Pccs {
            url: pccs_server.url(),
            path: "/sgx/certification/v4/rootcacrl".into(),
            trust: PccsTrust::Pin(pccs_server.cert().sha256()),
        };
        let reused = HttpClient::new(&limits).unwrap();
        let reused_pccs = PccsClient::new(&pccs, &limits).unwrap();
        let built_before = rollgate_probe::http::clients_built();

        let mut modes: Vec<(&str, Vec<Duration>)> = vec![
            ("old build + GET", vec![]),
            ("new build + GET", vec![]),
            ("reused GET", vec![]),
            ("PCCS build + probe", vec![]),
            ("PCCS reused", vec![]),
        ];
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..POLLS {
                let c = reqwest::Client::builder()
                    .connect_timeout(limits.timeout)
                    .no_proxy()
                    .build()
                    .unwrap();
                let r = c.get(&url).send().await.unwrap();
                assert!(r.status().is_success());
                let _ = r.bytes().await.unwrap();
            }
            modes[0].1.push(t.elapsed());

            let t = Instant::now();
            for _ in 0..POLLS {
                let c = HttpClient::new(&limits).unwrap();
                assert_eq!(c.get(&url).await.unwrap().status, 200);
            }
            modes[1].1.push(t.elapsed());

            let t = Instant::now();
            for _ in 0..POLLS {
                assert_eq!(reused.get(&url).await.unwrap().status, 200);
            }
            modes[2].1.push(t.elapsed());

            let t = Instant::now();
            for _ in 0..POLLS {
                let c = PccsClient::new(&pccs, &limits).unwrap();
                let o = probe_pccs_with(&c, &pccs).await;
                assert_eq!(o.status, rollgate_core::vocab::CheckStatus::Pass, "{}", o.detail);
            }
            modes[3].1.push(t.elapsed());

            let t = Instant::now();
            for _ in 0..POLLS {
                let o = probe_pccs_with(&reused_pccs, &pccs).await;
                assert_eq!(o.status, rollgate_core::vocab::CheckStatus::Pass, "{}", o.detail);
            }
            modes[4].1.push(t.elapsed());
        }
        println!("{POLLS} polls per round, {ROUNDS} rounds; median per poll:");
        let medians: Vec<f64> = modes
            .into_iter()
            .map(|(name, times)| {
                let us = per_poll_us(median(times));
                println!("  {name:<20} {us:>9.1} µs");
                us
            })
            .collect();
        println!(
            "ratio old build / reused: {:.1}x; new build / reused: {:.1}x; PCCS build / reused: {:.1}x",
            medians[0] / medians[2],
            medians[1] / medians[2],
            medians[3] / medians[4]
        );
        println!(
            "clients built during the rounds: {} ({} per mode that builds per poll)",
            rollgate_probe::http::clients_built() - built_before,
            ROUNDS * POLLS
        );
    });
}

//! Benchmark: the default-profile checks run concurrently (as `rollgate check` runs them)
//! against the same checks one after another, in one run, against the simulated stack with the
//! real Postgres and Redis.
//!
//! `cargo bench -p rollgate-runner --bench checks` (needs `eval "$(scripts/services)"`).
//! Prints, per round, the wall time of each mode and the slowest single check, then the medians
//! and the ratio sequential / concurrent, and the overhead of the concurrent run over its
//! slowest check. Results are recorded in `docs/checks.md`.

#[path = "../tests/preflight/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::time::{Duration, Instant};

use rollgate_runner::checks::{CheckOptions, Checker, plan};

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Some(node) = fixture::Node::start(true).await else {
            eprintln!("checks bench: services not running; skipped");
            return;
        };
        let config = node.config(&fixture::Knobs::default());
        let checks = plan(&config, &[]);
        let checker = Checker::new(&config, CheckOptions::for_check(&config)).unwrap();
        // Warm-up: first connections, DNS-free loopback, TLS session setup.
        let _ = checker.run_all(&checks).await;

        let (mut conc, mut seq, mut slowest, mut overhead) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last_sequential = Vec::new();
        println!("{} checks, {ROUNDS} rounds (alternating order)", checks.len());
        println!("{:>5} {:>14} {:>14} {:>16} {:>10}", "round", "concurrent ms", "sequential ms", "slowest check ms", "ratio");
        for round in 0..ROUNDS {
            let run_conc = async {
                let t = Instant::now();
                let r = checker.run_all(&checks).await;
                (t.elapsed(), r)
            };
            let run_seq = async {
                let t = Instant::now();
                let r = checker.run_sequentially(&checks).await;
                (t.elapsed(), r)
            };
            let ((c, rc), (s, rs)) = if round % 2 == 0 {
                let a = run_conc.await;
                (a, run_seq.await)
            } else {
                let b = run_seq.await;
                (run_conc.await, b)
            };
            for r in rc.iter().chain(&rs) {
                assert_ne!(r.status.as_str(), "fail", "{}: {}", r.name, r.detail);
            }
            // The slowest single check, as measured inside the concurrent run.
            let slow = Duration::from_millis(rc.iter().map(|r| r.latency_ms).max().unwrap_or(0));
            println!("{round:>5} {:>14.1} {:>14.1} {:>16.1} {:>10.2}", ms(c), ms(s), ms(slow), s.as_secs_f64() / c.as_secs_f64());
            conc.push(c);
            seq.push(s);
            last_sequential = rs;
            slowest.push(slow);
            overhead.push(c.saturating_sub(slow));
        }
        let (c, s) = (median(conc), median(seq));
        println!(
            "median: concurrent {:.1} ms, sequential {:.1} ms, ratio {:.2}x; slowest check {:.1} ms, concurrent overhead over it {:.1} ms",
            ms(c),
            ms(s),
            s.as_secs_f64() / c.as_secs_f64(),
            ms(median(slowest)),
            ms(median(overhead))
        );
        last_sequential.sort_by_key(|r| std::cmp::Reverse(r.latency_ms));
        let per: Vec<String> = last_sequential.iter().map(|r| format!("{} {}ms", r.name, r.latency_ms)).collect();
        println!("per check (last sequential round): {}", per.join(", "));
        node.shutdown().await;
    });
}

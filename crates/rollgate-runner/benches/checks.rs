//! Benchmark: the default-profile checks run concurrently (as `rollgate check` runs them)
//! against the same checks one after another, in one run, against the simulated stack with the
//! real Postgres and Redis and a chain that makes a block every 2 s.
//!
//! `cargo bench -p rollgate-runner --bench checks` (needs `eval "$(scripts/services)"`).
//! Prints, per round, the wall time of each mode and the slowest single check, then the medians
//! and the ratio sequential / concurrent, and the overhead of the concurrent run over its
//! slowest check. Then, per check group, its wall time against its bound (the slowest check of
//! the group run alone, plus the first progression movement, plus 50 ms); then the
//! prerequisites against `bench/checks`, the same checks by hand with curl, psql and a Redis
//! PING in sequence (and against the `rollgate` binary when `ROLLGATE_BIN` names one). Results
//! are recorded in `docs/checks.md`.

#[path = "../tests/preflight/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::process::Command;
use std::time::{Duration, Instant};

use rollgate_core::config::Config;
use rollgate_core::vocab::{CheckGroup, CheckResult};
use rollgate_runner::checks::{CheckKind, CheckOptions, Checker, PlannedCheck, plan};

const ROUNDS: usize = 7;
/// The block interval the issue measured against.
const BLOCK_INTERVAL: Duration = Duration::from_secs(2);
/// The slack a concurrent group may take over its bound.
const SLACK: Duration = Duration::from_millis(50);

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
        let Some(node) =
            fixture::Node::start_with(true, |o| o.block_interval = BLOCK_INTERVAL).await
        else {
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
        groups(&checker, &config).await;
        against_script(&checker, &config, &node.path("rollgate.toml")).await;
        node.shutdown().await;
    });
}

fn is_progression(c: &PlannedCheck) -> bool {
    matches!(c.kind, CheckKind::Progression(_))
}

fn latency(results: &[CheckResult], name: &str) -> Duration {
    let ms = results
        .iter()
        .find(|r| r.name == name)
        .map_or(0, |r| r.latency_ms);
    Duration::from_millis(ms)
}

/// Each group concurrently, against its bound: the slowest of its checks run alone (the
/// slowest single round trip) plus the first progression movement plus [`SLACK`].
async fn groups(checker: &Checker<'_>, config: &Config) {
    println!(
        "\nper group, {ROUNDS} rounds: wall ms vs bound ms (slowest check alone + first progression movement + {} ms)",
        SLACK.as_millis()
    );
    for group in [
        CheckGroup::Baseline,
        CheckGroup::Prerequisites,
        CheckGroup::Readiness,
    ] {
        let checks = plan(config, &[group]);
        let (mut walls, mut bounds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let together = checker.run_all(&checks).await;
            let wall = t.elapsed();
            let alone = checker.run_sequentially(&checks).await;
            let slowest_alone = checks
                .iter()
                .filter(|c| !is_progression(c))
                .map(|c| latency(&alone, &c.name))
                .max()
                .unwrap_or_default();
            let movement = checks
                .iter()
                .filter(|c| is_progression(c))
                .map(|c| latency(&together, &c.name))
                .max()
                .unwrap_or_default();
            walls.push(wall);
            bounds.push(slowest_alone + movement + SLACK);
        }
        let (w, b) = (median(walls), median(bounds));
        println!(
            "{:>14}: {} checks, median wall {:.1} ms, bound {:.1} ms, wall/bound {:.2} ({})",
            group.as_str(),
            checks.len(),
            ms(w),
            ms(b),
            w.as_secs_f64() / b.as_secs_f64(),
            if w <= b { "within" } else { "OVER" }
        );
    }
}

/// The prerequisites against `bench/checks` (and the binary), in turn each round, same stack.
async fn against_script(checker: &Checker<'_>, config: &Config, config_path: &std::path::Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/checks");
    let deps = &config.dependencies;
    let (chain, deploy, pg, redis, pccs, aesm) = (
        deps.chain.as_ref().unwrap(),
        deps.deployment_service.as_ref().unwrap(),
        deps.postgres.as_ref().unwrap(),
        deps.redis.as_ref().unwrap(),
        deps.pccs.as_ref().unwrap(),
        deps.aesm.as_ref().unwrap(),
    );
    let server = pg.url.rsplit_once('/').unwrap().0;
    let pg_urls: Vec<String> = pg
        .databases
        .iter()
        .map(|d| format!("{server}/{d}"))
        .collect();
    let mut by_hand = Command::new("bash");
    by_hand
        .arg(script)
        .env("CHAIN_URL", &chain.probe_url)
        .env(
            "DEPLOYMENT_URL",
            format!("{}{}", deploy.probe_url, deploy.path),
        )
        .env("PG_URLS", pg_urls.join(" "))
        .env("REDIS_URL", &redis.url)
        .env("PCCS_URL", format!("{}{}", pccs.url, pccs.path))
        .env("AESM_SOCKET", &aesm.socket)
        .env("DISK_PATH", &config.headroom.disk[0].path);
    let mut binary = std::env::var_os("ROLLGATE_BIN").map(|bin| {
        let mut c = Command::new(bin);
        c.env("ROLLGATE_CONFIG", config_path)
            .args(["--json", "check", "--group", "prerequisites"]);
        c
    });
    let timed = |c: &mut Command| {
        let t = Instant::now();
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            t.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let checks = plan(config, &[CheckGroup::Prerequisites]);
    let (mut ours, mut script_t, mut bin_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = String::new();
    println!(
        "\nprerequisites ({} checks) vs bench/checks by hand, {ROUNDS} rounds",
        checks.len()
    );
    for round in 0..ROUNDS {
        let t = Instant::now();
        let r = checker.run_all(&checks).await;
        let o = t.elapsed();
        for c in &r {
            assert_ne!(c.status.as_str(), "fail", "{}: {}", c.name, c.detail);
        }
        let (s, log) = timed(&mut by_hand);
        let b = binary.as_mut().map(|c| timed(c).0);
        println!(
            "{round:>5} rollgate {:>7.1} ms  by hand {:>7.1} ms  ratio {:.2}{}",
            ms(o),
            ms(s),
            o.as_secs_f64() / s.as_secs_f64(),
            b.map(|b| format!(
                "  binary {:.1} ms ratio {:.2}",
                ms(b),
                b.as_secs_f64() / s.as_secs_f64()
            ))
            .unwrap_or_default()
        );
        ours.push(o);
        script_t.push(s);
        bin_t.extend(b);
        steps = log;
    }
    let (o, s) = (median(ours), median(script_t));
    println!(
        "median: rollgate prerequisites {:.1} ms, by hand {:.1} ms, ratio {:.2} (target <= 0.5)",
        ms(o),
        ms(s),
        o.as_secs_f64() / s.as_secs_f64()
    );
    if !bin_t.is_empty() {
        let b = median(bin_t);
        println!(
            "median: `rollgate check --group prerequisites` (process) {:.1} ms, ratio {:.2}",
            ms(b),
            b.as_secs_f64() / s.as_secs_f64()
        );
    }
    println!(
        "by hand, per step (last round, ms): {}",
        steps.trim().replace('\n', ", ")
    );
}

//! Fault lines in the logs through the command driver: a `logs` script over a log file whose
//! lines start with their epoch time, honouring `$ROLLGATE_SINCE` as a real `journalctl --since`
//! would.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollgate_core::engine::Reading;

use crate::support::{baseline_with_log_faults, config, observer};

const LOGS_SH: &str = r#"if [ -e broken ]; then echo "journal unavailable: connection refused" >&2; exit 3; fi
echo "$ROLLGATE_SINCE" >> sinces
s=$(date -d "$ROLLGATE_SINCE" +%s.%N)
[ -e app.log ] || exit 0
awk -v s="$s" '$1 >= s { sub(/^[^ ]+ /, ""); print }' app.log
"#;

fn node() -> (tempfile::TempDir, rollgate_core::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logs.sh"), LOGS_SH).unwrap();
    let runtime = "[runtime]\ndriver = \"command\"\n\n[runtime.command]\ncurrent = \"echo v1\"\napply = \"true\"\nrestart = \"true\"\nlogs = \"sh logs.sh\"\n";
    let cfg = config(dir.path(), runtime);
    (dir, cfg)
}

/// Append lines to the component's log, stamped now.
fn log(dir: &Path, lines: &[&str]) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let stamp = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("app.log"))
        .unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(&format!("{stamp} {l}\n"));
    }
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_fault_after_a_megabyte_of_logs_is_seen() {
    let (dir, cfg) = node();
    let mut o = observer(&cfg, None);
    o.mark_change().await;
    // 1.2 MiB of ordinary lines, then the fault: the newest lines are the ones kept.
    let filler = "x".repeat(100);
    let lines: Vec<&str> = std::iter::repeat_n(filler.as_str(), 12_600).collect();
    log(dir.path(), &lines);
    log(dir.path(), &["ERROR disk on fire"]);
    let obs = o.observe().await;
    assert_eq!(obs.log_faults, vec!["app: ERROR disk on fire".to_string()]);
}

#[tokio::test]
async fn each_poll_reads_only_what_is_new() {
    let (dir, cfg) = node();
    let mut o = observer(&cfg, None);
    o.mark_change().await;
    log(dir.path(), &["ERROR first"]);
    let first = o.observe().await;
    assert_eq!(first.log_faults, vec!["app: ERROR first".to_string()]);
    // Past the overlap of `rollgate_runtime::LOG_OVERLAP` (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The overlap may return a line once more; after it, never again.
    o.observe().await;
    let third = o.observe().await;
    assert!(third.log_faults.is_empty(), "{:?}", third.log_faults);
    log(dir.path(), &["ERROR second"]);
    let fourth = o.observe().await;
    assert_eq!(fourth.log_faults, vec!["app: ERROR second".to_string()]);

    // Each read asked for less: the cursor moved on instead of re-reading since the change.
    let sinces = std::fs::read_to_string(dir.path().join("sinces")).unwrap();
    let sinces: Vec<SystemTime> = sinces
        .lines()
        .map(|s| humantime::parse_rfc3339(s).unwrap())
        .collect();
    assert_eq!(sinces.len(), 4, "{sinces:?}");
    assert!(sinces[3] > sinces[0], "{sinces:?}");
}

#[tokio::test]
async fn unreadable_logs_are_an_inconclusive_reading_with_the_reason_and_nothing_is_skipped() {
    let (dir, cfg) = node();
    let mut o = observer(&cfg, None);
    // The keys a gate plan lists to gate on these readings.
    assert_eq!(o.log_gate_keys(), vec!["logs:app".to_string()]);
    o.mark_change().await;
    std::fs::write(dir.path().join("broken"), "").unwrap();
    log(dir.path(), &["ERROR during the outage"]);
    let obs = o.observe().await;
    assert!(obs.log_faults.is_empty(), "{:?}", obs.log_faults);
    match obs.dependencies.get("logs:app") {
        Some(Reading::Fail(d)) => {
            assert!(d.contains("journal unavailable"), "{d}");
            assert!(d.contains("cannot read the logs of app"), "{d}");
        }
        other => panic!("no reading for the unreadable logs: {other:?}"),
    }

    // Readable again: the lines logged meanwhile are read, and the reading passes.
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let obs = o.observe().await;
    assert_eq!(
        obs.log_faults,
        vec!["app: ERROR during the outage".to_string()]
    );
    assert!(
        matches!(obs.dependencies.get("logs:app"), Some(Reading::Pass(_))),
        "{:?}",
        obs.dependencies
    );
}

#[tokio::test]
async fn lines_the_baseline_logs_do_not_fail_new_ones_do() {
    let (dir, cfg) = node();
    let baseline = baseline_with_log_faults(&["app: WARN cache refresh took #ms"]);
    let mut o = observer(&cfg, Some(&baseline));
    o.mark_change().await;
    log(
        dir.path(),
        &[
            "2026-12-01T10:00:00.123Z WARN cache refresh took 734ms",
            "ERROR boom 12",
        ],
    );
    let obs = o.observe().await;
    assert_eq!(obs.log_faults, vec!["app: ERROR boom 12".to_string()]);
}

#[tokio::test]
async fn a_long_non_ascii_fault_line_is_cut_on_a_character() {
    let (dir, cfg) = node();
    let mut o = observer(&cfg, None);
    o.mark_change().await;
    // Byte 300 falls inside the `é`.
    let line = format!("ERROR {}é and more", "a".repeat(293));
    log(dir.path(), &[&line]);
    let obs = o.observe().await;
    assert_eq!(obs.log_faults.len(), 1, "{:?}", obs.log_faults);
    let got = &obs.log_faults[0];
    assert!(got.starts_with("app: ERROR aaa"), "{got}");
    assert!(got.len() <= "app: ".len() + 300, "{}", got.len());
}

#[tokio::test]
async fn a_freeze_records_the_fault_lines_the_baseline_logs() {
    let (dir, cfg) = node();
    log(
        dir.path(),
        &[
            "WARN cache refresh took 734ms (request 0x1f2e, trace 3f2a9c1e-77b0)",
            "INFO all good",
            "WARN cache refresh took 12ms (request 0xa0, trace 00ffee11-0042)",
        ],
    );
    let driver = rollgate_runtime::driver_for(&cfg).unwrap();
    // The minimal node is not green (no deployment metadata): the refusal carries what was
    // observed anyway, which is what a green freeze stores.
    let baseline = match rollgate_runner::baseline::freeze(&cfg, driver.as_ref()).await {
        Ok(b) => b,
        Err(refused) => *refused.observed,
    };
    assert_eq!(
        baseline.log_faults,
        vec!["app: WARN cache refresh took #ms (request #, trace #)".to_string()]
    );

    // Against it, the same warning with other numbers is not a fault; a new line is.
    let mut o = observer(&cfg, Some(&baseline));
    o.mark_change().await;
    log(
        dir.path(),
        &[
            "WARN cache refresh took 90ms (request 0xbeef1, trace 12345678-aaaa)",
            "WARN cache is corrupt",
        ],
    );
    let obs = o.observe().await;
    assert_eq!(
        obs.log_faults,
        vec!["app: WARN cache is corrupt".to_string()]
    );
}

//! The lock against another process: busy while it lives, reclaimed once it is killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rollgate_journal::{Lock, LockError, LockStatus, StaleReason};

const HELPER_ENV: &str = "ROLLGATE_TEST_LOCK_HOLDER_DIR";

/// Not a test of its own: when re-executed by `a_killed_holder_is_detected_and_reclaimed`
/// with the environment variable set, this takes the lock, says so, and waits to be killed.
#[test]
fn lock_holder_child() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let _guard = Lock::acquire(std::path::Path::new(&dir)).unwrap();
    println!("LOCKED");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn a_killed_holder_is_detected_and_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lock::lock_holder_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let locked = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("LOCKED"));
    if !locked {
        let _ = child.kill();
        panic!("the helper never took the lock");
    }

    let err = Lock::acquire(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LockError::Busy { pid: Some(p), since: Some(_), .. } if *p == pid),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
    match Lock::status(dir.path()).unwrap() {
        LockStatus::Held { holder } => assert_eq!(holder.pid, pid),
        other => panic!("{other:?}"),
    }

    child.kill().unwrap();
    child.wait().unwrap();

    assert!(matches!(
        Lock::status(dir.path()).unwrap(),
        LockStatus::Stale {
            reason: StaleReason::ProcessGone,
            ..
        }
    ));
    let guard = Lock::acquire(dir.path()).unwrap();
    let r = guard.reclaimed().expect("the dead holder is reported");
    assert_eq!(r.previous.pid, pid);
    assert_eq!(r.reason, StaleReason::ProcessGone);
    assert!(r.to_string().contains("its process is gone"), "{r}");
    assert_eq!(guard.holder().pid, std::process::id());
}

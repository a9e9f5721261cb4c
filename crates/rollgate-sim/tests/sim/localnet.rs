//! `rollgate-sim localnet` through the real binary: up on free ports, status, the command-driver
//! trio (current / set / restart with ROLLGATE_* variables), down.

use std::process::Command;
use std::time::Duration;

use crate::common::{LocalnetDown, eventually, free_port, sim, status};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn localnet_up_set_restart_down() {
    let Some(services) = rollgate_sim::testenv::require_services() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let suffix = rollgate_sim::testenv::unique_suffix();
    let op_port = free_port();
    let ports = [
        ("--operator-port", op_port),
        ("--kyc-port", free_port()),
        ("--chain-port", free_port()),
        ("--deployment-port", free_port()),
        ("--pccs-port", free_port()),
    ];
    let mut up = sim();
    up.args(["localnet", "up", "--dir"]).arg(dir.path());
    for (flag, port) in ports {
        up.args([flag, &port.to_string()]);
    }
    up.args(["--database-url", &services.database_url])
        .args(["--operator-database", &format!("node0_{suffix}")])
        .args(["--kyc-database", &format!("kyc_{suffix}")])
        .args(["--redis-url", &services.redis_url])
        .args(["--redis-prefix", &format!("node0_{suffix}")])
        .args(["--traffic-interval-ms", "50"]);
    let (code, out, err) = run(&mut up);
    // Always try to clean up, even when an assertion below fails.
    let _down = LocalnetDown(dir.path().to_owned());
    assert_eq!(code, 0, "up failed:\n{out}\n{err}");
    assert!(out.contains("operator"), "{out}");

    let url = format!("http://127.0.0.1:{op_port}");
    eventually(Duration::from_secs(5), "operator healthy", || async {
        (status(&url).await["health"] == "Healthy").then_some(())
    })
    .await;
    assert!(
        dir.path()
            .join("app_config/ethereum/addresses.json")
            .exists()
    );
    assert!(dir.path().join("pccs/cert.sha256").exists());
    assert!(dir.path().join("aesm/aesm.socket").exists());

    let (code, out, _) = run(sim()
        .args(["localnet", "status", "--json", "--dir"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st.as_array().unwrap().len(), 6);

    // The command driver's calls, with the change in environment variables only.
    let (code, out, _) = run(sim()
        .args(["localnet", "current"])
        .env("ROLLGATE_SIM_DIR", dir.path())
        .env("ROLLGATE_LAYER", "operator-image"));
    assert_eq!((code, out.trim()), (0, "v1.0.0"));
    let (code, _, err) = run(sim()
        .args(["localnet", "set"])
        .env("ROLLGATE_SIM_DIR", dir.path())
        .env("ROLLGATE_LAYER", "operator-image")
        .env("ROLLGATE_VALUE", "rollgate-sim/operator:v1.1.0"));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(sim()
        .args(["localnet", "set", "operator-image", "v9.9.9", "--dir"])
        .arg(dir.path()));
    assert_eq!(code, 2);
    let kyc_pid_before = std::fs::read_to_string(dir.path().join("pids/kyc.pid")).unwrap();
    let (code, _, err) = run(sim()
        .args(["localnet", "restart"])
        .env("ROLLGATE_SIM_DIR", dir.path())
        .env("ROLLGATE_COMPONENTS", "operator"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&url).await["version"], "v1.1.0");
    // Only the operator restarted.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pids/kyc.pid")).unwrap(),
        kyc_pid_before
    );

    let (code, _, err) = run(sim().args(["localnet", "down", "--dir"]).arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(reqwest::get(format!("{url}/v2/status")).await.is_err());
    let (code, _, _) = run(sim().args(["localnet", "status", "--dir"]).arg(dir.path()));
    assert_eq!(code, 3);

    for db in [format!("node0_{suffix}"), format!("kyc_{suffix}")] {
        let _ =
            rollgate_sim::db::drop_database(&services.database_url, &db, Duration::from_secs(5))
                .await;
    }
}

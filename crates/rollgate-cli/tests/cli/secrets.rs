//! Secrets from the configuration never leave rollgate (issue 12, items 1–3), tested against
//! the built binary: a command-driver script echoes them to stdout and stderr (under `set -x`,
//! and with `env`) and fails; the secrets must then be in none of rollgate's stdout, stderr,
//! `--json` and human output, the journal's raw bytes, the HTML report, or what `serve` answers.
//! And the script's environment holds only what the driver needs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Node, NodeOptions, code, explain, free_port};

const DB_PASSWORD: &str = "Db-Pa55word-7f3a9c";
const SERVE_TOKEN: &str = "serve-token-5b1e0d77c2a94f";
const CHAIN_KEY: &str = "chainkey0a1b2c3d4e5f6071";
const UNLISTED: &str = "unlisted-value-93e1d2";
const LISTED: &str = "listed-value-40af77";
const WEBHOOK_SECRET: &str = "XyZwebhookSecret0042";

/// The database URL of the test services with a password in it: the test Postgres trusts
/// loopback, so any password is accepted and the probes stay green.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a database URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let user = authority.rsplit_once('@').map_or("postgres", |(u, _)| {
        u.split(':').next().unwrap_or("postgres")
    });
    format!("{scheme}://{user}:{password}@{host}/{path}")
}

/// A node whose apply script, for `v1.1.0`, prints `secrets` every way a script can and fails;
/// for any other value it records its environment in `child-env-<value>.txt` and applies it.
fn node_with_a_leaky_script(secrets: &[&str], extra: &'static str) -> Option<Node> {
    let node = Node::start(NodeOptions {
        extra,
        ..NodeOptions::default()
    })?;
    let dir = node.dir.path();
    let mut leak = String::new();
    for s in secrets {
        leak.push_str(&format!(
            "  echo \"connecting with {s}\"\n  echo \"error: auth {s} rejected\" >&2\n"
        ));
    }
    let script = format!(
        "set -x\nenv > '{dir}/child-env-'\"$ROLLGATE_VALUE\".txt\nif [ \"$ROLLGATE_VALUE\" = v1.1.0 ]; then\n  env\n  env >&2\n{leak}  exit 1\nfi\nexec rollgate-sim localnet set\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("apply.sh"), script).unwrap();
    node.edit_config(
        "apply = \"rollgate-sim localnet set\"",
        &format!("apply = \"sh '{}/apply.sh'\"", dir.display()),
    );
    Some(node)
}

/// Every file under `dir`, as bytes (the journal, its WAL and shared memory).
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p.display().to_string(), b));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Fail naming where a secret was found.
fn assert_absent(secrets: &[&str], place: &str, bytes: &[u8]) {
    for s in secrets {
        assert!(
            !contains(bytes, s),
            "the secret `{s}` is in {place}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn assert_output_clean(secrets: &[&str], what: &str, out: &Output) {
    assert_absent(secrets, &format!("the stdout of {what}"), &out.stdout);
    assert_absent(secrets, &format!("the stderr of {what}"), &out.stderr);
}

/// `GET path` with `Host: listen`, the whole answer (status line, headers, body).
fn http_get(listen: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(listen).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A webhook receiver on loopback: answers 200 to every request and keeps each one's body.
fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/T0001/B0001/{WEBHOOK_SECRET}",
        listener.local_addr().unwrap()
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            // Keep the body: the request line carries the URL's path, which belongs there.
            let text = String::from_utf8_lossy(&request).to_string();
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let mut sink = sink.lock().unwrap();
            sink.extend_from_slice(body.as_bytes());
            sink.push(b'\n');
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(node: &Node, env: &[(&str, &str)]) -> (Serve, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut c = node.rollgate();
    c.args(["serve", "--listen", &listen, "--probe-interval", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let serve = Serve(c.spawn().unwrap());
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (serve, listen)
}

/// Run the leaky rollout and look for `secrets` in everything rollgate produced from it.
fn rollout_leaks_nothing(node: &Node, env: &[(&str, &str)], secrets: &[&str]) {
    let run = |args: &[&str]| {
        let mut c = node.rollgate();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, json)
    };
    let (out, record) = run(&["rollout", "operator-image=v1.1.0", "--yes", "-v"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_output_clean(secrets, "`rollgate rollout --json`", &out);
    // The failure reached the record: the script's output is there, redacted.
    let text = record.to_string();
    assert!(text.contains("rejected"), "{record:#}");
    let id = record["rollout_id"].as_str().unwrap().to_string();

    for args in [
        vec!["show", id.as_str()],
        vec!["show", id.as_str(), "--format", "human"],
        vec!["show", id.as_str(), "--html", "-"],
        vec!["history"],
        vec!["status"],
        vec!["history", "--format", "human"],
    ] {
        let (out, _) = run(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", explain(&out));
        assert_output_clean(secrets, &format!("`rollgate {}`", args.join(" ")), &out);
    }
    let (out, _) = run(&["show", id.as_str(), "--format", "human"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connecting with"),
        "the human record shows the script's output: {}",
        explain(&out)
    );

    for (file, bytes) in all_bytes(&node.dir.path().join("state")) {
        assert_absent(secrets, &format!("the journal file {file}"), &bytes);
    }

    let (_serve, listen) = start_serve(node, env);
    for path in [
        format!("/api/v1/rollouts/{id}"),
        format!("/rollouts/{id}"),
        "/api/v1/history".to_string(),
        "/".to_string(),
    ] {
        let answer = http_get(&listen, &path);
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert_absent(secrets, &format!("serve's {path}"), answer.as_bytes());
    }
}

/// A bare database password, the serve token and the webhook URL's secret path (all from
/// `${VAR}`), echoed by a failing script: in none of the outputs, nor in the webhook's bodies.
#[test]
fn a_password_and_the_serve_token_echoed_by_a_script_appear_nowhere() {
    let Some(node) = node_with_a_leaky_script(
        &[DB_PASSWORD, SERVE_TOKEN, WEBHOOK_SECRET],
        "\n[serve]\ntoken = \"${RG_SERVE_TOKEN}\"\nwebhook_url = \"${RG_WEBHOOK_URL}\"\n",
    ) else {
        return;
    };
    let (webhook, received) = webhook_receiver();
    let db = with_password(&node.database_url(), DB_PASSWORD);
    node.edit_config("${ROLLGATE_TEST_DATABASE_URL}", "${RG_DB_URL}");
    let secrets = [DB_PASSWORD, SERVE_TOKEN, WEBHOOK_SECRET];
    rollout_leaks_nothing(
        &node,
        &[
            ("RG_DB_URL", &db),
            ("RG_SERVE_TOKEN", SERVE_TOKEN),
            ("RG_WEBHOOK_URL", &webhook),
        ],
        &secrets,
    );
    let bodies = received.lock().unwrap().clone();
    assert!(
        contains(&bodies, "rolled_back") && contains(&bodies, "rejected"),
        "the webhook was told, with the script's output: {}",
        String::from_utf8_lossy(&bodies)
    );
    assert_absent(&secrets, "a webhook body", &bodies);
}

/// A chain API key in the RPC URL's path, declared secret with `secrets = ["${RG_CHAIN_KEY}"]`.
#[test]
fn a_declared_chain_api_key_echoed_by_a_script_appears_nowhere() {
    let Some(node) = node_with_a_leaky_script(&[CHAIN_KEY], "") else {
        return;
    };
    let text = std::fs::read_to_string(&node.config).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.strip_prefix("chain = { url = \"") {
            Some(rest) => {
                let (url, tail) = rest.split_once('"').unwrap();
                format!("chain = {{ url = \"{url}/v3/${{RG_CHAIN_KEY}}\"{tail}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert!(text.contains("/v3/${RG_CHAIN_KEY}"), "{text}");
    std::fs::write(
        &node.config,
        format!("secrets = [\"${{RG_CHAIN_KEY}}\"]\n{text}"),
    )
    .unwrap();
    rollout_leaks_nothing(&node, &[("RG_CHAIN_KEY", CHAIN_KEY)], &[CHAIN_KEY]);
}

/// A script gets PATH, HOME, the ROLLGATE_* variables rollgate sets and what
/// `[runtime.command] env` lists; nothing else from rollgate's environment.
#[test]
fn a_script_sees_only_the_listed_environment() {
    let Some(node) =
        node_with_a_leaky_script(&[SERVE_TOKEN], "\n[serve]\ntoken = \"${RG_SERVE_TOKEN}\"\n")
    else {
        return;
    };
    node.edit_config(
        "env = [\"ROLLGATE_SIM_DIR\"]",
        "env = [\"ROLLGATE_SIM_DIR\", \"RG_LISTED\"]",
    );
    let out = node
        .rollgate()
        .args(["rollout", "operator-image=v1.1.0", "--yes"])
        .env("RG_SERVE_TOKEN", SERVE_TOKEN)
        .env("RG_UNLISTED", UNLISTED)
        .env("RG_LISTED", LISTED)
        .output()
        .unwrap();
    assert_eq!(code(&out), 4, "{}", explain(&out));
    // The restore ran the script with the baseline's value and recorded its environment.
    let env = std::fs::read_to_string(node.dir.path().join("child-env-v1.0.0.txt")).unwrap();
    assert!(env.contains(&format!("RG_LISTED={LISTED}")), "{env}");
    assert!(env.contains("ROLLGATE_VALUE=v1.0.0"), "{env}");
    assert!(env.contains("ROLLGATE_SIM_DIR="), "{env}");
    assert!(env.contains("PATH="), "{env}");
    for absent in [
        "RG_UNLISTED",
        UNLISTED,
        "RG_SERVE_TOKEN",
        SERVE_TOKEN,
        "ROLLGATE_TEST_DATABASE_URL",
        "ROLLGATE_CONFIG",
    ] {
        assert!(
            !env.contains(absent),
            "`{absent}` reached the script: {env}"
        );
    }
}

/// Beyond loopback, `serve` needs a read token: without one it refuses to start (exit 2) and
/// names the key; the write token alone is not enough.
#[test]
fn serve_beyond_loopback_without_a_read_token_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let rollgate = || {
        let mut c = std::process::Command::new(crate::fixture::rollgate_bin());
        c.current_dir(dir.path())
            .env_remove("ROLLGATE_CONFIG")
            .env("ROLLGATE_STATE_DIR", dir.path().join("state"));
        c
    };
    let out = rollgate().arg("init").output().unwrap();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let config = dir.path().join("rollgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[serve]\ntoken = \"{SERVE_TOKEN}\"\n"),
    )
    .unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    let out = rollgate()
        .args(["serve", "--listen", &listen, "--probe-interval", "0s"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", explain(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[serve].read_token"), "{stderr}");
    assert_absent(&[SERVE_TOKEN], "serve's refusal", &out.stderr);
}

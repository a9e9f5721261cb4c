//! Who may read (issue 12, item 4): the Host-header allow-list against DNS rebinding on
//! loopback, the optional read token, and the read token required beyond loopback.

use std::io::{Read, Write};

use rollgate_serve::{ServeError, Token};

use crate::support::{Fixture, TOKEN, TestServer, token};

const READ_TOKEN: &str = "serve-read-token-fedcba9876543210";

/// `METHOD path` over a raw connection with exactly these headers (reqwest would set `Host`
/// from the URL): the status code and the whole answer.
fn request(url: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(
            "Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"reason\": \"rb\"}\n",
        );
    } else {
        head.push_str("\r\n");
    }
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    (status, answer)
}

fn port(server: &TestServer) -> String {
    server.url.rsplit(':').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_loopback() {
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;
    let port = port(&server);
    let url = server.url.clone();
    let answers = tokio::task::spawn_blocking({
        move || {
            let mut out = Vec::new();
            for host in [
                "localhost".to_string(),
                format!("localhost:{port}"),
                "127.0.0.1".to_string(),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
                format!("LOCALHOST:{port}"),
                "evil.example".to_string(),
                format!("evil.example:{port}"),
                format!("127.0.0.1.evil.example:{port}"),
                format!("localhost.:{port}"),
            ] {
                for path in ["/api/v1/status", "/", "/metrics", "/api/v1/history"] {
                    let (status, answer) = request(&url, "GET", path, &[("Host", &host)]);
                    out.push((host.clone(), path, status, answer));
                }
            }
            out
        }
    })
    .await
    .unwrap();
    for (host, path, status, answer) in answers {
        let allowed = !host.contains("evil") && !host.starts_with("localhost.");
        if allowed {
            assert_eq!(status, 200, "Host: {host} {path}: {answer}");
        } else {
            assert_eq!(status, 421, "Host: {host} {path}: {answer}");
            assert!(
                answer.contains("allowed_hosts") && answer.contains("not served here"),
                "the refusal says why and what to configure: {answer}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_hosts_are_allowed_too() {
    let f = Fixture::new();
    let mut options = f.options();
    options.allowed_hosts = vec!["node0.internal".into()];
    let server = TestServer::start(options).await;
    let url = server.url.clone();
    let port = port(&server);
    let answers = tokio::task::spawn_blocking(move || {
        [
            format!("node0.internal:{port}"),
            "node0.internal".to_string(),
            format!("localhost:{port}"),
            format!("other.internal:{port}"),
        ]
        .map(|h| request(&url, "GET", "/api/v1/status", &[("Host", &h)]).0)
    })
    .await
    .unwrap();
    assert_eq!(answers, [200, 200, 200, 421]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_token_once_one_is_configured() {
    let f = Fixture::new();
    let mut options = f.options();
    options.token = Some(token());
    options.read_token = Some(Token::new(READ_TOKEN).unwrap());
    let server = TestServer::start(options).await;
    let url = server.url.clone();
    let id = f.rolled_back.clone();
    let results = tokio::task::spawn_blocking(move || {
        let host = ("Host", "localhost");
        let read = format!("Bearer {READ_TOKEN}");
        let write = format!("Bearer {TOKEN}");
        let wrong = "Bearer serve-read-token-wrong-0000000000".to_string();
        let mut out = Vec::new();
        for path in [
            "/".to_string(),
            "/api/v1/status".to_string(),
            "/api/v1/history".to_string(),
            format!("/api/v1/rollouts/{id}"),
            format!("/rollouts/{id}"),
            "/api/v1/action".to_string(),
            "/metrics".to_string(),
        ] {
            let none = request(&url, "GET", &path, &[host]);
            let bad = request(&url, "GET", &path, &[host, ("Authorization", &wrong)]);
            let with_read = request(&url, "GET", &path, &[host, ("Authorization", &read)]);
            let with_write = request(&url, "GET", &path, &[host, ("Authorization", &write)]);
            out.push((path, none, bad.0, with_read.0, with_write.0));
        }
        let live = request(&url, "GET", "/live", &[host]).0;
        let ready = request(&url, "GET", "/ready", &[host]).0;
        let change_with_read = request(
            &url,
            "POST",
            "/api/v1/freeze",
            &[host, ("Authorization", &read)],
        )
        .0;
        (out, live, ready, change_with_read)
    })
    .await
    .unwrap();
    let (reads, live, ready, change_with_read) = results;
    for (path, (none, answer), bad, with_read, with_write) in reads {
        assert_eq!(none, 401, "{path} without a token: {answer}");
        assert!(
            answer.contains("read_token"),
            "{path}: the refusal names the key: {answer}"
        );
        assert!(!answer.contains(READ_TOKEN), "{answer}");
        assert_eq!(bad, 401, "{path} with a wrong token");
        assert!(
            with_read == 200 || with_read == 404,
            "{path} with the read token: {with_read}"
        );
        assert_eq!(with_read, with_write, "{path}: the write token reads too");
    }
    assert_eq!((live, ready), (200, 200), "the probes stay open");
    assert_eq!(change_with_read, 401, "the read token changes nothing");
    assert!(rollgate_runner::killswitch::is_frozen(&f.state_dir()).is_none());
    server.stop().await;
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_read_token() {
    let f = Fixture::new();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut options = f.options();
    options.token = Some(token());
    let err = rollgate_serve::run(listener, async {}, options)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("[serve].read_token"),
        "the error names the key: {err}"
    );
    assert!(matches!(err, ServeError::NoReadToken { .. }), "{err}");

    // With one, it starts (and stops at once).
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mut options = f.options();
    options.token = Some(token());
    options.read_token = Some(Token::new(READ_TOKEN).unwrap());
    rollgate_serve::run(listener, async {}, options)
        .await
        .unwrap();
}

//! The `Host` allow-list: a guard against DNS rebinding.
//!
//! A web page on `evil.example` whose name its owner re-points at 127.0.0.1 can make the
//! visitor's browser read `http://evil.example:9810/api/v1/status` "same-origin": the request
//! reaches the loopback server with `Host: evil.example:9810`. So on loopback only the names of
//! this machine are served: `localhost`, `127.0.0.1`, `[::1]`, the listen address, and
//! `[serve].allowed_hosts`. Beyond loopback the list applies when `allowed_hosts` is set (the
//! read token guards that case). A request without `Host` comes from no browser and passes.

use std::net::SocketAddr;

/// Which `Host` values are served.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// `(host, port)`: lowercase, IPv6 without brackets; `None` matches any port.
    allowed: Vec<(String, Option<u16>)>,
}

impl HostPolicy {
    /// The policy for a server bound to `addr` with `[serve].allowed_hosts` = `extra`; `None`
    /// (every host) beyond loopback when `extra` is empty.
    pub fn new(addr: SocketAddr, extra: &[String]) -> Option<HostPolicy> {
        if !addr.ip().is_loopback() && extra.is_empty() {
            return None;
        }
        let mut allowed: Vec<(String, Option<u16>)> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| (h.to_string(), None))
            .collect();
        if !addr.ip().is_unspecified() {
            allowed.push((addr.ip().to_string(), None));
        }
        allowed.extend(extra.iter().filter_map(|h| split(h)));
        Some(HostPolicy { allowed })
    }

    /// Is a request naming `host` (a `Host` header value) served?
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split(host) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|(n, p)| *n == name && (p.is_none() || *p == port))
    }
}

/// `name[:port]` or `[v6][:port]` → lowercase name without brackets, and the port.
fn split(host: &str) -> Option<(String, Option<u16>)> {
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (name, port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') => (n, Some(p.parse().ok()?)),
            Some(_) => (host, None),
            None => (host, None),
        }
    };
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_serves_this_machine_only() {
        let p = HostPolicy::new("127.0.0.1:9810".parse().unwrap(), &[]).unwrap();
        for ok in [
            "localhost",
            "localhost:9810",
            "LocalHost:1",
            "127.0.0.1",
            "127.0.0.1:9810",
            "[::1]",
            "[::1]:9810",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9810",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9810",
            "localhost:notaport",
            "",
            "[::1",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_with_or_without_a_port() {
        let extra = vec!["node0.internal".to_string(), "ops.example:8443".to_string()];
        let p = HostPolicy::new("[::1]:9810".parse().unwrap(), &extra).unwrap();
        assert!(p.allows("node0.internal:9810") && p.allows("NODE0.internal"));
        assert!(p.allows("ops.example:8443") && !p.allows("ops.example:9810"));
        assert!(HostPolicy::new("0.0.0.0:9810".parse().unwrap(), &[]).is_none());
        let beyond = HostPolicy::new("10.0.0.5:9810".parse().unwrap(), &extra).unwrap();
        assert!(beyond.allows("10.0.0.5:9810") && !beyond.allows("evil.example"));
    }
}

//! The key layout under `/rollgate/v1/<cluster>/` (shared docs, fleet.md): `wave` (no lease),
//! `node/<id>` (intent by the conductor, phase by the agent, no lease), `agent/<id>` (presence
//! and snapshot on the agent's lease), `lock/` (the disruption lock), `halt`, `election/`.

/// Keys of one cluster. The cluster name was validated by the configuration (no `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Keys {
        Keys {
            prefix: format!("/rollgate/v1/{cluster}/"),
        }
    }

    /// `/rollgate/v1/<cluster>/`: everything of the cluster.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn wave(&self) -> String {
        format!("{}wave", self.prefix)
    }

    pub fn node(&self, id: u64) -> String {
        format!("{}node/{id}", self.prefix)
    }

    /// Prefix of every node record.
    pub fn nodes(&self) -> String {
        format!("{}node/", self.prefix)
    }

    /// The node id of a `node/<id>` key; None for anything else.
    pub fn node_id(&self, key: &[u8]) -> Option<u64> {
        id_under(&self.nodes(), key)
    }

    pub fn agent(&self, id: u64) -> String {
        format!("{}agent/{id}", self.prefix)
    }

    /// Prefix of every agent key.
    pub fn agents(&self) -> String {
        format!("{}agent/", self.prefix)
    }

    pub fn lock(&self) -> String {
        format!("{}lock/", self.prefix)
    }

    pub fn halt(&self) -> String {
        format!("{}halt", self.prefix)
    }

    pub fn election(&self) -> String {
        format!("{}election/", self.prefix)
    }

    /// The node id of an `agent/<id>` key; None for anything else.
    pub fn agent_id(&self, key: &[u8]) -> Option<u64> {
        id_under(&self.agents(), key)
    }
}

/// The numeric id right after `prefix` in `key`.
fn id_under(prefix: &str, key: &[u8]) -> Option<u64> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(prefix)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_contract() {
        let k = Keys::new("dex-a");
        assert_eq!(k.wave(), "/rollgate/v1/dex-a/wave");
        assert_eq!(k.node(3), "/rollgate/v1/dex-a/node/3");
        assert_eq!(k.agent(3), "/rollgate/v1/dex-a/agent/3");
        assert_eq!(k.lock(), "/rollgate/v1/dex-a/lock/");
        assert_eq!(k.halt(), "/rollgate/v1/dex-a/halt");
        assert_eq!(k.agent_id(b"/rollgate/v1/dex-a/agent/12"), Some(12));
        assert_eq!(k.agent_id(b"/rollgate/v1/dex-b/agent/12"), None);
        assert_eq!(k.agent_id(b"/rollgate/v1/dex-a/agent/x"), None);
        assert_eq!(k.node_id(b"/rollgate/v1/dex-a/node/3"), Some(3));
        assert_eq!(k.node_id(b"/rollgate/v1/dex-a/agent/3"), None);
    }
}

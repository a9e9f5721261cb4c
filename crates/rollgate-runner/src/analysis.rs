//! Measuring the analysis gates: each due `[[analysis]]` query asked of the operator's
//! Prometheus, concurrently, as [`Sampled`] for the engine, the bake and `rollgate plan`.
//!
//! A query Prometheus could not answer (unreachable, timed out, `errorType`, a client that
//! could not be built) is `Sampled::Unavailable` with the reason: the gate's `no_data` policy
//! judges it and the record says why ([`rollgate_core::analysis`]).

use std::collections::BTreeMap;

use rollgate_core::analysis::Sampled;
use rollgate_core::config::{Analysis, Config};

use crate::checks::ProbeClients;

/// Measure the named analysis gates now (unknown names are ignored).
pub async fn measure(
    config: &Config,
    clients: &ProbeClients,
    names: &[String],
) -> BTreeMap<String, Sampled> {
    let gates: Vec<&Analysis> = config
        .analysis
        .iter()
        .filter(|a| names.contains(&a.name))
        .collect();
    if gates.is_empty() {
        return BTreeMap::new();
    }
    let answers =
        futures_util::future::join_all(gates.iter().map(|gate| measure_one(clients, &gate.query)))
            .await;
    gates.iter().map(|g| g.name.clone()).zip(answers).collect()
}

/// Every analysis gate measured once (for `rollgate plan`).
pub async fn measure_all(config: &Config, clients: &ProbeClients) -> BTreeMap<String, Sampled> {
    let names: Vec<String> = config.analysis.iter().map(|a| a.name.clone()).collect();
    measure(config, clients, &names).await
}

async fn measure_one(clients: &ProbeClients, query: &str) -> Sampled {
    match &clients.prometheus {
        None => Sampled::Unavailable("no [prometheus] configured".into()),
        Some(Err(why)) => Sampled::Unavailable(why.clone()),
        Some(Ok(client)) => match client.query(query).await {
            Ok(samples) => Sampled::Values(samples),
            Err(e) => Sampled::Unavailable(e.detail()),
        },
    }
}

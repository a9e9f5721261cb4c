//! The probes of rollgate: one module per probe kind.
//!
//! Every probe is bounded in time (`probe.timeout`) and, over HTTP, in size (`probe.max_body`),
//! names the endpoint it talked to in its detail (URLs redacted), and turns anything a remote
//! sends — non-JSON, truncated bodies, wrong types, silence — into a failed [`Outcome`], never a
//! panic or a hang. Probes do not know check names or groups; `rollgate-runner` composes them.
#![forbid(unsafe_code)]

pub mod aesm;
pub mod alertmanager;
pub mod alerts;
pub mod chain;
pub mod disk;
pub mod encryption_key;
pub mod envfile;
pub mod environment;
pub mod errors;
pub mod faults;
pub mod http;
pub mod mark_price;
pub mod metadata;
pub mod outcome;
pub mod pccs;
pub mod postgres;
pub mod progression;
pub mod prometheus;
pub mod redis;
pub mod sgx;

pub use errors::ProbeError;
pub use http::HttpClient;
pub use outcome::Outcome;

//! rollgate-sim: a simulated enclave-operator node stack that fakes only the internal logic of
//! the proprietary services and speaks every protocol for real — HTTP, HTTPS (both certificate
//! kinds a PCCS is found with), JSON-RPC, a unix socket, the real Postgres and the real Redis.
//!
//! - [`SimStack::start`] runs the whole node in-process for tests ([`RunningStack`]).
//! - [`services`] has each service alone (operator, kyc, chain, deployment, pccs, aesm).
//! - [`FaultProxy`] cuts or slows any TCP dependency.
//! - [`version`] is the catalogue of versions and their behaviours (`docs/sim.md`).
//! - [`testenv`] finds the real services for tests and creates per-test databases.
//! - [`cluster`] is the shared Raft state of N simulated operators (cluster mode).
//! - [`localnet`] runs the stack as background processes (`rollgate-sim localnet …`).
//! - [`monitoring`] starts a real Prometheus scraping it (tests and the demo).
#![forbid(unsafe_code)]

pub mod cert;
pub mod cluster;
pub mod db;
pub mod errors;
pub mod localnet;
pub mod monitoring;
pub mod proxy;
pub mod server;
pub mod services;
pub mod stack;
pub mod testenv;
pub mod version;

pub use cert::{CertKind, PccsCert};
pub use errors::SimError;
pub use proxy::{Endpoint, FaultProxy};
pub use stack::{RunningStack, SimStack, StackOptions};
pub use version::{KycVersion, OperatorVersion};

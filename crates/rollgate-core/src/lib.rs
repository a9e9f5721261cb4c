//! The vocabulary of rollgate and its pure decision engine.
//!
//! This crate does no I/O and has no async runtime: configuration is parsed from text handed to
//! it, the environment is read through [`config::EnvSource`], and the decision engine is a
//! function of state, observations and the time. Everything that touches the network, the disk
//! or a child process lives in the crates that depend on this one.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod baseline;
pub mod confdiff;
pub mod config;
pub mod engine;
pub mod errors;
pub mod exit;
pub mod facts;
pub mod fleet;
pub mod monitoring;
pub mod redact;
pub mod secrets;
pub mod stats;
pub mod text;
pub mod units;
pub mod vocab;

pub use errors::ConfigError;
pub use exit::ExitCode;

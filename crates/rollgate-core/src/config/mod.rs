//! Configuration: parse the TOML text into raw structs, then resolve them into a validated
//! [`Config`]. Parsing does no I/O; the caller reads the file and supplies the environment.

mod env;
mod model;
pub mod raw;
mod resolve;

pub use env::{EnvSource, MapEnv, ProcessEnv, expand};
pub use model::*;
pub use resolve::{load_str, protected_path, resolve};

/// The default profile for an enclave-capable operator node, compiled into the binary and
/// written by `rollgate init`. Its `@MODE@`, `@CHAIN_URL@` and `@DEPLOYMENT_URL@` placeholders
/// are filled by [`default_profile`].
pub const OPERATOR_LOCALNET_PROFILE: &str = include_str!("../../profiles/operator-localnet.toml");

/// The profiles `rollgate init --profile` knows.
pub const PROFILES: &[&str] = &["operator-localnet"];

/// The text of a built-in profile for a runtime mode, or `None` for an unknown profile.
pub fn default_profile(profile: &str, mode: crate::vocab::Mode) -> Option<String> {
    if profile != "operator-localnet" {
        return None;
    }
    let chain = mode
        .canonical_chain_url()
        .unwrap_or("http://127.0.0.1:8545");
    let deploy = mode
        .canonical_deployment_url()
        .unwrap_or("http://127.0.0.1:4040");
    Some(
        OPERATOR_LOCALNET_PROFILE
            .replace("@MODE@", mode.as_str())
            .replace("@CHAIN_URL@", chain)
            .replace("@DEPLOYMENT_URL@", deploy),
    )
}

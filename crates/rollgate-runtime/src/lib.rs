//! Runtime drivers: how rollgate reads, changes, restores and restarts one layer of a node.
//!
//! [`RuntimeDriver`] is the one interface the runner uses. Two implementations ship:
//! [`ComposeDriver`] for Docker Compose stacks (v2 `docker compose` and v1 `docker-compose`) and
//! [`CommandDriver`] for any other stack, driven by the operator's own shell commands. Every
//! child process runs through [`process`], which captures its output, enforces a timeout by
//! killing the child's whole process group, and redacts what it keeps.
#![forbid(unsafe_code)]

pub mod command;
pub mod compose;
pub mod driver;
pub mod envset;
pub mod errors;
pub mod files;
pub mod process;
pub mod store;

use std::sync::Arc;

use rollgate_core::config::{Config, Runtime};

pub use command::CommandDriver;
pub use compose::ComposeDriver;
pub use driver::{
    ComponentState, DriverOutput, LOG_OVERLAP, LogCursor, LogRead, RunStatus, RuntimeDriver,
};
pub use errors::DriverError;
pub use files::FilesDriver;

/// The driver the configuration selects (`[runtime] driver`), wrapped in a [`FilesDriver`]
/// when a `config` layer names its `files` (rollgate then writes those files itself).
pub fn driver_for(config: &Config) -> Result<Arc<dyn RuntimeDriver>, DriverError> {
    let inner: Arc<dyn RuntimeDriver> = match &config.runtime {
        Runtime::Compose(c) => Arc::new(ComposeDriver::new(c.clone(), config)?),
        Runtime::Command(c) => Arc::new(CommandDriver::new(c.clone(), config)),
    };
    if config.layers.values().any(files::manages) {
        return Ok(Arc::new(FilesDriver::new(inner, &config.node.state_dir)));
    }
    Ok(inner)
}

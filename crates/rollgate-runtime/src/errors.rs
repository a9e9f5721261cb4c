//! Errors of the runtime drivers.
//!
//! A driver error names the command that failed, the unit it acted on (a layer, a component or
//! a Compose project) and carries what the child wrote to stderr, already redacted: these
//! messages end up in the terminal and in the journal.

use std::path::PathBuf;
use std::time::Duration;

use crate::driver::DriverOutput;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The child could not be started at all (binary missing, permissions).
    #[error("failed to start `{command}` for {unit}")]
    Spawn {
        command: String,
        unit: String,
        #[source]
        source: std::io::Error,
    },

    /// The child ran and exited unsuccessfully.
    #[error("`{command}` for {unit} exited with {}: {}", exit_label(.output.exit_code), stderr_tail(&.output.stderr))]
    Failed {
        command: String,
        unit: String,
        output: Box<DriverOutput>,
    },

    /// The child exceeded its timeout and was killed with its process group.
    #[error("`{command}` for {unit} timed out after {} and was killed: {}", humantime::format_duration(*.after), stderr_tail(&.output.stderr))]
    Timeout {
        command: String,
        unit: String,
        after: Duration,
        output: Box<DriverOutput>,
    },

    /// Neither `docker compose` nor `docker-compose` works on this machine.
    #[error(
        "no working Docker Compose: neither `docker compose version` nor `docker-compose version` succeeded: {detail}"
    )]
    NoCompose { detail: String },

    /// The output of a command could not be understood.
    #[error("unexpected output from `{command}` for {unit}: {detail}")]
    Parse {
        command: String,
        unit: String,
        detail: String,
    },

    /// No container exists for a Compose service.
    #[error("no container for service `{service}` of Compose project `{project}`")]
    NoContainer { project: String, service: String },

    /// The services of one layer run different images, so the layer has no single value.
    #[error("services of layer `{layer}` run different images: {detail}")]
    Inconsistent { layer: String, detail: String },

    /// A restore cannot put back the recorded value exactly.
    #[error("cannot restore layer `{layer}` to {recorded}: {detail}")]
    Restore {
        layer: String,
        recorded: String,
        detail: String,
    },

    /// The layer kind is not supported by this driver.
    #[error("layer `{layer}` of kind {kind} is not supported by the {driver} driver")]
    Unsupported {
        layer: String,
        kind: &'static str,
        driver: &'static str,
    },

    /// A component or layer names something the configuration does not define.
    #[error("the {driver} driver cannot stop components ({components})")]
    CannotStop {
        driver: &'static str,
        components: String,
    },

    #[error("unknown component `{0}`")]
    UnknownComponent(String),

    /// Reading or writing a file the driver owns (the override file) or hashes.
    #[error("failed to access {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    /// The captured output of the failing child, when there is one.
    pub fn output(&self) -> Option<&DriverOutput> {
        match self {
            DriverError::Failed { output, .. } | DriverError::Timeout { output, .. } => {
                Some(output)
            }
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DriverError {
        DriverError::Io {
            path: path.into(),
            source,
        }
    }
}

fn exit_label(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("status {c}"),
        None => "a signal".to_string(),
    }
}

/// The last few lines of stderr, enough to explain a failure in one message.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "no stderr".to_string();
    }
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" / ")
}

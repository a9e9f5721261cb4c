//! The [`RuntimeDriver`] trait and the values it returns.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rollgate_core::baseline::LayerValue;
use rollgate_core::config::{Component, Layer};
use serde::{Deserialize, Serialize};

use crate::errors::DriverError;

/// How rollgate acts on the runtime of a node: read a layer's value, change it, put back a
/// recorded value, restart exactly the components of a layer, and observe those components.
///
/// This is a trait, not an enum of drivers, because tests and the runner substitute their own
/// implementations (a scripted fake that fails on cue, a recorder), and the runner holds an
/// `Arc<dyn RuntimeDriver>` chosen once from the configuration by [`crate::driver_for`].
///
/// `apply` and `restore` only change what the runtime *will* run; nothing restarts until
/// `restart` is called, so the runner can journal each step separately.
#[async_trait]
pub trait RuntimeDriver: Send + Sync {
    /// `compose` or `command`.
    fn name(&self) -> &'static str;

    /// The value the layer has now, with the digest that pins it exactly when there is one.
    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError>;

    /// Make the layer's components run `value` at their next restart.
    async fn apply(&self, layer: &Layer, value: &str) -> Result<DriverOutput, DriverError>;

    /// Put back exactly the recorded value (by digest where the driver can).
    async fn restore(
        &self,
        layer: &Layer,
        recorded: &LayerValue,
    ) -> Result<DriverOutput, DriverError>;

    /// Restart (recreate) exactly these components and nothing else.
    async fn restart(&self, components: &[Component]) -> Result<DriverOutput, DriverError>;

    /// Stop exactly these components (around a database snapshot or restore: nothing may write
    /// to the database meanwhile). Idempotent: stopping a stopped component succeeds. The
    /// default refuses, for drivers that cannot stop anything.
    async fn stop(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        Err(DriverError::CannotStop {
            driver: self.name(),
            components: component_names(components),
        })
    }

    /// Start these components again after [`RuntimeDriver::stop`] with the value each layer
    /// has now (the next `restart` would recreate them the same way). The default restarts.
    async fn start(&self, components: &[Component]) -> Result<DriverOutput, DriverError> {
        self.restart(components).await
    }

    /// What the runtime says about one component now.
    async fn state(&self, component: &Component) -> Result<ComponentState, DriverError>;

    /// Everything the component logged since `since` (stdout and stderr together). Past
    /// [`crate::process::MAX_CAPTURE`] per stream, the newest lines are kept.
    async fn logs_since(
        &self,
        component: &Component,
        since: SystemTime,
    ) -> Result<String, DriverError>;

    /// The lines the component logged after `cursor`, and where the next read starts: each poll
    /// reads only what is new. The default reads [`RuntimeDriver::logs_since`] from the cursor
    /// and moves it to the time this read started, less [`LOG_OVERLAP`]; without the runtime's
    /// timestamps the overlap's lines are returned again (a fault line is one fault however
    /// often it is read). On an error the caller keeps its cursor, so nothing is skipped.
    async fn logs_after(
        &self,
        component: &Component,
        cursor: &LogCursor,
    ) -> Result<LogRead, DriverError> {
        let started = SystemTime::now();
        let text = self.logs_since(component, cursor.since).await?;
        Ok(LogRead::untimed(&text, cursor, started, 0))
    }
}

/// `a, b`: component names for messages.
pub fn component_names(components: &[Component]) -> String {
    components
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far before its cursor an incremental log read starts again: a line the runtime stamped
/// just before a read may reach its log store just after it.
pub const LOG_OVERLAP: Duration = Duration::from_secs(2);

/// Where the next incremental read of a component's logs starts ([`RuntimeDriver::logs_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// The next read asks for the lines logged at or after this time.
    pub since: SystemTime,
    /// Lines already returned that a read from `since` gets again, by the runtime's timestamp:
    /// skipped, so every line is returned once.
    seen: BTreeSet<(SystemTime, String)>,
}

impl LogCursor {
    /// Read from `since` on.
    pub fn at(since: SystemTime) -> LogCursor {
        LogCursor {
            since,
            seen: BTreeSet::new(),
        }
    }
}

/// One incremental read of a component's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// The new lines, oldest first, without the runtime's timestamps.
    pub lines: Vec<String>,
    /// Where the next read starts.
    pub next: LogCursor,
    /// Bytes logged after the cursor that were not kept: more than
    /// [`crate::process::MAX_CAPTURE`] per stream arrived since the last read, and only the
    /// newest lines were kept.
    pub dropped_bytes: u64,
}

impl LogRead {
    /// A read from a runtime that gives no timestamps: every line is new, and the next read
    /// starts [`LOG_OVERLAP`] before this one started.
    pub fn untimed(
        text: &str,
        cursor: &LogCursor,
        started: SystemTime,
        dropped_bytes: u64,
    ) -> LogRead {
        let since = started
            .checked_sub(LOG_OVERLAP)
            .unwrap_or(started)
            .max(cursor.since);
        LogRead {
            lines: text.lines().map(str::to_string).collect(),
            next: LogCursor::at(since),
            dropped_bytes,
        }
    }

    /// A read of lines stamped by the runtime (`None`: a line without a readable timestamp,
    /// always new). Lines the cursor already returned are skipped; the next read starts
    /// [`LOG_OVERLAP`] before the newest line and skips what it returns again.
    pub fn timed(
        mut entries: Vec<(Option<SystemTime>, String)>,
        cursor: &LogCursor,
        dropped_bytes: u64,
    ) -> LogRead {
        entries.sort_by_key(|(t, _)| *t);
        let newest = entries.iter().filter_map(|(t, _)| *t).max();
        let since = newest
            .map(|n| n.checked_sub(LOG_OVERLAP).unwrap_or(n).max(cursor.since))
            .unwrap_or(cursor.since);
        let mut seen: BTreeSet<(SystemTime, String)> = cursor
            .seen
            .iter()
            .filter(|(t, _)| *t >= since)
            .cloned()
            .collect();
        let mut lines = Vec::new();
        for (t, line) in entries {
            match t {
                Some(t) => {
                    let key = (t, line);
                    if cursor.seen.contains(&key) {
                        continue;
                    }
                    lines.push(key.1.clone());
                    if t >= since {
                        seen.insert(key);
                    }
                }
                None => lines.push(line),
            }
        }
        LogRead {
            lines,
            next: LogCursor { since, seen },
            dropped_bytes,
        }
    }
}

/// What one child process did. Serialized into the journal beside the step that ran it:
///
/// ```json
/// {"command": "docker-compose -p node -f docker-compose.yml -f /var/lib/rollgate/compose/node.override.json up -d --no-deps operator",
///  "stdout": "", "stderr": "Recreating node_operator_1 ... done\n", "exit_code": 0, "duration_ms": 2140}
/// ```
///
/// `stdout` and `stderr` are redacted; several commands run for one step are joined with
/// ` && ` in `command` and their outputs concatenated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverOutput {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// `None` when the child was killed by a signal (a timeout) or nothing ran.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Bytes of output not kept (past [`crate::process::MAX_CAPTURE`] per stream).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DriverOutput {
    /// An output for a step that needed no child process (e.g. only the override file changed).
    pub fn note(command: impl Into<String>) -> DriverOutput {
        DriverOutput {
            command: command.into(),
            exit_code: Some(0),
            ..DriverOutput::default()
        }
    }

    /// Append another command's output, for steps made of several commands.
    pub fn then(mut self, next: DriverOutput) -> DriverOutput {
        if self.command.is_empty() {
            return next;
        }
        self.command = format!("{} && {}", self.command, next.command);
        self.stdout.push_str(&next.stdout);
        self.stderr.push_str(&next.stderr);
        self.exit_code = next.exit_code;
        self.duration_ms += next.duration_ms;
        self.dropped_bytes += next.dropped_bytes;
        self
    }
}

/// The run state of a component, as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Restarting,
    Paused,
    Created,
    Exited,
    Dead,
    /// No container or process exists for the component.
    Missing,
    /// The driver cannot tell (the command driver has no state command).
    Unknown,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Restarting => "restarting",
            RunStatus::Paused => "paused",
            RunStatus::Created => "created",
            RunStatus::Exited => "exited",
            RunStatus::Dead => "dead",
            RunStatus::Missing => "missing",
            RunStatus::Unknown => "unknown",
        }
    }

    /// Docker's `State.Status` words.
    pub fn from_docker(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "restarting" => RunStatus::Restarting,
            "paused" => RunStatus::Paused,
            "created" => RunStatus::Created,
            "exited" | "removing" => RunStatus::Exited,
            "dead" => RunStatus::Dead,
            _ => RunStatus::Unknown,
        }
    }
}

/// One component's state, for the gates (restarts during the bake, a crash after a restart).
///
/// ```json
/// {"component": "operator", "status": "running", "restart_count": 0,
///  "started_at": "2026-11-28T04:22:10.123Z", "exit_code": 0,
///  "container_id": "3f2a…", "image_id": "sha256:…"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    pub component: String,
    pub status: RunStatus,
    /// How often the runtime restarted it since it was created.
    pub restart_count: Option<u32>,
    /// RFC 3339, as the runtime reports it.
    pub started_at: Option<String>,
    /// The last exit code (0 while it never exited).
    pub exit_code: Option<i32>,
    pub container_id: Option<String>,
    pub image_id: Option<String>,
}

impl ComponentState {
    /// A state that says nothing is known.
    pub fn unknown(component: &str) -> ComponentState {
        ComponentState {
            component: component.to_string(),
            status: RunStatus::Unknown,
            restart_count: None,
            started_at: None,
            exit_code: None,
            container_id: None,
            image_id: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == RunStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn timed_reads_return_each_line_once() {
        let start = LogCursor::at(at(0));
        let first = LogRead::timed(
            vec![
                (Some(at(10)), "b".into()),
                (Some(at(5)), "a".into()),
                (None, "no time".into()),
            ],
            &start,
            0,
        );
        assert_eq!(first.lines, ["no time", "a", "b"]);
        // The next read starts the overlap before the newest line (not before the cursor).
        assert_eq!(first.next.since, at(0));
        // Reading the same lines again returns none of the timed ones.
        let again = LogRead::timed(
            vec![
                (Some(at(5)), "a".into()),
                (Some(at(10)), "b".into()),
                (Some(at(10)), "c".into()),
                (Some(at(5000)), "d".into()),
            ],
            &first.next,
            0,
        );
        assert_eq!(again.lines, ["c", "d"]);
        assert_eq!(again.next.since, at(5000) - LOG_OVERLAP);
        // Lines before the new `since` are forgotten; those after are still skipped.
        assert!(again.next.seen.iter().all(|(t, _)| *t >= again.next.since));
        let third = LogRead::timed(vec![(Some(at(5000)), "d".into())], &again.next, 0);
        assert!(third.lines.is_empty());
        assert_eq!(third.next, again.next);
    }

    #[test]
    fn untimed_reads_move_on_from_when_they_started() {
        let start = LogCursor::at(at(0));
        let r = LogRead::untimed("x\ny\n", &start, at(10_000), 7);
        assert_eq!(r.lines, ["x", "y"]);
        assert_eq!(r.next.since, at(10_000) - LOG_OVERLAP);
        assert_eq!(r.dropped_bytes, 7);
        // Never backwards.
        let r = LogRead::untimed("", &LogCursor::at(at(9_000)), at(10_000), 0);
        assert_eq!(r.next.since, at(9_000));
    }
}

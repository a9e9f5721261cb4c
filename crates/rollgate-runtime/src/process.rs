//! Running one child process: captured output, a deadline, redaction.
//!
//! Every child runs in its own process group so that a timeout kills everything it started:
//! `sh -c "a | b"` or a wrapper script would otherwise leave grandchildren running after their
//! parent is killed. Output is read concurrently with the wait, so a child that fills its pipe
//! cannot deadlock, and is capped so a runaway child cannot exhaust memory.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollgate_core::redact::redact_text;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::driver::DriverOutput;
use crate::errors::DriverError;

/// How much of each stream is kept. The rest is drained and dropped: the end of the stream for
/// commands (their first lines say what went wrong), its start for log reads
/// ([`Invocation::keep_tail`]: the newest lines are the ones that matter).
pub const MAX_CAPTURE: usize = 1024 * 1024;

/// After the child exited or was killed, how long to wait for its pipes to close before giving
/// up on the rest of the output.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// One command to run.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// Set for the child (the `ROLLGATE_*` variables of the command driver).
    pub env: Vec<(String, String)>,
    /// Names of variables of rollgate's environment the child also gets, besides
    /// [`BASE_ENV`] (a driver's `env = [...]`).
    pub pass_env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// The unit acted on, for error messages (`layer operator-image`, `project node`).
    pub unit: String,
    pub timeout: Duration,
    /// What to show as the command; defaults to the program and its arguments.
    pub display: Option<String>,
    /// Past [`MAX_CAPTURE`], keep the end of each stream (whole lines) instead of its start.
    pub keep_tail: bool,
}

impl Invocation {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Invocation {
        Invocation {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            pass_env: Vec::new(),
            cwd: None,
            unit: String::new(),
            timeout: Duration::from_secs(60),
            display: None,
            keep_tail: false,
        }
    }

    /// Keep the end of each stream, not its start, when it exceeds [`MAX_CAPTURE`] (log reads).
    pub fn keep_tail(mut self) -> Invocation {
        self.keep_tail = true;
        self
    }

    pub fn unit(mut self, unit: impl Into<String>) -> Invocation {
        self.unit = unit.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Invocation {
        self.timeout = timeout;
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Invocation {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Also pass these variables of rollgate's environment (when set).
    pub fn pass_env(mut self, names: &[String]) -> Invocation {
        self.pass_env.extend(names.iter().cloned());
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Invocation {
        self.cwd = Some(dir.into());
        self
    }

    pub fn display(mut self, display: impl Into<String>) -> Invocation {
        self.display = Some(display.into());
        self
    }

    /// The command as shown in outputs and errors, redacted.
    pub fn command_line(&self) -> String {
        let text = match &self.display {
            Some(d) => d.clone(),
            None => std::iter::once(self.program.as_str())
                .chain(self.args.iter().map(String::as_str))
                .map(shell_word)
                .collect::<Vec<_>>()
                .join(" "),
        };
        redact_text(&text)
    }
}

/// What every child gets from rollgate's environment, when set: finding programs, the user,
/// the locale, temporary files, and what `docker` needs to reach its engine. Nothing else: the
/// environment rollgate runs in holds the secrets its configuration expands (`${VAR}`: the
/// serve token, database and webhook URLs), and a script run under `set -x` or a failing
/// `docker` would print them. Variables starting with `LC_` pass too.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "SSH_AUTH_SOCK",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_API_VERSION",
    "DOCKER_DEFAULT_PLATFORM",
    "DOCKER_BUILDKIT",
];

/// The part of rollgate's environment a child gets: [`BASE_ENV`], `LC_*`, `COMPOSE_*` and the
/// names in `extra`.
pub fn child_env(extra: &[String]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            BASE_ENV.contains(&k)
                || k.starts_with("LC_")
                || k.starts_with("COMPOSE_")
                || extra.iter().any(|e| e == k)
        })
        .collect()
}

/// Quote a word for display only (never executed).
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Run the invocation to completion. A non-zero exit is [`DriverError::Failed`]; exceeding the
/// timeout kills the process group and is [`DriverError::Timeout`]. Both carry the output.
pub async fn run(inv: &Invocation) -> Result<DriverOutput, DriverError> {
    let output = run_unchecked(inv).await?;
    match output {
        Finished::Exited(out) if out.exit_code == Some(0) => Ok(out),
        Finished::Exited(out) => Err(DriverError::Failed {
            command: out.command.clone(),
            unit: inv.unit.clone(),
            output: Box::new(out),
        }),
        Finished::TimedOut(out) => Err(DriverError::Timeout {
            command: out.command.clone(),
            unit: inv.unit.clone(),
            after: inv.timeout,
            output: Box::new(out),
        }),
    }
}

/// How a child ended.
#[derive(Debug)]
pub enum Finished {
    Exited(DriverOutput),
    TimedOut(DriverOutput),
}

/// Run the invocation and report how it ended without judging the exit code.
pub async fn run_unchecked(inv: &Invocation) -> Result<Finished, DriverError> {
    let command_line = inv.command_line();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .env_clear()
        .envs(child_env(&inv.pass_env))
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &inv.cwd {
        cmd.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| DriverError::Spawn {
        command: command_line.clone(),
        unit: inv.unit.clone(),
        source,
    })?;
    let pid = child.id();
    let stdout = capture(child.stdout.take(), inv.keep_tail);
    let stderr = capture(child.stderr.take(), inv.keep_tail);

    let (exit_code, timed_out) = match tokio::time::timeout(inv.timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(source)) => {
            return Err(DriverError::Spawn {
                command: command_line,
                unit: inv.unit.clone(),
                source,
            });
        }
        Err(_) => {
            kill_group(pid);
            // Reap the direct child so it does not linger as a zombie.
            let _ = child.kill().await;
            (None, true)
        }
    };
    // Once the child is gone, a process it left running (a daemon started by a restart script,
    // or a grandchild that escaped the group) may hold the pipes open: take what is there after
    // a short grace instead of waiting for it to exit.
    let (stdout, dropped_out) = join_capture(stdout, DRAIN_AFTER_EXIT).await;
    let (stderr, dropped_err) = join_capture(stderr, DRAIN_AFTER_EXIT).await;
    let out = DriverOutput {
        command: command_line,
        stdout: redact_lines(&stdout),
        stderr: redact_lines(&stderr),
        dropped_bytes: dropped_out + dropped_err,
        exit_code,
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
    };
    Ok(if timed_out {
        Finished::TimedOut(out)
    } else {
        Finished::Exited(out)
    })
}

fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // The child is the leader of its own group (process_group(0)), so its pid is the group id.
    if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        tracing::debug!(pid = pid.as_raw_nonzero().get(), error = %e, "killing the process group failed");
    }
}

/// Output read so far, shared with the reading task so a stream that never closes still yields
/// what was written before the deadline.
#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    /// Bytes read and not kept.
    dropped: u64,
}

type Captured = Arc<Mutex<Kept>>;

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    reader: Option<R>,
    keep_tail: bool,
) -> (Captured, bool, tokio::task::JoinHandle<()>) {
    let kept: Captured = Arc::default();
    let sink = kept.clone();
    let task = tokio::spawn(async move {
        let Some(mut reader) = reader else { return };
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                    kept.push(&buf[..n], keep_tail);
                }
            }
        }
    });
    (kept, keep_tail, task)
}

impl Kept {
    fn push(&mut self, chunk: &[u8], keep_tail: bool) {
        if !keep_tail {
            let room = MAX_CAPTURE.saturating_sub(self.bytes.len());
            let take = chunk.len().min(room);
            self.bytes.extend_from_slice(&chunk[..take]);
            self.dropped += (chunk.len() - take) as u64;
            return;
        }
        self.bytes.extend_from_slice(chunk);
        // Trim in large steps so the cost stays linear in what was read.
        if self.bytes.len() >= 2 * MAX_CAPTURE {
            let cut = self.bytes.len() - MAX_CAPTURE;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The kept text: with `keep_tail`, at most [`MAX_CAPTURE`] bytes starting on a whole line.
    fn finish(mut self, keep_tail: bool) -> (Vec<u8>, u64) {
        if keep_tail && self.bytes.len() > MAX_CAPTURE {
            let cut = self.bytes.len() - MAX_CAPTURE;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
        if keep_tail && self.dropped > 0 {
            // The first kept line was cut: drop it up to its newline (or all, without one).
            let cut = self
                .bytes
                .iter()
                .position(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(self.bytes.len());
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
        (self.bytes, self.dropped)
    }
}

async fn join_capture(
    (kept, keep_tail, mut task): (Captured, bool, tokio::task::JoinHandle<()>),
    wait: Duration,
) -> (String, u64) {
    if tokio::time::timeout(wait, &mut task).await.is_err() {
        // A process left running still holds the pipe. Stop reading rather than keep a task
        // per call alive for as long as it runs: a daemon must redirect its own output.
        task.abort();
    }
    let taken = std::mem::take(&mut *kept.lock().unwrap_or_else(|p| p.into_inner()));
    let (bytes, dropped) = taken.finish(keep_tail);
    (String::from_utf8_lossy(&bytes).into_owned(), dropped)
}

/// Redact line by line: [`redact_text`] splits on spaces only, and a URL at the start of a
/// line would otherwise be glued to the previous line's last word.
pub fn redact_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (body, nl) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            let body = body
                .split('\t')
                .map(redact_text)
                .collect::<Vec<_>>()
                .join("\t");
            format!("{body}{nl}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_words_with_spaces() {
        let inv = Invocation::new("sh", ["-c", "echo 'a b'"]);
        assert_eq!(inv.command_line(), r#"sh -c 'echo '\''a b'\'''"#);
    }

    #[test]
    fn redacts_each_line() {
        let t = "first line\npostgres://u:pw@h/db\nredis://:secret@h2\n";
        assert_eq!(
            redact_lines(t),
            "first line\npostgres://u:****@h/db\nredis://:****@h2\n"
        );
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = run(&Invocation::new("sh", ["-c", "echo out; echo err >&2"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.exit_code, Some(0));
    }

    #[tokio::test]
    async fn past_the_cap_the_head_or_the_tail_is_kept() {
        // 12 000 numbered lines of 100 bytes: 1.2 MB, past MAX_CAPTURE.
        let script = "i=0; while [ $i -lt 12000 ]; do printf '%099d\\n' $i; i=$((i+1)); done";
        let head = run(&Invocation::new("sh", ["-c", script])).await.unwrap();
        assert_eq!(head.stdout.len(), MAX_CAPTURE);
        assert!(head.stdout.starts_with(&format!("{:099}\n", 0)));
        assert_eq!(head.dropped_bytes, 1_200_000 - MAX_CAPTURE as u64);

        let tail = run(&Invocation::new("sh", ["-c", script]).keep_tail())
            .await
            .unwrap();
        assert!(tail.stdout.len() <= MAX_CAPTURE);
        assert!(tail.stdout.ends_with(&format!("{:099}\n", 11_999)));
        // Whole lines only.
        assert_eq!(tail.stdout.len() % 100, 0);
        assert_eq!(tail.dropped_bytes + tail.stdout.len() as u64, 1_200_000);
    }

    #[tokio::test]
    async fn a_daemon_left_running_does_not_hold_the_call() {
        let started = Instant::now();
        let out = run(&Invocation::new("sh", ["-c", "sleep 20 & echo started"])
            .timeout(Duration::from_secs(60)))
        .await
        .unwrap();
        assert_eq!(out.stdout, "started\n");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn timeout_kills_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let script = format!(
            "(sleep 1; touch {}) & echo started >&2; sleep 30",
            marker.display()
        );
        let inv = Invocation::new("sh", ["-c", script.as_str()])
            .timeout(Duration::from_millis(300))
            .unit("test");
        let err = run(&inv).await.unwrap_err();
        let DriverError::Timeout { output, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(output.stderr, "started\n");
        assert_eq!(output.exit_code, None);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a grandchild survived the timeout");
    }
}

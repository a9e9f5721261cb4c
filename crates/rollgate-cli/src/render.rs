//! Human rendering of decision records and live progress on a terminal.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use rollgate_core::vocab::{GateResult, Verdict};
use rollgate_runner::{Progress, RolloutReport};

use crate::output::{Color, Output};

/// Print a rollout's decision record for a person.
pub fn report(out: &Output, r: &RolloutReport) {
    crate::outln!(
        "{} {}  {}",
        out.paint("rollout", Color::Bold),
        r.rollout_id,
        out.status(r.outcome.as_str())
    );
    crate::outln!("  layer     {}", r.layer);
    crate::outln!("  from      {}", r.from.as_deref().unwrap_or("-"));
    crate::outln!("  to        {}", r.to);
    crate::outln!("  baseline  {}", r.baseline_id.as_deref().unwrap_or("-"));
    if !r.steps.is_empty() {
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| format!("{}{} {}ms", s.kind, if s.ok { "" } else { " ✗" }, s.ms))
            .collect();
        crate::outln!("  steps     {}", steps.join(" → "));
    }
    if !r.gates.is_empty() {
        crate::outln!("\n  gates");
        print_gates(out, &r.gates);
    }
    if let Some(rb) = &r.rollback {
        crate::outln!(
            "\n  rollback  {}",
            if rb.verified {
                out.status("pass")
            } else {
                out.status("fail")
            }
        );
        print_gates(out, &rb.gates);
    }
    let t = &r.timings_ms;
    let mut timing = format!("total {}", secs(t.total));
    if let Some(v) = t.snapshot {
        timing.push_str(&format!(", snapshot {}", secs(v)));
    }
    if let Some(v) = t.restart {
        timing.push_str(&format!(", restart {}", secs(v)));
    }
    if let Some(v) = t.change_to_decision {
        timing.push_str(&format!(", change→decision {}", secs(v)));
    }
    if let Some(v) = t.change_to_verified {
        timing.push_str(&format!(", change→baseline verified {}", secs(v)));
    }
    crate::outln!("\n  time      {timing}");
    if let Some(p) = &r.promoted_baseline_id {
        crate::outln!("  known-good baseline is now {p}");
    }
    for s in &r.snapshots {
        crate::outln!(
            "  snapshot  {} of {} ({}, {}{}{})",
            s.id,
            s.database,
            s.method,
            s.state,
            s.size_bytes
                .map(|b| format!(", {}", rollgate_core::units::format_size(b)))
                .unwrap_or_default(),
            s.keep_until
                .as_deref()
                .map(|k| format!(", kept until {k}"))
                .unwrap_or_default()
        );
    }
    crate::outln!("\n  {} {}", out.paint("reason:", Color::Bold), r.reason);
}

/// The table of check results `check`, `plan` and `baseline show` print: status, name, latency,
/// detail.
pub fn checks_table(out: &Output, checks: &[rollgate_core::vocab::CheckResult]) -> String {
    let rows = checks
        .iter()
        .map(|c| {
            vec![
                out.status(c.status.as_str()),
                c.name.clone(),
                format!("{}ms", c.latency_ms),
                c.detail.clone(),
            ]
        })
        .collect();
    out.table(&["status", "check", "latency", "detail"], rows)
}

fn print_gates(out: &Output, gates: &[GateResult]) {
    for g in gates {
        crate::outln!(
            "    {:<13} {:<34} {}",
            out.status(g.verdict.as_str()),
            g.name,
            g.detail
        );
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Live progress on stderr: one line per step, and a rewritten status line while gates wait.
pub struct TerminalProgress {
    out: Output,
    line_open: Mutex<bool>,
}

impl TerminalProgress {
    pub fn new(out: Output) -> TerminalProgress {
        TerminalProgress {
            out,
            line_open: Mutex::new(false),
        }
    }

    fn close_line(&self, err: &mut impl Write) {
        let mut open = self.line_open.lock().unwrap_or_else(|p| p.into_inner());
        if *open {
            let _ = writeln!(err);
            *open = false;
        }
    }
}

impl Progress for TerminalProgress {
    fn step(&self, kind: &str, _detail: &str) {
        let mut err = std::io::stderr().lock();
        self.close_line(&mut err);
        let _ = writeln!(err, "{} {kind}", self.out.paint("→", Color::Dim));
    }

    fn gates(&self, phase: &str, elapsed: Duration, deadline: Duration, gates: &[GateResult]) {
        let pending: Vec<&GateResult> = gates
            .iter()
            .filter(|g| g.verdict == Verdict::Inconclusive)
            .collect();
        let failed = gates.iter().find(|g| g.verdict == Verdict::Fail);
        let passed = gates.iter().filter(|g| g.verdict == Verdict::Pass).count();
        let what = match (failed, pending.first()) {
            (Some(f), _) => format!("{} {}", self.out.status("fail"), f.name),
            (None, Some(p)) => format!("waiting on {}: {}", p.name, p.detail),
            (None, None) => "all gates decided".to_string(),
        };
        // Scrubbed before it is cut, so no prefix of a secret survives the cut.
        let line = rollgate_core::secrets::scrub(&format!(
            "  {phase} {:>5.1}s / {:.0}s  {passed}/{} passed  {what}",
            elapsed.as_secs_f64(),
            deadline.as_secs_f64(),
            gates.len()
        ))
        .into_owned();
        let line = rollgate_core::text::shorten(&line, 160);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        *self.line_open.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.close_line(&mut std::io::stderr().lock());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;

    /// A pending gate whose detail is non-ASCII (a status document's text, a log line) across
    /// the cut of the progress line: the line is shortened, the rollout does not panic. Every
    /// alignment of the 1-4 byte characters against the cut is tried.
    #[test]
    fn the_progress_line_is_cut_between_characters() {
        let progress = TerminalProgress::new(Output {
            format: Format::Human,
            color: false,
            interactive: true,
        });
        for pad in 0..4 {
            let gate = GateResult {
                name: "readiness:operator".into(),
                verdict: Verdict::Inconclusive,
                detail: format!(
                    "{}attestation failed: {}",
                    "x".repeat(pad),
                    "é日😀".repeat(60)
                ),
                evidence: serde_json::Value::Null,
            };
            progress.gates(
                "verify",
                Duration::from_secs(2),
                Duration::from_secs(30),
                &[gate],
            );
        }
    }
}

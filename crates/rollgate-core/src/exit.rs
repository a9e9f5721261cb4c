//! The documented exit codes, in one place (product.md, "Exit codes").

/// A process exit code with a documented meaning. Scripts rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Checks green, rollout verified and promoted, or requested rollback verified.
    Success,
    /// An internal error: a bug.
    Internal,
    /// Usage or configuration error; nothing was changed.
    Usage,
    /// Prerequisites degraded or environment ambiguous; nothing was changed.
    NotReady,
    /// The change failed a gate and the node is back on its re-verified baseline.
    RolledBack,
    /// The node is not verified healthy on the baseline; operator attention needed.
    RollbackFailed,
    /// Another rollout holds the lock, or an interrupted rollout must be resumed first.
    Busy,
    /// Standalone `watch` found a problem.
    WatchFinding,
}

impl ExitCode {
    /// Every code, in numeric order.
    pub const ALL: [ExitCode; 8] = [
        ExitCode::Success,
        ExitCode::Internal,
        ExitCode::Usage,
        ExitCode::NotReady,
        ExitCode::RolledBack,
        ExitCode::RollbackFailed,
        ExitCode::Busy,
        ExitCode::WatchFinding,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Internal => 1,
            ExitCode::Usage => 2,
            ExitCode::NotReady => 3,
            ExitCode::RolledBack => 4,
            ExitCode::RollbackFailed => 5,
            ExitCode::Busy => 6,
            ExitCode::WatchFinding => 7,
        }
    }

    /// A short name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::Internal => "internal_error",
            ExitCode::Usage => "usage",
            ExitCode::NotReady => "not_ready",
            ExitCode::RolledBack => "rolled_back",
            ExitCode::RollbackFailed => "rollback_failed",
            ExitCode::Busy => "busy",
            ExitCode::WatchFinding => "watch_finding",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers_and_distinct() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }
}

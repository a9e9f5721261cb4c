//! The observer's reading of the changed components: fault lines in their logs (read
//! incrementally, relative to the baseline's own lines, never silently blind) and their
//! restarts. Real processes (the command driver running `sh`) and, in `compose`, the real Docker
//! engine.

mod clients;
mod compose;
mod logs;
mod support;

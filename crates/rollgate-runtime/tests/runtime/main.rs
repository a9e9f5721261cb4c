//! Integration tests of the runtime drivers: the command driver with real `sh`, the Compose
//! driver on the real Docker engine.
//!
//! Docker tests build their own FROM-scratch images (a static C program, `docker import`), use
//! a unique Compose project and image repository per test, and clean up in a drop guard so a
//! failing assertion leaves nothing behind. Without Docker they skip, except under `CI=true`
//! where a missing engine is a failure.

mod command;
mod compose;
mod support;

//! The `rollgate` command line: argument parsing, output and exit codes. Each subcommand lives in
//! its own file under [`dispatch`]; the work itself is done by `rollgate-runner` and the crates
//! below it.
#![forbid(unsafe_code)]

pub mod app;
pub mod dispatch;
pub mod errors;
pub mod output;
pub mod render;

pub use app::main;

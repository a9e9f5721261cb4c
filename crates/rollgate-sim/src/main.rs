//! `rollgate-sim`: run one simulated service, or the whole localnet. See `docs/sim.md`.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

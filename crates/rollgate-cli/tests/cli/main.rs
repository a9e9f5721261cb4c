//! End-to-end tests of the `rollgate` binary: exit codes and configuration errors, rollouts on
//! the simulated node (process localnet, command driver; and Docker Compose, compose driver),
//! and crash safety with SIGKILL at every journal step boundary.

mod bake;
mod chain;
mod compose;
mod crash;
mod fault_matrix;
mod fixture;
mod fleet;
mod killswitch;
mod outage;
mod rollout;
mod safety;
mod secrets;
mod terminal;
mod usage;
mod watch;

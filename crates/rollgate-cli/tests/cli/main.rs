//! End-to-end tests of the `rollgate` binary: exit codes and configuration errors, rollouts on
//! the simulated node (process localnet, command driver; and Docker Compose, compose driver),
//! and crash safety with SIGKILL at every journal step boundary.

mod analysis;
mod bake;
mod chain;
mod cluster;
mod compose;
mod config_layer;
mod crash;
mod fault_matrix;
mod fixture;
mod fleet;
mod fleet_compose;
mod fleet_run;
mod fleet_wave;
mod history;
mod killswitch;
mod outage;
mod rollout;
mod safety;
mod secrets;
mod silence;
mod snapshot;
mod terminal;
mod usage;
mod watch;

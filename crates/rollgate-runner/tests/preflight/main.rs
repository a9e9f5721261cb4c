//! Preflight, readiness and baseline freeze against the simulated stack with the real Postgres
//! and Redis (`scripts/services`): all green, each dependency stopped in turn, and every way a
//! freeze must refuse.

mod fixture;
mod freeze;
mod preflight;

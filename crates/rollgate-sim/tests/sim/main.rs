//! Integration tests of rollgate-sim: one test binary, one module per area. Every behaviour is
//! observed through its real protocol (HTTP, HTTPS, JSON-RPC, unix socket, Postgres, Redis).
//! Tests needing Postgres/Redis skip outside CI when `scripts/services` was not run.

mod chain;
mod cluster;
mod common;
mod compose;
mod faults;
mod localnet;
mod pccs;
mod stack;
mod versions;

//! Integration tests of the probes against real sockets: small servers on port 0 that answer
//! well, badly, or not at all, and (where available) the real Postgres and Redis.

mod bad_responses;
mod chain;
mod pccs;
mod services;
mod support;

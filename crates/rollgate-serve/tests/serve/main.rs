//! Integration tests of `rollgate serve` and the HTML report: one binary (house style).

mod access;
mod api;
mod browser;
mod metrics;
mod pages;
mod support;

//! One integration-test binary: each module drives the real server over HTTP on a
//! loopback port (see `helpers`).

mod helpers;

mod auth;
mod batch;
mod browser;
mod cli;
mod cluster;
mod cors;
mod docs;
mod expiry;
mod fast_path;
mod ingest;
pub mod invariant;
mod limits;
mod metrics;
mod persistence;
mod polling;
mod presence;
mod rate_limits;
mod signals;
mod startup;
mod status;
mod stream;
mod ui;
mod upstream;

//! One integration-test binary: each module drives the real server over HTTP on a
//! loopback port (see `helpers`).

mod helpers;

mod auth;
mod batch;
mod browser;
mod cli;
mod cors;
mod expiry;
mod ingest;
mod invariant;
mod polling;
mod presence;
mod startup;
mod status;
mod ui;

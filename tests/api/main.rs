//! One integration-test binary: each module drives the real server over HTTP on a
//! loopback port (see `helpers`).

mod helpers;

mod auth;
mod batch;
mod cli;
mod expiry;
mod ingest;
mod invariant;
mod persistence;
mod polling;
mod presence;
mod signals;
mod startup;
mod status;

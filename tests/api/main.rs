//! One integration-test binary: each module drives the real server over HTTP on a
//! loopback port (see `helpers`).

mod helpers;
mod invariant;
mod presence;
mod startup;

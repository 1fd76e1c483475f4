//! presenced: an in-memory user-presence service, a drop-in for Rocket.Chat's
//! `GET /api/v1/users.presence`, run as a sidecar beside a chat server.
//!
//! The chat server pushes presence signals in over the internal API; frontends
//! poll the public API for full snapshots, deltas since a time or a cursor, or a
//! list of ids. Every visible change goes into a concurrent map and a
//! time-ordered change log, so a delta reads only recent changes.
//!
//! # Layout
//!
//! - [`config`]: TOML file + environment into validated [`config::Settings`].
//! - [`domain`]: ids, statuses and the status rules, profiles, token hashes, the `from` parser.
//! - [`store`]: the [`store::Store`] handle: user map, change log, connection expiry.
//! - [`api`]: the public Rocket.Chat-compatible routes and their auth.
//! - [`ingest`]: the internal `/internal/v1` routes the chat server pushes to.
//! - [`http`]: the error type and bodies shared by both APIs, cross-origin access, head
//!   limits, rate-limit answers, and the middleware that measures and logs every request.
//! - [`cluster`]: cluster mode (`cluster.redis_url`): writes as Lua scripts in a shared
//!   Redis, a change stream every replica follows into its own store, expiry swept there.
//! - [`upstream`]: upstream mode (`upstream.url`): an unmodified Rocket.Chat followed over its
//!   realtime API into the store, and clients' tokens checked with it.

//! - [`stream`]: the change stream, `users.presence.stream`: presence pushed over Server-Sent
//!   Events, one render per change shared by every stream, resumable from the cursor.
//! - [`persistence`]: the snapshot file, written every interval and on shutdown, loaded at start.
//! - [`probes`]: `/health`, `/ready`, `/metrics`.
//! - [`metrics`]: the Prometheus registry: requests, latencies, refusals, the store's figures.
//! - [`rate_limit`]: token buckets keyed by user or client address, in bounded memory.
//! - [`startup`]: [`startup::Application`], binding and running it all.
//! - [`background`]: tasks that stop when their owner drops them.
//! - [`clock`]: the wall clock in Unix milliseconds.
//! - [`demo`]: the `--demo` seed and churn.
//! - [`ui`]: the browser polling client and the roster page, compiled in.
//!
//! Data flows one way: the HTTP edge parses into domain types, the store applies
//! and logs the change, readers render what they read and cache whole answers.

pub mod api;
pub mod background;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod persistence;
pub mod probes;
pub mod rate_limit;
pub mod startup;
pub mod store;
pub mod stream;
pub mod ui;
pub mod upstream;

pub use config::Settings;
pub use startup::{Application, StopHandle};
pub use store::Store;

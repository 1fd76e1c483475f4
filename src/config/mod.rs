//! Configuration: the TOML file and the environment -> validated [`Settings`].
//!
//! Loading runs in three layers, so that every error can name what the operator has to fix:
//! 1. the file is parsed into a TOML table, and each of its sections and keys is checked against
//!    [`keys`]'s table of known keys (unknown names and wrong types name the file and the key);
//! 2. the `PRESENCED_*` environment variables are converted by the type of their key and written
//!    into that table, remembering which variable set which key ([`env`]);
//! 3. the table is deserialized into the private `Raw*` structs and validated into [`Settings`]
//!    (ranges, addresses, enums), naming the key and the file or variable the bad value came
//!    from ([`validate`]).
//!
//! Why by hand rather than with a layering crate (`figment`, `config`): their environment
//! providers map `PRESENCED_PRESENCE_MAX_IDS` to a key by splitting at every `_`, which cannot
//! tell the section from a key that holds `_` (`max_ids`) without a table of the keys, which
//! is what [`keys`] is; and their errors name a key path but not the variable or file a bad
//! value came from, nor an unknown `PRESENCED_*` variable at all. Those messages are the point
//! of this module, so the crate would add a dependency and keep the table.

mod env;
mod keys;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated settings of the whole service; `config/default.toml` documents every key.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `[server]` section: the HTTP listener.
    pub server: ServerSettings,
    /// The `[presence]` section: the presence store and its change feed.
    pub presence: PresenceSettings,
    /// The `[ingest]` section: the internal API.
    pub ingest: IngestSettings,
    /// The `[persistence]` section: snapshots to disk.
    pub persistence: PersistenceSettings,
    /// The `[cors]` section.
    pub cors: CorsSettings,
    /// The `[cluster]` section.
    pub cluster: ClusterSettings,
    /// The `[log]` section.
    pub log: LogSettings,
    /// The `[limits]` section: rate limits.
    pub limits: LimitSettings,
    /// The `[ui]` section: pages for people.
    pub ui: UiSettings,
    /// The `[upstream]` section: following an unmodified Rocket.Chat.
    pub upstream: UpstreamSettings,
    /// The `[stream]` section: the change stream (`users.presence.stream`).
    pub stream: StreamSettings,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Listen address (`server.bind`).
    pub bind: SocketAddr,
    /// HTTP worker threads; 0 means one per core (`server.workers`).
    pub workers: usize,
    /// Largest accepted request body in bytes (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// How long in-flight requests may finish after SIGTERM (`server.shutdown_grace_secs`).
    pub shutdown_grace: Duration,
    /// How long data sent to a client may stay unacknowledged before its
    /// connection is closed; zero leaves the kernel's default
    /// (`server.send_timeout_secs`). See `http::send_timeout`.
    pub send_timeout: Duration,
    /// Longest accepted request target, path and query, in bytes (`server.max_url_bytes`).
    pub max_url_bytes: usize,
    /// Most bytes of request headers, names and values, in all (`server.max_header_bytes`).
    pub max_header_bytes: usize,
}

/// The `[presence]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceSettings {
    /// Turns off broadcasting of presence changes (`presence.broadcast_disabled`).
    pub broadcast_disabled: bool,
    /// How far back delta queries may reach (`presence.delta_window_secs`).
    pub delta_window: Duration,
    /// Most entries kept in the change log (`presence.changelog_capacity`).
    pub changelog_capacity: usize,
    /// How long a connection lives without a refresh (`presence.connection_ttl_secs`).
    pub connection_ttl: Duration,
    /// Whether users may appear invisible (`presence.allow_invisible`).
    pub allow_invisible: bool,
    /// Most user ids in one request (`presence.max_ids`).
    pub max_ids: usize,
    /// Most open connections of one user; 0 means no limit (`presence.max_connections_per_user`).
    pub max_connections_per_user: usize,
    /// Most users in the store; 0 means no limit (`presence.max_users`).
    pub max_users: usize,
}

/// The `[ingest]` section. Its `Debug` never prints the token.
#[derive(Clone, PartialEq)]
pub struct IngestSettings {
    /// Bearer token of the internal API, if any; an empty string in the config means none
    /// (`ingest.token`).
    pub token: Option<String>,
}

impl fmt::Debug for IngestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential, and settings are the kind of thing that gets logged.
        f.debug_struct("IngestSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `[persistence]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistenceSettings {
    /// Snapshot file; `None` turns persistence off (`persistence.path`).
    pub path: Option<PathBuf>,
    /// Time between snapshots (`persistence.interval_secs`).
    pub interval: Duration,
}

/// The `[cors]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSettings {
    /// Allowed origins: `"*"` or `scheme://host[:port]` (`cors.allowed_origins`).
    pub allowed_origins: Vec<String>,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Redis URL (`redis://`, `rediss://` or `unix://`), if clustering is on (`cluster.redis_url`).
    pub redis_url: Option<String>,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Most verbose level logged (`log.level`).
    pub level: LogLevel,
    /// Output format (`log.format`).
    pub format: LogFormat,
}

/// The `[limits]` section: token-bucket rate limits, each off when 0.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// `users.setStatus` requests with a `message`, per target user and minute
    /// (`limits.set_status_per_minute`).
    pub set_status_per_minute: u32,
    /// Failed logins of the public API per client address and minute
    /// (`limits.failed_auth_per_minute`).
    pub failed_auth_per_minute: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For`; 0 means the client is
    /// the peer address (`limits.forwarded_for_hops`).
    pub forwarded_for_hops: usize,
}

/// The `[ui]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct UiSettings {
    /// Serve the live roster page at `/`; `--demo` serves it whatever this says (`ui.roster`).
    pub roster: bool,
}

/// The `[stream]` section: the Server-Sent Events change stream (docs/streaming.md).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// Most open streams in all; 0 turns the stream off (`stream.max_streams`).
    pub max_streams: usize,
    /// Most open streams of one user (`stream.max_streams_per_user`).
    pub max_streams_per_user: usize,
    /// Time between heartbeat comments on a quiet stream (`stream.heartbeat_secs`).
    pub heartbeat: Duration,
    /// Batches of changes kept for subscribers that fall behind (`stream.buffer_batches`).
    pub buffer_batches: usize,
    /// Least time between two batches, so that a burst is sent as one (`stream.batch_interval_ms`).
    pub batch_interval: Duration,
    /// Times a subscriber may fall behind the buffer within a minute before it is
    /// disconnected (`stream.max_lags_per_minute`).
    pub max_lags_per_minute: u32,
    /// How long a stream may stay open before the server ends it, asking the client to
    /// reconnect (which spreads streams over replicas again); zero means no limit
    /// (`stream.max_lifetime_secs`).
    pub max_lifetime: Duration,
}

impl Default for StreamSettings {
    /// The defaults of `config/default.toml`'s `[stream]` section.
    fn default() -> StreamSettings {
        StreamSettings {
            max_streams: 20_000,
            max_streams_per_user: 8,
            heartbeat: Duration::from_secs(15),
            buffer_batches: 1024,
            batch_interval: Duration::from_millis(10),
            max_lags_per_minute: 3,
            max_lifetime: Duration::ZERO,
        }
    }
}

/// The `[upstream]` section (see `docs/rocketchat.md`). Its `Debug` never prints the token.
/// Whether the keys fit together (a user id and token with the URL, no cluster) is checked at
/// start-up, where the other sections are known, by [`crate::upstream::conflict`].
#[derive(Clone, PartialEq)]
pub struct UpstreamSettings {
    /// Base URL of the chat server, `http(s)://host[:port][/path]` without a trailing `/`;
    /// `None` turns upstream mode off (`upstream.url`).
    pub url: Option<String>,
    /// The service account's user id (`upstream.user_id`).
    pub user_id: Option<String>,
    /// The service account's login or personal access token (`upstream.token`).
    pub token: Option<String>,
    /// How long a token the chat server accepted is trusted without asking again
    /// (`upstream.auth_positive_ttl_secs`); also how long a logout takes to be honoured.
    pub auth_positive_ttl: Duration,
    /// How long a token the chat server refused stays refused (`upstream.auth_negative_ttl_secs`).
    pub auth_negative_ttl: Duration,
    /// Most tokens remembered (`upstream.auth_cache_size`).
    pub auth_cache_size: usize,
    /// First delay before reconnecting (`upstream.reconnect_min_ms`).
    pub reconnect_min: Duration,
    /// Longest delay between reconnections (`upstream.reconnect_max_secs`).
    pub reconnect_max: Duration,
    /// Longest wait for one REST answer or WebSocket handshake (`upstream.request_timeout_secs`).
    pub request_timeout: Duration,
    /// Silence on the socket after which a ping is sent, and after twice which the socket is
    /// given up (`upstream.heartbeat_secs`).
    pub heartbeat: Duration,
}

impl fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("url", &self.url)
            .field("user_id", &self.user_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("auth_positive_ttl", &self.auth_positive_ttl)
            .field("auth_negative_ttl", &self.auth_negative_ttl)
            .field("auth_cache_size", &self.auth_cache_size)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("request_timeout", &self.request_timeout)
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

/// A log level, from `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info`
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl LogLevel {
    const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// Returns the level's lower-case name as written in the config, e.g. `"info"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A log output format, from `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Settings {
    /// Returns the documented defaults, which `config/default.toml` spells out key by key.
    fn default() -> Self {
        Settings {
            server: ServerSettings {
                bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
                workers: 0,
                max_body_bytes: 1_048_576,
                shutdown_grace: Duration::from_secs(30),
                send_timeout: Duration::from_secs(60),
                max_url_bytes: 32_768,
                max_header_bytes: 32_768,
            },
            presence: PresenceSettings {
                broadcast_disabled: false,
                delta_window: Duration::from_secs(600),
                changelog_capacity: 1_000_000,
                connection_ttl: Duration::from_secs(300),
                allow_invisible: true,
                max_ids: 1000,
                max_connections_per_user: 256,
                max_users: 0,
            },
            ingest: IngestSettings { token: None },
            persistence: PersistenceSettings {
                path: None,
                interval: Duration::from_secs(30),
            },
            cors: CorsSettings {
                allowed_origins: Vec::new(),
            },
            cluster: ClusterSettings { redis_url: None },
            log: LogSettings {
                level: LogLevel::Info,
                format: LogFormat::Text,
            },
            limits: LimitSettings {
                set_status_per_minute: 5,
                failed_auth_per_minute: 30,
                forwarded_for_hops: 0,
            },
            ui: UiSettings { roster: false },
            stream: StreamSettings::default(),
            upstream: UpstreamSettings {
                url: None,
                user_id: None,
                token: None,
                auth_positive_ttl: Duration::from_secs(60),
                auth_negative_ttl: Duration::from_secs(10),
                auth_cache_size: 100_000,
                reconnect_min: Duration::from_millis(250),
                reconnect_max: Duration::from_secs(30),
                request_timeout: Duration::from_secs(10),
                heartbeat: Duration::from_secs(30),
            },
        }
    }
}

impl Settings {
    /// Returns the settings read from `file` (TOML) if given, else the defaults, with the
    /// `PRESENCED_*` variables among `env` applied on top; pass `std::env::vars()` in production.
    ///
    /// # Errors
    /// Returns an error naming the file, key or variable at fault when the file cannot be read or
    /// parsed, a name is unknown, or a value has the wrong type or is invalid.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let Some(path) = file else {
            return Settings::from_toml_str("", "built-in defaults", env);
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            message: format!("cannot read config file {}: {e}", path.display()),
            kind: ErrorKind::Io(e),
        })?;
        Settings::from_toml_str(&text, &path.display().to_string(), env)
    }

    /// Returns the settings from TOML `text` with the `PRESENCED_*` variables among `env` applied
    /// on top; `origin` names where the text came from (usually its path), for messages.
    ///
    /// # Errors
    /// As [`Settings::load`], except that there is no file to read.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            message: format!("{origin}: invalid TOML: {}", e.to_string().trim_end()),
            kind: ErrorKind::Toml(e),
        })?;
        keys::check_file(&table, origin)?;
        let env = env::apply_env(&mut table, env)?;
        // check_file and apply_env already guarantee the shape, so this only guards against
        // KEYS and the Raw structs drifting apart.
        let raw: validate::RawSettings =
            table.try_into().map_err(|e: toml::de::Error| ConfigError {
                message: format!("{origin}: {}", e.to_string().trim_end().replace('\n', " ")),
                kind: ErrorKind::Toml(e),
            })?;
        raw.validate(&validate::Sources { file: origin, env })
    }
}

/// Why the configuration could not be loaded.
///
/// `Display` is the whole message for the operator: the file, `section.key` or variable, the bad
/// value and what would be valid, plus the text of the underlying io or TOML error if there is
/// one, so printing it alone is enough; `source()` returns that underlying error.
#[derive(Debug)]
pub struct ConfigError {
    message: String,
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Invalid,
    Io(std::io::Error),
    Toml(toml::de::Error),
}

impl ConfigError {
    pub(super) fn invalid(message: String) -> Self {
        ConfigError {
            message,
            kind: ErrorKind::Invalid,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Invalid => None,
            ErrorKind::Io(e) => Some(e),
            ErrorKind::Toml(e) => Some(e),
        }
    }
}

/// `config/default.toml`: the built-in defaults with every key documented, which a test keeps
/// equal to [`Settings::default`]; `presenced --print-config` prints it.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The variable naming the config file when `--config` is not given. It names a file, not a
/// key, so the key layering passes it over.
pub const CONFIG_FILE_VAR: &str = "PRESENCED_CONFIG";

#[cfg(test)]
mod tests;

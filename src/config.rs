//! Configuration: raw TOML + environment -> validated [`Settings`].
//!
//! Loading runs in three layers, so that every error can name what the operator has to fix:
//! 1. the file is parsed into a TOML table, and each of its sections and keys is checked against
//!    `KEYS`, the one table of known keys (unknown names and wrong types name the file and the key);
//! 2. the `PRESENCED_*` environment variables are converted by the type of their key and written
//!    into that table, remembering which variable set which key;
//! 3. the table is deserialized into the private `Raw*` structs and validated into [`Settings`]
//!    (ranges, addresses, enums), naming the key and the file or variable the bad value came from.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
        check_file(&table, origin)?;
        let env = apply_env(&mut table, env)?;
        // check_file and apply_env already guarantee the shape, so this only guards against
        // KEYS and the Raw structs drifting apart.
        let raw: RawSettings = table.try_into().map_err(|e: toml::de::Error| ConfigError {
            message: format!("{origin}: {}", e.to_string().trim_end().replace('\n', " ")),
            kind: ErrorKind::Toml(e),
        })?;
        raw.validate(&Sources { file: origin, env })
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
    fn invalid(message: String) -> Self {
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

/// The type of a key, which decides how its file value is checked and its env value parsed.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Bool,
    Str,
    List,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Int => "an integer",
            Kind::Bool => "a boolean",
            Kind::Str => "a string",
            Kind::List => "an array of strings",
        }
    }

    fn accepts(self, value: &toml::Value) -> bool {
        match (self, value) {
            (Kind::Int, toml::Value::Integer(_))
            | (Kind::Bool, toml::Value::Boolean(_))
            | (Kind::Str, toml::Value::String(_)) => true,
            (Kind::List, toml::Value::Array(items)) => items.iter().all(toml::Value::is_str),
            _ => false,
        }
    }

    /// Returns the TOML value that env `text` stands for. The key's type decides, not the text,
    /// so that a numeric token stays a string.
    fn parse_env(self, var: &str, text: &str, path: &str) -> Result<toml::Value, ConfigError> {
        let value = match self {
            Kind::Int => text.trim().parse().ok().map(toml::Value::Integer),
            Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(toml::Value::Boolean(true)),
                "false" | "0" | "no" => Some(toml::Value::Boolean(false)),
                _ => None,
            },
            Kind::Str => Some(toml::Value::String(text.to_owned())),
            Kind::List => Some(toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            )),
        };
        value.ok_or_else(|| {
            let expected = match self {
                Kind::Bool => "true/false, 1/0 or yes/no",
                _ => self.expected(),
            };
            ConfigError::invalid(format!(
                "env {var} = {text:?} is not valid for {path}: expected {expected}"
            ))
        })
    }
}

struct Key {
    section: &'static str,
    name: &'static str,
    kind: Kind,
    /// A short env name, without the prefix, accepted besides the long one.
    alias: Option<&'static str>,
}

impl Key {
    fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}_{}", self.section, self.name).to_ascii_uppercase()
    }

    fn is_named_by(&self, var: &str) -> bool {
        self.env_var() == var
            || self
                .alias
                .is_some_and(|a| var.strip_prefix(ENV_PREFIX) == Some(a))
    }
}

const fn key(section: &'static str, name: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        kind,
        alias: None,
    }
}

const ENV_PREFIX: &str = "PRESENCED_";

/// Every known key, grouped by section: the single list that file checking, env handling and
/// the tests walk. It must name exactly the fields of the `Raw*` structs, which the tests check
/// by setting every entry both ways.
const KEYS: &[Key] = &[
    Key {
        alias: Some("BIND"),
        ..key("server", "bind", Kind::Str)
    },
    key("server", "workers", Kind::Int),
    key("server", "max_body_bytes", Kind::Int),
    key("server", "shutdown_grace_secs", Kind::Int),
    key("server", "max_url_bytes", Kind::Int),
    key("server", "max_header_bytes", Kind::Int),
    key("presence", "broadcast_disabled", Kind::Bool),
    key("presence", "delta_window_secs", Kind::Int),
    key("presence", "changelog_capacity", Kind::Int),
    key("presence", "connection_ttl_secs", Kind::Int),
    key("presence", "allow_invisible", Kind::Bool),
    key("presence", "max_ids", Kind::Int),
    key("presence", "max_connections_per_user", Kind::Int),
    key("presence", "max_users", Kind::Int),
    // The spec's short form PRESENCED_INGEST_TOKEN already is this key's long form.
    key("ingest", "token", Kind::Str),
    key("persistence", "path", Kind::Str),
    key("persistence", "interval_secs", Kind::Int),
    key("cors", "allowed_origins", Kind::List),
    key("cluster", "redis_url", Kind::Str),
    key("log", "level", Kind::Str),
    key("log", "format", Kind::Str),
    key("limits", "set_status_per_minute", Kind::Int),
    key("limits", "failed_auth_per_minute", Kind::Int),
    key("limits", "forwarded_for_hops", Kind::Int),
    key("ui", "roster", Kind::Bool),
    key("stream", "max_streams", Kind::Int),
    key("stream", "max_streams_per_user", Kind::Int),
    key("stream", "heartbeat_secs", Kind::Int),
    key("stream", "buffer_batches", Kind::Int),
    key("stream", "batch_interval_ms", Kind::Int),
    key("stream", "max_lags_per_minute", Kind::Int),
    key("stream", "max_lifetime_secs", Kind::Int),
];

/// Returns an error naming the first section or key of the file that is unknown or has the
/// wrong type. Serde would catch both too, but without naming the section of an unknown key.
fn check_file(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    for (section, value) in table {
        let known: Vec<&Key> = KEYS.iter().filter(|k| k.section == section).collect();
        if known.is_empty() {
            let mut sections: Vec<&str> = KEYS.iter().map(|k| k.section).collect();
            sections.dedup();
            return Err(ConfigError::invalid(format!(
                "{origin}: unknown section [{section}]: expected one of {}",
                sections.join(", ")
            )));
        }
        let Some(keys) = value.as_table() else {
            return Err(ConfigError::invalid(format!(
                "{origin}: {section} must be a table ([{section}]), not {}",
                value.type_str()
            )));
        };
        for (name, value) in keys {
            let Some(key) = known.iter().find(|k| k.name == name) else {
                let names: Vec<String> = known.iter().map(|k| k.path()).collect();
                return Err(ConfigError::invalid(format!(
                    "{origin}: unknown key {section}.{name}: expected one of {}",
                    names.join(", ")
                )));
            };
            // The value itself is not shown: it might be a misplaced token.
            if !key.kind.accepts(value) {
                return Err(ConfigError::invalid(format!(
                    "{origin}: {section}.{name} has the wrong type: expected {}, not {}",
                    key.kind.expected(),
                    value.type_str()
                )));
            }
        }
    }
    Ok(())
}

/// Writes the `PRESENCED_*` variables among `env` into `table`, and returns which variable set
/// each key (by `section.key`) so that later messages can point at it.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut set_by: HashMap<String, String> = HashMap::new();
    for (var, text) in env {
        if !var.starts_with(ENV_PREFIX) {
            continue;
        }
        let Some(key) = KEYS.iter().find(|k| k.is_named_by(&var)) else {
            let names: Vec<String> = KEYS
                .iter()
                .flat_map(|k| {
                    k.alias
                        .map(|a| format!("{ENV_PREFIX}{a}"))
                        .into_iter()
                        .chain([k.env_var()])
                })
                .collect();
            return Err(ConfigError::invalid(format!(
                "unknown environment variable {var}: expected one of {}",
                names.join(", ")
            )));
        };
        let path = key.path();
        if let Some(other) = set_by.get(&path).filter(|other| **other != var) {
            return Err(ConfigError::invalid(format!(
                "{other} and {var} both set {path}, which is ambiguous: unset one of them"
            )));
        }
        let value = key.kind.parse_env(&var, &text, &path)?;
        let section = table
            .entry(key.section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // check_file has rejected a section that is not a table, so this always matches.
        if let toml::Value::Table(section) = section {
            section.insert(key.name.to_owned(), value);
        }
        set_by.insert(path, var);
    }
    Ok(set_by)
}

// The raw layer: what the file and the environment said, before any validation. `None` means
// the key was not given, so the default from `Settings::default` stays.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    server: RawServer,
    presence: RawPresence,
    ingest: RawIngest,
    persistence: RawPersistence,
    cors: RawCors,
    cluster: RawCluster,
    log: RawLog,
    limits: RawLimits,
    ui: RawUi,
    stream: RawStream,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    bind: Option<String>,
    workers: Option<i64>,
    max_body_bytes: Option<i64>,
    shutdown_grace_secs: Option<i64>,
    max_url_bytes: Option<i64>,
    max_header_bytes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPresence {
    broadcast_disabled: Option<bool>,
    delta_window_secs: Option<i64>,
    changelog_capacity: Option<i64>,
    connection_ttl_secs: Option<i64>,
    allow_invisible: Option<bool>,
    max_ids: Option<i64>,
    max_connections_per_user: Option<i64>,
    max_users: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPersistence {
    path: Option<String>,
    interval_secs: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCors {
    allowed_origins: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCluster {
    redis_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    set_status_per_minute: Option<i64>,
    failed_auth_per_minute: Option<i64>,
    forwarded_for_hops: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawUi {
    roster: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawStream {
    max_streams: Option<i64>,
    max_streams_per_user: Option<i64>,
    heartbeat_secs: Option<i64>,
    buffer_batches: Option<i64>,
    batch_interval_ms: Option<i64>,
    max_lags_per_minute: Option<i64>,
    max_lifetime_secs: Option<i64>,
}

const REDIS_SCHEMES: [&str; 3] = ["redis://", "rediss://", "unix://"];

/// Where values came from: the file, unless `env` (`section.key` -> variable) says otherwise.
struct Sources<'a> {
    file: &'a str,
    env: HashMap<String, String>,
}

impl Sources<'_> {
    fn bad(
        &self,
        key: &str,
        value: &dyn fmt::Debug,
        problem: &str,
        expected: &dyn fmt::Display,
    ) -> ConfigError {
        let from = match self.env.get(key) {
            Some(var) => format!("env {var}"),
            None => self.file.to_owned(),
        };
        ConfigError::invalid(format!(
            "{key} = {value:?} is {problem}: expected {expected} (from {from})"
        ))
    }

    /// Returns `value` converted to `T` if it lies in `range`.
    fn int<T: TryFrom<i64>>(
        &self,
        key: &str,
        value: i64,
        range: RangeInclusive<i64>,
    ) -> Result<T, ConfigError> {
        T::try_from(value)
            .ok()
            .filter(|_| range.contains(&value))
            .ok_or_else(|| {
                let expected = format!("{}..={}", range.start(), range.end());
                self.bad(key, &value, "out of range", &expected)
            })
    }
}

impl RawSettings {
    /// Returns the typed settings: every key that was given, once checked, else its default.
    fn validate(self, from: &Sources) -> Result<Settings, ConfigError> {
        let RawSettings {
            server,
            presence,
            ingest,
            persistence,
            cors,
            cluster,
            log,
            limits,
            ui,
            stream,
        } = self;
        let secs = |key, value, range| from.int(key, value, range).map(Duration::from_secs);
        let mut s = Settings::default();

        if let Some(v) = server.bind {
            let expected = "a socket address like 127.0.0.1:3000";
            s.server.bind = v
                .parse()
                .map_err(|_| from.bad("server.bind", &v, "invalid", &expected))?;
        }
        if let Some(v) = server.workers {
            s.server.workers = from.int("server.workers", v, 0..=1024)?;
        }
        if let Some(v) = server.max_body_bytes {
            s.server.max_body_bytes = from.int("server.max_body_bytes", v, 1024..=268_435_456)?;
        }
        if let Some(v) = server.shutdown_grace_secs {
            s.server.shutdown_grace = secs("server.shutdown_grace_secs", v, 0..=3600)?;
        }
        // Both stay below what actix-http's parser takes (a 64 KiB URI, a 128 KiB head), so a
        // request over them gets our JSON answer rather than the parser's bare one.
        if let Some(v) = server.max_url_bytes {
            s.server.max_url_bytes = from.int("server.max_url_bytes", v, 1024..=65_000)?;
        }
        if let Some(v) = server.max_header_bytes {
            s.server.max_header_bytes = from.int("server.max_header_bytes", v, 1024..=65_536)?;
        }

        if let Some(v) = presence.broadcast_disabled {
            s.presence.broadcast_disabled = v;
        }
        if let Some(v) = presence.delta_window_secs {
            s.presence.delta_window = secs("presence.delta_window_secs", v, 1..=86_400)?;
        }
        if let Some(v) = presence.changelog_capacity {
            s.presence.changelog_capacity =
                from.int("presence.changelog_capacity", v, 1..=100_000_000)?;
        }
        if let Some(v) = presence.connection_ttl_secs {
            s.presence.connection_ttl = secs("presence.connection_ttl_secs", v, 1..=86_400)?;
        }
        if let Some(v) = presence.allow_invisible {
            s.presence.allow_invisible = v;
        }
        if let Some(v) = presence.max_ids {
            s.presence.max_ids = from.int("presence.max_ids", v, 1..=100_000)?;
        }
        if let Some(v) = presence.max_connections_per_user {
            s.presence.max_connections_per_user =
                from.int("presence.max_connections_per_user", v, 0..=1_000_000)?;
        }
        if let Some(v) = presence.max_users {
            s.presence.max_users = from.int("presence.max_users", v, 0..=100_000_000)?;
        }

        // For the optional strings an empty value means none, so that an env variable set to ""
        // can switch off what the file switched on.
        s.ingest.token = ingest.token.filter(|t| !t.is_empty());
        s.persistence.path = persistence
            .path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(v) = persistence.interval_secs {
            s.persistence.interval = secs("persistence.interval_secs", v, 1..=86_400)?;
        }

        if let Some(v) = cors.allowed_origins {
            if let Some(bad) = v.iter().find(|o| !is_valid_origin(o)) {
                let expected = "\"*\" or an origin like https://chat.example.com or \
                    http://localhost:8080 (scheme http or https, host, optional port, no path)";
                return Err(from.bad("cors.allowed_origins", bad, "not a valid origin", &expected));
            }
            s.cors.allowed_origins = v;
        }

        if let Some(v) = cluster.redis_url.filter(|u| !u.is_empty()) {
            if !REDIS_SCHEMES.iter().any(|scheme| v.starts_with(scheme)) {
                // A Redis URL may carry a password, so the message does not repeat it.
                let hidden = format_args!("<not shown>");
                let expected = "a URL starting with redis://, rediss:// or unix://";
                return Err(from.bad("cluster.redis_url", &hidden, "invalid", &expected));
            }
            s.cluster.redis_url = Some(v);
        }

        if let Some(v) = log.level {
            const LEVELS: &str = "error, warn, info, debug or trace";
            s.log.level = LogLevel::ALL
                .into_iter()
                .find(|l| l.as_str().eq_ignore_ascii_case(&v))
                .ok_or_else(|| from.bad("log.level", &v, "invalid", &LEVELS))?;
        }
        if let Some(v) = log.format {
            s.log.format = match v.to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(from.bad("log.format", &v, "invalid", &"text or json")),
            };
        }

        if let Some(v) = limits.set_status_per_minute {
            s.limits.set_status_per_minute =
                from.int("limits.set_status_per_minute", v, 0..=10_000)?;
        }
        if let Some(v) = limits.failed_auth_per_minute {
            s.limits.failed_auth_per_minute =
                from.int("limits.failed_auth_per_minute", v, 0..=10_000)?;
        }
        if let Some(v) = limits.forwarded_for_hops {
            s.limits.forwarded_for_hops = from.int("limits.forwarded_for_hops", v, 0..=16)?;
        }

        if let Some(v) = ui.roster {
            s.ui.roster = v;
        }

        if let Some(v) = stream.max_streams {
            s.stream.max_streams = from.int("stream.max_streams", v, 0..=1_000_000)?;
        }
        if let Some(v) = stream.max_streams_per_user {
            s.stream.max_streams_per_user =
                from.int("stream.max_streams_per_user", v, 1..=10_000)?;
        }
        if let Some(v) = stream.heartbeat_secs {
            s.stream.heartbeat = secs("stream.heartbeat_secs", v, 1..=3600)?;
        }
        if let Some(v) = stream.buffer_batches {
            s.stream.buffer_batches = from.int("stream.buffer_batches", v, 1..=1_000_000)?;
        }
        if let Some(v) = stream.batch_interval_ms {
            s.stream.batch_interval =
                Duration::from_millis(from.int("stream.batch_interval_ms", v, 0..=10_000)?);
        }
        if let Some(v) = stream.max_lags_per_minute {
            s.stream.max_lags_per_minute = from.int("stream.max_lags_per_minute", v, 0..=1000)?;
        }
        if let Some(v) = stream.max_lifetime_secs {
            s.stream.max_lifetime = secs("stream.max_lifetime_secs", v, 0..=86_400)?;
        }
        Ok(s)
    }
}

/// Returns whether `origin` is `*` or `http(s)://host[:port]`, the exact form a browser sends in
/// its `Origin` header; anything else, a path included, could never match one.
fn is_valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    // An IPv6 literal has colons of its own, so its port is found after the closing bracket.
    let (host, port) = match rest.rfind(']') {
        Some(end) => rest.split_at(end + 1),
        None => rest.split_at(rest.find(':').unwrap_or(rest.len())),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        }
    };
    let port_ok = port.is_empty()
        // The digit check keeps out the sign that u16 parsing would accept.
        || port.strip_prefix(':').is_some_and(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    const DEFAULT_TOML: &str = include_str!("../config/default.toml");

    /// One valid, non-default value per known key: as an env string and as a TOML literal that
    /// must mean the same.
    const SAMPLES: &[(&str, &str, &str)] = &[
        ("server.bind", "0.0.0.0:8080", r#""0.0.0.0:8080""#),
        ("server.workers", "4", "4"),
        ("server.max_body_bytes", "2048", "2048"),
        ("server.shutdown_grace_secs", "0", "0"),
        ("server.max_url_bytes", "1024", "1024"),
        ("server.max_header_bytes", "65536", "65536"),
        ("presence.broadcast_disabled", "yes", "true"),
        ("presence.delta_window_secs", "60", "60"),
        ("presence.changelog_capacity", "10", "10"),
        ("presence.connection_ttl_secs", "86400", "86400"),
        ("presence.allow_invisible", "0", "false"),
        ("presence.max_ids", "100000", "100000"),
        ("presence.max_connections_per_user", "0", "0"),
        ("presence.max_users", "100", "100"),
        ("ingest.token", "s3cret", r#""s3cret""#),
        (
            "persistence.path",
            "/var/lib/presenced/snap",
            r#""/var/lib/presenced/snap""#,
        ),
        ("persistence.interval_secs", "1", "1"),
        (
            "cors.allowed_origins",
            " https://chat.example.com, ,http://localhost:8080 ",
            r#"["https://chat.example.com", "http://localhost:8080"]"#,
        ),
        (
            "cluster.redis_url",
            "rediss://cache:6380/0",
            r#""rediss://cache:6380/0""#,
        ),
        ("log.level", "DEBUG", r#""debug""#),
        ("log.format", "json", r#""json""#),
        ("limits.set_status_per_minute", "0", "0"),
        ("limits.failed_auth_per_minute", "10000", "10000"),
        ("limits.forwarded_for_hops", "2", "2"),
        ("ui.roster", "YES", "true"),
        ("stream.max_streams", "0", "0"),
        ("stream.max_streams_per_user", "1", "1"),
        ("stream.heartbeat_secs", "3600", "3600"),
        ("stream.buffer_batches", "1", "1"),
        ("stream.batch_interval_ms", "0", "0"),
        ("stream.max_lags_per_minute", "1000", "1000"),
        ("stream.max_lifetime_secs", "60", "60"),
    ];

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_toml_str("", "config/x.toml", env(pairs))
    }

    fn from_file(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml_str(text, "config/x.toml", env(&[]))
    }

    fn message(result: Result<Settings, ConfigError>) -> String {
        match result {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn is_key_line(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(s.server.workers, 0);
        assert_eq!(s.server.max_body_bytes, 1_048_576);
        assert_eq!(s.server.shutdown_grace, Duration::from_secs(30));
        assert!(!s.presence.broadcast_disabled);
        assert_eq!(s.presence.delta_window, Duration::from_secs(600));
        assert_eq!(s.presence.changelog_capacity, 1_000_000);
        assert_eq!(s.presence.connection_ttl, Duration::from_secs(300));
        assert!(s.presence.allow_invisible);
        assert_eq!(s.presence.max_ids, 1000);
        assert_eq!(s.ingest.token, None);
        assert_eq!(s.persistence.path, None);
        assert_eq!(s.persistence.interval, Duration::from_secs(30));
        assert!(s.cors.allowed_origins.is_empty());
        assert_eq!(s.cluster.redis_url, None);
        assert_eq!(s.log.level, LogLevel::Info);
        assert_eq!(s.log.level.as_str(), "info");
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.server.max_url_bytes, 32_768);
        assert_eq!(s.server.max_header_bytes, 32_768);
        assert_eq!(s.presence.max_connections_per_user, 256);
        assert_eq!(s.presence.max_users, 0);
        assert_eq!(s.limits.set_status_per_minute, 5);
        assert_eq!(s.limits.failed_auth_per_minute, 30);
        assert_eq!(s.limits.forwarded_for_hops, 0);
        assert!(!s.ui.roster);
        assert_eq!(Settings::load(None, env(&[])).unwrap(), s);
    }

    #[test]
    fn default_toml_parses_to_the_defaults() {
        let s = Settings::from_toml_str(DEFAULT_TOML, "config/default.toml", env(&[])).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn default_toml_documents_every_known_key_with_a_comment_and_valid_examples() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for pair in lines.windows(2) {
            let key_line = pair[1].strip_prefix("# ").unwrap_or(pair[1]);
            if is_key_line(key_line) {
                let comment = pair[0].strip_prefix("# ").unwrap_or("");
                assert!(
                    !comment.is_empty() && !is_key_line(comment),
                    "no comment above {key_line}"
                );
            }
        }
        let uncommented: Vec<&str> = lines
            .iter()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => rest,
                _ => line,
            })
            .collect();
        let uncommented = uncommented.join("\n");
        let table: toml::Table = uncommented.parse().unwrap();
        let mut documented: Vec<String> = table
            .iter()
            .flat_map(|(s, keys)| {
                keys.as_table()
                    .unwrap()
                    .keys()
                    .map(move |k| format!("{s}.{k}"))
            })
            .collect();
        let mut known: Vec<String> = KEYS.iter().map(Key::path).collect();
        documented.sort();
        known.sort();
        assert_eq!(documented, known);
        from_file(&uncommented).unwrap();
    }

    #[test]
    fn every_key_is_settable_from_a_file() {
        let text: String = SAMPLES
            .iter()
            .map(|(path, _, toml)| format!("{path} = {toml}\n"))
            .collect();
        let expected = Settings {
            server: ServerSettings {
                bind: "0.0.0.0:8080".parse().unwrap(),
                workers: 4,
                max_body_bytes: 2048,
                shutdown_grace: Duration::ZERO,
                max_url_bytes: 1024,
                max_header_bytes: 65_536,
            },
            presence: PresenceSettings {
                broadcast_disabled: true,
                delta_window: Duration::from_secs(60),
                changelog_capacity: 10,
                connection_ttl: Duration::from_secs(86_400),
                allow_invisible: false,
                max_ids: 100_000,
                max_connections_per_user: 0,
                max_users: 100,
            },
            ingest: IngestSettings {
                token: Some("s3cret".into()),
            },
            persistence: PersistenceSettings {
                path: Some("/var/lib/presenced/snap".into()),
                interval: Duration::from_secs(1),
            },
            cors: CorsSettings {
                allowed_origins: vec![
                    "https://chat.example.com".into(),
                    "http://localhost:8080".into(),
                ],
            },
            cluster: ClusterSettings {
                redis_url: Some("rediss://cache:6380/0".into()),
            },
            log: LogSettings {
                level: LogLevel::Debug,
                format: LogFormat::Json,
            },
            limits: LimitSettings {
                set_status_per_minute: 0,
                failed_auth_per_minute: 10_000,
                forwarded_for_hops: 2,
            },
            ui: UiSettings { roster: true },
            stream: StreamSettings {
                max_streams: 0,
                max_streams_per_user: 1,
                heartbeat: Duration::from_secs(3600),
                buffer_batches: 1,
                batch_interval: Duration::ZERO,
                max_lags_per_minute: 1000,
                max_lifetime: Duration::from_secs(60),
            },
        };
        assert_eq!(from_file(&text).unwrap(), expected);
    }

    #[test]
    fn every_key_is_settable_from_the_environment() {
        assert_eq!(SAMPLES.len(), KEYS.len());
        for key in KEYS {
            let path = key.path();
            let (_, text, toml) = SAMPLES
                .iter()
                .find(|(p, ..)| *p == path)
                .unwrap_or_else(|| panic!("no sample for {path}"));
            let via_env = from_env(&[(&key.env_var(), text)]).unwrap_or_else(|e| panic!("{e}"));
            let via_file = from_file(&format!("{path} = {toml}")).unwrap();
            assert_eq!(via_env, via_file, "{path}");
            assert_ne!(via_env, Settings::default(), "{path}");
        }
    }

    #[test]
    fn aliases_set_bind_and_ingest_token() {
        let s = from_env(&[
            ("PRESENCED_BIND", "[::1]:9000"),
            ("PRESENCED_INGEST_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(s.server.bind, "[::1]:9000".parse().unwrap());
        assert_eq!(s.ingest.token.as_deref(), Some("t"));
    }

    #[test]
    fn alias_and_long_form_together_are_rejected_as_ambiguous() {
        let msg = message(from_env(&[
            ("PRESENCED_SERVER_BIND", "0.0.0.0:1"),
            ("PRESENCED_BIND", "0.0.0.0:2"),
        ]));
        assert!(
            msg.contains("PRESENCED_SERVER_BIND and PRESENCED_BIND both set server.bind"),
            "{msg}"
        );
    }

    #[test]
    fn env_values_are_typed_by_the_key_so_a_numeric_token_stays_a_string() {
        let s = from_env(&[
            ("PRESENCED_INGEST_TOKEN", "12345"),
            ("PRESENCED_LOG_LEVEL", "trace"),
        ])
        .unwrap();
        assert_eq!(s.ingest.token.as_deref(), Some("12345"));
        assert_eq!(s.log.level, LogLevel::Trace);
    }

    #[test]
    fn env_overrides_the_file() {
        let s = Settings::from_toml_str(
            "[server]\nworkers = 2\n[presence]\nmax_ids = 7\n",
            "config/x.toml",
            env(&[("PRESENCED_SERVER_WORKERS", "3")]),
        )
        .unwrap();
        assert_eq!((s.server.workers, s.presence.max_ids), (3, 7));
    }

    #[test]
    fn env_booleans_accept_true_false_one_zero_yes_no_in_any_case() {
        for (text, want) in [
            ("true", true),
            ("FALSE", false),
            ("1", true),
            ("0", false),
            ("Yes", true),
            ("no", false),
        ] {
            let s = from_env(&[("PRESENCED_PRESENCE_BROADCAST_DISABLED", text)]).unwrap();
            assert_eq!(s.presence.broadcast_disabled, want, "{text}");
        }
    }

    #[test]
    fn bad_integer_or_boolean_in_env_names_the_variable() {
        let msg = message(from_env(&[("PRESENCED_SERVER_WORKERS", "many")]));
        assert_eq!(
            msg,
            r#"env PRESENCED_SERVER_WORKERS = "many" is not valid for server.workers: expected an integer"#
        );
        let msg = message(from_env(&[("PRESENCED_PRESENCE_ALLOW_INVISIBLE", "maybe")]));
        assert!(
            msg.contains("PRESENCED_PRESENCE_ALLOW_INVISIBLE") && msg.contains("yes/no"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_value_names_the_key_the_range_and_its_source() {
        let msg = message(from_env(&[("PRESENCED_PRESENCE_DELTA_WINDOW_SECS", "0")]));
        assert_eq!(
            msg,
            "presence.delta_window_secs = 0 is out of range: expected 1..=86400 \
             (from env PRESENCED_PRESENCE_DELTA_WINDOW_SECS)"
        );
        let msg = message(from_file("[server]\nworkers = 1025"));
        assert_eq!(
            msg,
            "server.workers = 1025 is out of range: expected 0..=1024 (from config/x.toml)"
        );
        let msg = message(from_file("server.max_body_bytes = -1"));
        assert!(
            msg.contains("server.max_body_bytes = -1 is out of range"),
            "{msg}"
        );
    }

    #[test]
    fn request_size_limits_stay_below_the_parsers_own_and_rate_limits_are_not_negative() {
        let msg = message(from_file("server.max_url_bytes = 70000"));
        assert_eq!(
            msg,
            "server.max_url_bytes = 70000 is out of range: expected 1024..=65000 (from config/x.toml)"
        );
        let msg = message(from_env(&[("PRESENCED_SERVER_MAX_HEADER_BYTES", "512")]));
        assert!(msg.contains("expected 1024..=65536"), "{msg}");
        let msg = message(from_env(&[(
            "PRESENCED_LIMITS_FAILED_AUTH_PER_MINUTE",
            "-1",
        )]));
        assert!(
            msg.starts_with(
                "limits.failed_auth_per_minute = -1 is out of range: expected 0..=10000"
            ),
            "{msg}"
        );
        let msg = message(from_file("[limits]\nforwarded_for_hops = 17"));
        assert!(msg.contains("expected 0..=16"), "{msg}");
        let msg = message(from_file("presence.max_users = -5"));
        assert!(msg.starts_with("presence.max_users = -5"), "{msg}");
    }

    #[test]
    fn unknown_presenced_variable_is_rejected_and_other_variables_are_ignored() {
        let msg = message(from_env(&[("PRESENCED_SERVER_PORT", "80")]));
        assert!(
            msg.contains("unknown environment variable PRESENCED_SERVER_PORT"),
            "{msg}"
        );
        assert!(
            msg.contains("PRESENCED_BIND, PRESENCED_SERVER_BIND"),
            "{msg}"
        );
        let s = from_env(&[
            ("PATH", "/bin"),
            ("PRESENCEDX", "1"),
            ("presenced_server_workers", "x"),
        ]);
        assert_eq!(s.unwrap(), Settings::default());
    }

    #[test]
    fn unknown_key_in_file_is_rejected_with_its_name() {
        let msg = message(from_file("[presence]\nfoo = 1\n"));
        assert!(
            msg.starts_with("config/x.toml: unknown key presence.foo: expected one of"),
            "{msg}"
        );
        assert!(msg.contains("presence.max_ids"), "{msg}");
        let msg = message(from_file("log.colour = true"));
        assert!(
            msg.starts_with("config/x.toml: unknown key log.colour"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_section_in_file_is_rejected_with_its_name() {
        let msg = message(from_file("[bogus]\nx = 1\n"));
        assert!(
            msg.starts_with("config/x.toml: unknown section [bogus]: expected one of server,"),
            "{msg}"
        );
        let msg = message(from_file("workers = 4"));
        assert!(
            msg.starts_with("config/x.toml: unknown section [workers]"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_in_file_names_the_key_and_the_file() {
        let msg = message(from_file("[server]\nworkers = \"four\"\n"));
        assert_eq!(
            msg,
            "config/x.toml: server.workers has the wrong type: expected an integer, not string"
        );
        let msg = message(from_file("cors.allowed_origins = \"https://a.example\""));
        assert!(
            msg.contains("config/x.toml: cors.allowed_origins has the wrong type"),
            "{msg}"
        );
        let msg = message(from_file("server = 3"));
        assert!(
            msg.contains("config/x.toml: server must be a table"),
            "{msg}"
        );
    }

    #[test]
    fn unparsable_toml_names_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"[server\nworkers = 1\n").unwrap();
        let err = Settings::load(Some(file.path()), env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: invalid TOML", file.path().display())),
            "{msg}"
        );
        assert!(err.source().is_some_and(|s| s.is::<toml::de::Error>()));
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = Settings::load(Some(&path), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.source().is_some_and(|s| s.is::<std::io::Error>()));
    }

    #[test]
    fn load_reads_the_file_and_applies_env_on_top() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut file,
            b"[presence]\nmax_ids = 5\nconnection_ttl_secs = 9\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(file.path()),
            env(&[("PRESENCED_PRESENCE_MAX_IDS", "6")]),
        )
        .unwrap();
        assert_eq!(s.presence.max_ids, 6);
        assert_eq!(s.presence.connection_ttl, Duration::from_secs(9));
        let msg = message(Settings::load(
            Some(file.path()),
            env(&[("PRESENCED_PRESENCE_MAX_IDS", "0")]),
        ));
        assert!(
            msg.ends_with("(from env PRESENCED_PRESENCE_MAX_IDS)"),
            "{msg}"
        );
    }

    #[test]
    fn cors_origins_must_be_star_or_scheme_host_and_optional_port() {
        for good in [
            "*",
            "https://chat.example.com",
            "http://localhost:8080",
            "http://[::1]:3000",
            "https://10.0.0.1",
        ] {
            let s = from_file(&format!("cors.allowed_origins = [{good:?}]")).unwrap();
            assert_eq!(s.cors.allowed_origins, vec![good.to_string()]);
        }
        for bad in [
            "chat.example.com",
            "ftp://chat.example.com",
            "https://chat.example.com/",
            "https://chat.example.com/app",
            "https://",
            "https://host:",
            "https://host:99999",
            "https://user@host",
            "http://[nope]:80",
        ] {
            let msg = message(from_env(&[(
                "PRESENCED_CORS_ALLOWED_ORIGINS",
                &format!("*,{bad}"),
            )]));
            assert!(
                msg.starts_with(&format!(
                    "cors.allowed_origins = {bad:?} is not a valid origin"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn env_lists_are_comma_separated_and_an_empty_string_is_an_empty_list() {
        let file = "cors.allowed_origins = [\"*\"]";
        let s = Settings::from_toml_str(file, "x", env(&[("PRESENCED_CORS_ALLOWED_ORIGINS", "")]))
            .unwrap();
        assert!(s.cors.allowed_origins.is_empty());
        let s =
            from_env(&[("PRESENCED_CORS_ALLOWED_ORIGINS", " * ,, http://a.example ,")]).unwrap();
        assert_eq!(s.cors.allowed_origins, ["*", "http://a.example"]);
    }

    #[test]
    fn redis_url_must_use_a_redis_scheme_and_is_not_echoed() {
        for good in [
            "redis://127.0.0.1:6379",
            "rediss://:pw@cache:6380/1",
            "unix:///run/redis.sock",
        ] {
            let s = from_env(&[("PRESENCED_CLUSTER_REDIS_URL", good)]).unwrap();
            assert_eq!(s.cluster.redis_url.as_deref(), Some(good));
        }
        let msg = message(from_file(
            "cluster.redis_url = \"http://:hunter2@cache:6379\"",
        ));
        assert!(
            msg.starts_with("cluster.redis_url = <not shown> is invalid"),
            "{msg}"
        );
        assert!(
            msg.contains("redis://, rediss:// or unix://") && !msg.contains("hunter2"),
            "{msg}"
        );
    }

    #[test]
    fn empty_ingest_token_and_empty_optional_strings_mean_none() {
        let file =
            "ingest.token = \"abc\"\npersistence.path = \"/p\"\ncluster.redis_url = \"redis://r\"";
        let vars = [
            ("PRESENCED_INGEST_TOKEN", ""),
            ("PRESENCED_PERSISTENCE_PATH", ""),
            ("PRESENCED_CLUSTER_REDIS_URL", ""),
        ];
        let s = Settings::from_toml_str(file, "x", env(&vars)).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(
            from_file("[ingest]\ntoken = \"\"").unwrap().ingest.token,
            None
        );
    }

    #[test]
    fn bad_bind_and_log_settings_are_rejected_with_what_is_valid() {
        let msg = message(from_env(&[("PRESENCED_BIND", "localhost")]));
        assert_eq!(
            msg,
            "server.bind = \"localhost\" is invalid: expected a socket address like 127.0.0.1:3000 \
             (from env PRESENCED_BIND)"
        );
        let msg = message(from_file("log.level = \"loud\""));
        assert!(msg.contains(
            "log.level = \"loud\" is invalid: expected error, warn, info, debug or trace"
        ));
        let msg = message(from_file("log.format = \"xml\""));
        assert!(msg.contains("log.format = \"xml\" is invalid: expected text or json"));
        assert_eq!(
            from_file("log.format = \"JSON\"").unwrap().log.format,
            LogFormat::Json
        );
    }

    #[test]
    fn ui_roster_must_be_a_boolean_in_the_file_and_in_the_environment() {
        assert!(from_file("[ui]\nroster = true").unwrap().ui.roster);
        assert!(
            !from_env(&[("PRESENCED_UI_ROSTER", "no")])
                .unwrap()
                .ui
                .roster
        );
        let msg = message(from_file("[ui]\nroster = \"yes\""));
        assert_eq!(
            msg,
            "config/x.toml: ui.roster has the wrong type: expected a boolean, not string"
        );
        let msg = message(from_env(&[("PRESENCED_UI_ROSTER", "sometimes")]));
        assert!(
            msg.starts_with("env PRESENCED_UI_ROSTER = \"sometimes\" is not valid for ui.roster"),
            "{msg}"
        );
    }

    #[test]
    fn debug_of_ingest_settings_does_not_print_the_token() {
        let s = from_env(&[("PRESENCED_INGEST_TOKEN", "hunter2")]).unwrap();
        for shown in [
            format!("{:?}", s.ingest),
            format!("{s:?}"),
            format!("{s:#?}"),
        ] {
            assert!(
                !shown.contains("hunter2") && shown.contains("<redacted>"),
                "{shown}"
            );
        }
        assert_eq!(
            format!("{:?}", IngestSettings { token: None }),
            "IngestSettings { token: None }"
        );
    }
}

//! The raw layer (what the file and the environment said, deserialized) and its validation
//! into [`Settings`], each bad value named with its key, its source and what would be valid.

use super::{ConfigError, LogFormat, LogLevel, Settings, UpstreamSettings};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

// The raw layer: what the file and the environment said, before any validation. `None` means
// the key was not given, so the default from `Settings::default` stays.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSettings {
    server: RawServer,
    presence: RawPresence,
    ingest: RawIngest,
    persistence: RawPersistence,
    cors: RawCors,
    cluster: RawCluster,
    log: RawLog,
    limits: RawLimits,
    ui: RawUi,
    upstream: RawUpstream,
    stream: RawStream,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    bind: Option<String>,
    workers: Option<i64>,
    max_body_bytes: Option<i64>,
    shutdown_grace_secs: Option<i64>,
    send_timeout_secs: Option<i64>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    url: Option<String>,
    user_id: Option<String>,
    token: Option<String>,
    auth_positive_ttl_secs: Option<i64>,
    auth_negative_ttl_secs: Option<i64>,
    auth_cache_size: Option<i64>,
    reconnect_min_ms: Option<i64>,
    reconnect_max_secs: Option<i64>,
    request_timeout_secs: Option<i64>,
    heartbeat_secs: Option<i64>,
}

const REDIS_SCHEMES: [&str; 3] = ["redis://", "rediss://", "unix://"];

/// Where values came from: the file, unless `env` (`section.key` -> variable) says otherwise.
pub(super) struct Sources<'a> {
    pub(super) file: &'a str,
    pub(super) env: HashMap<String, String>,
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

    /// Returns `value` seconds if it lies in `range`.
    fn secs(
        &self,
        key: &str,
        value: i64,
        range: RangeInclusive<i64>,
    ) -> Result<Duration, ConfigError> {
        self.int(key, value, range).map(Duration::from_secs)
    }

    /// Returns `value` milliseconds if it lies in `range`.
    fn millis(
        &self,
        key: &str,
        value: i64,
        range: RangeInclusive<i64>,
    ) -> Result<Duration, ConfigError> {
        self.int(key, value, range).map(Duration::from_millis)
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
    pub(super) fn validate(self, from: &Sources) -> Result<Settings, ConfigError> {
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
            upstream,
            stream,
        } = self;
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
            s.server.shutdown_grace = from.secs("server.shutdown_grace_secs", v, 0..=3600)?;
        }
        if let Some(v) = server.send_timeout_secs {
            s.server.send_timeout = from.secs("server.send_timeout_secs", v, 0..=3600)?;
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
            s.presence.delta_window = from.secs("presence.delta_window_secs", v, 1..=86_400)?;
        }
        if let Some(v) = presence.changelog_capacity {
            s.presence.changelog_capacity =
                from.int("presence.changelog_capacity", v, 1..=100_000_000)?;
        }
        if let Some(v) = presence.connection_ttl_secs {
            s.presence.connection_ttl = from.secs("presence.connection_ttl_secs", v, 1..=86_400)?;
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
            s.persistence.interval = from.secs("persistence.interval_secs", v, 1..=86_400)?;
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
            s.stream.heartbeat = from.secs("stream.heartbeat_secs", v, 1..=3600)?;
        }
        if let Some(v) = stream.buffer_batches {
            s.stream.buffer_batches = from.int("stream.buffer_batches", v, 1..=1_000_000)?;
        }
        if let Some(v) = stream.batch_interval_ms {
            s.stream.batch_interval = from.millis("stream.batch_interval_ms", v, 0..=10_000)?;
        }
        if let Some(v) = stream.max_lags_per_minute {
            s.stream.max_lags_per_minute = from.int("stream.max_lags_per_minute", v, 0..=1000)?;
        }
        if let Some(v) = stream.max_lifetime_secs {
            s.stream.max_lifetime = from.secs("stream.max_lifetime_secs", v, 0..=86_400)?;
        }

        s.upstream = upstream.validate(from, s.upstream)?;
        Ok(s)
    }
}

impl RawUpstream {
    /// Returns `defaults` with every key that was given, once checked.
    fn validate(
        self,
        from: &Sources,
        defaults: UpstreamSettings,
    ) -> Result<UpstreamSettings, ConfigError> {
        let mut u = defaults;
        if let Some(v) = self.url.filter(|u| !u.is_empty()) {
            u.url = Some(upstream_url(from, v)?);
        }
        u.user_id = self.user_id.filter(|v| !v.is_empty());
        u.token = self.token.filter(|v| !v.is_empty());
        if let Some(v) = self.auth_positive_ttl_secs {
            u.auth_positive_ttl = from.secs("upstream.auth_positive_ttl_secs", v, 1..=86_400)?;
        }
        // 0 remembers no refusal, though a burst of one unknown token still makes one call.
        if let Some(v) = self.auth_negative_ttl_secs {
            u.auth_negative_ttl = from.secs("upstream.auth_negative_ttl_secs", v, 0..=3600)?;
        }
        if let Some(v) = self.auth_cache_size {
            u.auth_cache_size = from.int("upstream.auth_cache_size", v, 1..=10_000_000)?;
        }
        if let Some(v) = self.reconnect_min_ms {
            u.reconnect_min = from.millis("upstream.reconnect_min_ms", v, 10..=60_000)?;
        }
        if let Some(v) = self.reconnect_max_secs {
            u.reconnect_max = from.secs("upstream.reconnect_max_secs", v, 1..=3600)?;
        }
        if let Some(v) = self.request_timeout_secs {
            u.request_timeout = from.secs("upstream.request_timeout_secs", v, 1..=300)?;
        }
        if let Some(v) = self.heartbeat_secs {
            u.heartbeat = from.secs("upstream.heartbeat_secs", v, 1..=3600)?;
        }
        Ok(u)
    }
}

/// Returns the chat server's base URL without its trailing `/`, if it is `http(s)://host...`;
/// `https` only in a build with the `upstream-tls` feature.
fn upstream_url(from: &Sources, url: String) -> Result<String, ConfigError> {
    let key = "upstream.url";
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let tls = cfg!(feature = "upstream-tls");
    let expected = if tls {
        "a URL like http://rocketchat:3000 or https://chat.example.com"
    } else {
        "a URL like http://rocketchat:3000 (this build has no TLS: https needs the \
         upstream-tls feature, see docs/rocketchat.md)"
    };
    let host_ok = !rest.is_empty() && !rest.starts_with('/');
    let scheme_ok = scheme == "http" || (tls && scheme == "https");
    if !(host_ok && scheme_ok && !url.contains(['?', '#', ' '])) {
        return Err(from.bad(key, &url, "invalid", &expected));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Returns whether `origin` is `*` or `http(s)://host[:port]`, the exact form a browser sends in
/// its `Origin` header; anything else, a path included, could never match one.
pub(super) fn is_valid_origin(origin: &str) -> bool {
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

//! The one table of known keys, [`KEYS`]: each key's section, name, type and env names. File
//! checking, env handling and the tests all walk it.

use super::ConfigError;

/// The type of a key, which decides how its file value is checked and its env value parsed.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Int,
    Bool,
    Str,
    List,
}

impl Kind {
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Int => "an integer",
            Kind::Bool => "a boolean",
            Kind::Str => "a string",
            Kind::List => "an array of strings",
        }
    }

    pub(super) fn accepts(self, value: &toml::Value) -> bool {
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
    pub(super) fn parse_env(
        self,
        var: &str,
        text: &str,
        path: &str,
    ) -> Result<toml::Value, ConfigError> {
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

pub(super) struct Key {
    pub(super) section: &'static str,
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    /// A short env name, without the prefix, accepted besides the long one.
    pub(super) alias: Option<&'static str>,
}

impl Key {
    pub(super) fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    pub(super) fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}_{}", self.section, self.name).to_ascii_uppercase()
    }

    pub(super) fn is_named_by(&self, var: &str) -> bool {
        self.env_var() == var
            || self
                .alias
                .is_some_and(|a| var.strip_prefix(ENV_PREFIX) == Some(a))
    }
}

pub(super) const fn key(section: &'static str, name: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        kind,
        alias: None,
    }
}

pub(super) const ENV_PREFIX: &str = "PRESENCED_";

/// Every known key, grouped by section: the single list that file checking, env handling and
/// the tests walk. It must name exactly the fields of the `Raw*` structs, which the tests check
/// by setting every entry both ways.
pub(super) const KEYS: &[Key] = &[
    Key {
        alias: Some("BIND"),
        ..key("server", "bind", Kind::Str)
    },
    key("server", "workers", Kind::Int),
    key("server", "max_body_bytes", Kind::Int),
    key("server", "shutdown_grace_secs", Kind::Int),
    key("server", "send_timeout_secs", Kind::Int),
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
    key("upstream", "url", Kind::Str),
    key("upstream", "user_id", Kind::Str),
    key("upstream", "token", Kind::Str),
    key("upstream", "auth_positive_ttl_secs", Kind::Int),
    key("upstream", "auth_negative_ttl_secs", Kind::Int),
    key("upstream", "auth_cache_size", Kind::Int),
    key("upstream", "reconnect_min_ms", Kind::Int),
    key("upstream", "reconnect_max_secs", Kind::Int),
    key("upstream", "request_timeout_secs", Kind::Int),
    key("upstream", "heartbeat_secs", Kind::Int),
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
pub(super) fn check_file(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
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

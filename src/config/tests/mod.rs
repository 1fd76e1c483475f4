//! The configuration's tests: defaults and the file here, the environment in [`env`],
//! validated values in [`values`].

mod env;
mod values;

use super::keys::{Key, KEYS};
use super::*;
use std::error::Error as _;

/// One valid, non-default value per known key: as an env string and as a TOML literal that
/// must mean the same.
pub(super) const SAMPLES: &[(&str, &str, &str)] = &[
    ("server.bind", "0.0.0.0:8080", r#""0.0.0.0:8080""#),
    ("server.workers", "4", "4"),
    ("server.max_body_bytes", "2048", "2048"),
    ("server.shutdown_grace_secs", "0", "0"),
    ("server.send_timeout_secs", "5", "5"),
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
    (
        "upstream.url",
        "http://rocketchat:3000/",
        r#""http://rocketchat:3000""#,
    ),
    ("upstream.user_id", "svc-presence", r#""svc-presence""#),
    ("upstream.token", "pat-123", r#""pat-123""#),
    ("upstream.auth_positive_ttl_secs", "5", "5"),
    ("upstream.auth_negative_ttl_secs", "0", "0"),
    ("upstream.auth_cache_size", "7", "7"),
    ("upstream.reconnect_min_ms", "10", "10"),
    ("upstream.reconnect_max_secs", "1", "1"),
    ("upstream.request_timeout_secs", "2", "2"),
    ("upstream.heartbeat_secs", "3", "3"),
    ("stream.max_streams", "0", "0"),
    ("stream.max_streams_per_user", "1", "1"),
    ("stream.heartbeat_secs", "3600", "3600"),
    ("stream.buffer_batches", "1", "1"),
    ("stream.batch_interval_ms", "0", "0"),
    ("stream.max_lags_per_minute", "1000", "1000"),
    ("stream.max_lifetime_secs", "60", "60"),
];

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn from_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_toml_str("", "config/x.toml", env(pairs))
}

pub(super) fn from_file(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml_str(text, "config/x.toml", env(&[]))
}

pub(super) fn message(result: Result<Settings, ConfigError>) -> String {
    match result {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn is_key_line(line: &str) -> bool {
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
    assert_eq!(s.server.send_timeout, Duration::from_secs(60));
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
    assert_eq!(s.upstream.url, None);
    assert_eq!(s.upstream.auth_positive_ttl, Duration::from_secs(60));
    assert_eq!(s.upstream.auth_negative_ttl, Duration::from_secs(10));
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
            send_timeout: Duration::from_secs(5),
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
        upstream: UpstreamSettings {
            url: Some("http://rocketchat:3000".into()),
            user_id: Some("svc-presence".into()),
            token: Some("pat-123".into()),
            auth_positive_ttl: Duration::from_secs(5),
            auth_negative_ttl: Duration::ZERO,
            auth_cache_size: 7,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            heartbeat: Duration::from_secs(3),
        },
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

//! Validated values: ranges, origins, URLs, addresses, and what a refusal says.

use super::*;

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
        msg.starts_with("limits.failed_auth_per_minute = -1 is out of range: expected 0..=10000"),
        "{msg}"
    );
    let msg = message(from_file("[limits]\nforwarded_for_hops = 17"));
    assert!(msg.contains("expected 0..=16"), "{msg}");
    let msg = message(from_file("presence.max_users = -5"));
    assert!(msg.starts_with("presence.max_users = -5"), "{msg}");
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
    assert!(
        msg.contains("log.level = \"loud\" is invalid: expected error, warn, info, debug or trace")
    );
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

#[test]
fn upstream_url_must_be_http_with_a_host_and_loses_its_trailing_slash() {
    let s = from_env(&[("PRESENCED_UPSTREAM_URL", "http://chat.internal/rc/")]).unwrap();
    assert_eq!(s.upstream.url.as_deref(), Some("http://chat.internal/rc"));
    for bad in [
        "rocketchat:3000",
        "ftp://x",
        "http://",
        "http:///x",
        "http://x?y=1",
    ] {
        let msg = message(from_env(&[("PRESENCED_UPSTREAM_URL", bad)]));
        assert!(
            msg.starts_with(&format!(
                "upstream.url = {bad:?} is invalid: expected a URL"
            )),
            "{msg}"
        );
        assert!(msg.ends_with("(from env PRESENCED_UPSTREAM_URL)"), "{msg}");
    }
    let https = from_env(&[("PRESENCED_UPSTREAM_URL", "https://chat.example.com")]);
    assert_eq!(https.is_ok(), cfg!(feature = "upstream-tls"));
}

#[test]
fn debug_of_upstream_settings_does_not_print_the_token() {
    let s = from_env(&[("PRESENCED_UPSTREAM_TOKEN", "hunter3")]).unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("hunter3") && shown.contains("<redacted>"),
        "{shown}"
    );
}

//! Settings from `PRESENCED_*` variables: every key, aliases, types, precedence, refusals.

use super::*;

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
fn env_lists_are_comma_separated_and_an_empty_string_is_an_empty_list() {
    let file = "cors.allowed_origins = [\"*\"]";
    let s =
        Settings::from_toml_str(file, "x", env(&[("PRESENCED_CORS_ALLOWED_ORIGINS", "")])).unwrap();
    assert!(s.cors.allowed_origins.is_empty());
    let s = from_env(&[("PRESENCED_CORS_ALLOWED_ORIGINS", " * ,, http://a.example ,")]).unwrap();
    assert_eq!(s.cors.allowed_origins, ["*", "http://a.example"]);
}

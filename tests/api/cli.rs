//! The real `presenced` binary as a child process (docs/configuration.md): config errors stop
//! start-up naming what is wrong, `--demo` serves the upstream page's example,
//! and SIGTERM ends it with exit status 0.
//!
//! Every child gets a clean environment (only `PATH`), so no `PRESENCED_*`
//! variable of the test run can leak in; every wait is bounded.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_millis(50);
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// The caller of the upstream page's `curl`, seeded by `--demo`.
const DEMO_TOKEN: &str = "9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq";
const DEMO_USER: &str = "aobEdbYhXfu5hkeqG";

/// A started child; killed if the test ends without stopping it.
pub(crate) struct Running {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).expect("stderr file reads")
    }

    /// Waits up to 10 s for the child to exit.
    pub(crate) async fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "presenced did not exit within {GIVE_UP_AFTER:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits for the child to exit, asserts its exit code and returns its stderr.
    pub(crate) async fn exits_with(&mut self, code: i32) -> String {
        let status = self.wait().await;
        let stderr = self.stderr();
        assert_eq!(status.code(), Some(code), "{status}; stderr:\n{stderr}");
        stderr
    }

    /// Sends SIGTERM through `kill(1)`.
    fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `INT`, `KILL`, ...) through `kill(1)`.
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} failed");
    }
}

/// Starts `presenced` with `args` and exactly the environment `vars` (plus PATH).
fn start(args: &[&str], vars: &[(&str, &str)]) -> Running {
    let stderr = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_presenced"));
    command
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.reopen().expect("temp file reopens"));
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    Running {
        child: command.spawn().expect("presenced starts"),
        stderr,
    }
}

/// Runs `presenced` expecting it to refuse to start; returns its stderr.
///
/// `--bind 127.0.0.1:0` keeps a start that wrongly succeeds off any real port;
/// the bounded wait then fails the test instead of hanging.
pub(crate) async fn refused(args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut all = vec!["--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = start(&all, vars);
    let status = child.wait().await;
    let stderr = child.stderr();
    assert!(!status.success(), "{status}; stderr:\n{stderr}");
    assert!(status.code().is_some(), "killed by a signal: {status}");
    stderr
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("config written");
    file
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Starts `presenced` on a port the kernel picks (`--bind 127.0.0.1:0`) and
/// returns it with the port it logged, so no other test can be on that port.
pub(crate) async fn start_listening(args: &[&str], vars: &[(&str, &str)]) -> (Running, u16) {
    let mut all = vec!["--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = start(&all, vars);
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        let stderr = child.stderr();
        let logged = stderr
            .split("listening on http://127.0.0.1:")
            .nth(1)
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            });
        if let Some(port) = logged.and_then(|digits| digits.parse().ok()) {
            wait_healthy(&mut child, port).await;
            return (child, port);
        }
        if let Some(status) = child.child.try_wait().expect("child status") {
            panic!("presenced exited early: {status}; stderr:\n{stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "presenced did not log its port within {GIVE_UP_AFTER:?}; stderr:\n{stderr}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `GET /health` until it answers 200; fails if the child exits or 10 s pass.
async fn wait_healthy(child: &mut Running, port: u16) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        if let Ok(response) = client.get(&url).send().await {
            if response.status() == StatusCode::OK {
                return;
            }
        }
        if let Some(status) = child.child.try_wait().expect("child status") {
            panic!(
                "presenced exited early: {status}; stderr:\n{}",
                child.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "/health did not answer within {GIVE_UP_AFTER:?}; stderr:\n{}",
            child.stderr()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[tokio::test]
async fn unknown_key_in_the_config_file_stops_start_up_naming_key_and_file() {
    let file = config_file("[presence]\nmax_ids = 10\nmax_idz = 10\n");
    let stderr = refused(&["--config", path_str(file.path())], &[]).await;
    assert!(stderr.contains("presence.max_idz"), "{stderr}");
    assert!(stderr.contains(path_str(file.path())), "{stderr}");
}

#[tokio::test]
async fn unknown_section_in_the_config_file_stops_start_up_naming_it() {
    let file = config_file("[bogus]\nx = 1\n");
    let stderr = refused(&["--config", path_str(file.path())], &[]).await;
    assert!(stderr.contains("bogus"), "{stderr}");
    assert!(stderr.contains(path_str(file.path())), "{stderr}");
}

#[tokio::test]
async fn unparsable_config_file_stops_start_up_naming_the_file() {
    let file = config_file("[server\nworkers = 1\n");
    let stderr = refused(&["--config", path_str(file.path())], &[]).await;
    assert!(stderr.contains(path_str(file.path())), "{stderr}");
    assert!(stderr.to_lowercase().contains("toml"), "{stderr}");
}

#[tokio::test]
async fn missing_config_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let stderr = refused(&["--config", path_str(&path)], &[]).await;
    assert!(stderr.contains(path_str(&path)), "{stderr}");
}

#[tokio::test]
async fn bad_value_in_a_config_variable_stops_start_up_naming_the_variable() {
    let stderr = refused(&[], &[("PRESENCED_PRESENCE_MAX_IDS", "abc")]).await;
    assert!(stderr.contains("PRESENCED_PRESENCE_MAX_IDS"), "{stderr}");
    assert!(stderr.contains("abc"), "{stderr}");
}

#[tokio::test]
async fn unknown_presenced_variable_stops_start_up_naming_it() {
    let stderr = refused(&[], &[("PRESENCED_FOO_BAR", "1")]).await;
    assert!(stderr.contains("PRESENCED_FOO_BAR"), "{stderr}");
}

#[tokio::test]
async fn out_of_range_value_in_the_file_stops_start_up_naming_key_and_file() {
    let file = config_file("[presence]\nmax_ids = 0\n");
    let stderr = refused(&["--config", path_str(file.path())], &[]).await;
    assert!(stderr.contains("presence.max_ids"), "{stderr}");
    assert!(stderr.contains(path_str(file.path())), "{stderr}");
}

/// The two users of the upstream page's example answer, field for field.
#[tokio::test]
async fn presenced_config_names_the_file_when_no_flag_does() {
    let file = config_file("[presence]\nmax_idz = 10\n");
    let stderr = refused(&[], &[("PRESENCED_CONFIG", path_str(file.path()))]).await;
    assert!(stderr.contains("presence.max_idz"), "{stderr}");
    assert!(stderr.contains(path_str(file.path())), "{stderr}");
}

#[tokio::test]
async fn a_taken_port_stops_start_up_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("bound address").to_string();
    let mut child = start(&["--bind", &addr], &[]);
    let stderr = child.exits_with(1).await;
    assert!(
        stderr.contains(&format!("binding {addr}: ")),
        "the message should say what start-up was doing, and where: {stderr}"
    );
}

/// Runs the binary to completion with a clean environment and returns its stdout.
fn stdout_of(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("presenced runs");
    assert!(output.status.success(), "{:?}", output);
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn help_names_where_settings_come_from_and_the_variables_a_start_needs() {
    let help = stdout_of(&["--help"]);
    for needed in [
        "--config FILE, else by PRESENCED_CONFIG",
        "PRESENCED_<SECTION>_<KEY>",
        "PRESENCED_BIND",
        "PRESENCED_INGEST_TOKEN",
        "--print-config",
        "4. flags",
    ] {
        assert!(help.contains(needed), "--help lacks {needed:?}:\n{help}");
    }
    assert!(
        !help.contains("config/default.toml"),
        "--help should not send an installed binary's user to a source path:\n{help}"
    );
}

#[test]
fn print_config_prints_the_documented_defaults() {
    assert_eq!(
        stdout_of(&["--print-config"]),
        include_str!("../../config/default.toml")
    );
}

fn page_users() -> [Value; 2] {
    [
        json!({
            "_id": "rocket.cat",
            "name": "Rocket.Cat",
            "username": "rocket.cat",
            "status": "online",
            "utcOffset": 0,
            "avatarETag": "5BB9B5ny5DkKdrwkq"
        }),
        json!({
            "_id": "rocketchat.internal.admin.test",
            "name": "RocketChat Internal Admin Test",
            "username": "rocketchat.internal.admin.test",
            "status": "online",
            "utcOffset": -2,
            "avatarETag": "iEbEm4bTT327NJjXt"
        }),
    ]
}

#[tokio::test]
async fn demo_answers_the_upstream_pages_curl_and_sigterm_exits_0() {
    let (mut child, port) = start_listening(&["--demo"], &[]).await;

    // The page's request, verbatim but for the port.
    let response = reqwest::Client::new()
        .get(format!("http://localhost:{port}/api/v1/users.presence"))
        .header("X-Auth-Token", DEMO_TOKEN)
        .header("X-User-Id", DEMO_USER)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["full"], true, "{body}");
    let users = body["users"].as_array().expect("users");
    for want in page_users() {
        let got = users
            .iter()
            .find(|u| u["_id"] == want["_id"])
            .unwrap_or_else(|| panic!("{} missing from {body}", want["_id"]));
        assert_eq!(got, &want);
    }

    child.terminate();
    child.exits_with(0).await;
}

#[tokio::test]
async fn without_an_ingest_token_the_internal_api_answers_403_and_start_up_says_so() {
    let (mut child, port) = start_listening(&[], &[]).await;

    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/internal/v1/stats"))
        .bearer_auth("any-token")
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["success"], false, "{body}");

    child.terminate();
    let status = child.wait().await;
    assert_eq!(status.code(), Some(0), "{status}");
    let stderr = child.stderr();
    assert!(stderr.contains("ingest token"), "{stderr}");
}

#[tokio::test]
async fn ingest_token_from_the_environment_opens_the_internal_api() {
    let (mut child, port) =
        start_listening(&[], &[("PRESENCED_INGEST_TOKEN", "from-the-env")]).await;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/internal/v1/stats");
    let ok = client
        .get(&url)
        .bearer_auth("from-the-env")
        .send()
        .await
        .expect("request sent");
    assert_eq!(ok.status(), StatusCode::OK);
    let wrong = client
        .get(&url)
        .bearer_auth("not-it")
        .send()
        .await
        .expect("request sent");
    // docs/api.md §4 pins no code for a wrong bearer token; either refusal will do.
    assert!(
        matches!(wrong.status().as_u16(), 401 | 403),
        "{}",
        wrong.status()
    );

    child.terminate();
    assert_eq!(child.wait().await.code(), Some(0));
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_at_debug_and_never_a_token() {
    const INGEST: &str = "cli-ingest-secret-4f9a2c";
    const LOGIN: &str = "cli-login-secret-8b1e7d";
    let (mut child, port) = start_listening(
        &[],
        &[
            ("PRESENCED_INGEST_TOKEN", INGEST),
            ("PRESENCED_LOG_LEVEL", "debug"),
            ("PRESENCED_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for (path, body) in [
        ("/internal/v1/users/jane", json!({"username": "jane"})),
        ("/internal/v1/users/jane/tokens", json!({"token": LOGIN})),
    ] {
        let method = if path.ends_with("tokens") {
            "POST"
        } else {
            "PUT"
        };
        let response = client
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .bearer_auth(INGEST)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    for token in [LOGIN, "a-wrong-token"] {
        client
            .get(format!("{base}/api/v1/users.presence?ids=jane"))
            .header("X-User-Id", "jane")
            .header("X-Auth-Token", token)
            .header("Authorization", format!("Bearer {INGEST}"))
            .send()
            .await
            .expect("request sent");
    }
    child.terminate();
    assert_eq!(child.wait().await.code(), Some(0));

    let stderr = child.stderr();
    assert!(
        !stderr.contains(INGEST),
        "the ingest token was logged:\n{stderr}"
    );
    assert!(
        !stderr.contains(LOGIN),
        "a login token was logged:\n{stderr}"
    );
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = |route: &str, status: u64| {
        lines
            .iter()
            .find(|l| l["fields"]["route"] == route && l["fields"]["status"] == status)
    };
    let served = request("/api/v1/users.presence", 200).expect("a line for the poll");
    assert_eq!(served["level"], "DEBUG");
    assert_eq!(served["fields"]["message"], "request");
    assert_eq!(served["fields"]["method"], "GET");
    assert!(
        served["fields"]["latency_ms"].as_f64().is_some(),
        "{served}"
    );
    let refused = request("/api/v1/users.presence", 401).expect("a line for the 401");
    assert_eq!(refused["fields"]["reason"], "login-required", "{refused}");
    assert!(
        request("/internal/v1/users/{id}", 200).is_some(),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_placeholder_ingest_token_on_a_public_bind_stops_start_up_with_a_clear_message() {
    // Refused before binding, so nothing listens on 0.0.0.0; were it not, the
    // bounded wait fails the test and the drop kills the child.
    let mut child = start(
        &["--bind", "0.0.0.0:0"],
        &[("PRESENCED_INGEST_TOKEN", "change-me")],
    );
    let status = child.wait().await;
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(1), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("ingest.token is a well-known placeholder"),
        "{stderr}"
    );
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
}

#[tokio::test]
async fn cors_origins_from_the_environment_let_that_origin_read_the_api() {
    let (mut child, port) = start_listening(
        &["--demo"],
        &[(
            "PRESENCED_CORS_ALLOWED_ORIGINS",
            "http://a.example:8080, http://b.example",
        )],
    )
    .await;

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/users.presence");
    for (origin, allowed) in [
        ("http://b.example", true),
        ("http://a.example:8080", true),
        ("http://c.example", false),
    ] {
        let response = client
            .get(&url)
            .header("Origin", origin)
            .header("X-Auth-Token", DEMO_TOKEN)
            .header("X-User-Id", DEMO_USER)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        let allow = response.headers().get("access-control-allow-origin");
        assert_eq!(allow.is_some_and(|v| v == origin), allowed, "{origin}");
    }

    child.terminate();
    assert_eq!(child.wait().await.code(), Some(0));
}

#[tokio::test]
async fn an_invalid_cors_origin_in_the_environment_stops_start_up_naming_it() {
    let stderr = refused(
        &[],
        &[("PRESENCED_CORS_ALLOWED_ORIGINS", "http://a.example/app")],
    )
    .await;
    assert!(
        stderr.contains("PRESENCED_CORS_ALLOWED_ORIGINS"),
        "{stderr}"
    );
    assert!(stderr.contains("http://a.example/app"), "{stderr}");
}

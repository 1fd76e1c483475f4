//! What presenced serves to browsers: the polling client at `/client/presence.js`
//! (and `.mjs`), always; the roster page at `/`, under `--demo` or `ui.roster`.

use crate::helpers::*;
use presenced::{demo, ui};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use reqwest::{Method, StatusCode};

/// GET `path`; the status, the headers and the body as text.
async fn get_text(app: &TestApp, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .get(app.url(path))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("text body"))
}

#[tokio::test]
async fn the_client_is_served_as_a_classic_script_without_login() {
    let app = spawn_app().await;
    let (status, headers, body) = get_text(&app, "/client/presence.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body, ui::CLIENT_SCRIPT);
    assert!(body.contains("globalThis.PresenceClient = PresenceClient;"));
    assert!(
        !body.contains("\nexport "),
        "a classic script cannot export"
    );
}

#[tokio::test]
async fn the_client_is_served_as_an_es_module_with_its_exports() {
    let app = spawn_app().await;
    let (status, headers, body) = get_text(&app, "/client/presence.mjs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(body.starts_with(ui::CLIENT_SCRIPT));
    assert!(body.ends_with("export { PresenceClient };\nexport default PresenceClient;\n"));
}

#[tokio::test]
async fn an_allowed_origin_may_import_the_module_and_others_get_no_cors_headers() {
    let app = spawn_app_with(|s| s.cors.allowed_origins = vec!["http://app.example".into()]).await;
    let request = |origin: &str| {
        app.client
            .get(app.url("/client/presence.mjs"))
            .header(ORIGIN, origin.to_owned())
    };
    let allowed = send(request("http://app.example")).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "http://app.example"
    );
    let other = send(request("http://other.example")).await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn unknown_client_files_and_other_methods_are_404s() {
    let app = spawn_app().await;
    let (status, _, body) = get_text(&app, "/client/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).ok(),
        Some(not_found_body())
    );
    let answer = send(app.client.post(app.url("/client/presence.js"))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found_body());
}

#[tokio::test]
async fn the_demo_serves_the_roster_with_the_demo_callers_credentials() {
    let app = spawn_settings(&test_settings(), true).await;
    let (status, headers, body) = get_text(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(body.contains(demo::CALLER_ID) && body.contains(demo::CALLER_TOKEN));
    assert!(body.contains(r#"<script src="client/presence.js"></script>"#));
    // And those credentials do poll.
    let caller = Login {
        id: demo::CALLER_ID.to_owned(),
        token: demo::CALLER_TOKEN.to_owned(),
    };
    assert!(app.presence(&caller, "").await.full());
}

#[tokio::test]
async fn a_configured_roster_asks_for_credentials_instead() {
    let app = spawn_app_with(|s| s.ui.roster = true).await;
    let (status, _, body) = get_text(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body
        .contains(r#"<script id="presenced-credentials" type="application/json">null</script>"#));
    assert!(!body.contains(demo::CALLER_TOKEN));
    assert!(body.contains(r#"<form id="login" hidden>"#));
}

#[tokio::test]
async fn without_demo_or_ui_roster_the_root_is_a_404() {
    let app = spawn_app().await;
    let answer = send(app.client.get(app.url("/"))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found_body());
}

#[tokio::test]
async fn the_roster_answers_get_only() {
    let app = spawn_app_with(|s| s.ui.roster = true).await;
    for method in [Method::POST, Method::DELETE] {
        let answer = send(app.client.request(method.clone(), app.url("/"))).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(answer.body, not_found_body());
    }
}

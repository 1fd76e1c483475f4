//! Cross-origin access (`cors.allowed_origins`) at the HTTP level: preflights and
//! simple requests from allowed and disallowed origins, `*`, and the internal API and
//! probes, which never answer cross-origin.

use crate::helpers::*;
use reqwest::header::{HeaderMap, ETAG, IF_NONE_MATCH, ORIGIN, VARY};
use reqwest::{Method, RequestBuilder, StatusCode};

const APP: &str = "http://app.example:8080";
const OTHER: &str = "https://evil.example";
const PRESENCE: &str = "/api/v1/users.presence";

async fn app_allowing(origins: &[&str]) -> (TestApp, Login) {
    let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
    let app = spawn_app_with(|s| s.cors.allowed_origins = origins).await;
    let caller = app.login("caller").await;
    app.user("a").await;
    app.connect("a", "online").await;
    (app, caller)
}

/// A browser's preflight for `method` on `path` from `origin`, asking to send `headers`.
fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> RequestBuilder {
    let mut request = app
        .client
        .request(Method::OPTIONS, app.url(path))
        .header(ORIGIN, origin)
        .header("Access-Control-Request-Method", method);
    if !headers.is_empty() {
        request = request.header("Access-Control-Request-Headers", headers);
    }
    request
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ascii header"))
}

/// The names of all `Access-Control-*` headers of an answer.
fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

/// The comma-separated values of a header, lower-cased.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

#[tokio::test]
async fn an_allowed_origins_preflight_allows_the_auth_and_revalidation_headers_for_600_s() {
    let (app, _) = app_allowing(&[APP]).await;
    let answer = send(preflight(
        &app,
        PRESENCE,
        APP,
        "GET",
        "x-user-id,x-auth-token,if-none-match",
    ))
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let h = &answer.headers;
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    let methods = list(h, "access-control-allow-methods");
    assert!(
        methods.contains(&"get".into()) && methods.contains(&"post".into()),
        "{methods:?}"
    );
    let allowed = list(h, "access-control-allow-headers");
    for name in ["x-user-id", "x-auth-token", "content-type", "if-none-match"] {
        assert!(
            allowed.contains(&name.to_owned()),
            "{name} not in {allowed:?}"
        );
    }
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert!(list(h, "vary").contains(&"origin".into()), "{h:?}");
    assert_eq!(header(h, "access-control-allow-credentials"), None);

    // setStatus is a JSON POST from a page: its preflight passes too.
    let answer = send(preflight(
        &app,
        "/api/v1/users.setStatus",
        APP,
        "POST",
        "Content-Type, X-User-Id, X-Auth-Token",
    ))
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some(APP)
    );
}

#[tokio::test]
async fn an_allowed_origin_reads_answers_with_the_etag_exposed_including_304s_and_errors() {
    let (app, caller) = app_allowing(&["https://other.example", APP]).await;
    let first = send(
        app.as_user(&caller, Method::GET, PRESENCE)
            .header(ORIGIN, APP),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["success"], true);
    assert_eq!(
        header(&first.headers, "access-control-allow-origin"),
        Some(APP)
    );
    let exposed = list(&first.headers, "access-control-expose-headers");
    assert!(exposed.contains(&"etag".into()), "{exposed:?}");
    assert!(exposed.contains(&"retry-after".into()), "{exposed:?}");
    assert!(
        exposed.contains(&"x-ratelimit-remaining".into()),
        "{exposed:?}"
    );
    // The vary of compression is kept beside the one of CORS.
    let vary = list(&first.headers, "vary");
    assert!(
        vary.contains(&"origin".into()) && vary.contains(&"accept-encoding".into()),
        "{vary:?}"
    );

    let tag = header(&first.headers, "etag").expect("an ETag").to_owned();
    let again = send(
        app.as_user(&caller, Method::GET, PRESENCE)
            .header(ORIGIN, APP)
            .header(IF_NONE_MATCH, &tag),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        header(&again.headers, "access-control-allow-origin"),
        Some(APP)
    );
    assert!(list(&again.headers, "access-control-expose-headers").contains(&"etag".into()));
    assert_eq!(header(&again.headers, ETAG.as_str()), Some(tag.as_str()));

    // A page must be able to read a 401 to know its token is wrong.
    let refused = send(app.client.get(app.url(PRESENCE)).header(ORIGIN, APP)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body, login_required());
    assert_eq!(
        header(&refused.headers, "access-control-allow-origin"),
        Some(APP)
    );
}

#[tokio::test]
async fn a_disallowed_origin_gets_no_cors_headers_and_otherwise_the_same_answer() {
    let (app, caller) = app_allowing(&[APP]).await;
    let plain = send(app.as_user(&caller, Method::GET, PRESENCE)).await;
    let foreign = send(
        app.as_user(&caller, Method::GET, PRESENCE)
            .header(ORIGIN, OTHER),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::OK);
    assert_eq!(foreign.body, plain.body);
    assert_eq!(foreign.headers.get(ETAG), plain.headers.get(ETAG));
    assert_eq!(cors_headers(&foreign.headers), Vec::<String>::new());
    // Still marked as depending on the origin, so no cache hands it to an allowed one.
    assert!(list(&foreign.headers, "vary").contains(&"origin".into()));

    // An origin differing only in port or scheme is another origin.
    for near in [
        "http://app.example:8081",
        "https://app.example:8080",
        "http://app.example",
    ] {
        let answer = send(
            app.as_user(&caller, Method::GET, PRESENCE)
                .header(ORIGIN, near),
        )
        .await;
        assert_eq!(
            cors_headers(&answer.headers),
            Vec::<String>::new(),
            "{near}"
        );
    }
}

#[tokio::test]
async fn a_disallowed_origins_preflight_is_refused_with_a_json_error_and_no_cors_headers() {
    let (app, _) = app_allowing(&[APP]).await;
    let answer = send(preflight(
        &app,
        PRESENCE,
        OTHER,
        "GET",
        "x-user-id,x-auth-token",
    ))
    .await;
    let error = answer.assert_error(400, "error-cors-refused");
    assert!(error.contains("Origin is not allowed"), "{error}");
    assert!(error.contains("cors.allowed_origins"), "{error}");
    assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());
}

#[tokio::test]
async fn a_preflight_for_a_header_or_method_not_allowed_is_refused_naming_it() {
    let (app, _) = app_allowing(&[APP]).await;
    let answer = send(preflight(
        &app,
        PRESENCE,
        APP,
        "GET",
        "x-user-id,authorization",
    ))
    .await;
    let error = answer.assert_error(400, "error-cors-refused");
    assert!(error.contains("headers are not allowed"), "{error}");
    assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());

    let answer = send(preflight(&app, PRESENCE, APP, "DELETE", "")).await;
    let error = answer.assert_error(400, "error-cors-refused");
    assert!(error.contains("method is not allowed"), "{error}");

    // Not a method, so not a preflight: an OPTIONS like any other, which is a 404.
    let answer = send(preflight(&app, PRESENCE, APP, "not a method", "")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found_body());
}

#[tokio::test]
async fn a_preflight_without_an_origin_is_refused() {
    let (app, _) = app_allowing(&[APP]).await;
    let answer = send(
        app.client
            .request(Method::OPTIONS, app.url(PRESENCE))
            .header("Access-Control-Request-Method", "GET"),
    )
    .await;
    let error = answer.assert_error(400, "error-cors-refused");
    assert!(error.contains("Origin"), "{error}");
}

#[tokio::test]
async fn star_lets_any_origin_read_with_a_wildcard() {
    let (app, caller) = app_allowing(&["*"]).await;
    for origin in [APP, OTHER, "null"] {
        let answer = send(
            app.as_user(&caller, Method::GET, PRESENCE)
                .header(ORIGIN, origin),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            header(&answer.headers, "access-control-allow-origin"),
            Some("*"),
            "{origin}"
        );
        assert!(list(&answer.headers, "access-control-expose-headers").contains(&"etag".into()));
    }
    let answer = send(preflight(
        &app,
        PRESENCE,
        OTHER,
        "GET",
        "x-user-id,x-auth-token,if-none-match",
    ))
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(
        header(&answer.headers, "access-control-max-age"),
        Some("600")
    );
}

#[tokio::test]
async fn requests_without_an_origin_carry_no_cors_headers() {
    let (app, caller) = app_allowing(&[APP]).await;
    let answer = send(app.as_user(&caller, Method::GET, PRESENCE)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());
}

#[tokio::test]
async fn the_internal_api_and_the_probes_never_answer_cross_origin() {
    for origins in [&["*"][..], &[APP][..]] {
        let (app, _) = app_allowing(origins).await;
        let reads = [
            app.internal(Method::GET, "/stats")
                .bearer_auth(INGEST_TOKEN),
            app.client.get(app.url("/health")),
            app.client.get(app.url("/ready")),
            app.client.get(app.url("/metrics")),
        ];
        for request in reads {
            let answer = send(request.header(ORIGIN, APP)).await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(
                cors_headers(&answer.headers),
                Vec::<String>::new(),
                "{origins:?}"
            );
            assert!(!list(&answer.headers, "vary").contains(&"origin".into()));
        }
        for path in [
            "/internal/v1/stats",
            "/internal/v1/users/x",
            "/health",
            "/metrics",
        ] {
            let answer = send(preflight(&app, path, APP, "GET", "authorization")).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                cors_headers(&answer.headers),
                Vec::<String>::new(),
                "{path}"
            );
        }
        let write = app
            .internal(Method::PUT, "/users/x")
            .bearer_auth(INGEST_TOKEN)
            .header(ORIGIN, APP)
            .json(&serde_json::json!({"username": "x"}));
        let answer = send(write).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());
    }
}

#[tokio::test]
async fn without_allowed_origins_nothing_answers_cross_origin_and_options_stays_a_404() {
    let (app, caller) = app_allowing(&[]).await;
    let answer = send(
        app.as_user(&caller, Method::GET, PRESENCE)
            .header(ORIGIN, APP),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());
    assert!(!list(&answer.headers, VARY.as_str()).contains(&"origin".into()));
    let answer = send(preflight(&app, PRESENCE, APP, "GET", "x-user-id")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found_body());
    assert_eq!(cors_headers(&answer.headers), Vec::<String>::new());
}

#[tokio::test]
async fn an_allowed_origin_reads_the_404_of_an_unknown_public_route() {
    let (app, caller) = app_allowing(&[APP]).await;
    for path in ["/api/v1/users.nope", "/api/v1/", "/api/v1"] {
        let answer = send(app.as_user(&caller, Method::GET, path).header(ORIGIN, APP)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.body, not_found_body(), "{path}");
        assert_eq!(
            header(&answer.headers, "access-control-allow-origin"),
            Some(APP),
            "{path}"
        );
    }
}

#[tokio::test]
async fn configured_origins_match_what_browsers_send_whatever_their_case_or_default_port() {
    let (app, caller) = app_allowing(&["https://App.Example:443"]).await;
    let answer = send(
        app.as_user(&caller, Method::GET, PRESENCE)
            .header(ORIGIN, "https://app.example"),
    )
    .await;
    assert_eq!(
        header(&answer.headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
}

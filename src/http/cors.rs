//! Cross-origin access (`cors.allowed_origins`): which pages on other origins a browser
//! lets read the public API and load the polling client as a module.
//!
//! Only the scopes built by [`scope`] answer cross-origin; the internal API and the
//! probes are mounted outside them, so they never carry CORS headers, whatever the
//! settings say.

use crate::config::CorsSettings;
use crate::http::error::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
use crate::http::ApiError;
use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    forward_ready, Service, ServiceFactory, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::Method;
use actix_web::middleware::Condition;
use actix_web::{web, Error, ResponseError, Scope};
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How long, in seconds, a browser may reuse a preflight answer: without it every
/// poll would cost a second round trip, since the auth headers make each one preflighted.
pub const MAX_AGE_SECS: usize = 600;

/// The request headers a page may send: the Rocket.Chat auth pair, JSON bodies, and
/// the revalidation that turns an unchanged answer into a 304.
pub const ALLOWED_HEADERS: [&str; 4] =
    ["x-user-id", "x-auth-token", "content-type", "if-none-match"];

/// The response headers a page may read besides the CORS-safelisted ones: the tag to
/// revalidate with, and how long to back off.
const EXPOSED_HEADERS: [HeaderName; 5] = [
    header::ETAG,
    header::RETRY_AFTER,
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
];

/// Which origins may read the wrapped scopes. Built once from the settings; each
/// worker turns it into its own middleware, since actix-cors' is not `Send`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CrossOrigin {
    /// No page on another origin may read anything (no configured origins).
    #[default]
    Off,
    /// Any origin (`"*"` among the configured ones): answers say `*`.
    Any,
    /// Exactly these origins, in the form browsers send them.
    Only(Vec<String>),
}

impl CrossOrigin {
    /// Returns the policy `settings` ask for. A `"*"` anywhere in the list wins.
    pub fn from_settings(settings: &CorsSettings) -> CrossOrigin {
        let origins = &settings.allowed_origins;
        if origins.is_empty() {
            CrossOrigin::Off
        } else if origins.iter().any(|o| o == "*") {
            CrossOrigin::Any
        } else {
            CrossOrigin::Only(origins.iter().map(|o| as_browsers_send_it(o)).collect())
        }
    }

    /// Returns one worker's middleware. `Off` passes requests through untouched, so
    /// without configured origins the API answers exactly as if CORS did not exist.
    pub fn middleware(&self) -> Condition<Cors> {
        let base = Cors::default()
            .allowed_methods([Method::GET, Method::POST])
            .allowed_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(MAX_AGE_SECS)
            // A disallowed origin is served like a request without one: it is the
            // browser that keeps the answer from the page, and refusing here would only
            // change what non-browser callers, who ignore CORS, see.
            .block_on_origin_mismatch(false);
        let cors = match self {
            CrossOrigin::Off => base,
            CrossOrigin::Any => base.allow_any_origin().send_wildcard(),
            CrossOrigin::Only(origins) => origins.iter().fold(base, |c, o| c.allowed_origin(o)),
        };
        Condition::new(*self != CrossOrigin::Off, cors)
    }
}

/// Returns `origin` as a browser's `Origin` header spells it, the only form actix-cors
/// matches (byte for byte): scheme and host in lower case, no default port.
fn as_browsers_send_it(origin: &str) -> String {
    let origin = origin.to_ascii_lowercase();
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    match origin.strip_suffix(default_port) {
        // `http://[::1]:80` has its port after the bracket, so this also holds for IPv6.
        Some(bare) => bare.to_owned(),
        None => origin,
    }
}

/// Returns the scope at `path`, readable cross-origin as `policy` says. With
/// cross-origin access off, neither layer runs: every poll passes through here.
pub fn scope(
    path: &str,
    policy: &CrossOrigin,
) -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let on = *policy != CrossOrigin::Off;
    web::scope(path)
        .wrap(policy.middleware())
        .wrap(Condition::new(on, Finish))
}

/// Runs after actix-cors, on every answer of a wrapped scope:
/// - a refused preflight gets the service's JSON error body instead of plain text;
/// - an answer without `Access-Control-Allow-Origin` (no `Origin`, or one not allowed)
///   loses `Access-Control-Expose-Headers` too, which actix-cors adds regardless, so a
///   disallowed origin sees no CORS header at all. `Vary: Origin` stays: the answer
///   does depend on the origin, and a shared cache must know it.
///
/// A middleware of its own rather than `wrap_fn`, which boxes every request's future.
#[derive(Debug, Clone, Copy)]
struct Finish;

impl<S, B> Transform<S, ServiceRequest> for Finish
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = FinishMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<FinishMiddleware<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(FinishMiddleware { service }))
    }
}

/// [`Finish`] around one worker's service.
struct FinishMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for FinishMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Finishing<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        Finishing {
            answer: self.service.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a wrapped scope, finished when it is ready.
    struct Finishing<F> {
        #[pin]
        answer: F,
    }
}

impl<F, B> Future for Finishing<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = match self.project().answer.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(answer) => answer?,
        };
        Poll::Ready(Ok(finish(res)))
    }
}

fn finish<B: MessageBody>(res: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let refused = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(|e| ApiError::cors_refused(e.to_string()));
    if let Some(error) = refused {
        let (req, _) = res.into_parts();
        return ServiceResponse::new(req, error.error_response()).map_into_right_body();
    }
    let mut res = res.map_into_left_body();
    if !res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        res.headers_mut()
            .remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn no_origins_is_off_and_a_star_anywhere_allows_any() {
        assert_eq!(CrossOrigin::from_settings(&settings(&[])), CrossOrigin::Off);
        assert_eq!(
            CrossOrigin::from_settings(&settings(&["https://a.example", "*"])),
            CrossOrigin::Any
        );
    }

    #[test]
    fn origins_are_matched_in_the_form_browsers_send() {
        let policy = CrossOrigin::from_settings(&settings(&[
            "https://Chat.Example.com:443",
            "http://localhost:80",
            "http://localhost:8080",
            "https://h:80",
            "http://[::1]:80",
        ]));
        assert_eq!(
            policy,
            CrossOrigin::Only(vec![
                "https://chat.example.com".into(),
                "http://localhost".into(),
                "http://localhost:8080".into(),
                "https://h:80".into(),
                "http://[::1]".into(),
            ])
        );
    }

    #[actix_web::test]
    async fn every_origin_the_config_accepts_builds_a_middleware() {
        use actix_web::dev::Transform as _;
        // Settings validation is the gate: anything it lets through must not make a
        // worker fail to start (actix-cors reports a bad origin only then).
        for origin in [
            "*",
            "https://chat.example.com",
            "http://localhost:8080",
            "http://[::1]:3000",
            "https://10.0.0.1",
            "http://a-b.c-d",
        ] {
            let policy = CrossOrigin::from_settings(&settings(&[origin]));
            let built = policy
                .middleware()
                .new_transform(actix_web::test::ok_service())
                .await;
            assert!(built.is_ok(), "{origin}");
        }
    }
}

//! Token auth of the public API: `X-User-Id` + `X-Auth-Token` (SPEC §3).

use crate::http::{ApiError, AppState};
use crate::store::Caller;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName};
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};

// Built once: a header looked up by `&str` is parsed into a name on every request.
const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");

/// The caller, authenticated. Taking it as a handler argument is what makes a
/// route require login.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Authenticated, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(ApiError::login_required)
            .and_then(|state| authenticate(req, state));
        ready(caller.map(Authenticated))
    }
}

/// The caller, or the 401 (counted against the client's failed-login budget),
/// or the 429 of a client that spent that budget.
pub fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    check(req, state, credentials(req))
}

/// As [`authenticate`], but when the headers are absent also accepting the
/// login cookies Rocket.Chat's web client sets, `rc_uid` and `rc_token`: a
/// browser's `EventSource` cannot send headers. Only the read-only change
/// stream takes them (a cross-site page cannot read its answer).
pub fn authenticate_with_cookies(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    let found = credentials(req).or_else(|| {
        let cookies = req.headers().get(header::COOKIE)?.to_str().ok()?;
        cookie(cookies, "rc_uid").zip(cookie(cookies, "rc_token"))
    });
    check(req, state, found)
}

/// The user id and token of the `X-User-Id` and `X-Auth-Token` headers.
fn credentials(req: &HttpRequest) -> Option<(&str, &str)> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    header(&USER_ID).zip(header(&AUTH_TOKEN))
}

/// The value of the cookie `name` in a `Cookie` header's `a=1; b=2`.
fn cookie<'h>(cookies: &'h str, name: &str) -> Option<&'h str> {
    cookies.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The caller `found` names, if its token is live; else the 401 or 429.
fn check(
    req: &HttpRequest,
    state: &AppState,
    found: Option<(&str, &str)>,
) -> Result<Caller, ApiError> {
    state.limits.admit_client(req)?;
    found
        .and_then(|(id, token)| state.store.authenticate(id, token))
        .ok_or_else(|| state.limits.failed_login(req))
}

#[cfg(test)]
mod tests {
    use super::cookie;

    #[test]
    fn a_cookie_is_found_by_its_exact_name_among_others() {
        let header = "theme=dark; rc_uid=u1;rc_token=t=1 ; rc_uid2=x";
        assert_eq!(cookie(header, "rc_uid"), Some("u1"));
        assert_eq!(cookie(header, "rc_token"), Some("t=1"));
        assert_eq!(cookie(header, "rc"), None);
        assert_eq!(cookie("", "rc_uid"), None);
    }
}

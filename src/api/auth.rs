//! Token auth of the public API: `X-User-Id` + `X-Auth-Token` (docs/api.md §3),
//! checked against the store's token hashes, or in upstream mode with the chat
//! server (see [`crate::upstream::auth`]).

use crate::http::{ApiError, AppState};
use crate::store::Caller;
use crate::upstream::{Upstream, Verdict};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{Either, LocalBoxFuture};
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
    // Ready without upstream mode, as it always was; a question to the chat
    // server otherwise.
    type Future = Either<
        Ready<Result<Authenticated, ApiError>>,
        LocalBoxFuture<'static, Result<Authenticated, ApiError>>,
    >;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return Either::Left(ready(Err(ApiError::login_required())));
        };
        if state.upstream.is_none() {
            let caller = check_locally(req, state, credentials(req));
            return Either::Left(ready(caller.map(Authenticated)));
        }
        let (req, state) = (req.clone(), state.clone());
        Either::Right(Box::pin(async move {
            authenticate(&req, &state).await.map(Authenticated)
        }))
    }
}

/// The caller, or the 401 (counted against the client's failed-login budget),
/// or the 429 of a client that spent that budget; in upstream mode also the
/// 503 of a chat server that cannot be asked about a token not seen before.
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    check(req, state, credentials(req)).await
}

/// As [`authenticate`], but when the headers are absent also accepting the
/// login cookies Rocket.Chat's web client sets, `rc_uid` and `rc_token`: a
/// browser's `EventSource` cannot send headers. Only the read-only change
/// stream takes them (a cross-site page cannot read its answer).
pub async fn authenticate_with_cookies(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Caller, ApiError> {
    let found = credentials(req).or_else(|| {
        let cookies = req.headers().get(header::COOKIE)?.to_str().ok()?;
        cookie(cookies, "rc_uid").zip(cookie(cookies, "rc_token"))
    });
    check(req, state, found).await
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

/// The caller `found` names, if its token is live, asking whoever holds the tokens.
async fn check(
    req: &HttpRequest,
    state: &AppState,
    found: Option<(&str, &str)>,
) -> Result<Caller, ApiError> {
    match &state.upstream {
        None => check_locally(req, state, found),
        Some(upstream) => check_upstream(req, state, upstream, found).await,
    }
}

fn check_locally(
    req: &HttpRequest,
    state: &AppState,
    found: Option<(&str, &str)>,
) -> Result<Caller, ApiError> {
    state.limits.admit_client(req)?;
    found
        .and_then(|(id, token)| state.store.authenticate(id, token))
        .ok_or_else(|| state.limits.failed_login(req))
}

async fn check_upstream(
    req: &HttpRequest,
    state: &AppState,
    upstream: &Upstream,
    found: Option<(&str, &str)>,
) -> Result<Caller, ApiError> {
    state.limits.admit_client(req)?;
    let Some((id, token)) = found else {
        return Err(state.limits.failed_login(req));
    };
    match upstream.authenticate(id, token).await {
        Verdict::Accepted(caller) => Ok(caller),
        Verdict::Refused => Err(state.limits.failed_login(req)),
        // Not a 401, which says the session is dead (a client may log its user
        // out on it) while the token may well be valid. Nobody is let in either way.
        Verdict::Unavailable => Err(ApiError::unavailable(
            "the chat server cannot be reached to check this login; retry shortly",
        )),
    }
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

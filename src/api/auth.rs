//! Token auth of the public API: `X-User-Id` + `X-Auth-Token` (docs/api.md §3),
//! checked against the store's token hashes, or in upstream mode with the chat
//! server (see [`crate::upstream::auth`]).

use crate::http::{ApiError, AppState};
use crate::store::Caller;
use crate::upstream::{Upstream, Verdict};
use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
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
            return Either::Left(ready(authenticate_locally(req, state).map(Authenticated)));
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
    match &state.upstream {
        None => authenticate_locally(req, state),
        Some(upstream) => authenticate_upstream(req, state, upstream).await,
    }
}

fn credentials(req: &HttpRequest) -> Option<(&str, &str)> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    header(&USER_ID).zip(header(&AUTH_TOKEN))
}

fn authenticate_locally(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    state.limits.admit_client(req)?;
    credentials(req)
        .and_then(|(id, token)| state.store.authenticate(id, token))
        .ok_or_else(|| state.limits.failed_login(req))
}

async fn authenticate_upstream(
    req: &HttpRequest,
    state: &AppState,
    upstream: &Upstream,
) -> Result<Caller, ApiError> {
    state.limits.admit_client(req)?;
    let Some((id, token)) = credentials(req) else {
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

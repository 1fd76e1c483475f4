//! Token auth of the public API: `X-User-Id` + `X-Auth-Token` (docs/api.md §3).

use crate::http::{ApiError, AppState};
use crate::store::Caller;
use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
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
    state.limits.admit_client(req)?;
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    header(&USER_ID)
        .zip(header(&AUTH_TOKEN))
        .and_then(|(id, token)| state.store.authenticate(id, token))
        .ok_or_else(|| state.limits.failed_login(req))
}

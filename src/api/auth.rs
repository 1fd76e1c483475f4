//! Token auth of the public API: `X-User-Id` + `X-Auth-Token` (SPEC §3).

use crate::http::{ApiError, AppState};
use crate::store::Caller;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};

/// The caller, authenticated. Taking it as a handler argument is what makes a
/// route require login.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Authenticated, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Authenticated))
    }
}

/// The caller, or the 401 (counted against the client's failed-login budget),
/// or the 429 of a client that spent that budget.
fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(ApiError::login_required)?;
    state.limits.admit_client(req)?;
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("x-user-id")
        .zip(header("x-auth-token"))
        .and_then(|(id, token)| state.store.authenticate(id, token))
        .ok_or_else(|| state.limits.failed_login(req))
}

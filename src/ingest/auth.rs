//! Bearer-token auth of the internal API, and the tokens it must never run with
//! where others can reach it.

use crate::http::{ApiError, AppState};
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};

/// Proof that the request carried the ingest token. Every internal handler takes
/// one, so no internal route can be mounted without auth.
#[derive(Debug, Clone, Copy)]
pub struct IngestAuth;

impl FromRequest for IngestAuth {
    type Error = ApiError;
    type Future = Ready<Result<IngestAuth, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req))
    }
}

fn check(req: &HttpRequest) -> Result<IngestAuth, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(ApiError::ingest_disabled)?;
    if !state.ingest_enabled() {
        return Err(ApiError::ingest_disabled());
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .ok_or_else(ApiError::ingest_unauthorized)?;
    if state.is_ingest_token(presented.trim()) {
        Ok(IngestAuth)
    } else {
        Err(ApiError::ingest_unauthorized())
    }
}

/// Tokens found in examples, docs and demos, which an attacker tries first.
/// Compared without regard to case and to `-`/`_`.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "secret",
    "token",
    "password",
    "ingesttoken",
    "demoingesttoken",
    "testingesttoken",
    "test",
    "example",
    "admin",
    "default",
];

/// Returns true if and only if `token` is a well-known placeholder (such as
/// `change-me` or the `--demo` token), which must not guard a non-loopback listener.
pub fn is_placeholder(token: &str) -> bool {
    let folded: String = token
        .trim()
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    PLACEHOLDERS.contains(&folded.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_known_in_any_case_and_spelling() {
        for token in [
            "changeme",
            "change-me",
            "CHANGE_ME",
            "secret",
            "Token",
            "password",
            crate::demo::INGEST_TOKEN,
            "test-ingest-token",
        ] {
            assert!(is_placeholder(token), "{token}");
        }
        for token in ["n7Yq2x-Lr0d9KfVw3hTz", "secret-of-prod-42", "change-me-now"] {
            assert!(!is_placeholder(token), "{token}");
        }
    }
}

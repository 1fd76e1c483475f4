//! One error type for every route, and the Rocket.Chat-shaped bodies it renders.

use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// The upstream text of a failed login, which clients match on.
const LOGIN_REQUIRED: &str = "You must be logged in to do this.";

/// An error answer: a status code and a body naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: Kind,
    message: Cow<'static, str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 401 with upstream's exact body.
    LoginRequired,
    /// 403 `{"success":false,"error":"unauthorized"}`, as upstream.
    Forbidden,
    /// 404 `{"success":false,"error":"Resource not found"}`.
    NotFound,
    /// Any other status with `{"success":false,"error":..,"errorType":..}`.
    Typed(StatusCode, &'static str),
}

#[derive(Serialize)]
struct TypedBody<'a> {
    success: bool,
    error: &'a str,
    #[serde(rename = "errorType")]
    error_type: &'a str,
}

#[derive(Serialize)]
struct LoginBody<'a> {
    success: bool,
    status: &'a str,
    message: &'a str,
    error: &'a str,
}

#[derive(Serialize)]
struct PlainBody<'a> {
    success: bool,
    error: &'a str,
}

impl ApiError {
    fn typed(
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            kind: Kind::Typed(status, error_type),
            message: message.into(),
        }
    }

    /// 401: missing or wrong `X-User-Id` / `X-Auth-Token`.
    pub fn login_required() -> ApiError {
        ApiError {
            kind: Kind::LoginRequired,
            message: Cow::Borrowed(LOGIN_REQUIRED),
        }
    }

    /// 403: acting on another user without the `admin` role.
    pub fn forbidden() -> ApiError {
        ApiError {
            kind: Kind::Forbidden,
            message: Cow::Borrowed("unauthorized"),
        }
    }

    /// 404: no such route.
    pub fn not_found() -> ApiError {
        ApiError {
            kind: Kind::NotFound,
            message: Cow::Borrowed("Resource not found"),
        }
    }

    /// 400 `error-invalid-params`: the message names the field and a valid value.
    pub fn invalid_params(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::typed(StatusCode::BAD_REQUEST, "error-invalid-params", message)
    }

    /// 400 `error-invalid-status`.
    pub fn invalid_status(got: &str) -> ApiError {
        ApiError::typed(
            StatusCode::BAD_REQUEST,
            "error-invalid-status",
            format!(
                "status: {:?} is not valid: expected one of {}",
                excerpt(got),
                crate::domain::Status::CHOICES
            ),
        )
    }

    /// 400 `error-invalid-user`.
    pub fn invalid_user(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::typed(StatusCode::BAD_REQUEST, "error-invalid-user", message)
    }

    /// 413 `error-payload-too-large`.
    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "error-payload-too-large",
            format!("body: larger than the limit of {limit} bytes (server.max_body_bytes)"),
        )
    }

    /// 403 `error-ingest-disabled`: the internal API has no token configured.
    pub fn ingest_disabled() -> ApiError {
        ApiError::typed(
            StatusCode::FORBIDDEN,
            "error-ingest-disabled",
            "the internal API is disabled: no ingest token is configured (set ingest.token or PRESENCED_INGEST_TOKEN)",
        )
    }

    /// 401 `error-unauthorized`: wrong or missing bearer token on the internal API.
    pub fn ingest_unauthorized() -> ApiError {
        ApiError::typed(
            StatusCode::UNAUTHORIZED,
            "error-unauthorized",
            "Authorization: expected `Bearer <ingest token>`",
        )
    }

    /// 400 `error-cors-refused`: a preflight that the cross-origin policy refuses.
    pub fn cors_refused(reason: String) -> ApiError {
        ApiError::typed(
            StatusCode::BAD_REQUEST,
            "error-cors-refused",
            format!("cross-origin preflight refused: {reason} (see cors.allowed_origins)"),
        )
    }

    /// Returns the `errorType` of the body, if it has one.
    pub fn error_type(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Typed(_, error_type) => Some(error_type),
            _ => None,
        }
    }

    /// Returns the human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Cuts client-sent text short before echoing it in an error.
pub fn excerpt(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(64) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, error_type) = match &e {
            StoreError::UnknownUser(_) => (StatusCode::BAD_REQUEST, "error-invalid-user"),
            StoreError::UsernameTaken(_) => (StatusCode::CONFLICT, "error-username-taken"),
            StoreError::InvisibleNotAllowed => {
                (StatusCode::BAD_REQUEST, "error-status-not-allowed")
            }
            StoreError::ConnectionOfAnotherUser(_) => {
                (StatusCode::CONFLICT, "error-connection-conflict")
            }
            StoreError::TooManyTokens | StoreError::TooManyConnections => {
                (StatusCode::BAD_REQUEST, "error-limit-exceeded")
            }
        };
        ApiError::typed(status, error_type, e.to_string())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            Kind::LoginRequired => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Typed(status, _) => status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.message.as_ref();
        let body = match self.kind {
            Kind::LoginRequired => serde_json::to_string(&LoginBody {
                success: false,
                status: "error",
                message,
                error: message,
            }),
            Kind::Forbidden | Kind::NotFound => serde_json::to_string(&PlainBody {
                success: false,
                error: message,
            }),
            Kind::Typed(_, error_type) => serde_json::to_string(&TypedBody {
                success: false,
                error: message,
                error_type,
            }),
        };
        super::json_response(self.status_code(), body.unwrap_or_default())
    }
}

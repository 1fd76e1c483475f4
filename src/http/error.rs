//! One error type for every route, and the Rocket.Chat-shaped bodies it renders.

use crate::cluster::WriteError;
use crate::rate_limit::Decision;
use crate::store::StoreError;
use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
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
    /// The rate limit this answer counted against, for its `X-RateLimit-*` headers.
    rate_limit: Option<RateLimitHeaders>,
}

/// What the `X-RateLimit-*` headers of an answer report (as Rocket.Chat sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// When the bucket is full again, in ms since the Unix epoch: Rocket.Chat's
    /// `X-RateLimit-Reset` is `Date.now() + timeToReset`.
    pub reset_epoch_ms: u64,
    /// Whole seconds until a retry can succeed, when refused.
    pub retry_after_secs: Option<u64>,
}

impl RateLimitHeaders {
    /// The headers of `decision`, taken with the wall clock at `now_epoch_ms`.
    pub fn of(decision: &Decision, now_epoch_ms: u64) -> RateLimitHeaders {
        RateLimitHeaders {
            limit: decision.limit,
            remaining: decision.remaining,
            reset_epoch_ms: now_epoch_ms.saturating_add(decision.reset_in_ms),
            retry_after_secs: (!decision.allowed).then(|| decision.retry_after_secs()),
        }
    }

    /// Adds the headers to a response being built.
    pub fn apply(&self, response: &mut HttpResponseBuilder) {
        let number = |n: u64| HeaderValue::from(n);
        response
            .insert_header((X_RATELIMIT_LIMIT, number(self.limit.into())))
            .insert_header((X_RATELIMIT_REMAINING, number(self.remaining.into())))
            .insert_header((X_RATELIMIT_RESET, number(self.reset_epoch_ms)));
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((RETRY_AFTER, number(secs)));
        }
    }
}

/// `X-RateLimit-Limit`: the bucket's size.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`: tokens left.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`: ms since the epoch when the bucket is full again.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 401 with upstream's exact body.
    LoginRequired,
    /// 403 `{"success":false,"error":"unauthorized"}`, as upstream.
    Forbidden,
    /// 404 `{"success":false,"error":"Resource not found"}`.
    NotFound,
    /// 429 `{"success":false,"error":"Error, too many requests. ..."}`, as upstream.
    TooManyRequests,
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
            rate_limit: None,
        }
    }

    /// 401: missing or wrong `X-User-Id` / `X-Auth-Token`.
    pub fn login_required() -> ApiError {
        ApiError {
            kind: Kind::LoginRequired,
            message: Cow::Borrowed(LOGIN_REQUIRED),
            rate_limit: None,
        }
    }

    /// 403: acting on another user without the `admin` role.
    pub fn forbidden() -> ApiError {
        ApiError {
            kind: Kind::Forbidden,
            message: Cow::Borrowed("unauthorized"),
            rate_limit: None,
        }
    }

    /// 404: no such route.
    pub fn not_found() -> ApiError {
        ApiError {
            kind: Kind::NotFound,
            message: Cow::Borrowed("Resource not found"),
            rate_limit: None,
        }
    }

    /// 429 with upstream's exact text, naming the whole seconds to wait, and the
    /// `X-RateLimit-*` headers plus `Retry-After`.
    pub fn too_many_requests(headers: RateLimitHeaders) -> ApiError {
        let wait = headers.retry_after_secs.unwrap_or(1);
        ApiError {
            kind: Kind::TooManyRequests,
            message: Cow::Owned(format!(
                "Error, too many requests. Please slow down. You must wait {wait} seconds \
                 before trying this endpoint again. [error-too-many-requests]"
            )),
            rate_limit: Some(headers),
        }
    }

    /// The same error, answered with the `X-RateLimit-*` headers of `headers`.
    pub fn with_rate_limit(mut self, headers: Option<RateLimitHeaders>) -> ApiError {
        self.rate_limit = headers;
        self
    }

    /// 414 `error-uri-too-long`.
    pub fn uri_too_long(length: usize, limit: usize) -> ApiError {
        ApiError::typed(
            StatusCode::URI_TOO_LONG,
            "error-uri-too-long",
            format!(
                "URL: {length} bytes, longer than the limit of {limit} bytes (server.max_url_bytes); \
                 send a long id list as a JSON body to POST /api/v1/users.presence"
            ),
        )
    }

    /// 431 `error-headers-too-large`.
    pub fn headers_too_large(length: usize, limit: usize) -> ApiError {
        ApiError::typed(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "error-headers-too-large",
            format!(
                "headers: {length} bytes in all, more than the limit of {limit} bytes \
                 (server.max_header_bytes)"
            ),
        )
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

    /// 503 `error-unavailable`: in cluster mode, the shared Redis cannot be
    /// reached (or this replica is not following it); nothing was written.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-unavailable",
            message,
        )
    }

    /// 400 `error-not-allowed`: what this deployment leaves to another service.
    pub fn not_allowed(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::typed(StatusCode::BAD_REQUEST, "error-not-allowed", message)
    }

    /// 429 `error-too-many-streams`: `what` names the limit reached.
    pub fn too_many_streams(what: String) -> ApiError {
        ApiError::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "error-too-many-streams",
            what,
        )
    }

    /// 404 `error-stream-disabled`: `stream.max_streams` is 0.
    pub fn stream_disabled() -> ApiError {
        ApiError::typed(
            StatusCode::NOT_FOUND,
            "error-stream-disabled",
            "the change stream is off (stream.max_streams = 0): poll GET /api/v1/users.presence",
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

    /// Returns why the request was refused, for metrics and logs: the
    /// `errorType`, or a fixed name for the bodies that have none.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            Kind::LoginRequired => "login-required",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not-found",
            Kind::TooManyRequests => "error-too-many-requests",
            Kind::Typed(_, error_type) => error_type,
        }
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
            StoreError::TooManyTokens | StoreError::TooManyConnections { .. } => {
                (StatusCode::BAD_REQUEST, "error-limit-exceeded")
            }
            // The service is full, not the request wrong: 507 Insufficient Storage.
            StoreError::TooManyUsers { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "error-too-many-users")
            }
        };
        ApiError::typed(status, error_type, e.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Refused(e) => e.into(),
            WriteError::Unavailable(why) => ApiError::unavailable(why),
        }
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
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
            Kind::Forbidden | Kind::NotFound | Kind::TooManyRequests => {
                serde_json::to_string(&PlainBody {
                    success: false,
                    error: message,
                })
            }
            Kind::Typed(_, error_type) => serde_json::to_string(&TypedBody {
                success: false,
                error: message,
                error_type,
            }),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Some(headers) = &self.rate_limit {
            headers.apply(&mut response);
        }
        response
            .content_type("application/json")
            .body(body.unwrap_or_default())
    }
}

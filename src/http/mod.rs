//! HTTP plumbing shared by the public and internal APIs: the error type and its
//! bodies, bounded JSON bodies and heads, the state handlers share, rate limits,
//! the middleware that measures and logs every request, and the 404 fallback.

pub mod body;
pub mod client_ip;
pub mod cors;
pub mod encoding;
pub mod error;
pub mod etag;
pub mod head_limits;
pub mod observe;
pub mod rate_limits;
pub mod send_timeout;
pub mod state;

pub use error::ApiError;
pub use state::AppState;

use actix_web::HttpResponse;

/// A resource at `pattern` (under `prefix`, the pattern of its scope) that answers
/// 404 to unknown methods, as upstream does. It is named after its full pattern,
/// which is how requests are labelled in the metrics without allocating.
pub fn resource(prefix: &str, pattern: &str) -> actix_web::Resource {
    actix_web::web::resource(pattern)
        .name(&format!("{prefix}{pattern}"))
        .default_service(actix_web::web::to(not_found))
}

/// Unknown route (docs/api.md §3): `404 {"success":false,"error":"Resource not found"}`.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// A JSON body, marked as such.
pub fn json_response(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

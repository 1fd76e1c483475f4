//! HTTP plumbing shared by the public and internal APIs: the error type and its
//! bodies, bounded JSON bodies, the state handlers share, and the 404 fallback.

pub mod body;
pub mod cors;
pub mod encoding;
pub mod error;
pub mod etag;
pub mod state;

pub use error::ApiError;
pub use state::AppState;

use actix_web::HttpResponse;

/// Unknown route (SPEC §3): `404 {"success":false,"error":"Resource not found"}`.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// A JSON body, marked as such.
pub fn json_response(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

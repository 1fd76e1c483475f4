//! Request bodies: read up to the configured limit, then parsed as JSON with
//! errors that name the offending field.

use super::error::ApiError;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads the whole body, refusing with 413 as soon as it exceeds `limit` bytes.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid_params(format!("body: could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses `bytes`, a JSON object, into `T`; an empty body reads as `{}`.
///
/// Every body here is an object. Checking that first matters: serde's derived
/// structs would also accept an array and read it as the fields in order.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => serde_json::from_slice(b"{}"),
        Some(b'{') => serde_json::from_slice(bytes),
        Some(_) => {
            return Err(ApiError::invalid_params(
                "body: expected a JSON object, e.g. {\"field\": \"value\"}",
            ))
        }
    }
    .map_err(|e| ApiError::invalid_params(format!("body: {e}")))
}

/// Reads and parses a JSON body in one step.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    parse_json(&read_limited(req, payload, limit).await?)
}

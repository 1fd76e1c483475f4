//! `GET /api/v1/users.presence.stream`: authenticates, reads where to resume
//! and whom to follow with the parsing `users.presence` uses, takes a place
//! within the limits, and answers `text/event-stream`.

use super::subscriber::{Interest, Subscriber};
use super::Refusal;
use crate::api::auth::authenticate_with_cookies;
use crate::api::id_list::IdList;
use crate::api::query::{Branch, PresenceParams};
use crate::http::error::excerpt;
use crate::http::{ApiError, AppState};
use crate::store::Cursor;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;

/// The path inside the `/api/v1` scope.
pub const PATH: &str = "/users.presence.stream";

/// How long a client refused for the limits is asked to wait (seconds).
pub const RETRY_AFTER_SECS: u64 = 10;

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Where a stream resumes and whom it follows, as the request asks.
#[derive(Debug)]
struct Question {
    since: Option<Cursor>,
    ids: Option<IdList<'static>>,
}

impl Question {
    /// Reads the query as `users.presence` reads it, with `Last-Event-ID` (a
    /// browser's reconnect) taking the place of `since`. `from` is refused:
    /// a stream resumes by cursor.
    fn of(req: &HttpRequest, state: &AppState) -> Result<Question, ApiError> {
        let mut params = PresenceParams::from_query(req.query_string());
        if params.from.is_some() {
            return Err(ApiError::invalid_params(
                "from: not accepted by users.presence.stream, which resumes by cursor: \
                 pass since=<cursor> (or the Last-Event-ID header)",
            ));
        }
        let last_event = match req.headers().get(LAST_EVENT_ID) {
            Some(value) => last_event_id(value)?,
            None => None,
        };
        if last_event.is_some() {
            params.since = None;
        }
        let store = &state.store;
        let (since, ids) = match params.branch(state.max_ids, |id| store.hash_id(id))? {
            Branch::Since { cursor, ids } => (Some(cursor), ids),
            Branch::Ids(ids) => (None, Some(ids)),
            Branch::Full | Branch::From(_) => (None, None),
        };
        Ok(Question {
            since: last_event.or(since),
            ids: ids.map(|ids| ids.packed()),
        })
    }
}

/// The cursor of a `Last-Event-ID` header; empty means none (a browser sends
/// what the last id field said, which may be empty).
fn last_event_id(value: &HeaderValue) -> Result<Option<Cursor>, ApiError> {
    let bad = |text: &str, why: &dyn std::fmt::Display| {
        ApiError::invalid_params(format!("Last-Event-ID: {:?} is {why}", excerpt(text)))
    };
    let text = value
        .to_str()
        .map_err(|_| bad("<not ASCII>", &"not an event id of this stream"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|e| bad(text, &e))
}

/// The 429 of a refusal, with `Retry-After`.
fn refused(refusal: Refusal) -> HttpResponse {
    let what = match refusal {
        Refusal::Total(limit) => format!(
            "stream: {limit} change streams are open, the most allowed (stream.max_streams); \
             retry later or poll GET /api/v1/users.presence"
        ),
        Refusal::PerUser(limit) => format!(
            "stream: this user has {limit} change streams open, the most allowed \
             (stream.max_streams_per_user); close one or poll GET /api/v1/users.presence"
        ),
    };
    let mut response = HttpResponse::from_error(ApiError::too_many_streams(what));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// `GET /api/v1/users.presence.stream?since=..&ids=..`.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hub = Arc::clone(&state.streams);
    if !hub.enabled() {
        return Err(ApiError::stream_disabled());
    }
    let caller = authenticate_with_cookies(&req, &state).await?;
    let question = Question::of(&req, &state)?;
    if hub.is_shut_down() {
        return Err(ApiError::unavailable(
            "the server is shutting down: reconnect later or to another replica",
        ));
    }
    let permit = match hub.admit(caller.id.as_str()) {
        Ok(permit) => permit,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let interest = Interest::new(question.ids);
    let subscriber = Subscriber::open(state.clone(), question.since, interest, permit).await;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx buffers responses unless told not to; a stream must not wait.
        .insert_header(("x-accel-buffering", "no"))
        // One stream, one connection: once it ends, nothing holds a graceful
        // shutdown waiting for an idle keep-alive.
        .force_close()
        .streaming(subscriber.into_body()))
}

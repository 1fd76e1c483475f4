//! `GET|POST /api/v1/users.presence` (docs/api.md §3.1): plans the answer from the
//! parameters, revalidates (`ETag` / `304`) before doing any work, and assembles
//! the body from the users' JSON objects (cached answers where the question repeats).

use super::answer_cache::{Filed, Rendered};
use super::auth::{authenticate, Authenticated};
use super::plan::Plan;
use super::query::PresenceParams;
use super::recent_changes::{Pieces, Reach};
use crate::clock::wall_ms;
use crate::cluster::SINCE_WAIT;
use crate::domain::UserId;
use crate::http::body::{parse_json, read_limited};
use crate::http::encoding::{accepts_gzip, MIN_COMPRESSED_BYTES};
use crate::http::etag::Tag;
use crate::http::{ApiError, AppState};
use crate::store::Cursor;
use actix_web::body::BoxBody;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flate2::Compression;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");

/// In cluster mode, a cursor from a replica further along: waits a little for
/// this one to catch up; if it does not, the log lags the cursor and the
/// answer is full.
pub(crate) async fn catch_up(state: &AppState, cursor: Cursor) {
    if let Some(cluster) = &state.cluster {
        let head = state.store.cursor();
        if cursor.epoch() == head.epoch() && cursor.seq() > head.seq() {
            cluster.caught_up(cursor.seq(), SINCE_WAIT).await;
        }
    }
}

/// The 200 answer of `rendered`, tagged `etag`. Every header value is built
/// already, so answering allocates only the response itself.
fn respond_with(req: &HttpRequest, etag: HeaderValue, rendered: &Rendered) -> HttpResponse {
    let gzip = rendered.body.len() >= MIN_COMPRESSED_BYTES && accepts_gzip(req);
    let body = if gzip {
        rendered.gzipped()
    } else {
        rendered.body.clone()
    };
    answered(BoxBody::new(body), etag, gzip)
}

/// The 200 answer of `body`, tagged `etag`, compressed if `gzip`.
fn answered(body: BoxBody, etag: HeaderValue, gzip: bool) -> HttpResponse {
    let mut response = HttpResponse::with_body(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(header::CACHE_CONTROL, NO_CACHE);
    headers.insert(header::ETAG, etag);
    headers.insert(header::VARY, ACCEPT_ENCODING);
    if gzip {
        headers.insert(header::CONTENT_ENCODING, GZIP);
    }
    response
}

/// The answer of a `since` or `from` plan from the changes written at `head`
/// (see [`super::recent_changes`]), if they reach it and it need not be
/// compressed.
fn from_recent_changes(
    req: &HttpRequest,
    state: &AppState,
    plan: &Plan<'_>,
    head: Cursor,
) -> Option<Pieces> {
    if !matches!(plan, Plan::Since { ids: None, .. } | Plan::From { .. }) {
        return None;
    }
    let (changes, reach) = state.recent.changes.at(&state.store, head)?;
    let pieces = match plan {
        Plan::Since { cursor, ids: None } => changes.since(*cursor),
        Plan::From { from_ms, caller } => changes.from(*from_ms, caller.as_str()),
        _ => None,
    }?;
    let plain = pieces.len() < MIN_COMPRESSED_BYTES || !accepts_gzip(req);
    if plain && reach == Reach::Reused {
        state.recent.count_reuse();
    }
    plain.then_some(pieces)
}

async fn respond(
    req: &HttpRequest,
    state: &AppState,
    caller: &UserId,
    params: PresenceParams<'_>,
) -> Result<HttpResponse, ApiError> {
    let plan = Plan::new(state, caller, params, wall_ms)?;
    if let Plan::Since { cursor, .. } = &plan {
        catch_up(state, *cursor).await;
    }
    let head = state.store.cursor();
    let key = plan.key(head);
    if let Some(etag) = Tag::new(key).held_by(req) {
        state.metrics.not_modified.inc();
        let mut response = HttpResponse::new(StatusCode::NOT_MODIFIED);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, NO_CACHE);
        headers.insert(header::ETAG, etag);
        return Ok(response);
    }
    if let Some(pieces) = from_recent_changes(req, state, &plan, head) {
        return Ok(answered(
            BoxBody::new(pieces),
            Tag::new(key).header_value(),
            false,
        ));
    }
    let recent = match state.recent.get(key, head) {
        Some(recent) => recent,
        None => match plan.answer(&state.store) {
            // Rendered once per change burst and reused: gzip's fast level.
            Some(answer) => {
                // Tagged and filed at the position it was rendered at: the log may
                // have moved since `head` was read.
                let key = if answer.cursor == head {
                    key
                } else {
                    plan.key(answer.cursor)
                };
                let rendered = Rendered::new(answer, Tag::new(key), Compression::fast());
                match state.recent.put(key, rendered) {
                    Filed::Kept(kept) => kept,
                    Filed::Passed(fresh) => {
                        return Ok(respond_with(req, fresh.etag.clone(), &fresh))
                    }
                }
            }
            None => {
                let rendered = state.snapshots.get(&state.store).await;
                // The snapshot carries the tag of the plain full answer; a full
                // answer to another question (a lagging cursor) has its own.
                let etag = if plan == Plan::Full {
                    rendered.etag.clone()
                } else {
                    plan.etag(rendered.cursor).header_value()
                };
                return Ok(respond_with(req, etag, &rendered));
            }
        },
    };
    Ok(respond_with(
        req,
        recent.rendered.etag.clone(),
        &recent.rendered,
    ))
}

/// `GET /api/v1/users.presence?ids=..&from=..&since=..`, as routed; with
/// cross-origin access off, [`super::fast_path`] answers it before the router.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    answer_get(&req, &state).await
}

/// The answer to a `GET`: the one code both ways of reaching it share.
pub async fn answer_get(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(req, state).await?;
    let params = PresenceParams::from_query(req.query_string());
    respond(req, state, &caller.id, params).await
}

/// `POST /api/v1/users.presence` with `{"ids": [..], "since": "..", "from": ".."}`,
/// for id lists too long for a URL.
pub async fn post(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&req, payload, state.max_body_bytes).await?;
    let params: PresenceParams<'_> = parse_json(&body)?;
    respond(&req, &state, &caller.0.id, params).await
}

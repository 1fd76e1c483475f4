//! `GET|POST /api/v1/users.presence` (SPEC §3.1): picks the branch, asks the
//! store, and assembles the body from the users' pre-rendered JSON.

use super::auth::Authenticated;
use super::query::{Branch, PresenceParams};
use crate::http::body::read_json;
use crate::http::{ApiError, AppState};
use crate::store::{Caller, Cursor, Delta, Lagged, Snapshot, UserView};
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// The users of an answer, whether they are the full state, and where in the log
/// the answer stands.
#[derive(Debug, Clone)]
pub struct Answer {
    pub users: Vec<Arc<UserView>>,
    pub full: bool,
    pub cursor: Cursor,
}

impl Answer {
    fn full(snapshot: Snapshot) -> Answer {
        Answer {
            users: snapshot.users,
            full: true,
            cursor: snapshot.cursor,
        }
    }

    fn partial(users: Vec<Arc<UserView>>, cursor: Cursor) -> Answer {
        Answer {
            users,
            full: false,
            cursor,
        }
    }

    fn delta(delta: Delta) -> Answer {
        Answer::partial(delta.users, delta.cursor)
    }

    /// Renders `{"users":[...],"full":..,"cursor":"..","success":true}`.
    pub fn render(&self) -> String {
        let users_len: usize = self.users.iter().map(|u| u.json().len() + 1).sum();
        let mut body = String::with_capacity(users_len + 96);
        body.push_str(r#"{"users":["#);
        for (i, user) in self.users.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(user.json());
        }
        // Writing to a String cannot fail.
        let _ = write!(
            body,
            r#"],"full":{},"cursor":"{}","success":true}}"#,
            self.full, self.cursor
        );
        body
    }
}

/// Answers a presence request by the branches of SPEC §3.1, first match wins.
pub fn answer(
    state: &AppState,
    caller: &Caller,
    params: &PresenceParams,
    now_ms: i64,
) -> Result<Answer, ApiError> {
    let store = &state.store;
    if store.broadcast_disabled() {
        return Ok(Answer {
            users: Vec::new(),
            full: true,
            cursor: store.cursor(),
        });
    }
    let answer = match params.branch(state.max_ids)? {
        Branch::Since { cursor, ids: None } => match store.changed_since(cursor, |_| true) {
            Ok(delta) => Answer::delta(delta),
            Err(Lagged) => Answer::full(store.online()),
        },
        Branch::Since {
            cursor,
            ids: Some(ids),
        } => {
            let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
            match store.changed_since(cursor, |v| wanted.contains(v.id().as_str())) {
                Ok(delta) => Answer::delta(delta),
                // The full state of just the users asked about.
                Err(Lagged) => Answer::full(store.online_among(ids.iter().map(String::as_str))),
            }
        }
        Branch::Ids(ids) => {
            let snapshot = store.online_among(ids.iter().map(String::as_str));
            Answer::partial(snapshot.users, snapshot.cursor)
        }
        Branch::From(from_ms) => {
            let window_ms = i64::try_from(state.delta_window.as_millis()).unwrap_or(i64::MAX);
            let within_window = now_ms.saturating_sub(from_ms) < window_ms;
            match within_window.then(|| store.changed_from(from_ms, |v| v.id() != &caller.id)) {
                Some(Ok(delta)) => Answer::delta(delta),
                Some(Err(Lagged)) | None => Answer::full(store.online()),
            }
        }
        Branch::Full => Answer::full(store.online()),
    };
    Ok(answer)
}

fn respond(
    state: &AppState,
    caller: &Caller,
    params: &PresenceParams,
) -> Result<HttpResponse, ApiError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let body = answer(state, caller, params, now_ms)?.render();
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(body))
}

/// `GET /api/v1/users.presence?ids=..&from=..&since=..`
pub async fn get(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    respond(
        &state,
        &caller.0,
        &PresenceParams::from_query(req.query_string()),
    )
}

/// `POST /api/v1/users.presence` with `{"ids": [..], "since": "..", "from": ".."}`,
/// for id lists too long for a URL.
pub async fn post(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let params: PresenceParams = read_json(&req, payload, state.max_body_bytes).await?;
    respond(&state, &caller.0, &params)
}

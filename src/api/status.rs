//! `users.setStatus` and `users.getStatus` (docs/api.md §3.2).

use super::auth::Authenticated;
use crate::domain::{Status, StatusText, UserId};
use crate::http::body::read_json;
use crate::http::error::excerpt;
use crate::http::{json_response, ApiError, AppState};
use crate::store::Caller;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

/// Which user a request names: by `userId` (preferred, as upstream) or `username`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

impl Target {
    /// Reads `userId` / `username` from a query string; the first of each wins,
    /// other keys are ignored.
    fn from_query(query: &str) -> Target {
        let mut target = Target::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "userId" => target.user_id.get_or_insert_with(|| value.into_owned()),
                "username" => target.username.get_or_insert_with(|| value.into_owned()),
                _ => continue,
            };
        }
        target
    }

    /// Returns true if and only if the target is the caller (or no one is named).
    fn is_caller(&self, caller: &Caller) -> bool {
        match (&self.user_id, &self.username) {
            (Some(id), _) => id == caller.id.as_str(),
            (None, Some(name)) => name == caller.username.as_str(),
            (None, None) => true,
        }
    }

    /// Finds the named user, or fails with `error-invalid-user`.
    fn resolve(&self, state: &AppState, caller: &Caller) -> Result<UserId, ApiError> {
        if self.is_caller(caller) {
            return Ok(caller.id.clone());
        }
        let found = match (&self.user_id, &self.username) {
            (Some(id), _) => state
                .store
                .contains(id)
                .then(|| UserId::parse(id).ok())
                .flatten(),
            (None, Some(name)) => state.store.find_username(name),
            (None, None) => None,
        };
        found.ok_or_else(|| {
            ApiError::invalid_user(format!(
                "userId or username: {:?} does not match any user",
                excerpt(
                    self.user_id
                        .as_deref()
                        .or(self.username.as_deref())
                        .unwrap_or("")
                )
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct SetStatusBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(flatten)]
    target: Target,
}

/// `POST /api/v1/users.setStatus`
pub async fn set(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Authenticated(caller) = caller;
    if state.upstream.is_some() {
        // The chat server owns statuses in upstream mode: one set here would
        // be overwritten by its next event, and never reach its other clients.
        return Err(ApiError::not_allowed(
            "users.setStatus: in upstream mode the chat server owns statuses: send this              request to Rocket.Chat (route only users.presence to presenced)",
        ));
    }
    let body: SetStatusBody = read_json(&req, payload, state.max_body_bytes).await?;
    if body.status.is_none() && body.message.is_none() {
        return Err(ApiError::invalid_params(
            "status or message: at least one is required, e.g. {\"status\": \"away\"}",
        ));
    }
    let status = body
        .status
        .as_deref()
        .map(|s| Status::parse(s).ok_or_else(|| ApiError::invalid_status(s)))
        .transpose()?;
    if !body.target.is_caller(&caller) && !caller.is_admin {
        return Err(ApiError::forbidden());
    }
    let target = body.target.resolve(&state, &caller)?;
    // What upstream limits is setting the status text, so only a request with a
    // `message` spends the target's budget; one without still reports it.
    let rate_limit = match body.message {
        Some(_) => state.limits.take_set_status(&target)?,
        None => state.limits.peek_set_status(&target),
    };
    let text = body.message.as_deref().map(StatusText::new);
    state
        .set_status(&target, status, text)
        .await
        .map_err(|e| e.with_rate_limit(rate_limit))?;
    let mut response = HttpResponse::Ok();
    if let Some(headers) = rate_limit {
        headers.apply(&mut response);
    }
    Ok(response
        .content_type("application/json")
        .body(r#"{"success":true}"#))
}

#[derive(Serialize)]
struct OwnStatus<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    status: &'a str,
    #[serde(rename = "connectionStatus")]
    connection_status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    success: bool,
}

#[derive(Serialize)]
struct OtherStatus<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    status: &'a str,
    success: bool,
}

/// `GET /api/v1/users.getStatus[?userId=|?username=]`
pub async fn get(
    req: HttpRequest,
    caller: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Authenticated(caller) = caller;
    let target = Target::from_query(req.query_string());
    let id = target.resolve(&state, &caller)?;
    // The user may have been deleted since it was resolved.
    let report = state
        .store
        .status_of(id.as_str())
        .ok_or_else(|| ApiError::invalid_user("userId: the user no longer exists"))?;
    let body = if id == caller.id {
        serde_json::to_string(&OwnStatus {
            id: report.id.as_str(),
            status: report.status.as_str(),
            connection_status: report.connection_status.as_str(),
            message: &report.status_text,
            success: true,
        })
    } else {
        // Invisible users already read `offline` in their visible status.
        serde_json::to_string(&OtherStatus {
            id: report.id.as_str(),
            status: report.status.as_str(),
            success: true,
        })
    };
    Ok(json_response(StatusCode::OK, body.unwrap_or_default()))
}

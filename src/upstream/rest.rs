//! The chat server's REST API, as far as the bridge uses it: the full picture
//! of who is not offline, one user's profile, and a client's own login.
//!
//! Every call carries `X-User-Id` / `X-Auth-Token`: the service account's, or
//! for [`Rest::me`] the client's. Answers are read as loosely as Rocket.Chat
//! writes them (fields may be missing); what the bridge cannot use is reported
//! to the caller, which counts it as bad input.

use super::Verdict;
use crate::domain::{UserId, Username};
use crate::store::Caller;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Longest token sent upstream; Rocket.Chat's are 43 characters. A longer one
/// is refused without a call.
const MAX_TOKEN_BYTES: usize = 256;

/// One user as `users.presence` and `users.info` show it. `users.presence`
/// projects exactly `username, name, status, utcOffset, statusText,
/// avatarETag` (apps/meteor/app/api/server/v1/users.ts, route
/// `users.presence`); `users.info` shows those among its default fields
/// (apps/meteor/app/lib/server/functions/getFullUserData.ts, `defaultFields`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RestUser {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `online | away | busy | offline` (and `disabled`, shown as offline).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename = "utcOffset")]
    pub utc_offset: Option<f64>,
    #[serde(default, rename = "statusText")]
    pub status_text: Option<String>,
    #[serde(default, rename = "avatarETag")]
    pub avatar_etag: Option<String>,
}

/// `GET /api/v1/users.presence` without parameters:
/// `{"users": [...], "full": true, "success": true}` (route in users.ts, as above).
#[derive(Deserialize)]
struct PresenceAnswer {
    users: Vec<Value>,
}

/// `GET /api/v1/users.info?userId=..`: `{"user": {...}, "success": true}`.
#[derive(Deserialize)]
struct InfoAnswer {
    user: RestUser,
}

/// `GET /api/v1/me`: the caller's own user at the top level, `_id`,
/// `username`, `roles`, `active` among its fields (RocketChat/docs-old,
/// guides/api-guides/rest-api/authentication/me.md); a bad login is
/// `401 {"status": "error", "message": "You must be logged in to do this."}`.
#[derive(Deserialize)]
struct MeAnswer {
    #[serde(rename = "_id")]
    id: String,
    username: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    active: Option<bool>,
}

/// Why a REST call gave nothing usable.
#[derive(Debug)]
pub enum RestError {
    /// No answer: connection refused, timeout, a broken body.
    Unreachable(reqwest::Error),
    /// An answer with a status other than 200.
    Status(StatusCode),
    /// A 200 whose body is not the documented shape.
    Malformed(String),
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::Unreachable(e) => write!(f, "no answer: {e}"),
            RestError::Status(status) => write!(f, "answered {status}"),
            RestError::Malformed(why) => write!(f, "answered an unexpected body: {why}"),
        }
    }
}

impl std::error::Error for RestError {}

/// The REST client, with the service account's credentials.
#[derive(Debug)]
pub struct Rest {
    client: reqwest::Client,
    base: String,
    user_id: String,
    token: String,
}

impl Rest {
    /// A client of the chat server at `base` (no trailing `/`) whose calls
    /// give up after `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        base: &str,
        user_id: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<Rest, reqwest::Error> {
        Ok(Rest {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            base: base.to_owned(),
            user_id: user_id.to_owned(),
            token: token.to_owned(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        user_id: &str,
        token: &str,
    ) -> Result<T, RestError> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .header("X-User-Id", user_id)
            .header("X-Auth-Token", token)
            .send()
            .await
            .map_err(RestError::Unreachable)?;
        if response.status() != StatusCode::OK {
            return Err(RestError::Status(response.status()));
        }
        let bytes = response.bytes().await.map_err(RestError::Unreachable)?;
        serde_json::from_slice(&bytes).map_err(|e| RestError::Malformed(e.to_string()))
    }

    /// Every user not offline, each as the raw JSON object, so that one bad
    /// entry can be skipped without losing the rest.
    ///
    /// # Errors
    /// When the call fails or its answer has no `users` list.
    pub async fn online_users(&self) -> Result<Vec<Value>, RestError> {
        let answer: PresenceAnswer = self
            .get("/api/v1/users.presence", &self.user_id, &self.token)
            .await?;
        Ok(answer.users)
    }

    /// One user's profile.
    ///
    /// # Errors
    /// When the call fails or its answer is not a user.
    pub async fn user_info(&self, id: &UserId) -> Result<RestUser, RestError> {
        // Ids are [A-Za-z0-9._-]: nothing to escape in a query.
        let path = format!("/api/v1/users.info?userId={}", id.as_str());
        let answer: InfoAnswer = self.get(&path, &self.user_id, &self.token).await?;
        Ok(answer.user)
    }

    /// Asks whether `token` is a live login of `user_id`. Ids and tokens that
    /// could never be valid are refused without a call.
    pub async fn me(&self, user_id: &str, token: &str) -> Verdict {
        if UserId::parse(user_id).is_err() || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Verdict::Refused;
        }
        match self.get::<MeAnswer>("/api/v1/me", user_id, token).await {
            Ok(me) => caller_of(me, user_id),
            Err(RestError::Status(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                Verdict::Refused
            }
            Err(e) => {
                tracing::warn!("upstream: cannot check a token with GET /api/v1/me: {e}");
                Verdict::Unavailable
            }
        }
    }
}

/// The caller `/me` described, if it is the user asked about and active.
fn caller_of(me: MeAnswer, asked: &str) -> Verdict {
    if me.id != asked || me.active == Some(false) {
        return Verdict::Refused;
    }
    match (UserId::parse(&me.id), Username::parse(&me.username)) {
        (Ok(id), Ok(username)) => Verdict::Accepted(Caller {
            id,
            username,
            is_admin: me.roles.iter().any(|r| r == "admin"),
        }),
        _ => {
            tracing::warn!(
                "upstream: GET /api/v1/me named a user whose id or username presenced cannot \
                 hold ([A-Za-z0-9._-], 1-64 characters): refused"
            );
            Verdict::Refused
        }
    }
}

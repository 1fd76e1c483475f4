//! The DDP frames the bridge sends and reads, as serde types, and the
//! `user-status` event they carry.
//!
//! Shapes from Rocket.Chat's realtime API documentation
//! (developer.rocket.chat, "Realtime API": `connect`, `ping`/`pong`, `login`
//! with `{"resume": token}`, `sub`) and from its source: a stream event is a
//! `changed` message on collection `stream-<name>` with
//! `fields: {eventName, args}` (apps/meteor/server/modules/streamer/streamer.module.ts,
//! `_emit` and `changedPayload`); `user-status` is emitted with one argument,
//! `[uid, username, statusCode, statusText, name, roles]`, codes from
//! `STATUS_MAP` (apps/meteor/server/modules/listeners/listeners.module.ts:
//! offline 0, online 1, away 2, busy 3, disabled 0).

use crate::domain::{Status, StatusText, UserId, Username};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The stream the bridge subscribes to, and its event.
pub const STREAM: &str = "stream-notify-logged";
pub const USER_STATUS: &str = "user-status";

/// The ids the bridge gives its method call and subscription.
pub const LOGIN_ID: &str = "login";
pub const SUB_ID: &str = "user-status";

/// A frame the bridge sends.
#[derive(Debug, Serialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
pub enum Outgoing<'a> {
    /// `{"msg":"connect","version":"1","support":["1"]}`
    Connect {
        version: &'a str,
        support: [&'a str; 1],
    },
    /// `{"msg":"method","method":"login","id":"login","params":[{"resume":"<token>"}]}`
    Method {
        id: &'a str,
        method: &'a str,
        params: [Resume<'a>; 1],
    },
    /// `{"msg":"sub","id":"user-status","name":"stream-notify-logged","params":["user-status",false]}`:
    /// the second parameter is `useCollection` (streamer.module.ts, `_publish`).
    Sub {
        id: &'a str,
        name: &'a str,
        params: (&'a str, bool),
    },
    /// `{"msg":"ping"}`, sent when the socket has been silent for a heartbeat.
    Ping,
    /// `{"msg":"pong","id":..}`: the answer to a `ping`, echoing its id if it had one.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
}

/// The login parameter: a resume token (login or personal access token).
#[derive(Debug, Serialize)]
pub struct Resume<'a> {
    pub resume: &'a str,
}

impl Outgoing<'_> {
    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        // Serializing these structs of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A frame the bridge reads. Messages it has no use for (`added`, `updated`,
/// ...) are `Other`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "msg", rename_all = "lowercase")]
pub enum Incoming {
    /// `{"msg":"connected","session":".."}`
    Connected,
    /// `{"msg":"failed","version":"1"}`: no DDP version in common.
    Failed {
        #[serde(default)]
        version: Option<String>,
    },
    /// `{"msg":"ping","id"?:..}`
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
    /// `{"msg":"pong","id"?:..}`
    Pong,
    /// `{"msg":"result","id":"login","result":{..}}` or `..,"error":{..}}`
    Result {
        id: String,
        #[serde(default)]
        error: Option<DdpError>,
    },
    /// `{"msg":"ready","subs":["user-status"]}`
    Ready { subs: Vec<String> },
    /// `{"msg":"nosub","id":"user-status","error"?:{..}}`
    Nosub {
        id: String,
        #[serde(default)]
        error: Option<DdpError>,
    },
    /// `{"msg":"changed","collection":"stream-notify-logged","id":"id","fields":{..}}`
    Changed {
        collection: String,
        #[serde(default)]
        fields: Value,
    },
    /// `{"msg":"error","reason":".."}`: the server could not read a frame of ours.
    Error {
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// A DDP error object, e.g. `{"error":403,"reason":"You've been logged out by the server.",
/// "message":"..","errorType":"Meteor.Error"}`.
#[derive(Debug, Deserialize, PartialEq)]
pub struct DdpError {
    #[serde(default)]
    pub error: Value,
    #[serde(default)]
    pub reason: Option<String>,
}

impl fmt::Display for DdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{reason} ({})", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// What one text frame turned out to be.
#[derive(Debug, PartialEq)]
pub enum Read {
    Frame(Incoming),
    /// A frame without `msg`, such as the `{"server_id":"0"}` Meteor sends
    /// first: not DDP, harmless.
    Ignored,
}

/// Reads one text frame.
///
/// # Errors
/// The kind of bad input, when the text is not a JSON object or not a DDP
/// message of a known shape.
pub fn read(text: &str) -> Result<Read, BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        kind: "malformed-frame",
        detail: format!("not JSON: {e}"),
    })?;
    match &value {
        Value::Object(map) if !map.contains_key("msg") => Ok(Read::Ignored),
        Value::Object(_) => serde_json::from_value(value)
            .map(Read::Frame)
            .map_err(|e| BadFrame {
                kind: "malformed-frame",
                detail: format!("not a DDP message of a known shape: {e}"),
            }),
        _ => Err(BadFrame {
            kind: "malformed-frame",
            detail: "not a JSON object".to_owned(),
        }),
    }
}

/// Bad input: its kind (the metric's label) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    pub kind: &'static str,
    pub detail: String,
}

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// One user's new status, as a `user-status` event tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub id: UserId,
    pub username: Username,
    pub status: Status,
    pub status_text: StatusText,
    pub name: Option<String>,
}

/// The status a `STATUS_MAP` code stands for.
pub fn status_of_code(code: &Value) -> Option<Status> {
    match code.as_u64()? {
        0 => Some(Status::Offline),
        1 => Some(Status::Online),
        2 => Some(Status::Away),
        3 => Some(Status::Busy),
        _ => None,
    }
}

/// The status a REST `status` field stands for.
pub fn status_of_name(name: &str) -> Option<Status> {
    match name {
        "disabled" => Some(Status::Offline),
        other => Status::parse(other),
    }
}

/// Reads the `user-status` event out of a `changed` frame's `fields`:
/// `Ok(None)` if the frame is another stream's or another event's.
///
/// # Errors
/// The kind of bad input, when it is a `user-status` event that cannot be used.
pub fn status_event(collection: &str, fields: &Value) -> Result<Option<StatusEvent>, BadFrame> {
    if collection != STREAM || fields.get("eventName").and_then(Value::as_str) != Some(USER_STATUS)
    {
        return Ok(None);
    }
    let bad = |kind, detail: String| BadFrame { kind, detail };
    let Some(Value::Array(args)) = fields.get("args").and_then(|a| a.get(0)) else {
        return Err(bad(
            "malformed-event",
            format!("user-status args are not [[uid, username, status, ...]]: {fields}"),
        ));
    };
    let text = |i: usize| args.get(i).and_then(Value::as_str);
    let (Some(id), Some(username), Some(code)) = (text(0), text(1), args.get(2)) else {
        return Err(bad(
            "malformed-event",
            format!("user-status needs uid, username and status code: {fields}"),
        ));
    };
    let id = UserId::parse(id).map_err(|e| bad("invalid-id", format!("user-status uid: {e}")))?;
    let username = Username::parse(username)
        .map_err(|e| bad("invalid-username", format!("user-status username: {e}")))?;
    let status = status_of_code(code).ok_or_else(|| {
        bad(
            "unknown-status",
            format!(
                "user-status code {code}: expected 0 (offline), 1 (online), 2 (away) or 3 (busy)"
            ),
        )
    })?;
    Ok(Some(StatusEvent {
        id,
        username,
        status,
        status_text: StatusText::new(text(3).unwrap_or_default()),
        name: text(4).map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outgoing_frames_have_the_documented_shapes() {
        let cases = [
            (
                Outgoing::Connect {
                    version: "1",
                    support: ["1"],
                },
                json!({"msg": "connect", "version": "1", "support": ["1"]}),
            ),
            (
                Outgoing::Method {
                    id: LOGIN_ID,
                    method: "login",
                    params: [Resume { resume: "tok" }],
                },
                json!({"msg": "method", "id": "login", "method": "login", "params": [{"resume": "tok"}]}),
            ),
            (
                Outgoing::Sub {
                    id: SUB_ID,
                    name: STREAM,
                    params: (USER_STATUS, false),
                },
                json!({"msg": "sub", "id": "user-status", "name": "stream-notify-logged", "params": ["user-status", false]}),
            ),
            (Outgoing::Ping, json!({"msg": "ping"})),
            (Outgoing::Pong { id: None }, json!({"msg": "pong"})),
            (
                Outgoing::Pong { id: Some("7") },
                json!({"msg": "pong", "id": "7"}),
            ),
        ];
        for (frame, want) in cases {
            let got: Value = serde_json::from_str(&frame.to_text()).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn incoming_frames_are_read_and_unknown_messages_are_other() {
        let read_ok = |t: &str| read(t).unwrap();
        assert_eq!(read_ok(r#"{"server_id":"0"}"#), Read::Ignored);
        assert_eq!(
            read_ok(r#"{"msg":"connected","session":"s1"}"#),
            Read::Frame(Incoming::Connected)
        );
        assert_eq!(
            read_ok(r#"{"msg":"ping","id":"x"}"#),
            Read::Frame(Incoming::Ping {
                id: Some("x".into())
            })
        );
        assert_eq!(
            read_ok(r#"{"msg":"added","collection":"users","id":"u1","fields":{}}"#),
            Read::Frame(Incoming::Other)
        );
        let Read::Frame(Incoming::Result { id, error }) = read_ok(
            r#"{"msg":"result","id":"login","error":{"error":403,"reason":"You've been logged out by the server. Please log in again."}}"#,
        ) else {
            panic!("not a result");
        };
        assert_eq!(id, "login");
        assert!(error
            .unwrap()
            .to_string()
            .starts_with("You've been logged out"));
        for bad in ["{", "[1,2]", r#"{"msg":"ready"}"#, r#"{"msg":"result"}"#] {
            assert_eq!(read(bad).unwrap_err().kind, "malformed-frame", "{bad}");
        }
    }

    #[test]
    fn a_user_status_event_is_read_with_every_status_code() {
        for (code, status) in [
            (0, Status::Offline),
            (1, Status::Online),
            (2, Status::Away),
            (3, Status::Busy),
        ] {
            let fields = json!({"eventName": "user-status", "args": [["u1", "jane", code, " at lunch ", "Jane", ["user"]]]});
            let event = status_event(STREAM, &fields).unwrap().unwrap();
            assert_eq!(event.id.as_str(), "u1");
            assert_eq!(event.username.as_str(), "jane");
            assert_eq!(event.status, status);
            assert_eq!(event.status_text.as_str(), "at lunch");
            assert_eq!(event.name.as_deref(), Some("Jane"));
        }
        let bare = json!({"eventName": "user-status", "args": [["u1", "jane", 1]]});
        let event = status_event(STREAM, &bare).unwrap().unwrap();
        assert_eq!((event.status_text.as_str(), event.name), ("", None));
    }

    #[test]
    fn other_events_are_not_ours_and_bad_user_status_events_name_their_kind() {
        let other = json!({"eventName": "updateAvatar", "args": [{}]});
        assert_eq!(status_event(STREAM, &other), Ok(None));
        let elsewhere = json!({"eventName": "user-status", "args": [["u1", "jane", 1]]});
        assert_eq!(status_event("stream-notify-all", &elsewhere), Ok(None));
        for (args, kind) in [
            (json!([]), "malformed-event"),
            (json!([["u1"]]), "malformed-event"),
            (json!([["u1", "jane", 9]]), "unknown-status"),
            (json!([["u1", "jane", "online"]]), "unknown-status"),
            (json!([["bad id!", "jane", 1]]), "invalid-id"),
            (json!([["u1", "jane doe", 1]]), "invalid-username"),
        ] {
            let fields = json!({"eventName": "user-status", "args": args});
            assert_eq!(
                status_event(STREAM, &fields).unwrap_err().kind,
                kind,
                "{args}"
            );
        }
    }
}

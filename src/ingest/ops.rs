//! Ingest bodies (JSON) into validated [`Op`]s. Bodies are strict: an unknown
//! field is an error naming it, so a typo in the chat server's push fails loudly.

use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use crate::http::body::parse_json;
use crate::http::error::excerpt;
use crate::http::ApiError;
use crate::store::Op;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Which row of the ingest table an op is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    PutUser,
    DeleteUser,
    AddToken,
    RevokeToken,
    SetStatus,
    PutConnection,
    DeleteConnection,
    DeleteInstance,
}

impl OpKind {
    const NAMES: [(&'static str, OpKind); 8] = [
        ("putUser", OpKind::PutUser),
        ("deleteUser", OpKind::DeleteUser),
        ("addToken", OpKind::AddToken),
        ("revokeToken", OpKind::RevokeToken),
        ("setStatus", OpKind::SetStatus),
        ("putConnection", OpKind::PutConnection),
        ("deleteConnection", OpKind::DeleteConnection),
        ("deleteInstance", OpKind::DeleteInstance),
    ];

    fn from_name(name: &str) -> Option<OpKind> {
        OpKind::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }

    /// The field that names the op's subject in a batch row (a path segment otherwise).
    fn id_field(self) -> &'static str {
        match self {
            OpKind::PutConnection | OpKind::DeleteConnection => "connectionId",
            OpKind::DeleteInstance => "instanceId",
            _ => "userId",
        }
    }
}

/// Where an op's fields come from: a request body, or a row of a batch.
pub enum Fields<'a> {
    Body(&'a [u8]),
    Row(Value),
}

fn decode<T: DeserializeOwned>(fields: Fields<'_>) -> Result<T, ApiError> {
    match fields {
        Fields::Body(bytes) => parse_json(bytes),
        Fields::Row(value) => {
            serde_json::from_value(value).map_err(|e| ApiError::invalid_params(e.to_string()))
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    username: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "utcOffset")]
    utc_offset: Option<f64>,
    #[serde(default, rename = "avatarETag")]
    avatar_etag: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "hashedToken")]
    hashed_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    #[serde(default, rename = "statusText")]
    status_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionBody {
    #[serde(rename = "userId")]
    user_id: String,
    status: String,
    #[serde(default, rename = "instanceId")]
    instance_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

fn id_error(e: crate::domain::IdError) -> ApiError {
    ApiError::invalid_params(e.to_string())
}

fn token_hash(body: TokenBody) -> Result<TokenHash, ApiError> {
    let hash = match (body.token, body.hashed_token) {
        (Some(token), None) => TokenHash::of_token(&token),
        (None, Some(hashed)) => TokenHash::parse_hashed(&hashed),
        _ => return Err(ApiError::invalid_params(
            "token or hashedToken: exactly one is required, e.g. {\"token\": \"<login token>\"}",
        )),
    };
    hash.map_err(|e| ApiError::invalid_params(e.to_string()))
}

/// Builds the op of `kind` for the subject `id` from its fields.
pub fn parse_op(kind: OpKind, id: &str, fields: Fields<'_>) -> Result<Op, ApiError> {
    let user_id = || UserId::parse(id).map_err(id_error);
    Ok(match kind {
        OpKind::PutUser => {
            let id = user_id()?;
            let body: UserBody = decode(fields)?;
            let username = Username::parse(&body.username).map_err(id_error)?;
            let profile = Profile::new(
                username,
                body.name,
                body.utc_offset,
                body.avatar_etag,
                &body.roles,
                body.active,
            )
            .map_err(|e| ApiError::invalid_params(e.to_string()))?;
            Op::PutUser { id, profile }
        }
        OpKind::DeleteUser => {
            decode::<NoFields>(fields)?;
            Op::DeleteUser { id: user_id()? }
        }
        OpKind::AddToken => Op::AddToken {
            id: user_id()?,
            hash: token_hash(decode(fields)?)?,
        },
        OpKind::RevokeToken => Op::RevokeToken {
            id: user_id()?,
            hash: token_hash(decode(fields)?)?,
        },
        OpKind::SetStatus => {
            let id = user_id()?;
            let body: StatusBody = decode(fields)?;
            let status = Status::parse(&body.status)
                .ok_or_else(|| ApiError::invalid_status(&body.status))?;
            Op::SetStatus {
                id,
                status,
                text: body.status_text.as_deref().map(StatusText::new),
            }
        }
        OpKind::PutConnection => {
            let connection = ConnectionId::parse(id).map_err(id_error)?;
            let body: ConnectionBody = decode(fields)?;
            let status = ConnStatus::parse(&body.status).ok_or_else(|| {
                ApiError::invalid_params(format!(
                    "status: {:?} is not valid for a connection: expected online | away",
                    excerpt(&body.status)
                ))
            })?;
            Op::PutConnection {
                connection,
                user: UserId::parse(&body.user_id).map_err(id_error)?,
                status,
                instance: body
                    .instance_id
                    .as_deref()
                    .map(InstanceId::parse)
                    .transpose()
                    .map_err(id_error)?,
            }
        }
        OpKind::DeleteConnection => {
            decode::<NoFields>(fields)?;
            Op::DeleteConnection {
                connection: ConnectionId::parse(id).map_err(id_error)?,
            }
        }
        OpKind::DeleteInstance => {
            decode::<NoFields>(fields)?;
            Op::DeleteInstance {
                instance: InstanceId::parse(id).map_err(id_error)?,
            }
        }
    })
}

/// Builds an op from one batch row: `{"op": "<name>", "<idField>": "..", ...fields}`.
pub fn parse_batch_op(row: Value) -> Result<Op, ApiError> {
    let Value::Object(mut fields) = row else {
        return Err(ApiError::invalid_params(
            "op: expected a JSON object like {\"op\": \"putUser\", ...}",
        ));
    };
    let kind = match fields.remove("op") {
        Some(Value::String(name)) => OpKind::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = OpKind::NAMES.iter().map(|(n, _)| *n).collect();
            ApiError::invalid_params(format!(
                "op: {:?} is not an op: expected one of {}",
                excerpt(&name),
                names.join(" | ")
            ))
        })?,
        _ => {
            return Err(ApiError::invalid_params(
                "op: missing, expected a string such as \"putUser\"",
            ))
        }
    };
    let id_field = kind.id_field();
    let id = match fields.remove(id_field) {
        Some(Value::String(id)) => id,
        _ => {
            return Err(ApiError::invalid_params(format!(
                "{id_field}: missing, expected a string"
            )))
        }
    };
    parse_op(kind, &id, Fields::Row(Value::Object(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(r: Result<Op, ApiError>) -> String {
        r.unwrap_err().message().to_owned()
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let m = message(parse_batch_op(
            json!({"op": "putUser", "userId": "u", "username": "u", "nickname": "x"}),
        ));
        assert!(m.contains("unknown field `nickname`"), "{m}");
        let m = message(parse_op(
            OpKind::DeleteUser,
            "u",
            Fields::Body(br#"{"force": true}"#),
        ));
        assert!(m.contains("unknown field `force`"), "{m}");
    }

    #[test]
    fn batch_rows_name_their_subject_by_the_op_kind() {
        let op = parse_batch_op(
            json!({"op": "putConnection", "connectionId": "c1", "userId": "u", "status": "away"}),
        )
        .unwrap();
        assert!(matches!(
            op,
            Op::PutConnection {
                status: ConnStatus::Away,
                ..
            }
        ));
        let m = message(parse_batch_op(
            json!({"op": "deleteInstance", "userId": "u"}),
        ));
        assert!(m.starts_with("instanceId: missing"), "{m}");
        let m = message(parse_batch_op(json!({"op": "explode"})));
        assert!(m.contains("expected one of putUser"), "{m}");
        assert!(message(parse_batch_op(json!([1]))).starts_with("op:"));
    }

    #[test]
    fn a_token_op_needs_exactly_one_form() {
        for body in [json!({}), json!({"token": "a", "hashedToken": "b"})] {
            let m = message(parse_op(OpKind::AddToken, "u", Fields::Row(body)));
            assert!(m.starts_with("token or hashedToken"), "{m}");
        }
    }
}

//! Writes as values: one validated command per ingest row (docs/api.md §4), so the
//! single routes and the batch route share one path into the store.

use super::{Store, StoreError, Written};
use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId,
};

/// A validated write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    PutUser {
        id: UserId,
        profile: Profile,
    },
    DeleteUser {
        id: UserId,
    },
    AddToken {
        id: UserId,
        hash: TokenHash,
    },
    RevokeToken {
        id: UserId,
        hash: TokenHash,
    },
    SetStatus {
        id: UserId,
        status: Status,
        text: Option<StatusText>,
    },
    PutConnection {
        connection: ConnectionId,
        user: UserId,
        status: ConnStatus,
        instance: Option<InstanceId>,
    },
    DeleteConnection {
        connection: ConnectionId,
    },
    DeleteInstance {
        instance: InstanceId,
    },
}

/// What an accepted write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub written: Written,
    /// Connections closed, for `DeleteInstance`.
    pub closed: Option<usize>,
}

impl From<Written> for Applied {
    fn from(written: Written) -> Applied {
        Applied {
            written,
            closed: None,
        }
    }
}

impl Store {
    /// Applies one write.
    pub fn apply(&self, op: Op) -> Result<Applied, StoreError> {
        Ok(match op {
            Op::PutUser { id, profile } => self.put_user(&id, profile)?.into(),
            Op::DeleteUser { id } => self.delete_user(&id).into(),
            Op::AddToken { id, hash } => self.add_token(&id, hash)?.into(),
            Op::RevokeToken { id, hash } => self.revoke_token(&id, hash)?.into(),
            Op::SetStatus { id, status, text } => self.set_status(&id, Some(status), text)?.into(),
            Op::PutConnection {
                connection,
                user,
                status,
                instance,
            } => self
                .put_connection(&connection, &user, status, instance)?
                .into(),
            Op::DeleteConnection { connection } => self.delete_connection(&connection).into(),
            Op::DeleteInstance { instance } => {
                let (closed, written) = self.delete_instance(&instance);
                Applied {
                    written,
                    closed: Some(closed),
                }
            }
        })
    }
}

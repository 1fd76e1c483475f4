//! Writes in cluster mode: each op becomes one invocation of the script
//! (atomic in Redis), a batch one pipeline of them. A write is answered only
//! once this replica has applied the entry it wrote, so whoever wrote through
//! a replica reads it back there.

use super::entry::text;
use super::position::EntryId;
use super::{Cluster, WriteError};
use crate::domain::{ConnectionId, Status, StatusText, UserId, Username};
use crate::store::{Applied, Cursor, Op, StoreError, Written, MAX_TOKENS_PER_USER};
use redis::{Cmd, Value};

/// Most due connections one sweep call closes; the sweeper calls again while
/// a call comes back full.
pub const SWEEP_LIMIT: usize = 1000;

fn yes_no(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// The script's arguments for `op`: the op's name, then its own.
fn op_args(op: &Op) -> (&'static str, Vec<String>) {
    match op {
        Op::PutUser { id, profile } => (
            "put_user",
            vec![
                id.as_str().to_owned(),
                profile.username.as_str().to_owned(),
                profile.name.as_deref().unwrap_or_default().to_owned(),
                profile
                    .utc_offset
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                profile
                    .avatar_etag
                    .as_deref()
                    .unwrap_or_default()
                    .to_owned(),
                yes_no(profile.is_admin).to_owned(),
                yes_no(profile.active).to_owned(),
            ],
        ),
        Op::DeleteUser { id } => ("delete_user", vec![id.as_str().to_owned()]),
        Op::AddToken { id, hash } => ("add_token", vec![id.as_str().to_owned(), hash.to_base64()]),
        Op::RevokeToken { id, hash } => (
            "revoke_token",
            vec![id.as_str().to_owned(), hash.to_base64()],
        ),
        Op::SetStatus { id, status, text } => status_args(id, Some(*status), text.as_ref()),
        Op::PutConnection {
            connection,
            user,
            status,
            instance,
        } => (
            "put_connection",
            vec![
                connection.as_str().to_owned(),
                user.as_str().to_owned(),
                status.as_str().to_owned(),
                instance
                    .as_ref()
                    .map(|i| i.as_str().to_owned())
                    .unwrap_or_default(),
            ],
        ),
        Op::DeleteConnection { connection } => {
            ("delete_connection", vec![connection.as_str().to_owned()])
        }
        Op::DeleteInstance { instance } => ("delete_instance", vec![instance.as_str().to_owned()]),
    }
}

fn status_args(
    id: &UserId,
    status: Option<Status>,
    text: Option<&StatusText>,
) -> (&'static str, Vec<String>) {
    (
        "set_status",
        vec![
            id.as_str().to_owned(),
            status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            yes_no(text.is_some()).to_owned(),
            text.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        ],
    )
}

/// The user an op acts on, if it names one.
fn subject(op: &Op) -> Option<&UserId> {
    match op {
        Op::PutConnection { user, .. } => Some(user),
        Op::PutUser { id, .. }
        | Op::DeleteUser { id }
        | Op::AddToken { id, .. }
        | Op::RevokeToken { id, .. }
        | Op::SetStatus { id, .. } => Some(id),
        Op::DeleteConnection { .. } | Op::DeleteInstance { .. } => None,
    }
}

/// True if and only if choosing `status` is choosing invisibility where it is not allowed.
fn invisible_refused(status: Option<Status>, allow_invisible: bool) -> bool {
    !allow_invisible && status == Some(Status::Offline)
}

/// [`invisible_refused`] for an op: only `setStatus` chooses a status.
fn op_refused(op: &Op, allow_invisible: bool) -> bool {
    match op {
        Op::SetStatus { status, .. } => invisible_refused(Some(*status), allow_invisible),
        _ => false,
    }
}

/// The store's error for the script's refusal `code`, naming what the store would.
fn refusal(
    subject: Option<&UserId>,
    code: &str,
    detail: &str,
    max_conns: usize,
) -> Option<StoreError> {
    let user = || subject.cloned().or_else(|| UserId::parse(detail).ok());
    Some(match code {
        "unknown_user" => StoreError::UnknownUser(user()?),
        "username_taken" => StoreError::UsernameTaken(Username::parse(detail).ok()?),
        "connection_of_another_user" => {
            StoreError::ConnectionOfAnotherUser(ConnectionId::parse(detail).ok()?)
        }
        "too_many_tokens" => StoreError::TooManyTokens,
        "too_many_connections" => StoreError::TooManyConnections {
            user: user()?,
            limit: max_conns,
        },
        "too_many_users" => StoreError::TooManyUsers {
            limit: detail.parse().ok()?,
        },
        _ => return None,
    })
}

/// What the script answered for one op.
struct Reply {
    /// The last entry written, which this replica must apply before answering.
    last: Option<EntryId>,
    /// The last visible entry written: the write's cursor.
    visible: Option<EntryId>,
    count: usize,
}

impl Cluster {
    pub(super) fn invocation(&self, name: &str, args: &[String]) -> Cmd {
        let limits = &self.shared.limits;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.shared.link.sha())
            .arg(1)
            .arg(super::STREAM)
            .arg(name)
            .arg(fastrand::u64(1..).to_string())
            .arg(limits.stream_capacity)
            .arg(limits.connection_ttl_ms)
            .arg(limits.max_users)
            .arg(limits.max_connections_per_user)
            .arg(MAX_TOKENS_PER_USER)
            .arg(args);
        cmd
    }

    /// Reads the script's reply to `op`.
    fn reply(&self, subject: Option<&UserId>, value: &Value) -> Result<Reply, WriteError> {
        let odd = || WriteError::Unavailable(format!("unexpected reply from Redis: {value:?}"));
        let Value::Array(items) = value else {
            return Err(odd());
        };
        let parts: Vec<String> = items.iter().filter_map(text).collect();
        match parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["ok", last, count, visible] => Ok(Reply {
                last: EntryId::parse(last),
                visible: EntryId::parse(visible),
                count: count.parse().unwrap_or(0),
            }),
            ["err", code, detail] => refusal(
                subject,
                code,
                detail,
                self.shared.limits.max_connections_per_user,
            )
            .map_or_else(|| Err(odd()), |e| Err(WriteError::Refused(e))),
            _ => Err(odd()),
        }
    }

    /// Runs the script's op `name` on `args`, acting on `subject`.
    async fn call(
        &self,
        subject: Option<&UserId>,
        name: &str,
        args: &[String],
    ) -> Result<Reply, WriteError> {
        let value = self
            .shared
            .link
            .query(&self.invocation(name, args))
            .await
            .map_err(WriteError::from)?;
        self.reply(subject, &value)
    }

    /// Waits until this replica applied `reply`'s entries; the write's answer.
    async fn settle(&self, reply: &Reply) -> Result<Applied, WriteError> {
        if let Some(last) = reply.last {
            self.wait_applied(last.position()).await?;
        }
        let generation = self.generation();
        Ok(Applied {
            written: Written {
                change: reply
                    .visible
                    .map(|id| Cursor::new(generation, id.position())),
            },
            closed: None,
        })
    }

    /// Applies one op.
    pub async fn apply(&self, op: &Op) -> Result<Applied, WriteError> {
        if op_refused(op, self.shared.limits.allow_invisible) {
            return Err(WriteError::Refused(StoreError::InvisibleNotAllowed));
        }
        let (name, args) = op_args(op);
        let reply = self.call(subject(op), name, &args).await?;
        let mut applied = self.settle(&reply).await?;
        if matches!(op, Op::DeleteInstance { .. }) {
            applied.closed = Some(reply.count);
        }
        Ok(applied)
    }

    /// Sets the chosen status and/or text, as `users.setStatus` does.
    pub async fn set_status(
        &self,
        id: &UserId,
        status: Option<Status>,
        text: Option<StatusText>,
    ) -> Result<Written, WriteError> {
        if invisible_refused(status, self.shared.limits.allow_invisible) {
            return Err(WriteError::Refused(StoreError::InvisibleNotAllowed));
        }
        let (name, args) = status_args(id, status, text.as_ref());
        let reply = self.call(Some(id), name, &args).await?;
        Ok(self.settle(&reply).await?.written)
    }

    /// Applies ops in order, pipelined: one round trip for the batch. Each op
    /// is atomic; the batch is not (as in single mode, a refused op does not
    /// stop the others). Fails as a whole only if Redis cannot be reached.
    pub async fn apply_batch(&self, ops: &[Op]) -> Result<Vec<Result<(), StoreError>>, WriteError> {
        let allow_invisible = self.shared.limits.allow_invisible;
        let mut pipe = redis::pipe();
        for op in ops.iter().filter(|op| !op_refused(op, allow_invisible)) {
            let (name, args) = op_args(op);
            pipe.add_command(self.invocation(name, &args));
        }
        let values = if pipe.is_empty() {
            Vec::new()
        } else {
            self.shared
                .link
                .pipeline(&pipe)
                .await
                .map_err(WriteError::from)?
        };
        let mut values = values.iter();
        let mut last = None;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            if op_refused(op, allow_invisible) {
                results.push(Err(StoreError::InvisibleNotAllowed));
                continue;
            }
            let value = values.next().unwrap_or(&Value::Nil);
            match self.reply(subject(op), value) {
                Ok(reply) => {
                    last = last.max(reply.last);
                    results.push(Ok(()));
                }
                Err(WriteError::Refused(e)) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        self.settle(&Reply {
            last,
            visible: None,
            count: 0,
        })
        .await?;
        Ok(results)
    }

    /// Closes the connections due by Redis's clock; returns how many closed.
    pub(super) async fn sweep(&self) -> Result<usize, WriteError> {
        let reply = self.call(None, "sweep", &[SWEEP_LIMIT.to_string()]).await?;
        Ok(reply.count)
    }
}

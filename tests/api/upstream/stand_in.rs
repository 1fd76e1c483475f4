//! A stand-in Rocket.Chat on a loopback port: the REST routes the bridge calls
//! and DDP over a real WebSocket (tokio-tungstenite, server side) on the same
//! port, as a chat server serves both. Every frame and body has the shape
//! Rocket.Chat gives it; where each comes from is noted beside it.

use crate::helpers::Login;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// The service account presenced follows the chat server with.
pub const SERVICE_ID: &str = "svc-presence";
pub const SERVICE_TOKEN: &str = "svc-resume-token-0123456789abcdefghijklmno";

/// One user as the chat server holds it.
#[derive(Debug, Clone)]
pub struct RcUser {
    pub username: String,
    pub name: Option<String>,
    /// `online | away | busy | offline`
    pub status: &'static str,
    pub status_text: String,
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<String>,
}

impl RcUser {
    /// A user named after its id, with every field set.
    pub fn new(id: &str, status: &'static str) -> RcUser {
        RcUser {
            username: id.to_owned(),
            name: Some(format!("Name of {id}")),
            status,
            status_text: String::new(),
            utc_offset: Some(-2.5),
            avatar_etag: Some(format!("etag-{id}")),
        }
    }

    /// The user as `users.presence` projects it: `_id, username, name,
    /// status, utcOffset, statusText, avatarETag`, absent fields left out
    /// (apps/meteor/app/api/server/v1/users.ts, route `users.presence`).
    pub fn rest_json(&self, id: &str) -> Value {
        let mut user = Map::new();
        user.insert("_id".into(), json!(id));
        user.insert("username".into(), json!(self.username));
        user.insert("status".into(), json!(self.status));
        if let Some(name) = &self.name {
            user.insert("name".into(), json!(name));
        }
        if let Some(offset) = self.utc_offset {
            user.insert("utcOffset".into(), json!(offset));
        }
        if !self.status_text.is_empty() {
            user.insert("statusText".into(), json!(self.status_text));
        }
        if let Some(etag) = &self.avatar_etag {
            user.insert("avatarETag".into(), json!(etag));
        }
        Value::Object(user)
    }

    /// The user as presenced's `users.presence` shows it.
    pub fn presenced_json(&self, id: &str) -> Value {
        self.rest_json(id)
    }
}

/// `STATUS_MAP` (apps/meteor/server/modules/listeners/listeners.module.ts).
fn status_code(status: &str) -> u8 {
    match status {
        "online" => 1,
        "away" => 2,
        "busy" => 3,
        _ => 0,
    }
}

#[derive(Debug, Clone)]
enum Push {
    Frame(Message),
    /// Frames written together and flushed once, as a busy server writes them.
    Batch(Arc<Vec<Message>>),
    Close,
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, RcUser>,
    /// Client logins: token -> user id.
    logins: HashMap<String, String>,
    /// Entries added to every `users.presence` answer, for bad input.
    extra_presence: Vec<Value>,
}

struct Shared {
    state: Mutex<State>,
    /// While set, every connection is dropped as soon as it is accepted and
    /// open sockets are closed: the chat server is unreachable.
    down: AtomicBool,
    service_login_refused: AtomicBool,
    /// `users.presence` answers 500 while set.
    presence_fails: AtomicBool,
    /// `users.info` answers 500 while set.
    info_fails: AtomicBool,
    /// Pings are left unanswered while set.
    mute: AtomicBool,
    /// Frames other than DDP's own that the bridge sent: its pings and pongs.
    heartbeats: Mutex<Vec<Value>>,
    me_calls: AtomicUsize,
    info_calls: AtomicUsize,
    sockets: AtomicUsize,
    /// How long `/me` takes to answer, so that a burst overlaps it.
    me_delay: Duration,
    pushes: broadcast::Sender<Push>,
}

/// The stand-in, serving until dropped.
pub struct StandIn {
    shared: Arc<Shared>,
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.shared.pushes.send(Push::Close);
    }
}

impl StandIn {
    /// Binds a free loopback port and serves on it.
    pub async fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            down: AtomicBool::new(false),
            service_login_refused: AtomicBool::new(false),
            presence_fails: AtomicBool::new(false),
            info_fails: AtomicBool::new(false),
            mute: AtomicBool::new(false),
            heartbeats: Mutex::new(Vec::new()),
            me_calls: AtomicUsize::new(0),
            info_calls: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            me_delay: Duration::from_millis(200),
            pushes: broadcast::channel(65_536).0,
        });
        let serving = Arc::clone(&shared);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if serving.down.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(serve(Arc::clone(&serving), stream));
            }
        });
        StandIn {
            shared,
            base: format!("http://127.0.0.1:{port}"),
            server,
        }
    }

    /// Adds or replaces a user without telling anyone, as before presenced started.
    pub fn add_user(&self, id: &str, user: RcUser) {
        self.state().users.insert(id.to_owned(), user);
    }

    /// Changes a user's status and text, and emits `user-status` as Rocket.Chat does.
    pub fn set_status(&self, id: &str, status: &'static str, text: &str) {
        let event = {
            let mut state = self.state();
            let user = state.users.get_mut(id).expect("known user");
            user.status = status;
            user.status_text = text.to_owned();
            user_status_frame(id, user)
        };
        self.push(Message::Text(event.to_string().into()));
    }

    /// Sends `frame` to every subscribed socket, as it is.
    pub fn push(&self, frame: Message) {
        // No socket subscribed (the link is down) is fine: nobody hears it.
        let _ = self.shared.pushes.send(Push::Frame(frame));
    }

    /// Sends `frames` to every subscribed socket in one write.
    pub fn push_batch(&self, frames: Vec<Message>) {
        let _ = self.shared.pushes.send(Push::Batch(Arc::new(frames)));
    }

    /// Adds `entry` to every later `users.presence` answer.
    pub fn add_presence_entry(&self, entry: Value) {
        self.state().extra_presence.push(entry);
    }

    /// A client login of `id` (a user of this chat server).
    pub fn login(&self, id: &str) -> Login {
        let token = format!("resume-{id}-{}", self.state().logins.len());
        self.state().logins.insert(token.clone(), id.to_owned());
        Login {
            id: id.to_owned(),
            token,
        }
    }

    /// Registers `login`'s token as a live login of its user.
    pub fn add_login(&self, login: &Login) {
        self.state()
            .logins
            .insert(login.token.clone(), login.id.clone());
    }

    pub fn logout(&self, login: &Login) {
        self.state().logins.remove(&login.token);
    }

    /// Becomes unreachable: open sockets close, new connections are dropped.
    pub fn go_down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        let _ = self.shared.pushes.send(Push::Close);
    }

    pub fn come_back(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Refuses the service account's DDP login from now on.
    pub fn refuse_service_login(&self) {
        self.shared
            .service_login_refused
            .store(true, Ordering::SeqCst);
    }

    /// Makes `users.presence` answer 500 (or answer again).
    pub fn fail_presence(&self, fail: bool) {
        self.shared.presence_fails.store(fail, Ordering::SeqCst);
    }

    /// Makes `users.info` answer 500 (or answer again).
    pub fn fail_info(&self, fail: bool) {
        self.shared.info_fails.store(fail, Ordering::SeqCst);
    }

    /// Leaves pings unanswered (or answers them again).
    pub fn mute(&self, mute: bool) {
        self.shared.mute.store(mute, Ordering::SeqCst);
    }

    /// The pings and pongs the bridge sent so far.
    pub fn heartbeats(&self) -> Vec<Value> {
        self.shared.heartbeats.lock().expect("heartbeats").clone()
    }

    /// Calls to `GET /api/v1/me` so far.
    pub fn me_calls(&self) -> usize {
        self.shared.me_calls.load(Ordering::SeqCst)
    }

    /// Calls to `GET /api/v1/users.info` so far.
    pub fn info_calls(&self) -> usize {
        self.shared.info_calls.load(Ordering::SeqCst)
    }

    /// WebSockets opened so far.
    pub fn sockets(&self) -> usize {
        self.shared.sockets.load(Ordering::SeqCst)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("stand-in state")
    }
}

/// A `user-status` event as a DDP `changed` frame: collection
/// `stream-notify-logged`, id `"id"`, `fields: {eventName, args}`
/// (apps/meteor/server/modules/streamer/streamer.module.ts, `_emit`), with
/// one argument `[uid, username, status code, statusText, name, roles]`
/// (listeners.module.ts, `presence.status`).
pub fn user_status_frame(id: &str, user: &RcUser) -> Value {
    json!({
        "msg": "changed",
        "collection": "stream-notify-logged",
        "id": "id",
        "fields": {
            "eventName": "user-status",
            "args": [[id, user.username, status_code(user.status), user.status_text, user.name, ["user"]]]
        }
    })
}

/// Answers one connection: a WebSocket upgrade of `/websocket`, or a REST call.
async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    // The request line decides; it is peeked, so that the WebSocket handshake
    // can read the request itself. A request line arrives in one segment on
    // loopback, but a short one is peeked again, a bounded number of times.
    let mut head = [0u8; 64];
    for _ in 0..1000 {
        let Ok(n) = stream.peek(&mut head).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if n == head.len() || head[..n].contains(&b'\n') {
            break;
        }
        tokio::task::yield_now().await;
    }
    if head.starts_with(b"GET /websocket") {
        ddp(shared, stream).await;
    } else {
        rest(shared, stream).await;
    }
}

fn text(frame: Value) -> Message {
    Message::Text(frame.to_string().into())
}

/// One DDP session, per Rocket.Chat's realtime API documentation
/// (developer.rocket.chat, "Realtime API") and DDP itself.
async fn ddp(shared: Arc<Shared>, stream: TcpStream) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    shared.sockets.fetch_add(1, Ordering::SeqCst);
    let mut pushes = shared.pushes.subscribe();
    // Meteor's first frame, which is not DDP: `{"server_id":"0"}`.
    if socket.send(text(json!({"server_id": "0"}))).await.is_err() {
        return;
    }
    let mut logged_in = false;
    let mut subscribed = false;
    loop {
        tokio::select! {
            incoming = socket.next() => {
                let Some(Ok(message)) = incoming else { return };
                let Message::Text(frame) = message else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(frame.as_str()) else { continue };
                let id = frame["id"].clone();
                if matches!(frame["msg"].as_str(), Some("ping" | "pong")) {
                    shared.heartbeats.lock().expect("heartbeats").push(frame.clone());
                }
                let replies = match frame["msg"].as_str() {
                    // `{"msg":"connected","session":".."}`: the DDP specification
                    // (meteor/meteor packages/ddp/DDP.md, "Establishing a DDP Connection").
                    Some("connect") => vec![json!({"msg": "connected", "session": "stand-in-session"})],
                    Some("ping") if shared.mute.load(Ordering::SeqCst) => vec![],
                    // `{"msg":"pong","id"?:..}` echoes the ping's id (DDP.md, "Heartbeats").
                    Some("ping") if id.is_null() => vec![json!({"msg": "pong"})],
                    Some("ping") => vec![json!({"msg": "pong", "id": id})],
                    Some("method") if frame["method"] == "login" => {
                        let resume = frame["params"][0]["resume"].as_str();
                        logged_in = resume == Some(SERVICE_TOKEN)
                            && !shared.service_login_refused.load(Ordering::SeqCst);
                        if logged_in {
                            // The resume login's result, `{id, token, tokenExpires, type}`
                            // as Meteor's accounts-base login handler returns it
                            // (accounts_server.js `_loginUser`, `type: "resume"` for a resume
                            // token), then `updated` for the method (DDP.md, "Remote
                            // Procedure Calls": result, then updated).
                            vec![
                                json!({"msg": "result", "id": id, "result": {
                                    "id": SERVICE_ID, "token": SERVICE_TOKEN,
                                    "tokenExpires": {"$date": 4_102_444_800_000_i64}, "type": "resume"}}),
                                json!({"msg": "updated", "methods": [id]}),
                            ]
                        } else {
                            // Meteor's answer to a dead resume token: accounts-base's
                            // resume handler returns `Meteor.Error(403, "You've been logged
                            // out by the server. Please log in again.")`, sent as a DDP
                            // `result` with `error` (DDP.md; Meteor.Error's EJSON fields).
                            vec![json!({"msg": "result", "id": id, "error": {
                                "isClientSafe": true, "error": 403,
                                "reason": "You've been logged out by the server. Please log in again.",
                                "message": "You've been logged out by the server. Please log in again. [403]",
                                "errorType": "Meteor.Error"}})]
                        }
                    }
                    Some("sub") if frame["name"] == "stream-notify-logged"
                        && frame["params"][0] == "user-status" && logged_in => {
                        subscribed = true;
                        vec![json!({"msg": "ready", "subs": [id]})]
                    }
                    // streamer.module.ts `_publish`: a reader not allowed gets `not-allowed`.
                    Some("sub") => vec![json!({"msg": "nosub", "id": id, "error": {
                        "isClientSafe": true, "error": "not-allowed", "reason": "Not allowed",
                        "message": "Not allowed [not-allowed]", "errorType": "Meteor.Error"}})],
                    _ => vec![],
                };
                for reply in replies {
                    if socket.send(text(reply)).await.is_err() {
                        return;
                    }
                }
            }
            push = pushes.recv() => match push {
                Ok(Push::Frame(frame)) if subscribed => {
                    if socket.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(Push::Batch(frames)) if subscribed => {
                    for frame in frames.iter() {
                        if socket.feed(frame.clone()).await.is_err() {
                            return;
                        }
                    }
                    if socket.flush().await.is_err() {
                        return;
                    }
                }
                Ok(Push::Frame(_) | Push::Batch(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(Push::Close) | Err(broadcast::error::RecvError::Closed) => {
                    let _ = socket.close(None).await;
                    return;
                }
            },
        }
    }
}

/// One REST call, answered and the connection closed.
async fn rest(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
        if request.len() > 65_536 {
            return;
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let mut lines = request.split("\r\n");
    let target = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let (status, body) = answer(&shared, &target, &headers).await;
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Rocket.Chat's 401 (apps/meteor/app/api/server/api.ts, `unauthorized`).
fn unauthorized() -> (&'static str, Value) {
    (
        "401 Unauthorized",
        json!({"status": "error", "message": "You must be logged in to do this."}),
    )
}

async fn answer(
    shared: &Shared,
    target: &str,
    headers: &HashMap<String, String>,
) -> (&'static str, Value) {
    let user_id = headers.get("x-user-id").map(String::as_str);
    let token = headers.get("x-auth-token").map(String::as_str);
    let service = user_id == Some(SERVICE_ID) && token == Some(SERVICE_TOKEN);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/api/v1/users.info" {
        shared.info_calls.fetch_add(1, Ordering::SeqCst);
    }
    match path {
        // `/me`: the caller's own user at the top level
        // (RocketChat/docs-old, guides/api-guides/rest-api/authentication/me.md).
        "/api/v1/me" => {
            shared.me_calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(shared.me_delay).await;
            let state = shared.state.lock().expect("stand-in state");
            let owner = token.and_then(|t| state.logins.get(t));
            match owner.filter(|owner| Some(owner.as_str()) == user_id) {
                Some(id) => {
                    let user = &state.users[id];
                    (
                        "200 OK",
                        json!({"_id": id, "username": user.username, "name": user.name,
                            "status": user.status, "active": true, "roles": ["user"],
                            "utcOffset": user.utc_offset, "success": true}),
                    )
                }
                None => unauthorized(),
            }
        }
        _ if !service => unauthorized(),
        // No parameters: every user not offline, `full: true` (users.ts).
        "/api/v1/users.presence" | "/api/v1/users.info"
            if shared.presence_fails.load(Ordering::SeqCst) && path.ends_with("presence")
                || shared.info_fails.load(Ordering::SeqCst) && path.ends_with("info") =>
        {
            // The shape of Rocket.Chat's `API.v1.internalError()` (apps/meteor/app/api/
            // server/api.ts): `{success: false, error}` with a 500; the bridge reads only
            // the status.
            (
                "500 Internal Server Error",
                json!({"success": false, "error": "Internal server error"}),
            )
        }
        "/api/v1/users.presence" => {
            let state = shared.state.lock().expect("stand-in state");
            let mut users: Vec<Value> = state
                .users
                .iter()
                .filter(|(_, u)| u.status != "offline")
                .map(|(id, u)| u.rest_json(id))
                .collect();
            users.extend(state.extra_presence.iter().cloned());
            (
                "200 OK",
                json!({"users": users, "full": true, "success": true}),
            )
        }
        // `{"user": {...}, "success": true}`; the default fields include
        // utcOffset and avatarETag (getFullUserData.ts, `defaultFields`).
        "/api/v1/users.info" => {
            let id = query.strip_prefix("userId=").unwrap_or_default();
            let state = shared.state.lock().expect("stand-in state");
            match state.users.get(id) {
                Some(user) => (
                    "200 OK",
                    json!({"user": user.rest_json(id), "success": true}),
                ),
                // users.ts `users.info`: an unknown user is `API.v1.failure` (400,
                // `{success: false, error}`); the bridge reads only the status.
                None => (
                    "400 Bad Request",
                    json!({"success": false, "error": "User not found."}),
                ),
            }
        }
        // Rocket.Chat's API answer to an unknown route (`API.v1.notFound()`, api.ts).
        _ => (
            "404 Not Found",
            json!({"success": false, "error": "Resource not found"}),
        ),
    }
}

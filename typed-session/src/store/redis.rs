//! [`RedisStore`]: sessions in Redis or Redis Cluster, one round trip per
//! operation, shared by every app instance.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionLike;
use redis::{Cmd, Script, ServerErrorKind, Value};
use tokio::sync::{OnceCell, oneshot};

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::clock::{from_unix_millis, unix_millis};
use crate::error::StoreError;
use crate::id::SessionKey;

/// Width of each decimal field of the record header: revision, then expiry
/// (unix ms), zero-padded, so scripts compare and patch them as text.
const FIELD: usize = 20;
const HEADER: usize = 2 * FIELD;

/// Compare-and-set save: the stored revision must be ARGV[1]. Returns 1
/// when saved, nil when the record is gone, the current record otherwise.
const SAVE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 20) ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Moves the expiry (in the header and as the key's TTL) of a live record;
/// the payload is not resent. 1 when touched, 0 when there is no record.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETRANGE', KEYS[1], 20, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
";

/// Regenerate on one node: check the old record's revision, create the new
/// key, delete the old one, as one step. 1 when replaced, 2 when the new key
/// is taken, nil when the old record is gone, the old record on a conflict.
const REPLACE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 20) ~= ARGV[1] then return v end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Cluster regenerate, first step (the two keys live in different slots):
/// delete the old record if it is at the expected revision. 1 when deleted,
/// nil when gone, the current record on a conflict.
const DELETE_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 20) ~= ARGV[1] then return v end
redis.call('DEL', KEYS[1])
return 1
";

/// One of the store's scripts: its source (for `SCRIPT LOAD`) and its hash.
struct Lua {
    script: Script,
    source: &'static str,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Lua {
            script: Script::new(source),
            source,
        }
    }
}

/// A reply, with an error reply turned into an error.
fn checked(reply: Value) -> Result<Value, StoreError> {
    reply.extract_error().map_err(StoreError::new)
}

/// Commands waiting for the next pipeline, with where their replies go.
type Waiting = Vec<(Cmd, oneshot::Sender<Result<Value, StoreError>>)>;

/// Where sessions live in Redis: one node (or a primary behind a proxy or
/// Sentinel-managed address) or a Redis Cluster.
///
/// * One round trip per operation: load is one `GET`, create one `SET NX
///   PXAT`, delete one `DEL`; compare-and-set save, touch and regenerate are
///   one `EVALSHA` each (the scripts are loaded once, and again
///   transparently after a `NOSCRIPT` reply, say after a failover).
/// * A record is one string: its revision and expiry as two 20-digit
///   decimal fields, then the session bytes. Redis expires it itself (`PXAT`
///   from the record's expiry); `touch` patches the expiry field and the TTL
///   without resending the session.
/// * Cluster: every operation is on one key (one slot), except regenerate,
///   whose two random keys live in different slots: there it is two
///   commands, `SET NX` of the new record (whose id nobody knows yet), then
///   a compare-and-delete of the old one; when that finds the old session
///   ended or changed, a third command deletes the new record again. A crash
///   between the two leaves an unreachable new record to expire, and the old
///   id alive as it was.
/// * Timeouts on connecting and on every command: while Redis is down,
///   requests get `503 session store unavailable` within the timeout; the
///   connection is re-established on its own when Redis is back.
/// * No in-process cache: a cache in front of Redis would serve a session
///   that another instance has just logged out.
///
/// ```no_run
/// use std::time::Duration;
/// use typed_session::{SessionLayer, store::RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379/0")
///     .unwrap()
///     .with_prefix("myapp:session:")
///     .with_command_timeout(Duration::from_millis(500));
/// let layer = SessionLayer::new(store);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    conn: OnceCell<Conn>,
    queue: Mutex<Waiting>,
    save: Lua,
    touch: Lua,
    replace: Lua,
    delete_if: Lua,
}

enum Target {
    Node(redis::Client),
    Cluster(Vec<String>),
}

#[derive(Clone)]
enum Conn {
    Node(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.inner.target, Target::Cluster(_)))
            .field("prefix", &self.inner.prefix)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("command_timeout", &self.inner.command_timeout)
            .finish_non_exhaustive()
    }
}

/// A command that did not answer within the timeout.
#[derive(Debug, thiserror::Error)]
#[error("redis did not answer within {0:?}")]
struct Timeout(Duration);

/// A reply the store's scripts never give.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from redis")]
struct Unexpected;

/// One header field: `n` as 20 zero-padded decimal digits.
fn field(n: u64) -> String {
    format!("{n:020}")
}

fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + record.data.len());
    out.extend_from_slice(field(record.revision).as_bytes());
    out.extend_from_slice(field(unix_millis(record.expires_at)).as_bytes());
    out.extend_from_slice(&record.data);
    out
}

fn decode(value: Vec<u8>) -> Result<Record, StoreError> {
    let number = |range: std::ops::Range<usize>| {
        value
            .get(range)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| StoreError::new(Unexpected))
    };
    let revision = number(0..FIELD)?;
    let expires = number(FIELD..HEADER)?;
    let mut data = value;
    data.drain(..HEADER);
    Ok(Record::new(data, revision, from_unix_millis(expires)))
}

impl RedisStore {
    /// A store on one Redis node: `redis://[user:password@]host:port[/db]`.
    /// Connects on first use (so the app starts while Redis is down; its
    /// requests get 503 until it is up).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::new)?;
        Ok(RedisStore::build(Target::Node(client)))
    }

    /// A store on a Redis Cluster, reached through any of `nodes`
    /// (`redis://host:port` each); it discovers the rest.
    pub fn cluster<I, S>(nodes: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        if nodes.is_empty() {
            return Err(StoreError::new(std::io::Error::other(
                "a Redis Cluster needs at least one node address",
            )));
        }
        Ok(RedisStore::build(Target::Cluster(nodes)))
    }

    fn build(target: Target) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                target,
                prefix: "session:".to_owned(),
                connect_timeout: Duration::from_secs(2),
                command_timeout: Duration::from_secs(1),
                conn: OnceCell::new(),
                queue: Mutex::new(Vec::new()),
                save: Lua::new(SAVE),
                touch: Lua::new(TOUCH),
                replace: Lua::new(REPLACE),
                delete_if: Lua::new(DELETE_IF),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => tracing::warn!("RedisStore settings changed on a shared store are ignored"),
        }
        self
    }

    /// The prefix of every key (default `session:`).
    pub fn with_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.edit(|i| i.prefix = prefix)
    }

    /// How long to wait for a connection (default 2 s).
    pub fn with_connect_timeout(self, timeout: Duration) -> Self {
        self.edit(|i| i.connect_timeout = timeout)
    }

    /// How long to wait for one command (default 1 s); past it the request
    /// gets 503.
    pub fn with_command_timeout(self, timeout: Duration) -> Self {
        self.edit(|i| i.command_timeout = timeout)
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn key(&self, key: &SessionKey) -> String {
        let prefix = &self.inner.prefix;
        let mut k = String::with_capacity(prefix.len() + 64);
        k.push_str(prefix);
        k.push_str(std::str::from_utf8(&key.hex()).unwrap_or_default());
        k
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let inner = &self.inner;
        let conn = inner
            .conn
            .get_or_try_init(|| async {
                let connecting = async {
                    match &inner.target {
                        Target::Node(client) => {
                            let config = redis::aio::ConnectionManagerConfig::new()
                                .set_connection_timeout(Some(inner.connect_timeout))
                                .set_response_timeout(Some(inner.command_timeout))
                                .set_number_of_retries(1);
                            client
                                .get_connection_manager_with_config(config)
                                .await
                                .map(Conn::Node)
                        }
                        Target::Cluster(nodes) => {
                            let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                                .connection_timeout(inner.connect_timeout)
                                .response_timeout(inner.command_timeout)
                                .retries(1)
                                .build()?;
                            client.get_async_connection().await.map(Conn::Cluster)
                        }
                    }
                };
                match tokio::time::timeout(inner.connect_timeout, connecting).await {
                    Ok(conn) => conn.map_err(StoreError::new),
                    Err(_) => Err(StoreError::new(Timeout(inner.connect_timeout))),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    /// Runs one command with the command timeout, on its own.
    async fn run(&self, cmd: Cmd) -> Result<Value, StoreError> {
        let mut conn = self.connect().await?;
        let reply = async move { conn.req_packed_command(&cmd).await };
        match tokio::time::timeout(self.inner.command_timeout, reply).await {
            Ok(result) => result.map_err(StoreError::new),
            Err(_) => Err(StoreError::new(Timeout(self.inner.command_timeout))),
        }
    }

    /// Sends one command and waits for its reply (which may be a
    /// `ServerError`: see [`checked`]).
    ///
    /// On one node the commands of concurrent requests are pipelined: the
    /// first command queued spawns a flush that yields once to the runtime,
    /// so that every request that is ready runs up to its own command, and
    /// then sends all of them in one write. Each operation is still one
    /// command and one round trip; what is saved is a system call and a
    /// context switch per command on both ends (Redis shares the machine's
    /// cores in most deployments). A Cluster sends each command on its own:
    /// the commands of one batch would go to different nodes.
    async fn query(&self, cmd: Cmd) -> Result<Value, StoreError> {
        if matches!(self.inner.target, Target::Cluster(_)) {
            return self.run(cmd).await;
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut queue = self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.push((cmd, tx));
            queue.len() == 1
        };
        if first {
            // A task of its own: the flush must happen even when the request
            // that queued first is dropped while it waits.
            tokio::spawn(self.clone().flush());
        }
        // No timer here: the flush answers within the connect and command
        // timeouts, or is dropped with the runtime.
        rx.await
            .unwrap_or_else(|_| Err(StoreError::new(Unexpected)))
    }

    /// Sends every queued command as one pipeline and hands out the replies.
    async fn flush(self) {
        tokio::task::yield_now().await;
        let waiting = std::mem::take(
            &mut *self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut waiters = Vec::with_capacity(waiting.len());
        for (cmd, tx) in waiting {
            pipe.add_command(cmd);
            waiters.push(tx);
        }
        let sent = async {
            let mut conn = self.connect().await?;
            let replies = async move { pipe.query_async::<Vec<Value>>(&mut conn).await };
            match tokio::time::timeout(self.inner.command_timeout, replies).await {
                Ok(result) => result.map_err(StoreError::new),
                Err(_) => Err(StoreError::new(Timeout(self.inner.command_timeout))),
            }
        };
        match sent.await {
            Ok(replies) if replies.len() == waiters.len() => {
                for (tx, reply) in waiters.into_iter().zip(replies) {
                    let _ = tx.send(Ok(reply));
                }
            }
            Ok(_) => {
                for tx in waiters {
                    let _ = tx.send(Err(StoreError::new(Unexpected)));
                }
            }
            Err(failed) => {
                let failed = Arc::new(failed);
                for tx in waiters {
                    let _ = tx.send(Err(StoreError::new(Arc::clone(&failed))));
                }
            }
        }
    }

    /// Runs one of the store's scripts: `EVALSHA`, and on a `NOSCRIPT`
    /// reply (a restarted or failed-over Redis) `SCRIPT LOAD` and again.
    async fn eval(&self, lua: &Lua, keys: &[&str], args: &[&[u8]]) -> Result<Value, StoreError> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(lua.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        match self.query(cmd.clone()).await? {
            Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript) => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(lua.source);
                checked(self.query(load).await?)?;
                checked(self.query(cmd).await?)
            }
            reply => checked(reply),
        }
    }

    /// `DEL key`.
    async fn del(&self, k: String) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(k);
        checked(self.query(cmd).await?).map(drop)
    }

    /// `SET key value NX PXAT at`: `true` when set.
    async fn set_nx(&self, k: String, value: Vec<u8>, at: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(k).arg(value).arg("NX").arg("PXAT").arg(at);
        Ok(!matches!(checked(self.query(cmd).await?)?, Value::Nil))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The reply of the save/replace/delete-if scripts.
enum Reply {
    Done(i64),
    Gone,
    Current(Record),
}

fn reply(value: Value) -> Result<Reply, StoreError> {
    match value {
        Value::Nil => Ok(Reply::Gone),
        Value::Int(n) => Ok(Reply::Done(n)),
        Value::BulkString(bytes) => decode(bytes).map(Reply::Current),
        _ => Err(StoreError::new(Unexpected)),
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        match checked(self.query(cmd).await?)? {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => {
                let record = decode(bytes)?;
                // Redis expires keys itself; this only covers clock skew.
                Ok((record.expires_at > SystemTime::now()).then_some(record))
            }
            _ => Err(StoreError::new(Unexpected)),
        }
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        let at = unix_millis(record.expires_at);
        self.set_nx(self.key(key), encode(&record), at).await
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        // PXAT takes a plain number (no padding).
        let at = unix_millis(record.expires_at).to_string();
        let out: Value = self
            .eval(
                &self.inner.save,
                &[&self.key(key)],
                &[field(expected).as_bytes(), &encode(&record), at.as_bytes()],
            )
            .await?;
        Ok(match reply(out)? {
            Reply::Done(_) => SaveOutcome::Saved,
            Reply::Gone => SaveOutcome::Conflict(None),
            Reply::Current(current) => SaveOutcome::Conflict(Some(current)),
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.del(self.key(key)).await
    }

    async fn touch(&self, key: &SessionKey, expires_at: SystemTime) -> Result<bool, StoreError> {
        // The header field is padded; PEXPIREAT takes a plain number.
        let at = unix_millis(expires_at);
        let touched = self
            .eval(
                &self.inner.touch,
                &[&self.key(key)],
                &[field(at).as_bytes(), at.to_string().as_bytes()],
            )
            .await?;
        Ok(matches!(touched, Value::Int(1)))
    }

    async fn replace(
        &self,
        old: &SessionKey,
        expected: u64,
        new: &SessionKey,
        record: Record,
    ) -> Result<ReplaceOutcome, StoreError> {
        let (ko, kn) = (self.key(old), self.key(new));
        let at = unix_millis(record.expires_at);
        let value = encode(&record);
        let expected = field(expected);
        if matches!(self.inner.target, Target::Node(_)) {
            let at = at.to_string();
            let out: Value = self
                .eval(
                    &self.inner.replace,
                    &[&ko, &kn],
                    &[expected.as_bytes(), &value, at.as_bytes()],
                )
                .await?;
            return Ok(match reply(out)? {
                Reply::Done(2) => ReplaceOutcome::KeyTaken,
                Reply::Done(_) => ReplaceOutcome::Replaced,
                Reply::Gone => ReplaceOutcome::Conflict(None),
                Reply::Current(current) => ReplaceOutcome::Conflict(Some(current)),
            });
        }
        // Cluster: the keys are in different slots, so two commands. The
        // new record first (nobody knows its id until this response), then
        // the compare-and-delete of the old one; if that finds the old one
        // gone or changed, the new one is deleted again: nothing changed.
        if !self.set_nx(kn.clone(), value, at).await? {
            return Ok(ReplaceOutcome::KeyTaken);
        }
        let out: Value = self
            .eval(&self.inner.delete_if, &[&ko], &[expected.as_bytes()])
            .await?;
        let outcome = match reply(out)? {
            Reply::Done(_) => return Ok(ReplaceOutcome::Replaced),
            Reply::Gone => ReplaceOutcome::Conflict(None),
            Reply::Current(current) => ReplaceOutcome::Conflict(Some(current)),
        };
        self.del(kn).await?;
        Ok(outcome)
    }
}

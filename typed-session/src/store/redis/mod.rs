//! [`RedisStore`]: sessions in Redis or Redis Cluster, one round trip per
//! operation, shared by every app instance.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, ServerErrorKind, Value};
use tokio::sync::OnceCell;

use self::cache::Cache;
use self::pipeline::Queue;
use self::scripts::{DELETE_IF, Lua, REPLACE, SAVE, TOUCH};
use self::wire::{Reply, STAMP, checked, decode, encode, encode_stamp, field, reply};

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::clock::unix_millis;
use crate::error::StoreError;
use crate::id::SessionKey;

mod cache;
mod connection;
mod pipeline;
mod scripts;
mod wire;

/// Where sessions live in Redis: one node (or a primary behind a
/// Sentinel-managed address) or a Redis Cluster.
///
/// * One round trip per operation: load is one `GET`, create one `SET NX
///   PXAT`, delete one `DEL`; compare-and-set save, touch and regenerate are
///   one `EVALSHA` each (the scripts are loaded once, and again
///   transparently after a `NOSCRIPT` reply, say after a failover).
/// * Pipelining: on one node, the commands of concurrent requests share one
///   write to the socket and one read of the replies; each is still its own
///   command.
/// * A record is one string: its revision and expiry as two 20-digit
///   decimal fields, then the session bytes. Redis expires it itself (`PXAT`
///   from the record's expiry); `touch` patches the expiry field and the TTL
///   without resending the session.
/// * An optional local copy that is never stale (off by default; see
///   [`with_local_cache`](RedisStore::with_local_cache)).
/// * Cluster: every operation is on one key (one slot), except regenerate,
///   whose two random keys live in different slots: there it is two
///   commands, `SET NX` of the new record (whose id nobody knows yet), then
///   a compare-and-delete of the old one; when that finds the old session
///   ended or changed, a third command deletes the new record again. A crash
///   between the two leaves an unreachable new record to expire, and the old
///   id alive as it was. A Cluster sends each command on its own, and checks
///   a local copy's stamp on every use.
/// * TLS (feature `redis-tls`): `rediss://` URLs, trusting the system's
///   roots or, with `RedisStore::with_root_certificate`,
///   your own CA.
/// * Timeouts on connecting and on every command: while Redis is down,
///   requests get `503 session store unavailable` within the timeouts; the
///   connection is re-established on its own when Redis is back.
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
    /// One node: the connection in use, replaced when it breaks.
    link: Mutex<Option<Link>>,
    /// One node: held while a connection is being made.
    connecting: tokio::sync::Mutex<()>,
    /// One node: ids of connections, to tell an old one's end from the current one's.
    links_made: AtomicU64,
    /// One node: connection attempts that failed.
    links_failed: AtomicU64,
    /// One node: the local copies (capacity 0: none).
    cache: Arc<Cache>,
    /// A Cluster: its connection, made on first use.
    cluster: OnceCell<ClusterConnection>,
    /// A Cluster over TLS: the root certificate (PEM) to trust.
    #[cfg(feature = "redis-tls")]
    cluster_root: Option<Vec<u8>>,
    queue: Mutex<Queue>,
    save: Lua,
    touch: Lua,
    replace: Lua,
    delete_if: Lua,
}

impl Inner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Option<Link>> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Target {
    /// One node; its client speaks RESP3 when the local cache is on (for
    /// the invalidation messages).
    Node(Box<redis::ConnectionInfo>),
    Cluster(Vec<String>),
}

/// A connection to the one node, and its id.
#[derive(Clone)]
struct Link {
    conn: MultiplexedConnection,
    id: u64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.inner.target, Target::Cluster(_)))
            .field("prefix", &self.inner.prefix)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("command_timeout", &self.inner.command_timeout)
            .field("local_cache", &self.inner.cache.capacity())
            .finish_non_exhaustive()
    }
}

/// A command that did not answer within the timeout.
#[derive(Debug, thiserror::Error)]
#[error("redis did not answer within {0:?}")]
struct Timeout(Duration);

/// A connection attempt failed just now (the cause is logged with it).
#[derive(Debug, thiserror::Error)]
#[error("redis is unreachable: the connection attempt made meanwhile failed")]
struct Unavailable;

/// A reply the store's scripts never give.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from redis")]
struct Unexpected;

/// `fut`, or a [`Timeout`] error once `limit` has passed.
async fn timed<F: std::future::Future>(limit: Duration, fut: F) -> Result<F::Output, StoreError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| StoreError::new(Timeout(limit)))
}

impl RedisStore {
    /// A store on one Redis node: `redis://[user:password@]host:port[/db]`.
    /// Connects on first use (so the app starts while Redis is down; its
    /// requests get 503 until it is up).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        check_scheme(url)?;
        let info = url.into_connection_info().map_err(StoreError::new)?;
        Ok(RedisStore::build(Target::Node(Box::new(info))))
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
        for node in &nodes {
            check_scheme(node)?;
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
                link: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                links_made: AtomicU64::new(0),
                links_failed: AtomicU64::new(0),
                cache: Arc::new(Cache::new(0)),
                cluster: OnceCell::new(),
                #[cfg(feature = "redis-tls")]
                cluster_root: None,
                queue: Mutex::new(Queue::default()),
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

    /// Keeps a local copy of up to `capacity` records this instance has
    /// loaded or saved (default `0`: no copy), so that loading them again
    /// neither fetches nor parses the record: a copy holds the decoded
    /// session, as the memory store does.
    ///
    /// The copy is never stale. The connection speaks RESP3 and runs
    /// `CLIENT TRACKING ON BCAST PREFIX <prefix> NOLOOP`, so Redis sends it
    /// a message for every change to a session key (another instance,
    /// `redis-cli`, a `FLUSHALL`); the messages are applied in the
    /// connection's reader, in order with the replies. A copy is used only
    /// after a round trip that began after the request did, so every change
    /// acknowledged to anyone before the request is seen (a logout on one
    /// instance ends the session on every other at once): a `PING` shared
    /// by the pipeline of concurrent requests. A message about a key does
    /// not drop its copy but makes it a suspect, because Redis 7.0 also
    /// reports this connection's own saves (they run as scripts, which
    /// `NOLOOP` does not cover): the next load sends `GETRANGE` for the
    /// record's 40-byte stamp (revision and expiry) instead of `GET`, and
    /// uses the copy if the stamp matches, which holds because every change
    /// of a record's data takes a new revision. A mismatch costs a `GET` on
    /// top. In a Cluster, or when the server refuses RESP3 or tracking
    /// (Redis 5, a proxy, an ACL without `CLIENT`), there are no messages
    /// and every use of a copy is such a check.
    ///
    /// It makes reads faster and, with tracking, writes and new sessions a
    /// little slower (Redis records every change for the messages); the
    /// README's performance section has the measured figures. Memory: up to
    /// `capacity` records. Each session write
    /// sends a message to every instance with tracking on (N for N
    /// instances); tracking needs Redis 6 or newer reached directly, and
    /// without it the store logs a warning.
    /// Off by default because the memory and the messages are costs every
    /// deployment would pay; worth it for read-heavy traffic.
    ///
    /// ```
    /// use typed_session::store::RedisStore;
    ///
    /// let store = RedisStore::new("redis://127.0.0.1:6379").unwrap().with_local_cache(10_000);
    /// # let _ = store;
    /// ```
    pub fn with_local_cache(self, capacity: usize) -> Self {
        self.edit(|i| i.cache = Arc::new(Cache::new(capacity)))
    }

    /// `with_root_certificate` (feature `redis-tls`) with the PEM read from
    /// `path` (what `SESSION_REDIS_CA_FILE` names). Without the `redis-tls`
    /// feature, an error saying so.
    ///
    /// ```no_run
    /// use typed_session::store::RedisStore;
    ///
    /// let store = RedisStore::new("rediss://redis.internal:6380")
    ///     .unwrap()
    ///     .with_root_certificate_file("/etc/myapp/redis-ca.pem")
    ///     .unwrap();
    /// # let _ = store;
    /// ```
    pub fn with_root_certificate_file(
        self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let failed = |reason: String| {
            StoreError::new(std::io::Error::other(format!(
                "root certificate {}: {reason}",
                path.display()
            )))
        };
        #[cfg(feature = "redis-tls")]
        {
            let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
            self.with_root_certificate(&pem)
                .map_err(|e| failed(crate::error::error_chain(&e)))
        }
        #[cfg(not(feature = "redis-tls"))]
        {
            let _ = self;
            Err(failed(
                "needs the `redis-tls` feature of typed-session".to_owned(),
            ))
        }
    }

    /// Trusts `pem` (a PEM root certificate: your own CA) for `rediss://`
    /// connections, instead of the system's roots (feature `redis-tls`).
    ///
    /// Fails when the PEM does not parse or, on one node, when the URL is
    /// not `rediss://`.
    ///
    /// ```no_run
    /// use typed_session::store::RedisStore;
    ///
    /// let ca = std::fs::read("/etc/myapp/redis-ca.pem").unwrap();
    /// let store = RedisStore::new("rediss://redis.internal:6380")
    ///     .unwrap()
    ///     .with_root_certificate(&ca)
    ///     .unwrap();
    /// # let _ = store;
    /// ```
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Result<Self, StoreError> {
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            return Err(StoreError::new(std::io::Error::other(
                "RedisStore settings cannot change on a shared store",
            )));
        };
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let found = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                StoreError::new(std::io::Error::other(format!("root certificate: {e}")))
            })?;
        if found.is_empty() {
            return Err(StoreError::new(std::io::Error::other(
                "root certificate: no PEM certificate found",
            )));
        }
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        };
        match &mut inner.target {
            Target::Node(info) => {
                let client = redis::Client::build_with_tls((**info).clone(), certs)
                    .map_err(StoreError::new)?;
                **info = client.get_connection_info().clone();
            }
            Target::Cluster(nodes) => {
                // Checked as for one node, on the first address.
                let first = nodes.first().map(String::as_str).unwrap_or_default();
                redis::Client::build_with_tls(first, certs).map_err(StoreError::new)?;
                inner.cluster_root = Some(pem.to_vec());
            }
        }
        Ok(self)
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

    /// The local copies, when this store keeps them.
    fn cache(&self) -> Option<&Cache> {
        Some(&*self.inner.cache).filter(|c| c.enabled())
    }

    /// Runs one of the store's scripts: `EVALSHA`, and on a `NOSCRIPT`
    /// reply (a restarted or failed-over Redis) `SCRIPT LOAD` and again.
    async fn eval(&self, lua: &Lua, keys: &[&str], args: &[&[u8]]) -> Result<Value, StoreError> {
        let evalsha = || {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(lua.script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args);
            cmd
        };
        match self.query(evalsha()).await? {
            Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript) => {
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(lua.source);
                checked(self.query(load).await?)?;
                checked(self.query(evalsha()).await?)
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

/// The reply of the save/replace/delete-if scripts.
/// A URL whose scheme no Redis client speaks: said plainly (the redis
/// crate's own error is "InvalidClientConfig").
#[derive(Debug, thiserror::Error)]
#[error("not a Redis URL: expected redis://, rediss:// or redis+unix:// (found {found})")]
struct NotRedisUrl {
    found: String,
}

fn check_scheme(url: &str) -> Result<(), StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys") => Ok(()),
        Some(other) => Err(StoreError::new(NotRedisUrl {
            found: format!("{other}://"),
        })),
        None => Err(StoreError::new(NotRedisUrl {
            found: "no scheme".to_owned(),
        })),
    }
}

impl SessionStore for RedisStore {
    fn name(&self) -> &'static str {
        "RedisStore"
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let cache = self.cache();
        if let Some(cache) = cache.filter(|c| c.holds(key)) {
            self.barrier().await?;
            if let Some(record) = cache.get(key) {
                return Ok(Some(record));
            }
        }
        // A copy not trusted since a message (maybe about this instance's
        // own save): its stamp, checked by one GETRANGE, decides.
        if let Some((cache, copy)) = cache.and_then(|c| Some((c, c.suspect(key)?))) {
            let ticket = cache.reserve(key);
            let mut cmd = redis::cmd("GETRANGE");
            cmd.arg(self.key(key)).arg(0).arg(STAMP - 1);
            let checked_stamp = match self.query(cmd).await.and_then(checked) {
                Ok(reply) => reply,
                Err(e) => {
                    cache.keep(key, ticket, copy);
                    return Err(e);
                }
            };
            match checked_stamp {
                Value::BulkString(stamp) if stamp.is_empty() => {
                    cache.fill(key, ticket, None);
                    return Ok(None);
                }
                Value::BulkString(stamp) if stamp == encode_stamp(&copy) => {
                    cache.fill(key, ticket, Some(copy.clone()));
                    return Ok(Some(copy));
                }
                Value::BulkString(_) => {}
                _ => return Err(StoreError::new(Unexpected)),
            }
        }
        let ticket = cache.and_then(|c| c.reserve(key));
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        let record = match checked(self.query(cmd).await?)? {
            Value::Nil => None,
            Value::BulkString(bytes) => Some(decode(bytes)?),
            _ => return Err(StoreError::new(Unexpected)),
        };
        if let Some(cache) = cache {
            cache.fill(key, ticket, record.clone());
        }
        // Redis expires keys itself; this only covers clock skew.
        Ok(record.filter(|r| r.expires_at > SystemTime::now()))
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        // Not cached: most new sessions are never read again (a bot, a
        // first visit); a session's first load caches it.
        let at = unix_millis(record.expires_at);
        self.set_nx(self.key(key), encode(&record), at).await
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let _writing = self.cache().map(|c| c.begin_write(&[key]));
        let ticket = self.cache().and_then(|c| c.reserve(key));
        // PXAT takes a plain number (no padding).
        let at = unix_millis(record.expires_at).to_string();
        let out: Value = self
            .eval(
                &self.inner.save,
                &[&self.key(key)],
                &[&field(expected), &encode(&record), at.as_bytes()],
            )
            .await?;
        let (outcome, now) = match reply(out)? {
            Reply::Done(_) => (SaveOutcome::Saved, Some(record)),
            Reply::Gone => (SaveOutcome::Conflict(None), None),
            Reply::Current(current) => {
                (SaveOutcome::Conflict(Some(current.clone())), Some(current))
            }
        };
        if let Some(cache) = self.cache() {
            cache.fill(key, ticket, now);
        }
        Ok(outcome)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        // The copy goes before the command does, and no read that starts
        // before its reply is back is trusted.
        let _writing = self.cache().map(|c| c.begin_write(&[key]));
        self.del(self.key(key)).await
    }

    async fn touch(&self, key: &SessionKey, expires_at: SystemTime) -> Result<bool, StoreError> {
        // The copy's expiry would be stale: it goes (the next load reads).
        let _writing = self.cache().map(|c| c.begin_write(&[key]));
        // The stamp field is padded; PEXPIREAT takes a plain number.
        let at = unix_millis(expires_at);
        let touched = self
            .eval(
                &self.inner.touch,
                &[&self.key(key)],
                &[&field(at), at.to_string().as_bytes()],
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
        let _writing = self.cache().map(|c| c.begin_write(&[old, new]));
        if matches!(self.inner.target, Target::Node(_)) {
            let tickets = self.cache().map(|c| (c.reserve(old), c.reserve(new)));
            let at = at.to_string();
            let out: Value = self
                .eval(
                    &self.inner.replace,
                    &[&ko, &kn],
                    &[&expected, &value, at.as_bytes()],
                )
                .await?;
            let outcome = match reply(out)? {
                Reply::Done(2) => ReplaceOutcome::KeyTaken,
                Reply::Done(_) => ReplaceOutcome::Replaced,
                Reply::Gone => ReplaceOutcome::Conflict(None),
                Reply::Current(current) => ReplaceOutcome::Conflict(Some(current)),
            };
            if let (Some(cache), Some((_, ticket))) = (self.cache(), tickets)
                && outcome == ReplaceOutcome::Replaced
            {
                cache.fill(new, ticket, Some(record));
            }
            return Ok(outcome);
        }
        // Cluster: the keys are in different slots, so two commands. The
        // new record first (nobody knows its id until this response), then
        // the compare-and-delete of the old one; if that finds the old one
        // gone or changed, the new one is deleted again: nothing changed.
        if !self.set_nx(kn.clone(), value, at).await? {
            return Ok(ReplaceOutcome::KeyTaken);
        }
        let out: Value = self
            .eval(&self.inner.delete_if, &[&ko], &[&expected])
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

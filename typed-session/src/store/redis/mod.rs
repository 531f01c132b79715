//! [`RedisStore`]: sessions in Redis or Redis Cluster, one round trip per
//! operation, shared by every app instance.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, ProtocolVersion, Script,
    ServerErrorKind, Value,
};
use tokio::sync::{OnceCell, oneshot};

use self::cache::{Cache, Invalidations};

use super::{Record, ReplaceOutcome, SaveOutcome, Sealed, SessionStore};
use crate::clock::{from_unix_millis, unix_millis};
use crate::error::StoreError;
use crate::id::SessionKey;

mod cache;

/// Width of each decimal field of the record header: revision, then expiry
/// (unix ms), zero-padded, so scripts compare and patch them as text.
const FIELD: usize = 20;
const HEADER: usize = 2 * FIELD;

/// Compare-and-set save: the stored revision must be ARGV[1]. Returns 1
/// when saved, nil when the record is gone, the current record otherwise.
const SAVE: &str = r"
local r = redis.call('GETRANGE', KEYS[1], 0, 19)
if r == '' then return false end
if r ~= ARGV[1] then return redis.call('GET', KEYS[1]) end
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

/// A command waiting for the next pipeline (`None`: a barrier, which only
/// needs the pipeline's round trip), with where its reply goes.
type Waiting = Vec<(Option<Cmd>, oneshot::Sender<Result<Value, StoreError>>)>;

/// What waits for the node: commands not yet sent, and how many flushes
/// are sending (at most [`MAX_IN_FLIGHT`]; more commands wait for one).
#[derive(Default)]
struct Queue {
    waiting: Waiting,
    flushing: usize,
    /// Failed connection attempts when the oldest waiting command was
    /// queued: if more have failed since, these commands waited through a
    /// failure and fail at once rather than wait for another attempt.
    failures_seen: u64,
}

/// Pipelines in flight at once on one node. While they are, new commands
/// gather into the next one: bigger batches, fewer system calls on a busy
/// server, at most one round trip more of waiting on an idle one.
const MAX_IN_FLIGHT: usize = 2;

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
///   a local copy's header on every use.
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

/// A flush task's claim on one of the [`MAX_IN_FLIGHT`] slots. It is
/// part of the task's future from the start, so the slot comes back even
/// when the task is dropped before it first runs (its runtime shut down).
struct Flush {
    store: RedisStore,
    done: bool,
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !self.done {
            self.store.inner.queue().flushing -= 1;
        }
    }
}

impl Flush {
    /// Sends what is queued as one pipeline, and again while more gathered
    /// meanwhile, until the queue is empty.
    async fn run(mut self) {
        tokio::task::yield_now().await;
        loop {
            let (waiting, failures_seen) = {
                let mut queue = self.store.inner.queue();
                if queue.waiting.is_empty() {
                    queue.flushing -= 1;
                    self.done = true;
                    return;
                }
                (std::mem::take(&mut queue.waiting), queue.failures_seen)
            };
            self.store.send_batch(waiting, failures_seen).await;
        }
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

/// One header field: `n` as 20 zero-padded decimal digits (`u64::MAX`
/// has 20).
fn field(mut n: u64) -> [u8; FIELD] {
    let mut digits = [b'0'; FIELD];
    for digit in digits.iter_mut().rev() {
        // `n % 10` is below 10.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits
}

fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + record.data.len());
    out.extend_from_slice(&encode_header(record));
    out.extend_from_slice(&record.data);
    out
}

/// A record's header: revision and expiry.
fn encode_header(record: &Record) -> [u8; HEADER] {
    let mut out = [0; HEADER];
    out[..FIELD].copy_from_slice(&field(record.revision));
    out[FIELD..].copy_from_slice(&field(unix_millis(record.expires_at)));
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
    // The payload is shared with the reply's buffer, not copied.
    let data = bytes::Bytes::from(value).slice(HEADER..);
    Ok(Record::new(data, revision, from_unix_millis(expires)))
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
    /// record's 40-byte header (revision and expiry) instead of `GET`, and
    /// uses the copy if the header matches, which holds because every change
    /// of a record's data takes a new revision. A mismatch costs a `GET` on
    /// top. In a Cluster, or when the server refuses RESP3 or tracking
    /// (Redis 5, a proxy, an ACL without `CLIENT`), there are no messages
    /// and every use of a copy is such a check.
    ///
    /// What it saves and costs, measured on the load harness (one core for
    /// the server and Redis), as requests per second against no copy in
    /// the same runs: reads +20-25 % with tracking, +10 % with checks only;
    /// with tracking, writes 0-7 % and new sessions 5-8 % slower (Redis
    /// records every change for the messages); with checks only, writes
    /// +4 % (a write's load becomes a header check). Memory: up to
    /// `capacity` records and their decoded values. Each session write
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

    /// The connection to the one node, made (and tracking turned on) if
    /// there is none, unless a connection attempt has failed since
    /// `failures_seen` was read: then the caller waited through that
    /// failure, and gets it now rather than another connect timeout.
    async fn link(
        &self,
        info: &redis::ConnectionInfo,
        failures_seen: u64,
    ) -> Result<Link, StoreError> {
        let inner = &self.inner;
        let current = || inner.link().clone();
        if let Some(link) = current() {
            return Ok(link);
        }
        let _one = inner.connecting.lock().await;
        if let Some(link) = current() {
            return Ok(link);
        }
        if inner.links_failed.load(Ordering::Acquire) != failures_seen {
            return Err(StoreError::new(Unavailable));
        }
        let id = inner.links_made.fetch_add(1, Ordering::Relaxed) + 1;
        let (conn, tracking) = timed(inner.connect_timeout, self.open(info, id))
            .await
            .and_then(|made| made.map_err(StoreError::new))
            .inspect_err(|_| {
                inner.links_failed.fetch_add(1, Ordering::Release);
            })?;
        inner.cache.relink(id, tracking);
        let link = Link { conn, id };
        *inner.link() = Some(link.clone());
        Ok(link)
    }

    /// Opens connection `id`; with the local cache on, in RESP3 with
    /// tracking, falling back to a plain connection without the cache when
    /// the server refuses either (Redis 5, a proxy, an ACL).
    async fn open(
        &self,
        info: &redis::ConnectionInfo,
        id: u64,
    ) -> redis::RedisResult<(MultiplexedConnection, bool)> {
        let inner = &self.inner;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(inner.connect_timeout))
            .set_response_timeout(Some(inner.command_timeout));
        if inner.cache.enabled() {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let resp3 = info.clone().set_redis_settings(settings);
            let config = config.clone().set_push_sender(Invalidations {
                cache: Arc::clone(&inner.cache),
                link: id,
                prefix: inner.prefix.clone(),
            });
            let tracked = async {
                let client = redis::Client::open(resp3)?;
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let mut on = redis::cmd("CLIENT");
                on.arg("TRACKING").arg("ON").arg("BCAST").arg("PREFIX");
                on.arg(&inner.prefix).arg("NOLOOP");
                conn.req_packed_command(&on).await?.extract_error()?;
                Ok::<_, redis::RedisError>(conn)
            };
            match tracked.await {
                Ok(mut conn) => {
                    self.load_scripts(&mut conn).await?;
                    return Ok((conn, true));
                }
                Err(e) if matches!(e.kind(), ErrorKind::Server(_)) => {
                    tracing::warn!(error = %e, "RedisStore: no client-side tracking on this server; every use of a local copy is checked with GETRANGE");
                }
                Err(e) => return Err(e),
            }
        }
        let client = redis::Client::open(info.clone())?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.load_scripts(&mut conn).await?;
        Ok((conn, false))
    }

    /// A client for the Cluster of `nodes`, with the store's timeouts (and
    /// private CA).
    fn cluster_client(
        &self,
        nodes: &[String],
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let inner = &self.inner;
        let builder = redis::cluster::ClusterClientBuilder::new(nodes.to_vec());
        #[cfg(feature = "redis-tls")]
        let builder = match &inner.cluster_root {
            Some(pem) => builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            }),
            None => builder,
        };
        builder
            .connection_timeout(inner.connect_timeout)
            .response_timeout(inner.command_timeout)
            .retries(1)
            .build()
    }

    /// The store's scripts.
    fn scripts(&self) -> [&Lua; 4] {
        let i = &self.inner;
        [&i.save, &i.touch, &i.replace, &i.delete_if]
    }

    /// Loads the store's scripts on a new connection, so that the first
    /// save after a start or a failover is one `EVALSHA`, not `EVALSHA`,
    /// `NOSCRIPT`, `SCRIPT LOAD`, `EVALSHA`.
    async fn load_scripts(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for lua in self.scripts() {
            pipe.cmd("SCRIPT").arg("LOAD").arg(lua.source);
        }
        pipe.query_async::<Vec<Value>>(conn).await.map(drop)
    }

    /// Checks that the store can be used now: connects (within the connect
    /// timeout), sends `PING` and loads its scripts, on a connection of its
    /// own that is then dropped. [`SessionLayer::from_config`] calls it at
    /// start-up (unless `lazy_store`), so that an unreachable Redis is a
    /// start-up error naming `REDIS_URL`, not a `503` at the first login.
    ///
    /// [`SessionLayer::from_config`]: crate::SessionLayer::from_config
    pub async fn check(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let attempt = async {
            match &inner.target {
                Target::Node(info) => {
                    let (mut conn, _) = self.open(info, 0).await?;
                    redis::cmd("PING")
                        .query_async::<Value>(&mut conn)
                        .await?
                        .extract_error()?;
                    self.load_scripts(&mut conn).await
                }
                Target::Cluster(nodes) => {
                    let mut conn = self.cluster_client(nodes)?.get_async_connection().await?;
                    redis::cmd("PING")
                        .query_async::<Value>(&mut conn)
                        .await?
                        .extract_error()?;
                    for lua in self.scripts() {
                        let mut load = redis::cmd("SCRIPT");
                        load.arg("LOAD").arg(lua.source);
                        load.query_async::<Value>(&mut conn)
                            .await?
                            .extract_error()?;
                    }
                    Ok(())
                }
            }
        };
        timed(inner.connect_timeout + inner.command_timeout, attempt)
            .await?
            .map_err(StoreError::new)
    }

    /// Drops connection `id` after it failed, with what was learnt on it.
    fn unlink(&self, id: u64) {
        let mut link = self.inner.link();
        if link.as_ref().is_some_and(|l| l.id == id) {
            *link = None;
        }
        drop(link);
        self.inner.cache.unlink(id);
    }

    /// Runs one command on the Cluster, with the command timeout.
    async fn cluster_query(&self, nodes: &[String], cmd: Cmd) -> Result<Value, StoreError> {
        let inner = &self.inner;
        let conn = inner
            .cluster
            .get_or_try_init(|| async {
                let connecting = async { self.cluster_client(nodes)?.get_async_connection().await };
                timed(inner.connect_timeout, connecting)
                    .await?
                    .map_err(StoreError::new)
            })
            .await?;
        let mut conn = conn.clone();
        let reply = async move { conn.req_packed_command(&cmd).await };
        timed(inner.command_timeout, reply)
            .await?
            .map_err(StoreError::new)
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
        if let Target::Cluster(nodes) = &self.inner.target {
            return self.cluster_query(nodes, cmd).await;
        }
        self.enqueue(Some(cmd)).await
    }

    /// Waits for a round trip to the node that starts after this call:
    /// every invalidation message sent before then has been applied.
    async fn barrier(&self) -> Result<(), StoreError> {
        self.enqueue(None).await.map(drop)
    }

    async fn enqueue(&self, cmd: Option<Cmd>) -> Result<Value, StoreError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = self.inner.queue();
            if queue.waiting.is_empty() {
                queue.failures_seen = self.inner.links_failed.load(Ordering::Acquire);
            }
            queue.waiting.push((cmd, tx));
            // A new batch starts a flush; so do commands that nobody will
            // send (the flushes that would have were dropped with their
            // runtime).
            let start =
                queue.flushing < MAX_IN_FLIGHT && (queue.waiting.len() == 1 || queue.flushing == 0);
            queue.flushing += usize::from(start);
            start
        };
        if start {
            // A task of its own: the flush must happen even when the request
            // that queued first is dropped while it waits.
            tokio::spawn(
                Flush {
                    store: self.clone(),
                    done: false,
                }
                .run(),
            );
        }
        // No timer here: the flush answers within the connect and command
        // timeouts, or is dropped with the runtime.
        rx.await
            .unwrap_or_else(|_| Err(StoreError::new(Unexpected)))
    }

    /// Sends `waiting` as one pipeline and hands out the replies.
    async fn send_batch(&self, waiting: Waiting, failures_seen: u64) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut waiters = Vec::with_capacity(waiting.len());
        for (cmd, tx) in waiting {
            waiters.push((cmd.is_some(), tx));
            if let Some(cmd) = cmd {
                pipe.add_command(cmd);
            }
        }
        if pipe.is_empty() {
            // Only barriers: a round trip is all they need.
            pipe.add_command(redis::cmd("PING"));
        }
        let expected = pipe.len();
        let replies = self.send(pipe, failures_seen).await.and_then(|replies| {
            if replies.len() == expected {
                Ok(replies)
            } else {
                Err(StoreError::new(Unexpected))
            }
        });
        match replies {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                for (is_command, tx) in waiters {
                    let reply = match is_command {
                        true => replies.next().ok_or_else(|| StoreError::new(Unexpected)),
                        false => Ok(Value::Nil),
                    };
                    let _ = tx.send(reply);
                }
            }
            Err(failed) => {
                let failed = Arc::new(failed);
                for (_, tx) in waiters {
                    let _ = tx.send(Err(StoreError::new(Arc::clone(&failed))));
                }
            }
        }
    }

    /// Sends a pipeline to the one node; a broken connection is dropped.
    async fn send(
        &self,
        pipe: redis::Pipeline,
        failures_seen: u64,
    ) -> Result<Vec<Value>, StoreError> {
        let Target::Node(info) = &self.inner.target else {
            return Err(StoreError::new(Unexpected));
        };
        let link = self.link(info, failures_seen).await?;
        let mut conn = link.conn.clone();
        let replies = async move { pipe.query_async::<Vec<Value>>(&mut conn).await };
        match timed(self.inner.command_timeout, replies).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(e)) => {
                if e.is_unrecoverable_error() || e.is_io_error() || e.is_connection_dropped() {
                    self.unlink(link.id);
                }
                Err(StoreError::new(e))
            }
            // No answer in time: a paused or overloaded server, or a
            // connection that died without a word (a NAT or firewall
            // dropped it). The next command gets a new connection, which
            // a server that is only slow accepts again at once.
            Err(timeout) => {
                self.unlink(link.id);
                Err(timeout)
            }
        }
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
enum Reply {
    Done(i64),
    Gone,
    Current(Record),
}

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

fn reply(value: Value) -> Result<Reply, StoreError> {
    match value {
        // A script's `false`: nil in RESP2, a boolean in RESP3.
        Value::Nil | Value::Boolean(false) => Ok(Reply::Gone),
        Value::Int(n) => Ok(Reply::Done(n)),
        Value::BulkString(bytes) => decode(bytes).map(Reply::Current),
        _ => Err(StoreError::new(Unexpected)),
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let cache = self.cache();
        if let Some(cache) = cache.filter(|c| c.holds(key)) {
            self.barrier().await?;
            if let Some(record) = cache.get(key) {
                return Ok(Some(record));
            }
        }
        // A copy not trusted since a message (maybe about this instance's
        // own save): its header, checked by one GETRANGE, decides.
        if let Some((cache, copy)) = cache.and_then(|c| Some((c, c.suspect(key)?))) {
            let ticket = cache.reserve(key);
            let mut cmd = redis::cmd("GETRANGE");
            cmd.arg(self.key(key)).arg(0).arg(HEADER - 1);
            let checked_header = match self.query(cmd).await.and_then(checked) {
                Ok(reply) => reply,
                Err(e) => {
                    cache.keep(key, ticket, copy);
                    return Err(e);
                }
            };
            match checked_header {
                Value::BulkString(header) if header.is_empty() => {
                    cache.fill(key, ticket, None);
                    return Ok(None);
                }
                Value::BulkString(header) if header == encode_header(&copy) => {
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
        // The header field is padded; PEXPIREAT takes a plain number.
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

    fn keeps_typed_copies(&self, _: Sealed) -> bool {
        self.cache().is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn header_fields_are_twenty_padded_digits() {
        assert_eq!(&field(0), b"00000000000000000000");
        assert_eq!(&field(42), b"00000000000000000042");
        assert_eq!(&field(u64::MAX), u64::MAX.to_string().as_bytes());
        let record = Record::new(
            b"{}".to_vec(),
            7,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        );
        let back = decode(encode(&record)).unwrap();
        assert_eq!(back, record);
    }
}

//! The store's connections: to the one node (RESP3 with client tracking
//! when the local cache is on, the scripts loaded on each), or the Cluster
//! client; made on first use, dropped when broken, made again on the next
//! command.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, ProtocolVersion, Value};

use super::cache::Invalidations;
use super::scripts::Lua;
use super::{Link, RedisStore, Target, Unavailable, timed};
use crate::error::StoreError;

impl RedisStore {
    /// The connection to the one node, made (and tracking turned on) if
    /// there is none, unless a connection attempt has failed since
    /// `failures_seen` was read: then the caller waited through that
    /// failure, and gets it now rather than another connect timeout.
    pub(super) async fn link(
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
        // The connect and every command are bounded by the store's `timed`,
        // the one timeout mechanism. The client's own timeouts are turned
        // off, not left at its defaults (500 ms per response, 1 s to
        // connect), which would cut under the configured limits: a 100 MiB
        // record, or a Redis busy for a second, failed at 500 ms.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
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
        // Commands are bounded by the store's `timed`; the connection
        // timeout is for the connections the Cluster client makes on its
        // own (to nodes it discovers, after a failover), which `timed`
        // cannot reach.
        builder
            .connection_timeout(inner.connect_timeout)
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
    pub(super) fn unlink(&self, id: u64) {
        let mut link = self.inner.link();
        if link.as_ref().is_some_and(|l| l.id == id) {
            *link = None;
        }
        drop(link);
        self.inner.cache.unlink(id);
    }

    /// Runs one command on the Cluster, with the command timeout.
    pub(super) async fn cluster_query(
        &self,
        nodes: &[String],
        cmd: Cmd,
    ) -> Result<Value, StoreError> {
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
}

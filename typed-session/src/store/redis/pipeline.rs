//! Pipelining on one node: the commands of concurrent requests share one
//! write to the socket and one read of the replies.
//!
//! Why the store has its own connection and batching rather than the
//! redis crate's connection manager: each operation is one command and one
//! round trip either way, but on a busy server, sending the commands of
//! every request that is ready in one write saves a system call and a
//! context switch per command on both ends (Redis shares the machine's
//! cores in most deployments). The figures are in the README's performance
//! section. A Cluster sends each command on its own: the commands of one
//! batch would go to different nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::{Cmd, Value};
use tokio::sync::oneshot;

use super::{RedisStore, Target, Unexpected, timed};
use crate::error::StoreError;

/// A command waiting for the next pipeline (`None`: a barrier, which only
/// needs the pipeline's round trip), with where its reply goes.
pub(super) type Waiting = Vec<(Option<Cmd>, oneshot::Sender<Result<Value, StoreError>>)>;

/// What waits for the node: commands not yet sent, and how many flushes
/// are sending (at most [`MAX_IN_FLIGHT`]; more commands wait for one).
#[derive(Default)]
pub(super) struct Queue {
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
pub(super) const MAX_IN_FLIGHT: usize = 2;

/// A flush task's claim on one of the [`MAX_IN_FLIGHT`] slots. It is
/// part of the task's future from the start, so the slot comes back even
/// when the task is dropped before it first runs (its runtime shut down).
pub(super) struct Flush {
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

impl RedisStore {
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
    pub(super) async fn query(&self, cmd: Cmd) -> Result<Value, StoreError> {
        if let Target::Cluster(nodes) = &self.inner.target {
            return self.cluster_query(nodes, cmd).await;
        }
        self.enqueue(Some(cmd)).await
    }

    /// Waits for a round trip to the node that starts after this call:
    /// every invalidation message sent before then has been applied.
    pub(super) async fn barrier(&self) -> Result<(), StoreError> {
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
}

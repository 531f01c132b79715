//! Where sessions are kept: the [`SessionStore`] trait and its backends.
//!
//! A store keeps opaque [`Record`]s under [`SessionKey`]s. It never sees
//! session ids (only their SHA-256) nor typed data (the runtime encodes it).
//! It must give three guarantees:
//!
//! * `create` is create-if-absent: it never overwrites.
//! * `save` is compare-and-set on [`Record::revision`]: it writes only if the
//!   stored revision is `expected`, and otherwise reports the stored record so
//!   the runtime can merge. This is what keeps two concurrent requests from
//!   losing each other's writes.
//! * `load` never returns a record past its [`Record::expires_at`].
//! * `replace` (regenerate) and `touch` never bring back a deleted record.
//!
//! `touch` and `replace` have default implementations in terms of the four
//! required methods; a store that can do them in one atomic operation (and
//! `touch` without resending the bytes) should override them.
//!
//! # A custom store
//!
//! A complete store over a `Mutex<HashMap>` (the built-in [`MemoryStore`] is
//! a faster, bounded version of the same):
//!
#![doc = concat!(
    "```\n",
    include_str!("../../docs/custom_store.rs"),
    "\nlet layer = typed_session::SessionLayer::new(MapStore::default());\n# let _ = layer;\n```\n"
)]

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::StoreError;
use crate::id::SessionKey;

#[cfg(feature = "file-store")]
mod file;
#[cfg(feature = "file-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-store")))]
pub use file::{Durability, FileStore};
#[cfg(feature = "redis-store")]
mod redis;
#[cfg(feature = "redis-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-store")))]
pub use self::redis::RedisStore;
#[cfg(feature = "memory-store")]
mod memory;
#[cfg(feature = "memory-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory-store")))]
pub use memory::MemoryStore;

/// One stored session: opaque bytes, a revision and an expiry.
///
/// Build one with [`Record::new`] when loading from your backend.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The encoded session (written and read by the runtime only).
    pub data: Bytes,
    /// 1 when created, one more on every save.
    pub revision: u64,
    /// When the store may forget the record; `load` must not return it after this.
    pub expires_at: SystemTime,
}

impl Record {
    /// A record as a store read it back.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use typed_session::store::Record;
    ///
    /// let record = Record::new(b"{}".to_vec(), 3, SystemTime::now() + Duration::from_secs(60));
    /// assert_eq!(record.revision, 3);
    /// ```
    pub fn new(data: impl Into<Bytes>, revision: u64, expires_at: SystemTime) -> Self {
        Record {
            data: data.into(),
            revision,
            expires_at,
        }
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is personal data: its size only.
        f.debug_struct("Record")
            .field("data_len", &self.data.len())
            .field("revision", &self.revision)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The result of [`SessionStore::replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaceOutcome {
    /// The new record is stored and the old one is gone.
    Replaced,
    /// The old record is not at the expected revision: here is what is
    /// stored now, or `None` when it is gone (deleted or expired). Nothing changed.
    Conflict(Option<Record>),
    /// A live record already exists under the new key. Nothing changed.
    KeyTaken,
}

/// The result of a compare-and-set [`SessionStore::save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The record was written.
    Saved,
    /// The stored revision was not the expected one: here is what is stored
    /// now, or `None` when the session is gone (deleted or expired).
    Conflict(Option<Record>),
}

/// A backend that keeps session records. See the [module docs](self) for the
/// contract and a complete example.
pub trait SessionStore: Send + Sync + 'static {
    /// A short name for the store in logs, spans and metrics (the `backend`
    /// label). The default is `"custom"`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// The live record under `key`, or `None`.
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Stores `record` if no live record exists under `key`; `Ok(false)` if one does.
    fn create(
        &self,
        key: &SessionKey,
        record: Record,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces the record under `key` if its revision is `expected`.
    fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> impl Future<Output = Result<SaveOutcome, StoreError>> + Send;

    /// Removes the record under `key` (no error if there is none).
    fn delete(&self, key: &SessionKey) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves the expiry of the live record under `key` to `expires_at`
    /// without changing its bytes or revision; `Ok(false)` when there is no
    /// live record (a touch never brings one back). The runtime calls it to
    /// refresh the idle deadline of a session that was only read.
    ///
    /// The default loads the record and saves it back (bytes included) with
    /// the next revision; a store that can set an expiry alone should override it.
    fn touch(
        &self,
        key: &SessionKey,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let Some(mut record) = self.load(key).await? else {
                return Ok(false);
            };
            let expected = record.revision;
            record.revision = expected + 1;
            record.expires_at = expires_at;
            Ok(match self.save(key, record, expected).await? {
                SaveOutcome::Saved => true,
                // Someone else wrote it meanwhile, which refreshed it too.
                SaveOutcome::Conflict(current) => current.is_some(),
            })
        }
    }

    /// Regenerates a session's id: stores `record` under `new` and removes
    /// the record under `old`, provided the old record is live and at
    /// revision `expected`. Used at login, so it must never bring back a
    /// session that was deleted (logged out) meanwhile.
    ///
    /// The default is not atomic: it loads and checks the old record,
    /// creates the new one, then deletes the old one; a write to the old
    /// record between the check and the delete is lost. Stores that can do
    /// it as one operation (a transaction, a script, one lock) should override it.
    fn replace(
        &self,
        old: &SessionKey,
        expected: u64,
        new: &SessionKey,
        record: Record,
    ) -> impl Future<Output = Result<ReplaceOutcome, StoreError>> + Send {
        async move {
            match self.load(old).await? {
                Some(current) if current.revision == expected => {}
                current => return Ok(ReplaceOutcome::Conflict(current)),
            }
            if !self.create(new, record).await? {
                return Ok(ReplaceOutcome::KeyTaken);
            }
            self.delete(old).await?;
            Ok(ReplaceOutcome::Replaced)
        }
    }
}

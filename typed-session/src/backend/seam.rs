//! What passes through the persistence seam: the session's persisted
//! state as the core keeps it, what a load found, what a write carries and
//! what it did. Shared by the dispatch (`backend`) and every backend.

use std::sync::Arc;

use bytes::Bytes;

use crate::cookies::CookieIn;
use crate::error::Error;
use crate::id::SessionId;
use crate::store::TypedCache;

/// What the core keeps about the persisted form of this request's session.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: SessionId,
    /// The record's revision, for compare-and-set.
    pub(crate) revision: u64,
    /// The record's deadline (unix ms): its idle expiry, which the backend enforces.
    pub(crate) expires_at: u64,
    /// The cookie value, for backends whose cookie holds the record (sealed
    /// at the last write, or as the request sent it).
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) sealed: Option<Arc<str>>,
}

/// What a request's cookie led to.
pub(crate) enum Found {
    /// No cookie of ours.
    Absent,
    /// A cookie, but unusable (tampered, badly signed, duplicated) or naming
    /// no live record.
    Dead,
    /// A live record.
    Live(Loaded),
}

/// A live record as loaded.
pub(crate) struct Loaded {
    pub(crate) stored: Stored,
    pub(crate) data: Bytes,
    pub(crate) cache: Option<TypedCache>,
    /// The cookie was accepted under an older key: send it again under the current one.
    pub(crate) resign: bool,
}

/// The bytes of one write and when they expire.
pub(crate) struct Payload {
    pub(crate) data: Bytes,
    /// Unix ms.
    pub(crate) expires_at: u64,
    /// A decoded copy for backends that keep them.
    pub(crate) cache: Option<TypedCache>,
    /// Written by a regenerate (a login): see `MemoryStore`'s eviction.
    pub(crate) established: bool,
}

/// Re-applies this request's changes onto another writer's record (the
/// bytes stored now); used after a lost compare-and-set.
pub(crate) type Merge<'a> = &'a (dyn Fn(&[u8]) -> Result<Vec<u8>, Error> + Send + Sync);

/// The outcome of a write to an existing session.
pub(crate) enum Written {
    /// Done: the session's persisted state is now this.
    Done(Stored),
    /// The session no longer exists (destroyed by another request, deleted
    /// from the store, expired); nothing was written.
    Gone,
}

/// The encoded record without the encoder's spare capacity: stores that keep
/// records in memory would otherwise hold it for the session's lifetime.
pub(crate) fn exact_bytes(encoded: &[u8]) -> Bytes {
    // A copy into an exact-size allocation; shrinking in place (realloc)
    // fragments the heap when millions of records are kept.
    Bytes::copy_from_slice(encoded)
}

/// The request cookie's value, or what a load finds without a usable one:
/// `Absent`, or `Dead` (logged) for a cookie that is oversized or sent twice
/// with different values. The first step of every backend's load.
pub(crate) fn cookie_value(cookie: CookieIn<'_>) -> Result<&str, Found> {
    match cookie {
        CookieIn::Absent => Err(Found::Absent),
        CookieIn::Invalid => {
            tracing::debug!(
                "session cookie unusable (oversized or sent twice with different values)"
            );
            Err(Found::Dead)
        }
        CookieIn::Value(v) => Ok(v),
    }
}

//! What passes through the persistence seam: the session's persisted
//! state as the core keeps it, what a load found, what a write carries and
//! what it did. Shared by the dispatch (`backend`) and every backend.
//!
//! A write carries the record in parts (schema version, [`Meta`], the
//! fields' JSON object): each backend frames them its own way, the
//! server-side stores as the JSON record of [`frame`](crate::frame), the
//! sealed cookie in binary. A load gives back either form ([`Body`]).

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use crate::cookies::CookieIn;
use crate::error::Error;
use crate::frame::Meta;
use crate::id::SessionId;

/// The decoded value of a record, shared, of the session type that wrote
/// it (`envelope::Cached<S>`): what a later load of the same bytes can use
/// instead of parsing them.
#[derive(Clone)]
pub(crate) struct TypedCache(pub(crate) Arc<dyn Any + Send + Sync>);

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

/// A record as a backend read it.
pub(crate) enum Body {
    /// The JSON record (`frame`), as the server-side stores keep it.
    Framed(Bytes),
    /// Already taken apart by a backend with its own framing.
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    Parts {
        version: u32,
        meta: Meta,
        /// The fields' JSON object.
        fields: Vec<u8>,
    },
}

impl Body {
    /// Bytes held, for the size check on load.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Framed(bytes) => bytes.len(),
            Body::Parts { fields, .. } => fields.len(),
        }
    }
}

/// A live record as loaded.
pub(crate) struct Loaded {
    pub(crate) stored: Stored,
    pub(crate) body: Body,
    /// The decoded copy of exactly these bytes, when the seam kept one.
    pub(crate) copy: Option<TypedCache>,
    /// The cookie was accepted under an older key: send it again under the current one.
    pub(crate) resign: bool,
}

/// One write: the record's parts and when it expires.
pub(crate) struct Payload {
    /// The schema version the record is written at.
    pub(crate) version: u32,
    pub(crate) meta: Meta,
    /// The fields' JSON object.
    pub(crate) fields: Vec<u8>,
    /// Unix ms.
    pub(crate) expires_at: u64,
    /// The decoded value the fields encode, for backends that keep copies.
    pub(crate) copy: Option<TypedCache>,
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

/// What a load finds without a cookie value.
pub(crate) enum NoValue {
    Absent,
    Dead,
}

impl From<NoValue> for Found {
    fn from(none: NoValue) -> Self {
        match none {
            NoValue::Absent => Found::Absent,
            NoValue::Dead => Found::Dead,
        }
    }
}

/// The request cookie's value, or what a load finds without a usable one:
/// `Absent`, or `Dead` (logged) for a cookie that is oversized or sent twice
/// with different values. The first step of every backend's load.
pub(crate) fn cookie_value(cookie: CookieIn<'_>) -> Result<&str, NoValue> {
    match cookie {
        CookieIn::Absent => Err(NoValue::Absent),
        CookieIn::Invalid => {
            tracing::debug!(
                "session cookie unusable (oversized or sent twice with different values)"
            );
            Err(NoValue::Dead)
        }
        CookieIn::Value(v) => Ok(v),
    }
}

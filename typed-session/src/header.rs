//! What the runtime keeps beside a session's fields: its timestamps
//! ([`Header`]) and the set of fields changed in this request ([`FieldMask`]).

/// One bit per field (at most 128 fields).
pub(crate) type FieldMask = u128;

/// Timestamps and settings kept beside the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Creation time (for the absolute timeout), unix ms.
    pub(crate) created: u64,
    /// Last time the record's bytes were written, unix ms. The idle deadline
    /// is the record's expiry, which a touch moves without rewriting the bytes.
    pub(crate) touched: u64,
    /// Per-session cookie lifetime set with `set_expiry`, seconds.
    pub(crate) max_age: Option<u64>,
    /// Whom the session belongs to, for revocation (`set_subject`).
    pub(crate) subject: Option<Subject>,
}

/// The subject a session was bound to: a digest of the app's name for the
/// user (never the name itself), and when the binding was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subject {
    pub(crate) digest: [u8; 16],
    /// Unix ms of the binding; revocations at or after it end the session.
    pub(crate) since: u64,
}

impl Header {
    /// A header for a session that starts at `now`.
    pub(crate) fn new(now: u64) -> Self {
        Header {
            created: now,
            touched: now,
            max_age: None,
            subject: None,
        }
    }
}

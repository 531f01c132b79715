//! [`Runtime`]: what every request of one layer shares: the backend, the
//! cookie settings, the expiry policy, limits and the clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::Backend;
use crate::clock::{Clock, unix_millis};
use crate::cookies::CookieSettings;
use crate::expiry::Policy;
use crate::rejection::SessionRejection;
use crate::revoke::RevocationList;

/// Default bound on one session's encoded size.
pub(crate) const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024;

/// What a layer does with a record written by a newer version of the code
/// (`SessionLayer::on_newer_schema`).
///
/// During a rolling deploy, instances of version N and N + 1 of an app
/// serve the same sessions. By default version N reads the fields it knows
/// from a record version N + 1 wrote, writes back only the fields it
/// changed, keeps everything else byte for byte (fields it does not know,
/// fields whose stored shape it cannot read) and keeps the record's newer
/// version, so that N + 1 reads it back as it left it.
///
/// ```
/// use typed_session::{NewerSchema, SessionLayer};
/// use typed_session::store::MemoryStore;
///
/// // Refuse such records instead (503 until the rollout ends).
/// let layer = SessionLayer::new(MemoryStore::new()).on_newer_schema(NewerSchema::Reject);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NewerSchema {
    /// Read the fields this code knows; write only the fields changed, keep
    /// the rest and the newer version. A write to a field whose stored value
    /// this code could not read is refused with
    /// [`Error::NewerSchema`](crate::Error::NewerSchema) (`409`). The default.
    #[default]
    ReadKnownFields,
    /// Refuse the request (`503 session unavailable`, logged at `warn`).
    Reject,
}

/// Whether the store answers, so that an outage is said once (at `warn`,
/// with its cause) and its end once (at `info`), not once per request.
#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    /// Failures during the current outage.
    failures: AtomicU64,
}

impl Health {
    /// Store operation `op` of `backend` failed with `cause` (already safe
    /// to log): said (once per outage) and counted, in this one place.
    pub(crate) fn failed(&self, backend: &'static str, op: &'static str, cause: &str) {
        crate::telemetry::count(
            "typed_session_store_errors_total",
            &[("backend", backend), ("op", op)],
        );
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                op,
                cause,
                "session store unavailable: requests that need it get 503 until it recovers (said once per outage)"
            );
        } else {
            tracing::debug!(op, cause, "session store still unavailable");
        }
    }

    /// A store operation succeeded.
    pub(crate) fn ok(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::AcqRel) {
            let failed = self.failures.swap(0, Ordering::Relaxed);
            tracing::info!(failed_requests = failed, "session store recovered");
        }
    }
}

/// Settings and backend shared by every request of one layer.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub(crate) backend: Backend,
    pub(crate) cookie: CookieSettings,
    pub(crate) policy: Policy,
    pub(crate) rolling: bool,
    /// Largest encoded session a write may persist.
    pub(crate) max_session_bytes: usize,
    pub(crate) clock: Arc<dyn Clock>,
    /// Checked on every load of a session bound to a subject.
    pub(crate) revocation: Option<RevocationList>,
    /// Whether a response with this status commits the session's changes.
    pub(crate) commit_on: fn(http::StatusCode) -> bool,
    /// What to do with a record written by a newer version of the code.
    pub(crate) newer_schema: NewerSchema,
    /// Outage and recovery, said once each.
    pub(crate) health: Arc<Health>,
    /// The app's response to a rejection, in place of the plain-text one.
    pub(crate) on_rejection: Option<fn(SessionRejection) -> axum_core::response::Response>,
}

/// The default commit policy: everything but a server error.
pub(crate) fn commit_unless_server_error(status: http::StatusCode) -> bool {
    !status.is_server_error()
}

impl Runtime {
    /// The layer clock's time, unix ms.
    pub(crate) fn now_ms(&self) -> u64 {
        unix_millis(self.clock.now())
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend.name())
            .field("cookie", &self.cookie)
            .field("policy", &self.policy)
            .field("rolling", &self.rolling)
            .field("max_session_bytes", &self.max_session_bytes)
            .field("revocation", &self.revocation.is_some())
            .field("newer_schema", &self.newer_schema)
            .finish_non_exhaustive()
    }
}

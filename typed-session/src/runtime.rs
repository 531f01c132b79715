//! [`Runtime`]: what every request of one layer shares: the backend, the
//! cookie settings, the expiry policy, limits and the clock.

use std::fmt;
use std::sync::Arc;

use crate::backend::Backend;
use crate::clock::{Clock, unix_millis};
use crate::cookies::CookieSettings;
use crate::envelope::NewerSchema;
use crate::expiry::Policy;
use crate::revoke::RevocationList;

/// Default bound on one session's encoded size.
pub(crate) const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024;

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

//! [`Core`]: the state of one session in one request, shared by every handle
//! of that request. The accessors (`access`), the load and commit paths
//! (`persist`), flash handles and the public handles each add methods to it.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::seam::Stored;
use crate::frame::{FieldMask, Meta, Newer};
use crate::runtime::Runtime;

/// The state of one session shared by every handle of one request.
///
/// Generated accessors call into it; it is not meant to be used directly.
#[doc(hidden)]
pub struct Core<S>(Arc<CoreInner<S>>);

pub(crate) struct CoreInner<S> {
    state: Mutex<State<S>>,
    /// `None` for a detached session.
    runtime: Option<Arc<Runtime>>,
}

impl<S> Clone for Core<S> {
    fn clone(&self) -> Self {
        Core(self.0.clone())
    }
}

impl<S> fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the id or the data.
        let st = self.lock();
        f.debug_struct("TypedSession")
            .field("schema", &std::any::type_name::<S>())
            .field("stored", &st.stored.is_some())
            .field("changed", &(st.changed != 0))
            .finish()
    }
}

/// Read-only access to a [`Core`], held by generated view types so that a
/// view offers no path to a write.
#[doc(hidden)]
pub struct ReadCore<S>(pub(crate) Core<S>);

impl<S> ReadCore<S> {
    pub fn new(core: Core<S>) -> Self {
        ReadCore(core)
    }

    /// For generated code only.
    pub fn __core(&self) -> &Core<S> {
        &self.0
    }
}

impl<S> fmt::Debug for ReadCore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A lifecycle call waiting for the commit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Action {
    None,
    Regenerate,
    Destroy,
}

/// What the commit decided about the cookie.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CookieChange {
    None,
    Set,
    Remove,
}

pub(crate) struct State<S> {
    pub(crate) value: S,
    /// One bit per field changed since the last save.
    pub(crate) changed: FieldMask,
    /// `None` while nothing is persisted.
    pub(crate) stored: Option<Stored>,
    pub(crate) meta: Meta,
    pub(crate) action: Action,
    pub(crate) expiry_changed: bool,
    pub(crate) cookie: CookieChange,
    /// The cookie verified with an older key: send it again under the newest.
    pub(crate) resign: bool,
    /// The next regeneration starts a new absolute lifetime (login).
    pub(crate) restart_lifetime: bool,
    /// When the session was loaded (unix ms): decides whether an unchanged
    /// session needs its idle deadline refreshed, without reading the clock again.
    pub(crate) loaded_at: u64,
    /// The response's status said not to commit: nothing but an already
    /// requested destroy is written.
    pub(crate) discarded: bool,
    /// The stored record was written by a newer version of the code: what
    /// a write must keep of it.
    pub(crate) newer: Option<Newer>,
    /// Cookie mode with a revocation list: this copy is older than the
    /// newest one issued, so what it writes lives no longer than it (unix ms).
    pub(crate) copy_deadline: Option<u64>,
    /// The subject the session was bound to when it was loaded (a destroy
    /// unbinds it; its copies are ended in that subject's record).
    pub(crate) loaded_subject: Option<[u8; 16]>,
}

impl<S> State<S> {
    pub(crate) fn new(value: S, now: u64) -> Self {
        State {
            value,
            changed: 0,
            stored: None,
            meta: Meta::new(now),
            action: Action::None,
            expiry_changed: false,
            cookie: CookieChange::None,
            resign: false,
            restart_lifetime: false,
            discarded: false,
            loaded_at: now,
            newer: None,
            copy_deadline: None,
            loaded_subject: None,
        }
    }
}

impl<S> Core<S> {
    pub(crate) fn new(state: State<S>, runtime: Option<Arc<Runtime>>) -> Self {
        Core(Arc::new(CoreInner {
            state: Mutex::new(state),
            runtime,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A handler that panicked inside an accessor closure poisons the lock;
        // the commit refuses to save such a session (see `persist`).
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn poisoned(&self) -> bool {
        self.0.state.is_poisoned()
    }

    pub(crate) fn runtime(&self) -> Option<&Arc<Runtime>> {
        self.0.runtime.as_ref()
    }
}

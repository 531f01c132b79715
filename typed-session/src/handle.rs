//! The public handles: [`TypedSession`] (read and write, lifecycle) and
//! [`SessionView`] (read only).

use std::fmt;
use std::ops::Deref;
use std::time::{Duration, SystemTime};

use crate::access::{changed_since, encode_fields};
use crate::clock::{from_unix_millis, unix_millis};
use crate::envelope;
use crate::error::{Error, LoadError, ValidationError};
use crate::expiry::clamp_cookie_lifetime;
use crate::schema::{HandleFor, SessionSchema};
use crate::state::{Action, Core, State};

/// A typed session, extracted in a handler.
///
/// It dereferences to the accessors that `#[derive(SessionSchema)]`
/// generates for `S`: for a field `cart`, `cart()`, `with_cart(..)`,
/// `set_cart(..)`, `update_cart(..)` and `take_cart()`; for a flash field
/// `notices`, `notices()`; and `read(..)`, `update(..)` and `snapshot()` for
/// the whole struct. Clones share one state. Changes are saved when the
/// response is sent, or earlier with [`save`](TypedSession::save).
///
/// ```
/// use typed_session::{SessionSchema, TypedSession};
///
/// #[derive(SessionSchema)]
/// struct Cart {
///     items: Vec<String>,
/// }
///
/// // In a handler: `async fn add(session: TypedSession<Cart>) { .. }`
/// let session = TypedSession::detached(Cart { items: vec![] });
/// let len = session.update_items(|items| { items.push("tea".into()); items.len() }).unwrap();
/// assert_eq!(len, 1);
/// assert_eq!(session.items(), vec!["tea".to_owned()]);
/// ```
pub struct TypedSession<S: SessionSchema> {
    handle: S::Handle,
}

impl<S: SessionSchema> Clone for TypedSession<S> {
    fn clone(&self) -> Self {
        TypedSession::from_core(self.core().clone())
    }
}

impl<S: SessionSchema> fmt::Debug for TypedSession<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.core(), f)
    }
}

impl<S: SessionSchema> Deref for TypedSession<S> {
    type Target = S::Handle;
    fn deref(&self) -> &S::Handle {
        &self.handle
    }
}

impl<S: SessionSchema> TypedSession<S> {
    pub(crate) fn from_core(core: Core<S>) -> Self {
        TypedSession {
            handle: S::Handle::from_core(core),
        }
    }

    pub(crate) fn core(&self) -> &Core<S> {
        self.handle.core()
    }

    /// A session that lives outside any request or store: for tests, and for
    /// code that builds session values. Lifecycle calls are recorded but
    /// [`save`](TypedSession::save) returns [`Error::Detached`].
    pub fn detached(value: S) -> Self {
        let now = unix_millis(SystemTime::now());
        TypedSession::from_core(Core::new(State::new(value, now), None))
    }

    /// Reads a session from its stored form (as written by
    /// [`export`](TypedSession::export) or a store), running migrations and
    /// each field's `on_invalid` policy, as loading in a request does.
    pub fn import(stored: &[u8]) -> Result<Self, LoadError> {
        let decoded = envelope::decode::<S>(stored)?;
        let now = unix_millis(SystemTime::now());
        let mut state = State::new(decoded.value, now);
        state.changed = decoded.changed;
        state.meta = decoded.meta;
        state.newer = decoded.newer;
        Ok(TypedSession::from_core(Core::new(state, None)))
    }

    /// The stored form of this session: what a store would hold. A session
    /// imported from a newer version's record keeps that record's version
    /// and every field this session did not change, as a save would; a
    /// change to a field this version could not read is
    /// [`Error::NewerSchema`].
    pub fn export(&self) -> Result<Vec<u8>, Error> {
        let st = self.core().lock();
        let (version, fields) = match &st.newer {
            Some(newer) => (
                newer.version,
                envelope::encode_over(&st.value, st.changed, newer)?,
            ),
            None => (
                S::VERSION,
                envelope::encode(&st.value).map_err(Error::Serialize)?,
            ),
        };
        Ok(crate::frame::frame(version, &st.meta, &fields))
    }

    /// The session id, once the session is stored (`None` for a new session
    /// until its first save). It is a secret: do not log it.
    pub fn id(&self) -> Option<crate::SessionId> {
        self.core().lock().stored.as_ref().map(|s| s.id.clone())
    }

    /// `true` while nothing is stored for this session.
    pub fn is_new(&self) -> bool {
        self.core().lock().stored.is_none()
    }

    /// `true` when there are changes not yet saved.
    pub fn is_changed(&self) -> bool {
        let st = self.core().lock();
        st.changed != 0 || st.action != Action::None || st.expiry_changed
    }

    /// Gives the session a new id, keeping its data and its absolute
    /// lifetime; the old id stops working. Call it when privileges change,
    /// against session fixation. Takes effect when the session is saved, as
    /// one store operation: if the session ended meanwhile (a logout in
    /// another request, an admin's delete), the save fails with
    /// [`Error::Destroyed`] (`409 session ended`) and nothing comes back
    /// under a new id. The same holds for every `regenerate*` method.
    pub fn regenerate(&self) {
        let mut st = self.core().lock();
        if st.action != Action::Destroy {
            st.action = Action::Regenerate;
        }
    }

    /// Gives the session a new id, a new absolute lifetime, and resets every
    /// field to its default.
    pub fn regenerate_clear(&self) {
        let mut st = self.core().lock();
        st.value = S::fresh();
        st.changed = envelope::stored_mask::<S>();
        // Starting clean: written at this code's version, nothing kept.
        st.newer = None;
        st.restart_lifetime = true;
        if st.action != Action::Destroy {
            st.action = Action::Regenerate;
        }
    }

    /// Gives the session a new id and a new absolute lifetime, and starts
    /// from a fresh value that `f` fills, given the previous value to carry
    /// fields over from explicitly: the login that keeps nothing an attacker
    /// could have planted before it (a cart, a half-done registration)
    /// unless the app chooses to. `f` may set `#[session(readonly)]` fields.
    /// Every rule runs afterwards; on error nothing changes.
    ///
    /// ```
    /// use typed_session::{SessionSchema, TypedSession};
    ///
    /// #[derive(SessionSchema)]
    /// struct Shop {
    ///     #[session(readonly)]
    ///     user_id: Option<u64>,
    ///     cart: Vec<u32>,
    ///     signup_email: Option<String>,
    /// }
    ///
    /// let session = TypedSession::detached(Shop {
    ///     user_id: None,
    ///     cart: vec![7],
    ///     signup_email: Some("planted@example.test".into()),
    /// });
    /// session
    ///     .regenerate_clear_with(|fresh, before| {
    ///         fresh.user_id = Some(42);
    ///         fresh.cart = before.cart.clone(); // kept on purpose; the rest is dropped
    ///     })
    ///     .unwrap();
    /// assert_eq!(session.cart(), vec![7]);
    /// assert_eq!(session.signup_email(), None);
    /// ```
    pub fn regenerate_clear_with<R>(
        &self,
        f: impl FnOnce(&mut S, &S) -> R,
    ) -> Result<R, ValidationError> {
        let mut st = self.core().lock();
        let out = st.replace_checked(|value| {
            let before = std::mem::replace(value, S::fresh());
            f(value, &before)
        })?;
        st.newer = None;
        st.restart_lifetime = true;
        if st.action != Action::Destroy {
            st.action = Action::Regenerate;
        }
        Ok(out)
    }

    /// Gives the session a new id and changes it in `f`, which may also set
    /// `#[session(readonly)]` fields: the way to set a user id at login. The
    /// absolute timeout counts again from here (an authenticated session
    /// starts now). Every rule runs afterwards; on error nothing changes.
    ///
    /// ```
    /// use typed_session::{SessionSchema, TypedSession};
    ///
    /// #[derive(SessionSchema)]
    /// struct Auth {
    ///     #[session(readonly)]
    ///     user_id: Option<u64>,
    /// }
    ///
    /// let session = TypedSession::detached(Auth { user_id: None });
    /// session.regenerate_with(|s| s.user_id = Some(7)).unwrap();
    /// assert_eq!(session.user_id(), Some(7));
    /// ```
    pub fn regenerate_with<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R, ValidationError> {
        let mut st = self.core().lock();
        // Over a newer version's record, only what `f` changed is written
        // (the rest stays as that version stored it).
        let prior = st.changed;
        let before = st.newer.is_some().then(|| encode_fields(&st.value));
        let out = st.replace_checked(f)?;
        if let Some(before) = before {
            st.changed = prior | changed_since::<S>(&before, &encode_fields(&st.value));
        }
        st.restart_lifetime = true;
        if st.action != Action::Destroy {
            st.action = Action::Regenerate;
        }
        Ok(out)
    }

    /// Ends the session: its record is deleted and the cookie removed when
    /// the session is saved. The old id can never be used again, even by a
    /// request already in flight. Writes made after `destroy` start a new session.
    pub fn destroy(&self) {
        let mut st = self.core().lock();
        st.action = Action::Destroy;
        st.value = S::fresh();
        st.changed = 0;
        st.expiry_changed = false;
        st.meta.max_age = None;
        st.meta.subject = None;
    }

    /// Binds the session to a subject (your name for the user, such as
    /// `"user:42"`), so that [`RevocationList::revoke_all`] can end it with
    /// every other session of that user; `None` unbinds it. Call it at
    /// login, after `regenerate`. The session keeps a digest of the
    /// subject, never the subject itself; binding again (a new login) makes
    /// the session newer than earlier revocations. Without a
    /// [`RevocationList`] on the layer the binding is kept but not checked.
    ///
    /// [`RevocationList`]: crate::RevocationList
    /// [`RevocationList::revoke_all`]: crate::RevocationList::revoke_all
    ///
    /// ```
    /// use typed_session::{SessionSchema, TypedSession};
    ///
    /// #[derive(SessionSchema)]
    /// struct Auth { user: Option<u64> }
    ///
    /// let session = TypedSession::detached(Auth { user: None });
    /// session.regenerate_with(|s| s.user = Some(42)).unwrap();
    /// session.set_subject(Some("user:42"));
    /// assert!(session.is_changed());
    /// ```
    pub fn set_subject(&self, subject: Option<&str>) {
        let now = match self.core().runtime() {
            Some(rt) => rt.now_ms(),
            None => unix_millis(SystemTime::now()),
        };
        let mut st = self.core().lock();
        st.meta.subject = subject.map(|s| crate::frame::Subject {
            digest: crate::revoke::subject_digest(s),
            since: now,
        });
        st.expiry_changed = true;
    }

    /// Sets this session's cookie lifetime ("remember me"): `Some(d)` makes a
    /// persistent cookie of `Max-Age` `d` (at most 400 days, the most
    /// browsers honour), `None` a browser-session cookie. Server-side
    /// timeouts still apply.
    pub fn set_expiry(&self, max_age: Option<Duration>) {
        let mut st = self.core().lock();
        st.meta.max_age = max_age.map(|d| clamp_cookie_lifetime(d).as_secs().max(1));
        st.expiry_changed = true;
    }

    /// Saves now instead of when the response is sent, so the handler sees
    /// a store error. The response still carries the cookie. After
    /// [`Error::Destroyed`] (the session ended in another request) the
    /// session is empty: later writes start a new anonymous session.
    pub async fn save(&self) -> Result<(), Error> {
        self.core().commit().await
    }

    /// A read-only view of this session.
    pub fn view(&self) -> SessionView<S> {
        SessionView::from_core(self.core().clone())
    }

    /// When the session expires on the server at the latest (idle and
    /// absolute timeouts), if it is stored.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.core().runtime()?;
        let st = self.core().lock();
        st.stored.as_ref().map(|s| from_unix_millis(s.expires_at))
    }
}

/// A read-only session: the getters of `S`, no setters.
///
/// Extract it in handlers that only read; it can never change the session.
///
/// ```compile_fail
/// use typed_session::{SessionSchema, TypedSession};
///
/// #[derive(SessionSchema)]
/// struct Cart { items: Vec<String> }
///
/// let view = TypedSession::detached(Cart { items: vec![] }).view();
/// view.set_items(vec![]); // no setter on a view
/// ```
pub struct SessionView<S: SessionSchema> {
    view: S::View,
}

impl<S: SessionSchema> SessionView<S> {
    pub(crate) fn from_core(core: Core<S>) -> Self {
        SessionView {
            view: S::View::from_core(core),
        }
    }

    /// `true` when no session is stored for this request.
    pub fn is_new(&self) -> bool {
        self.view.core().lock().stored.is_none()
    }
}

impl<S: SessionSchema> Clone for SessionView<S> {
    fn clone(&self) -> Self {
        SessionView::from_core(self.view.core().clone())
    }
}

impl<S: SessionSchema> fmt::Debug for SessionView<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.view.core(), f)
    }
}

impl<S: SessionSchema> Deref for SessionView<S> {
    type Target = S::View;
    fn deref(&self) -> &S::View {
        &self.view
    }
}

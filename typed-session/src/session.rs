//! The shared state of one session in one request ([`Core`]), the
//! [`TypedSession`] and [`SessionView`] handles, and the load and commit paths.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::clock::unix_millis;
use crate::codec::{self, FieldMask, Header};
use crate::error::{Error, LoadError, ValidationError};
use crate::flash::{Flash, FlashHandle};
use crate::id::SessionId;
use crate::layer::Shared;
use crate::rejection::SessionRejection;
use crate::schema::{HandleFor, SessionSchema};
use crate::store::{Record, SaveOutcome, TypedCache};

/// How often a concurrent save re-reads and merges before giving up.
const MAX_MERGES: usize = 16;
/// How often a create retries with a fresh id if the id is taken (it never is).
const MAX_CREATE_TRIES: usize = 3;

/// The state of one session shared by every handle of one request.
///
/// Generated accessors call into it; it is not meant to be used directly.
#[doc(hidden)]
pub struct Core<S: SessionSchema>(Arc<CoreInner<S>>);

impl<S: SessionSchema> Clone for Core<S> {
    fn clone(&self) -> Self {
        Core(self.0.clone())
    }
}

impl<S: SessionSchema> fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the id or the data.
        let st = self.lock();
        f.debug_struct("TypedSession")
            .field("schema", &std::any::type_name::<S>())
            .field("stored", &st.id.is_some())
            .field("changed", &(st.changed != 0))
            .finish()
    }
}

/// Read-only access to a [`Core`], held by generated view types so that a
/// view offers no path to a write.
#[doc(hidden)]
pub struct ReadCore<S: SessionSchema>(Core<S>);

impl<S: SessionSchema> ReadCore<S> {
    pub fn new(core: Core<S>) -> Self {
        ReadCore(core)
    }

    /// Runs `f` with the whole value.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        self.0.read(f)
    }

    /// A copy of the whole value.
    pub fn snapshot(&self) -> S {
        self.0.snapshot()
    }

    /// For generated code only.
    pub fn __core(&self) -> &Core<S> {
        &self.0
    }
}

impl<S: SessionSchema> fmt::Debug for ReadCore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

pub(crate) struct CoreInner<S> {
    state: Mutex<State<S>>,
    shared: Option<Arc<Shared>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    None,
    Regenerate,
    Destroy,
}

/// What the response should do with the cookie.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CookieOut {
    None,
    Set,
    Remove,
}

struct State<S> {
    value: S,
    /// One bit per field changed since the last save.
    changed: FieldMask,
    /// `None` while nothing is stored.
    id: Option<SessionId>,
    revision: u64,
    header: Header,
    action: Action,
    expiry_changed: bool,
    cookie: CookieOut,
    /// The request carried our cookie (usable or not).
    cookie_seen: bool,
    /// The cookie verified with an older key: send it again signed with the newest.
    resign: bool,
    /// The next regeneration starts a new absolute lifetime (login).
    restart_lifetime: bool,
    /// When the session was loaded (unix ms): decides whether an unchanged
    /// session needs its idle deadline refreshed, without reading the clock again.
    loaded_at: u64,
}

/// What the layer adds to the response once the handler is done.
pub(crate) struct Finish {
    /// The save's outcome; an error replaces the response.
    pub(crate) result: Result<(), Error>,
    pub(crate) cookie: Option<(CookieOut, Option<SessionId>, Option<Duration>)>,
}

/// What the extractor found in the request's cookie header.
pub(crate) enum CookieInput {
    Absent,
    /// Present but unusable (tampered, truncated, oversized, duplicated, bad signature).
    Invalid,
    Valid {
        id: SessionId,
        resign: bool,
    },
}

impl<S: SessionSchema> State<S> {
    fn fresh(now: u64, cookie_seen: bool) -> Self {
        State {
            value: S::fresh(),
            changed: 0,
            id: None,
            revision: 0,
            header: Header {
                created: now,
                touched: now,
                max_age: None,
            },
            action: Action::None,
            expiry_changed: false,
            cookie: CookieOut::None,
            cookie_seen,
            resign: false,
            restart_lifetime: false,
            loaded_at: now,
        }
    }

    fn mark(&mut self, index: usize) {
        if S::FIELDS.get(index).is_some_and(|f| f.stored) {
            self.changed |= 1u128 << index;
        }
    }
}

fn check_one<S: SessionSchema>(value: &S, index: usize) -> Result<(), ValidationError> {
    value.validate_field(index)?;
    value.validate()
}

fn check_all<S: SessionSchema>(value: &S) -> Result<(), ValidationError> {
    for index in 0..S::FIELDS.len() {
        value.validate_field(index)?;
    }
    value.validate()
}

fn encode_fields<S: SessionSchema>(value: &S) -> Vec<Option<Vec<u8>>> {
    (0..S::FIELDS.len())
        .map(|i| {
            let mut out = Vec::new();
            value.encode_field(i, &mut out).ok().map(|()| out)
        })
        .collect()
}

impl<S: SessionSchema> Core<S> {
    fn new(state: State<S>, shared: Option<Arc<Shared>>) -> Self {
        Core(Arc::new(CoreInner {
            state: Mutex::new(state),
            shared,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A handler that panicked inside an accessor closure poisons the lock;
        // the commit refuses to save such a session (see `commit`).
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poisoned(&self) -> bool {
        self.0.state.is_poisoned()
    }

    /// Runs `f` with the whole value.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.lock().value)
    }

    /// A copy of the whole value.
    pub fn snapshot(&self) -> S {
        self.lock().value.clone_schema()
    }

    /// Replaces one field, validated; rolled back on error.
    pub fn set_field<T>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut T,
        value: T,
    ) -> Result<(), ValidationError> {
        let mut st = self.lock();
        let old = std::mem::replace(project(&mut st.value), value);
        if let Err(e) = check_one(&st.value, index) {
            *project(&mut st.value) = old;
            return Err(e);
        }
        st.mark(index);
        Ok(())
    }

    /// Changes one field in place, validated; rolled back on error.
    pub fn update_field<T: Clone, R>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, ValidationError> {
        let mut st = self.lock();
        let old = project(&mut st.value).clone();
        let out = f(project(&mut st.value));
        if let Err(e) = check_one(&st.value, index) {
            *project(&mut st.value) = old;
            return Err(e);
        }
        st.mark(index);
        Ok(out)
    }

    /// Takes one field out, leaving `default`.
    pub fn take_field<T>(&self, index: usize, project: fn(&mut S) -> &mut T, default: T) -> T {
        let mut st = self.lock();
        let out = std::mem::replace(project(&mut st.value), default);
        st.mark(index);
        out
    }

    /// Changes the whole value; every rule runs after; rolled back on error;
    /// read-only fields may not change.
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R, ValidationError> {
        let mut st = self.lock();
        let backup = st.value.clone_schema();
        let before = encode_fields(&st.value);
        let out = f(&mut st.value);
        let after = encode_fields(&st.value);
        let result = check_all(&st.value).and_then(|()| {
            for (index, meta) in S::FIELDS.iter().enumerate() {
                if meta.readonly && before[index] != after[index] {
                    return Err(ValidationError::readonly(meta.name));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            st.value = backup;
            return Err(e);
        }
        for index in 0..S::FIELDS.len() {
            if before[index] != after[index] || before[index].is_none() {
                st.mark(index);
            }
        }
        Ok(out)
    }

    /// The handle of a flash field.
    pub fn flash<T: Clone>(
        &self,
        index: usize,
        project: fn(&mut S) -> &mut Flash<T>,
    ) -> FlashHandle<'_, S, T> {
        FlashHandle::new(self, index, project)
    }

    pub(crate) fn with_flash<R>(&self, index: usize, f: impl FnOnce(&mut S) -> (R, bool)) -> R {
        let mut st = self.lock();
        let (out, changed) = f(&mut st.value);
        if changed {
            st.mark(index);
        }
        out
    }

    fn shared(&self) -> Option<&Arc<Shared>> {
        self.0.shared.as_ref()
    }

    fn now_ms(&self) -> u64 {
        unix_millis(
            self.shared()
                .map_or_else(SystemTime::now, |s| s.clock.now()),
        )
    }

    /// Loads the session named by the request's cookie.
    pub(crate) async fn load(
        shared: Arc<Shared>,
        cookie: CookieInput,
    ) -> Result<Self, SessionRejection> {
        let now = unix_millis(shared.clock.now());
        let (id, resign) = match cookie {
            CookieInput::Absent => return Ok(Core::new(State::fresh(now, false), Some(shared))),
            CookieInput::Invalid => {
                tracing::debug!(
                    "session cookie unusable (malformed, duplicated or badly signed); starting a new session"
                );
                return Ok(Core::new(State::fresh(now, true), Some(shared)));
            }
            CookieInput::Valid { id, resign } => (id, resign),
        };
        let key = id.key();
        let record = shared.store.load(&key).await.map_err(|e| {
            tracing::error!(error = %e, cause = %error_chain(&e), "session store failed on load");
            SessionRejection::StoreUnavailable
        })?;
        let Some(record) = record else {
            tracing::debug!("no live stored session for the cookie; starting a new session");
            return Ok(Core::new(State::fresh(now, true), Some(shared)));
        };
        let discard = |reason: &dyn fmt::Display| {
            tracing::debug!(%reason, "stored session discarded; starting a new session");
        };
        let decoded = match record.cache.as_ref().and_then(codec::from_cache::<S>) {
            Some(from_cache) => from_cache,
            None => codec::decode::<S>(&record.data),
        };
        match decoded {
            Ok(decoded) => {
                if shared.expired(&decoded.header, now) {
                    tracing::debug!("session expired");
                    delete_quietly(&shared, &key).await;
                    return Ok(Core::new(State::fresh(now, true), Some(shared)));
                }
                if let Some(from) = decoded.migrated_from {
                    tracing::info!(from, to = S::VERSION, "session migrated");
                }
                let state = State {
                    value: decoded.value,
                    changed: decoded.changed,
                    id: Some(id),
                    revision: record.revision,
                    header: decoded.header,
                    action: Action::None,
                    expiry_changed: false,
                    cookie: CookieOut::None,
                    cookie_seen: true,
                    resign,
                    restart_lifetime: false,
                    loaded_at: now,
                };
                Ok(Core::new(state, Some(shared)))
            }
            Err(LoadError::FutureVersion { found, known }) => {
                tracing::warn!(
                    found,
                    known,
                    "stored session is from a newer version of the code; rejecting the request"
                );
                Err(SessionRejection::UnsupportedVersion)
            }
            Err(LoadError::Reject(field)) => {
                tracing::debug!(
                    field = field.field(),
                    "stored session field invalid; rejecting the request"
                );
                Err(SessionRejection::InvalidSession)
            }
            Err(err) => {
                discard(&error_chain(&err));
                delete_quietly(&shared, &key).await;
                Ok(Core::new(State::fresh(now, true), Some(shared)))
            }
        }
    }

    /// Writes what changed to the store.
    pub(crate) async fn commit(&self) -> Result<(), Error> {
        let Some(shared) = self.shared().cloned() else {
            return Err(Error::Detached);
        };
        if self.poisoned() {
            tracing::warn!(
                "a handler panicked while changing the session; the changes are not saved"
            );
            return Ok(());
        }
        // Decide under the lock, write without it. The state's id changes only
        // once the store has acknowledged, so a failed commit can be retried.
        let (plan, old_key, mask, action, expiry_changed, now) = {
            let mut st = self.lock();
            // Nothing to write (the common read): no clock read needed.
            let idle_due = st.id.is_some() && shared.needs_touch(&st.header, st.loaded_at);
            if st.changed == 0 && st.action == Action::None && !st.expiry_changed && !idle_due {
                return Ok(());
            }
            let now = self.now_ms();
            let action = std::mem::replace(&mut st.action, Action::None);
            let old_key = match action {
                Action::Destroy | Action::Regenerate => st.id.as_ref().map(SessionId::key),
                Action::None => None,
            };
            if action == Action::Regenerate && old_key.is_some() {
                st.changed |= codec::stored_mask::<S>();
            }
            let mask = std::mem::take(&mut st.changed);
            let expiry_changed = std::mem::take(&mut st.expiry_changed);
            let stored = st.id.is_some() && action == Action::None;
            let plan = if !stored {
                if mask != 0 || expiry_changed {
                    let keeps_lifetime =
                        st.id.is_some() && action == Action::Regenerate && !st.restart_lifetime;
                    let header = Header {
                        created: if keeps_lifetime {
                            st.header.created
                        } else {
                            now
                        },
                        touched: now,
                        max_age: st.header.max_age,
                    };
                    let cache = typed_cache(&shared, &st.value, header);
                    Plan::Create(codec::encode(&st.value, &header), header, cache)
                } else {
                    Plan::Nothing
                }
            } else if mask != 0 || expiry_changed || idle_due {
                let header = Header {
                    touched: now,
                    ..st.header
                };
                Plan::Save {
                    data: codec::encode(&st.value, &header),
                    cache: typed_cache(&shared, &st.value, header),
                    header,
                    expected: st.revision,
                    touch_only: mask == 0 && !expiry_changed,
                }
            } else {
                Plan::Nothing
            };
            (plan, old_key, mask, action, expiry_changed, now)
        };
        let created = matches!(plan, Plan::Create(..));
        if let Err(err) = self.execute(&shared, plan, mask, now).await {
            // Nothing was acknowledged: put the pending work back so a retry redoes it.
            let mut st = self.lock();
            st.changed |= mask;
            st.expiry_changed |= expiry_changed;
            if st.action == Action::None {
                st.action = action;
            }
            return Err(err);
        }
        if let Some(old_key) = old_key {
            // The new record (if any) is written; now the old id dies.
            shared.store.delete(&old_key).await.map_err(|e| {
                tracing::error!(error = %e, cause = %error_chain(&e), "session store failed to delete a session");
                Error::Store(e)
            })?;
            match action {
                Action::Destroy => tracing::info!("session destroyed"),
                _ => tracing::info!("session id regenerated"),
            }
            if !created {
                let mut st = self.lock();
                st.id = None;
                st.revision = 0;
                st.cookie = CookieOut::Remove;
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        shared: &Shared,
        plan: Plan,
        mask: FieldMask,
        now: u64,
    ) -> Result<(), Error> {
        match plan {
            Plan::Nothing => Ok(()),
            Plan::Create(data, header, cache) => {
                let data = exact_bytes(data.map_err(Error::Serialize)?);
                let expires_at = shared.expires_at(&header);
                for _ in 0..MAX_CREATE_TRIES {
                    let id = SessionId::random();
                    let mut record = Record::new(data.clone(), 1, expires_at);
                    record.cache = cache.clone();
                    let created = shared.store.create(&id.key(), record).await.map_err(|e| {
                        tracing::error!(error = %e, cause = %error_chain(&e), "session store failed on create");
                        Error::Store(e)
                    })?;
                    if created {
                        let mut st = self.lock();
                        st.id = Some(id);
                        st.revision = 1;
                        st.header = header;
                        st.cookie = CookieOut::Set;
                        st.restart_lifetime = false;
                        tracing::debug!("session created");
                        return Ok(());
                    }
                }
                Err(Error::Conflict)
            }
            Plan::Save {
                data,
                mut cache,
                header,
                expected,
                touch_only,
            } => {
                let mut data = exact_bytes(data.map_err(Error::Serialize)?);
                let mut expected = expected;
                let Some(key) = self.lock().id.as_ref().map(SessionId::key) else {
                    return Ok(());
                };
                let expires_at = shared.expires_at(&header);
                for _ in 0..MAX_MERGES {
                    let mut record = Record::new(data.clone(), expected + 1, expires_at);
                    record.cache = cache.clone();
                    let outcome = shared.store.save(&key, record, expected).await.map_err(|e| {
                        tracing::error!(error = %e, cause = %error_chain(&e), "session store failed on save");
                        Error::Store(e)
                    })?;
                    match outcome {
                        SaveOutcome::Saved => {
                            let mut st = self.lock();
                            st.revision = expected + 1;
                            st.header.touched = now;
                            return Ok(());
                        }
                        SaveOutcome::Conflict(None) => {
                            tracing::debug!(
                                "session was destroyed or expired by another request; changes dropped"
                            );
                            let mut st = self.lock();
                            st.id = None;
                            st.revision = 0;
                            st.cookie = CookieOut::Remove;
                            return if touch_only {
                                Ok(())
                            } else {
                                Err(Error::Destroyed)
                            };
                        }
                        SaveOutcome::Conflict(Some(current)) => {
                            if touch_only {
                                // Someone else wrote it, which refreshed it too.
                                let mut st = self.lock();
                                st.revision = current.revision;
                                return Ok(());
                            }
                            tracing::debug!("concurrent session write; merging the changed fields");
                            let merged = {
                                let st = self.lock();
                                codec::merge(&current.data, &st.value, mask, &header)
                            };
                            match merged {
                                Ok(bytes) => {
                                    data = exact_bytes(bytes);
                                    // The merged bytes are no longer our value.
                                    cache = None;
                                    expected = current.revision;
                                }
                                Err(e) => {
                                    tracing::warn!(cause = %error_chain(&e), "concurrent session write could not be merged");
                                    return Err(Error::Conflict);
                                }
                            }
                        }
                    }
                }
                Err(Error::Conflict)
            }
        }
    }

    /// Commits, then says what the response must carry.
    pub(crate) async fn finish(&self) -> Finish {
        let result = self.commit().await;
        let st = self.lock();
        let shared = self.shared();
        let max_age = st
            .header
            .max_age
            .map(Duration::from_secs)
            .or_else(|| shared.and_then(|s| s.cookie.max_age));
        let rolling = shared.is_some_and(|s| s.rolling);
        let cookie = match (st.cookie, &st.id) {
            (CookieOut::Set, Some(id)) => Some((CookieOut::Set, Some(id.clone()), max_age)),
            (_, Some(id)) if rolling || st.resign => {
                Some((CookieOut::Set, Some(id.clone()), max_age))
            }
            (CookieOut::Remove, None) => Some((CookieOut::Remove, None, None)),
            (_, None) if st.cookie_seen => Some((CookieOut::Remove, None, None)),
            _ => None,
        };
        drop(st);
        Finish { result, cookie }
    }
}

enum Plan {
    Nothing,
    Create(
        Result<Vec<u8>, serde_json::Error>,
        Header,
        Option<TypedCache>,
    ),
    Save {
        data: Result<Vec<u8>, serde_json::Error>,
        cache: Option<TypedCache>,
        header: Header,
        expected: u64,
        touch_only: bool,
    },
}

/// The encoded record without the encoder's spare capacity: stores that keep
/// records in memory would otherwise hold it for the session's lifetime.
fn exact_bytes(encoded: Vec<u8>) -> bytes::Bytes {
    // A copy into an exact-size allocation; shrinking in place (realloc)
    // fragments the heap when millions of records are kept.
    bytes::Bytes::copy_from_slice(&encoded)
}

/// A decoded copy for stores that keep records in memory.
fn typed_cache<S: SessionSchema>(shared: &Shared, value: &S, header: Header) -> Option<TypedCache> {
    shared.typed_cache.then(|| {
        TypedCache(Arc::new(codec::Cached {
            header,
            value: value.clone_stored(),
        }))
    })
}

async fn delete_quietly(shared: &Shared, key: &crate::SessionKey) {
    if let Err(e) = shared.store.delete(key).await {
        tracing::warn!(error = %e, cause = %error_chain(&e), "session store failed to delete a discarded session");
    }
}

/// The error and its sources, for logs (never contains ids or payloads: the
/// runtime's errors do not carry them).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Type-erased access for the layer, which does not know `S`.
pub(crate) trait ErasedSession: Send + Sync + 'static {
    fn finish(&self) -> crate::store::BoxFuture<'_, Finish>;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<S: SessionSchema> ErasedSession for Core<S> {
    fn finish(&self) -> crate::store::BoxFuture<'_, Finish> {
        Box::pin(Core::finish(self))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

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
        let mut state = State::fresh(now, false);
        state.value = value;
        TypedSession::from_core(Core::new(state, None))
    }

    /// Reads a session from its stored form (as written by
    /// [`export`](TypedSession::export) or a store), running migrations and
    /// each field's `on_invalid` policy, as loading in a request does.
    pub fn import(stored: &[u8]) -> Result<Self, LoadError> {
        let decoded = codec::decode::<S>(stored)?;
        let now = unix_millis(SystemTime::now());
        let mut state = State::fresh(now, false);
        state.value = decoded.value;
        state.changed = decoded.changed;
        state.header = decoded.header;
        Ok(TypedSession::from_core(Core::new(state, None)))
    }

    /// The stored form of this session: what a store would hold.
    pub fn export(&self) -> Result<Vec<u8>, Error> {
        let st = self.core().lock();
        codec::encode(&st.value, &st.header).map_err(Error::Serialize)
    }

    /// The session id, once the session is stored (`None` for a new session
    /// until its first save). It is a secret: do not log it.
    pub fn id(&self) -> Option<SessionId> {
        self.core().lock().id.clone()
    }

    /// `true` while nothing is stored for this session.
    pub fn is_new(&self) -> bool {
        self.core().lock().id.is_none()
    }

    /// `true` when there are changes not yet saved.
    pub fn is_changed(&self) -> bool {
        let st = self.core().lock();
        st.changed != 0 || st.action != Action::None || st.expiry_changed
    }

    /// Gives the session a new id, keeping its data and its absolute
    /// lifetime; the old id stops working. Call it when privileges change,
    /// against session fixation. Takes effect when the session is saved.
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
        st.changed = codec::stored_mask::<S>();
        st.restart_lifetime = true;
        if st.action != Action::Destroy {
            st.action = Action::Regenerate;
        }
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
        let backup = st.value.clone_schema();
        let out = f(&mut st.value);
        if let Err(e) = check_all(&st.value) {
            st.value = backup;
            return Err(e);
        }
        st.changed = codec::stored_mask::<S>();
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
        st.header.max_age = None;
    }

    /// Sets this session's cookie lifetime ("remember me"): `Some(d)` makes a
    /// persistent cookie of `Max-Age` `d`, `None` a browser-session cookie.
    /// Server-side timeouts still apply.
    pub fn set_expiry(&self, max_age: Option<Duration>) {
        let mut st = self.core().lock();
        st.header.max_age = max_age.map(|d| d.as_secs().max(1));
        st.expiry_changed = true;
    }

    /// Saves now instead of when the response is sent, so the handler sees
    /// a store error. The response still carries the cookie.
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
        let shared = self.core().shared()?;
        let st = self.core().lock();
        st.id.as_ref()?;
        Some(shared.expires_at(&st.header))
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
        self.view.core().lock().id.is_none()
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

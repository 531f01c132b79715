//! [`SessionLayer`] (the builder) and [`SessionService`]: the request gets
//! its context, the response gets the session saved and its cookie.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use http::Response;
use tower_layer::Layer;

use crate::backend::BackendConfig;
use crate::clock::{Clock, SystemClock};
use crate::config::SessionConfig;
use crate::cookies::{SameSite, check_cookie_name};
use crate::error::ConfigError;
use crate::expiry::Policy;
use crate::keys::SigningKey;
use crate::rejection::SessionRejection;
use crate::runtime::NewerSchema;
use crate::runtime::Runtime;
use crate::service::SessionService;
use crate::store::SessionStore;

/// Adds typed sessions to an axum router.
///
/// ```
/// use axum::{Router, routing::get};
/// use typed_session::{SessionLayer, SessionSchema, TypedSession, store::MemoryStore};
///
/// #[derive(SessionSchema)]
/// struct Visits { count: u64 }
///
/// async fn count(session: TypedSession<Visits>) -> String {
///     let n = session.update_count(|c| { *c += 1; *c }).unwrap_or_default();
///     format!("visit {n}")
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(count))
///     .layer(SessionLayer::new(MemoryStore::new()).with_cookie_name("visits"));
/// # let _ = app;
/// ```
///
/// # Panics
///
/// The `with_*` methods check their settings as [`SessionConfig::validate`]
/// does; settings that cannot work (a `Path` or `Domain` with `;` or control
/// characters, `SameSite=None` without `Secure`, the `__Host-` prefix with a
/// `Domain`) make [`Layer::layer`] panic, when the router is built, with the
/// reason. [`SessionLayer::check`] returns it instead.
#[derive(Clone)]
pub struct SessionLayer {
    runtime: Arc<Runtime>,
    /// What the runtime's backend is built from, again after every setting.
    backend: BackendConfig,
    /// Newest first.
    secrets: Vec<SigningKey>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rt = &self.runtime;
        f.debug_struct("SessionLayer")
            .field("backend", &rt.backend.name())
            .field("cookie", &rt.cookie)
            .field("idle_timeout", &rt.policy.idle)
            .field("absolute_timeout", &rt.policy.absolute)
            .field("rolling", &rt.rolling)
            .field("keys", &rt.backend.key_count())
            .field("max_session_bytes", &rt.max_session_bytes)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer over `store` with the defaults of [`SessionConfig::default`]:
    /// cookie `session` (`__Host-session`, since `Secure` is on), `Secure`,
    /// `HttpOnly`, `SameSite=Lax`, `Path=/`, browser-session cookie, 24 h
    /// idle and 7 day absolute timeouts, 64 KiB per session, no signing.
    pub fn new(store: impl SessionStore) -> Self {
        SessionLayer::build(
            BackendConfig::server(store),
            &SessionConfig::default(),
            Vec::new(),
        )
    }

    /// A layer that keeps the whole session in the cookie, sealed with
    /// XChaCha20-Poly1305 under a key derived from `key` (feature
    /// `cookie-store`): no server-side store at all. The defaults are those
    /// of [`SessionLayer::new`]; [`with_signing_keys`](Self::with_signing_keys)
    /// rotates the key (the first seals, every one opens, and a cookie opened
    /// with an older key is re-sealed under the current one).
    ///
    /// What it costs against a server-side store:
    /// * the session must fit in one cookie: a `Set-Cookie` `name=value` of
    ///   at most 4096 bytes, or the save fails with
    ///   [`Error::CookieTooLarge`](crate::Error::CookieTooLarge) (answered `500`);
    /// * every write sends the whole session back, and every request carries it;
    /// * there is no server-side record to delete: `destroy` and
    ///   `regenerate` replace the browser's cookie, but a copy of an older
    ///   cookie (replayed by whoever stole it) still opens until its own
    ///   deadline. Idle and absolute timeouts are sealed inside and enforced
    ///   on every request, so no one can extend a copy; for "log out
    ///   everywhere", add a [`RevocationList`](crate::RevocationList);
    /// * two requests racing on one session are last-response-wins in the
    ///   browser (the server-side stores merge disjoint fields instead).
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use typed_session::{SessionLayer, SessionSchema, SigningKey, TypedSession};
    ///
    /// #[derive(SessionSchema)]
    /// struct Cart { items: Vec<u32> }
    ///
    /// async fn add(session: TypedSession<Cart>) -> String {
    ///     let n = session.update_items(|i| { i.push(7); i.len() }).unwrap_or_default();
    ///     format!("{n} items")
    /// }
    ///
    /// let key = SigningKey::new(b"an example secret of at least 32 bytes".to_vec()).unwrap();
    /// let app: Router = Router::new()
    ///     .route("/add", post(add))
    ///     .layer(SessionLayer::encrypted_cookie(key));
    /// # let _ = app;
    /// ```
    #[cfg(feature = "cookie-store")]
    pub fn encrypted_cookie(key: SigningKey) -> Self {
        SessionLayer::build(
            BackendConfig::Sealed { compress: false },
            &SessionConfig::default(),
            vec![key],
        )
    }

    /// The one mapping from plain settings to the layer's shared state;
    /// `config` must have passed `validate`.
    fn build(backend: BackendConfig, config: &SessionConfig, secrets: Vec<SigningKey>) -> Self {
        let cookie = config.cookie_settings();
        SessionLayer {
            runtime: Arc::new(Runtime {
                backend: backend.build(&secrets, cookie.full_name()),
                cookie,
                policy: Policy {
                    idle: SessionConfig::secs(config.idle_timeout_secs),
                    absolute: SessionConfig::secs(config.absolute_timeout_secs),
                },
                rolling: config.rolling,
                max_session_bytes: config.max_session_bytes,
                clock: Arc::new(SystemClock),
                revocation: None,
                commit_on: crate::runtime::commit_unless_server_error,
                newer_schema: NewerSchema::default(),
                health: Arc::default(),
                on_rejection: None,
            }),
            backend,
            secrets,
        }
    }

    /// A layer from plain settings, with the backend the config's `store` names.
    ///
    /// ```
    /// use typed_session::{ConfigError, SessionConfig, SessionLayer, StoreConfig};
    ///
    /// let layer = SessionLayer::from_config(&SessionConfig::default()).unwrap();
    /// # let _ = layer;
    /// // Cookie mode seals with the configured secret: none is an error.
    /// let mut cookie = SessionConfig::default();
    /// cookie.store = StoreConfig::Cookie(Default::default());
    /// let err = SessionLayer::from_config(&cookie).unwrap_err();
    /// assert_eq!(err.inner(), &ConfigError::SecretRequired("cookie"));
    /// assert_eq!(err.setting(), Some("secrets"));
    /// ```
    pub fn from_config(config: &SessionConfig) -> Result<Self, ConfigError> {
        let keys = config.checked()?;
        for warning in config.warnings() {
            tracing::warn!("session configuration: {warning}");
        }
        let backend = config.backend()?;
        Ok(SessionLayer::build(backend, config, keys))
    }

    /// A layer from plain settings over a store you built (the config's
    /// `store` is not used, except that its backend must be compiled in).
    pub fn from_config_with_store(
        config: &SessionConfig,
        store: impl SessionStore,
    ) -> Result<Self, ConfigError> {
        // Rejects, among the rest, every secret under 32 bytes.
        let keys = config.checked()?;
        Ok(SessionLayer::build(
            BackendConfig::server(store),
            config,
            keys,
        ))
    }

    fn edit(mut self, f: impl FnOnce(&mut Runtime)) -> Self {
        let rt = Arc::make_mut(&mut self.runtime);
        f(rt);
        rt.cookie.refresh();
        rt.backend = self.backend.build(&self.secrets, rt.cookie.full_name());
        self
    }

    /// The settings' problem, if any: what [`Layer::layer`] would panic with.
    ///
    /// ```
    /// use typed_session::{ConfigError, SameSite, SessionLayer, store::MemoryStore};
    ///
    /// let layer = SessionLayer::new(MemoryStore::new())
    ///     .with_same_site(SameSite::None)
    ///     .with_secure(false);
    /// assert_eq!(layer.check(), Err(ConfigError::SameSiteNoneWithoutSecure));
    /// ```
    pub fn check(&self) -> Result<(), ConfigError> {
        self.runtime.cookie.validate()
    }

    /// The cookie name (default `session`). Letters, digits, `-`, `_` and `.`;
    /// anything else is replaced by `_`.
    pub fn with_cookie_name(self, name: impl Into<String>) -> Self {
        let mut name: String = name.into();
        if check_cookie_name(&name).is_err() {
            name = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if name.is_empty() {
                name = "session".to_owned();
            }
        }
        self.edit(|s| s.cookie.name = name)
    }

    /// `Secure` (default `true`). `false` sends the cookie over plain HTTP,
    /// where anyone on the network path can read and replay it, and turns
    /// off the default `__Host-` prefix: only for local development over `http://`.
    pub fn with_secure(self, secure: bool) -> Self {
        self.edit(|s| s.cookie.secure = secure)
    }

    /// `HttpOnly` (default `true`). `false` lets page scripts, and so any
    /// cross-site scripting bug, read the session cookie.
    pub fn with_http_only(self, http_only: bool) -> Self {
        self.edit(|s| s.cookie.http_only = http_only)
    }

    /// `SameSite` (default `Lax`). `None` sends the cookie on cross-site
    /// requests (weaker CSRF protection) and needs `Secure`.
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.edit(|s| s.cookie.same_site = same_site)
    }

    /// `Path` (default `/`). Another path turns off the default `__Host-` prefix.
    pub fn with_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|s| s.cookie.path = path)
    }

    /// `Domain` (default none: only the exact host gets the cookie). Setting
    /// it shares the cookie with every subdomain, and turns off the default
    /// `__Host-` prefix, so a sibling subdomain can then also set a cookie
    /// of the same name.
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.edit(|s| s.cookie.domain = Some(domain))
    }

    /// `Max-Age` (default none: a browser-session cookie; at most 400 days
    /// are sent). Per session, `TypedSession::set_expiry` overrides it.
    pub fn with_max_age(self, max_age: Option<Duration>) -> Self {
        self.edit(|s| s.cookie.max_age = max_age)
    }

    /// The `__Host-` name prefix. By default it is on whenever it can be
    /// (`Secure`, `Path=/`, no `Domain`): browsers then only accept the
    /// cookie from this exact host over HTTPS, so a sibling subdomain cannot
    /// plant or shadow it. `false` turns it off (for apps that must share
    /// the cookie, or keep an existing cookie name); `true` insists on it.
    pub fn with_host_prefix(self, on: bool) -> Self {
        self.edit(|s| s.cookie.host_prefix = Some(on))
    }

    /// Server-side idle timeout (default 24 h); `None` turns it off, so a
    /// stolen cookie stays usable until the absolute timeout.
    pub fn with_idle_timeout(self, idle: Option<Duration>) -> Self {
        self.edit(|s| s.policy.idle = idle.filter(|d| !d.is_zero()))
    }

    /// Server-side absolute lifetime (default 7 days); `None` turns it off,
    /// so an active session never has to log in again.
    pub fn with_absolute_timeout(self, absolute: Option<Duration>) -> Self {
        self.edit(|s| s.policy.absolute = absolute.filter(|d| !d.is_zero()))
    }

    /// Re-send the cookie on every response that used the session (default
    /// off), refreshing its `Max-Age`.
    pub fn with_rolling(self, rolling: bool) -> Self {
        self.edit(|s| s.rolling = rolling)
    }

    /// The largest encoded session a write may save (default 64 KiB). A
    /// write past it fails with [`Error::TooLarge`](crate::Error::TooLarge), answered `413` if the
    /// handler does not handle it; the stored session keeps its last value.
    pub fn with_max_session_bytes(self, max: usize) -> Self {
        self.edit(|s| s.max_session_bytes = max.max(1))
    }

    /// Signs session cookies with `key`; older keys in `previous` are still
    /// accepted and their cookies re-signed with `key` (rotation).
    pub fn with_signing_keys(
        mut self,
        key: SigningKey,
        previous: impl IntoIterator<Item = SigningKey>,
    ) -> Self {
        self.secrets = std::iter::once(key).chain(previous).collect();
        self.edit(|_| {})
    }

    /// Cookie mode: deflate the sealed session when that makes the cookie
    /// smaller (default off). Compression before encryption lets an
    /// attacker who can put chosen text into a victim's session and watch
    /// the cookie's length learn other contents of it (the CRIME/BREACH
    /// pattern): leave it off when sessions mix secrets with text others
    /// control. No effect on server-side stores.
    pub fn with_cookie_compression(mut self, on: bool) -> Self {
        self.backend.set_compress(on);
        self.edit(|_| {})
    }

    /// Which responses commit the session's changes (default: every status
    /// but 5xx). A handler that changed the session and then failed with a
    /// server error saves nothing, so nothing half-done reaches the store,
    /// and flash messages it read are shown again; 2xx, 3xx and 4xx commit
    /// (a flash message pushed before a `422` is kept for the next page).
    /// A `destroy` is carried out whatever the status, and what an explicit
    /// [`save`](crate::TypedSession::save) already wrote stays written.
    ///
    /// ```
    /// use typed_session::{SessionLayer, store::MemoryStore};
    ///
    /// // Only successful responses commit.
    /// let layer = SessionLayer::new(MemoryStore::new()).commit_on(|status| status.is_success());
    /// # let _ = layer;
    /// ```
    pub fn commit_on(self, policy: fn(http::StatusCode) -> bool) -> Self {
        self.edit(|s| s.commit_on = policy)
    }

    /// Answers every session rejection of this layer with `respond` instead
    /// of the fixed plain-text body: the extractor's (`503` store
    /// unavailable, `400` invalid session, ...) and the commit's (`409`,
    /// `413`, ...). For an API whose every response has one shape:
    ///
    /// ```
    /// use axum::response::{IntoResponse, Response};
    /// use typed_session::{SessionLayer, SessionRejection};
    /// use typed_session::store::MemoryStore;
    ///
    /// fn as_json(rejection: SessionRejection) -> Response {
    ///     let body = format!(r#"{{"code":{},"error":"{}"}}"#, rejection.status().as_u16(), rejection);
    ///     (rejection.status(), [("content-type", "application/json")], body).into_response()
    /// }
    ///
    /// let layer = SessionLayer::new(MemoryStore::new()).on_rejection(as_json);
    /// # let _ = layer;
    /// ```
    ///
    /// A handler that returns the session's [`Error`](crate::Error) itself
    /// (from `save().await?`) is answered the same way. The status stays
    /// yours to choose; the rejection's cause is logged, never passed on.
    pub fn on_rejection(self, respond: fn(SessionRejection) -> Response<Body>) -> Self {
        self.edit(|s| s.on_rejection = Some(respond))
    }

    /// What to do with a session record written by a newer version of the
    /// code (a higher `#[session(version = N)]`): during a rolling deploy,
    /// instances of both versions serve the same sessions.
    ///
    /// By default ([`NewerSchema::ReadKnownFields`]) this code reads the
    /// fields it knows, writes back only the fields it changed and keeps
    /// everything else, and the record's version, as stored; a write to a
    /// field whose stored shape it cannot read answers `409`.
    /// [`NewerSchema::Reject`] answers `503` to every request on such a
    /// session instead, until the deploy ends.
    ///
    /// ```
    /// use typed_session::{NewerSchema, SessionLayer};
    /// use typed_session::store::MemoryStore;
    ///
    /// let layer = SessionLayer::new(MemoryStore::new()).on_newer_schema(NewerSchema::Reject);
    /// # let _ = layer;
    /// ```
    pub fn on_newer_schema(self, policy: NewerSchema) -> Self {
        self.edit(|s| s.newer_schema = policy)
    }

    /// Checks every session bound to a subject
    /// ([`TypedSession::set_subject`](crate::TypedSession::set_subject))
    /// against `list` on load, ending those revoked since
    /// ("log out everywhere"): one store lookup per such request.
    pub fn with_revocation(self, list: crate::RevocationList) -> Self {
        self.edit(|s| s.revocation = Some(list))
    }

    /// The clock used for timeouts (default: the system clock). Tests use a
    /// [`ManualClock`](crate::clock::ManualClock) to move time without sleeping.
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.edit(|s| s.clock = clock)
    }
}

impl<Svc> Layer<Svc> for SessionLayer {
    type Service = SessionService<Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        if let Err(err) = self.check() {
            panic!("invalid SessionLayer settings: {err}");
        }
        SessionService::new(inner, self.runtime.clone())
    }
}

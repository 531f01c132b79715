//! [`SessionLayer`] and [`SessionService`]: cookie in, session saved and cookie out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum_core::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response};
use sha2::Sha256;
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::{Clock, SystemClock, from_unix_millis};
use crate::codec::Header;
use crate::config::{ConfigError, Driver, SameSite, SessionConfig, SigningKey, check_cookie_name};
use crate::extract::SlotCell;
use crate::id::SessionId;
use crate::rejection::SessionRejection;
use crate::session::{CookieInput, CookieOut, error_chain};
use crate::store::{ErasedStore, SessionStore};

/// Longest cookie value looked at; anything longer is not ours (4 KiB is the
/// browsers' limit for a whole cookie).
const MAX_COOKIE_VALUE: usize = 4096;
/// A record with no timeout at all is still dropped after this long (the
/// longest cookie lifetime browsers honour).
const FALLBACK_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);
/// Bytes of HMAC-SHA256 kept in a signed cookie.
const TAG_BYTES: usize = 16;

/// Settings and store shared by every request of one layer.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ErasedStore>,
    pub(crate) cookie: CookieSettings,
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) rolling: bool,
    /// The store keeps records in memory: attach decoded copies.
    pub(crate) typed_cache: bool,
    /// Per-purpose subkeys derived from the secrets, newest first.
    pub(crate) keys: Vec<[u8; 32]>,
    pub(crate) clock: Arc<dyn Clock>,
}

#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) host_prefix: bool,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: Option<Duration>,
    /// The name as sent: `name`, or `__Host-name` with the prefix; kept in
    /// step by `SessionLayer::edit` so requests do not rebuild it.
    pub(crate) full_name: String,
}

impl CookieSettings {
    fn refresh_full_name(&mut self) {
        self.full_name = if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        };
    }
}

fn derive_key(secret: &[u8]) -> [u8; 32] {
    // HMAC as a PRF to derive the id-signing subkey, so the same secret can
    // serve other purposes (cookie encryption) without key reuse.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"typed-session v1 cookie id signing");
    mac.finalize().into_bytes().into()
}

fn tag(key: &[u8; 32], id: &SessionId) -> [u8; TAG_BYTES] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

impl Shared {
    pub(crate) fn expired(&self, header: &Header, now: u64) -> bool {
        let past = |start: u64, d: Option<Duration>| {
            d.is_some_and(|d| now >= start.saturating_add(d.as_millis() as u64))
        };
        past(header.touched, self.idle) || past(header.created, self.absolute)
    }

    /// An unchanged session is written back to refresh its idle deadline once a
    /// tenth of the idle timeout has passed since the last write, so reads do
    /// not write on every request; the idle timeout is thus honoured to within 10 %.
    pub(crate) fn needs_touch(&self, header: &Header, now: u64) -> bool {
        self.idle.is_some_and(|idle| {
            now.saturating_sub(header.touched) >= (idle.as_millis() as u64) / 10
        })
    }

    pub(crate) fn expires_at(&self, header: &Header) -> SystemTime {
        let idle = self
            .idle
            .map(|d| header.touched.saturating_add(d.as_millis() as u64));
        let absolute = self
            .absolute
            .map(|d| header.created.saturating_add(d.as_millis() as u64));
        match (idle, absolute) {
            (Some(a), Some(b)) => from_unix_millis(a.min(b)),
            (Some(a), None) | (None, Some(a)) => from_unix_millis(a),
            (None, None) => {
                from_unix_millis(header.touched)
                    + header
                        .max_age
                        .map_or(FALLBACK_LIFETIME, Duration::from_secs)
            }
        }
    }

    /// Finds our cookie in the request headers.
    pub(crate) fn read_cookie(&self, headers: &HeaderMap) -> CookieInput {
        let name = self.cookie.full_name.as_str();
        let mut found: Option<&str> = None;
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for cookie in cookie::Cookie::split_parse(text).flatten() {
                if cookie.name() != name {
                    continue;
                }
                // The raw value borrows from the header; ids need no quoting.
                let Some(v) = cookie.value_raw() else {
                    return CookieInput::Invalid;
                };
                match found {
                    None => found = Some(v),
                    Some(prev) if prev == v => {}
                    Some(_) => return CookieInput::Invalid,
                }
            }
        }
        let Some(value) = found else {
            return CookieInput::Absent;
        };
        if value.len() > MAX_COOKIE_VALUE {
            return CookieInput::Invalid;
        }
        self.verify(value)
    }

    fn verify(&self, value: &str) -> CookieInput {
        let (id_part, tag_part) = match value.split_once('.') {
            Some((id, tag)) => (id, Some(tag)),
            None => (value, None),
        };
        let Some(id) = SessionId::from_cookie_value(id_part) else {
            return CookieInput::Invalid;
        };
        let tag_shaped = |t: &str| {
            t.len() == 22
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if self.keys.is_empty() {
            // Signing is off: a tag from an earlier configuration is dropped
            // (and the cookie re-sent without it); anything else is tampering.
            return match tag_part {
                None => CookieInput::Valid { id, resign: false },
                Some(t) if tag_shaped(t) => CookieInput::Valid { id, resign: true },
                Some(_) => CookieInput::Invalid,
            };
        }
        let Some(tag_part) = tag_part else {
            return CookieInput::Invalid;
        };
        let mut given = [0u8; TAG_BYTES];
        if tag_part.len() != 22
            || !matches!(
                URL_SAFE_NO_PAD.decode_slice(tag_part, &mut given),
                Ok(TAG_BYTES)
            )
        {
            return CookieInput::Invalid;
        }
        for (i, key) in self.keys.iter().enumerate() {
            let expected = tag(key, &id);
            if bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &given[..])) {
                return CookieInput::Valid { id, resign: i > 0 };
            }
        }
        CookieInput::Invalid
    }

    fn cookie_value(&self, id: &SessionId) -> String {
        let mut value = id.expose();
        if let Some(key) = self.keys.first() {
            value.push('.');
            value.push_str(&URL_SAFE_NO_PAD.encode(tag(key, id)));
        }
        value
    }

    pub(crate) fn set_cookie(
        &self,
        out: CookieOut,
        id: Option<&SessionId>,
        max_age: Option<Duration>,
    ) -> Option<HeaderValue> {
        let c = &self.cookie;
        let value = match (out, id) {
            (CookieOut::Set, Some(id)) => self.cookie_value(id),
            (CookieOut::Remove, _) => String::new(),
            _ => return None,
        };
        let mut builder = cookie::Cookie::build((c.full_name.clone(), value))
            .path(if c.host_prefix {
                "/".to_owned()
            } else {
                c.path.clone()
            })
            .http_only(c.http_only)
            .secure(c.secure || c.host_prefix)
            .same_site(match c.same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            });
        if let (Some(domain), false) = (&c.domain, c.host_prefix) {
            builder = builder.domain(domain.clone());
        }
        if out == CookieOut::Remove {
            builder = builder
                .max_age(cookie::time::Duration::ZERO)
                .expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        } else if let Some(age) = max_age {
            builder = builder.max_age(cookie::time::Duration::seconds(
                age.as_secs().min(i64::MAX as u64) as i64,
            ));
        }
        match HeaderValue::from_str(&builder.build().to_string()) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::error!(
                    "session cookie settings produce an invalid header (check the domain and path)"
                );
                None
            }
        }
    }
}

/// The request extension the layer adds and the extractors read.
#[derive(Clone)]
pub(crate) struct RequestContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) slot: SlotCell,
}

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
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.shared.cookie)
            .field("idle_timeout", &self.shared.idle)
            .field("absolute_timeout", &self.shared.absolute)
            .field("rolling", &self.shared.rolling)
            .field("keys", &self.shared.keys.len())
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer over `store` with the defaults of [`SessionConfig::default`]:
    /// cookie `session`, `Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`,
    /// browser-session cookie, 24 h idle and 7 day absolute timeouts, no signing.
    pub fn new(store: impl SessionStore) -> Self {
        SessionLayer::build(store, &SessionConfig::default())
    }

    /// The one mapping from plain settings to the layer's shared state;
    /// `config` must have passed `validate`.
    fn build(store: impl SessionStore, config: &SessionConfig) -> Self {
        let typed_cache = store.keeps_records_in_memory();
        SessionLayer {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                cookie: CookieSettings {
                    name: config.cookie_name.clone(),
                    host_prefix: config.host_prefix,
                    secure: config.secure,
                    http_only: config.http_only,
                    same_site: config.same_site,
                    path: config.path.clone(),
                    domain: config.domain.clone(),
                    max_age: SessionConfig::secs(config.max_age_secs),
                    full_name: String::new(),
                },
                idle: SessionConfig::secs(config.idle_timeout_secs),
                absolute: SessionConfig::secs(config.absolute_timeout_secs),
                rolling: config.rolling,
                typed_cache,
                keys: config
                    .secrets
                    .iter()
                    .map(|s| derive_key(s.as_bytes()))
                    .collect(),
                clock: Arc::new(SystemClock),
            }),
        }
        // Computes the cookie's full name.
        .edit(|_| {})
    }

    /// A layer from plain settings, with the store the config's `driver` names.
    pub fn from_config(config: &SessionConfig) -> Result<Self, ConfigError> {
        match config.driver {
            #[cfg(feature = "memory-store")]
            Driver::Memory => Self::from_config_with_store(
                config,
                crate::store::MemoryStore::with_capacity(config.memory_capacity),
            ),
            #[cfg(not(feature = "memory-store"))]
            Driver::Memory => Err(ConfigError::DriverUnavailable("memory", "memory-store")),
        }
    }

    /// A layer from plain settings over a store you built.
    pub fn from_config_with_store(
        config: &SessionConfig,
        store: impl SessionStore,
    ) -> Result<Self, ConfigError> {
        // Rejects, among the rest, every secret under 32 bytes.
        config.validate()?;
        Ok(SessionLayer::build(store, config))
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        f(shared);
        shared.cookie.refresh_full_name();
        self
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
    /// where anyone on the network path can read and replay it: only for
    /// local development over `http://`.
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

    /// `Path` (default `/`).
    pub fn with_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|s| s.cookie.path = path)
    }

    /// `Domain` (default none: only the exact host gets the cookie). Setting
    /// it shares the cookie with every subdomain.
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        let domain = domain.into();
        self.edit(|s| s.cookie.domain = Some(domain))
    }

    /// `Max-Age` (default none: a browser-session cookie). Per session,
    /// `TypedSession::set_expiry` overrides it.
    pub fn with_max_age(self, max_age: Option<Duration>) -> Self {
        self.edit(|s| s.cookie.max_age = max_age)
    }

    /// Prefix the cookie name with `__Host-`: browsers then only accept it
    /// with `Secure`, `Path=/` and no `Domain`, which this forces.
    pub fn with_host_prefix(self, on: bool) -> Self {
        self.edit(|s| s.cookie.host_prefix = on)
    }

    /// Server-side idle timeout (default 24 h); `None` turns it off, so a
    /// stolen cookie stays usable until the absolute timeout.
    pub fn with_idle_timeout(self, idle: Option<Duration>) -> Self {
        self.edit(|s| s.idle = idle.filter(|d| !d.is_zero()))
    }

    /// Server-side absolute lifetime (default 7 days); `None` turns it off,
    /// so an active session never has to log in again.
    pub fn with_absolute_timeout(self, absolute: Option<Duration>) -> Self {
        self.edit(|s| s.absolute = absolute.filter(|d| !d.is_zero()))
    }

    /// Re-send the cookie on every response that used the session (default
    /// off), refreshing its `Max-Age`.
    pub fn with_rolling(self, rolling: bool) -> Self {
        self.edit(|s| s.rolling = rolling)
    }

    /// Signs session cookies with `key`; older keys in `previous` are still
    /// accepted and their cookies re-signed with `key` (rotation).
    pub fn with_signing_keys(
        self,
        key: SigningKey,
        previous: impl IntoIterator<Item = SigningKey>,
    ) -> Self {
        let keys: Vec<[u8; 32]> = std::iter::once(key)
            .chain(previous)
            .map(|k| derive_key(k.bytes()))
            .collect();
        self.edit(|s| s.keys = keys)
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
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around a router or handler.
#[derive(Clone)]
pub struct SessionService<Svc> {
    inner: Svc,
    shared: Arc<Shared>,
}

impl<Svc> fmt::Debug for SessionService<Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<Svc, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<Svc>
where
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    Svc::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let slot: SlotCell = Arc::new(Mutex::new(None));
        req.extensions_mut().insert(RequestContext {
            shared: self.shared.clone(),
            slot: slot.clone(),
        });
        let shared = self.shared.clone();
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            let taken = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let Some(session) = taken else {
                return Ok(response.map(Body::new));
            };
            let finish = session.erased.finish().await;
            let mut response = match finish.result {
                Ok(()) => response.map(Body::new),
                Err(err) => {
                    let rejection = SessionRejection::from(&err);
                    if rejection == SessionRejection::SessionEnded {
                        tracing::debug!("a write to a session destroyed meanwhile was dropped");
                    } else {
                        tracing::error!(cause = %error_chain(&err), "session save failed; answering 503");
                    }
                    axum_core::response::IntoResponse::into_response(rejection)
                }
            };
            let headers = response.headers_mut();
            if let Some((out, id, max_age)) = finish.cookie
                && let Some(value) = shared.set_cookie(out, id.as_ref(), max_age)
            {
                headers.append(SET_COOKIE, value);
            }
            add_vary_cookie(headers);
            if !headers.contains_key(CACHE_CONTROL) {
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(response)
        })
    }
}

fn add_vary_cookie(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("cookie") || p.trim() == "*")
            })
            .unwrap_or(false)
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn shared(keys: Vec<[u8; 32]>) -> Shared {
        let layer = SessionLayer::new(crate::store::MemoryStore::new());
        let mut shared = (*layer.shared).clone();
        shared.keys = keys;
        shared
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                map.append(COOKIE, v);
            }
        }
        map
    }

    /// Bounded random search over cookie headers: never a panic, and nothing
    /// but an exact id (or id.tag) is accepted.
    #[test]
    fn random_cookie_headers_never_panic_or_pass() {
        let plain = shared(Vec::new());
        let signed = shared(vec![derive_key(&[9u8; 32])]);
        let id = SessionId::random();
        let good_plain = format!("session={}", id.expose());
        let good_signed = format!("session={}", signed.cookie_value(&id));
        assert!(matches!(
            plain.read_cookie(&headers(&[good_plain.as_bytes()])),
            CookieInput::Valid { .. }
        ));
        assert!(matches!(
            signed.read_cookie(&headers(&[good_signed.as_bytes()])),
            CookieInput::Valid { resign: false, .. }
        ));

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e55_1014);
        let alphabet = b"session=;. \"=,AZaz09-_+/%\\\x7f\xc3\xa9";
        let mut accepted = 0usize;
        for round in 0..100_000 {
            let base = if round % 2 == 0 {
                &good_plain
            } else {
                &good_signed
            };
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..4) {
                    0 if !bytes.is_empty() => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = alphabet[rng.random_range(0..alphabet.len())];
                    }
                    1 if !bytes.is_empty() => {
                        bytes.truncate(rng.random_range(0..bytes.len()));
                    }
                    2 => {
                        let i = rng.random_range(0..=bytes.len());
                        bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
                    }
                    _ => bytes.extend(std::iter::repeat_n(b'A', rng.random_range(0..5000))),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            // Unsigned: any other well-formed id is just another id (the store
            // will not know it), so only its form is checked.
            if let CookieInput::Valid { id: got, .. } = plain.read_cookie(&headers(&[&bytes])) {
                assert_eq!(
                    SessionId::from_cookie_value(&got.expose()),
                    Some(got),
                    "{text:?}"
                );
            }
            // Signed: only mutations that left our exact cookie intact pass.
            if let CookieInput::Valid { id: got, .. } = signed.read_cookie(&headers(&[&bytes])) {
                assert_eq!(got, id, "{text:?}");
                accepted += 1;
            }
        }
        assert!(
            accepted < 10_000,
            "most mutations are refused ({accepted} of 100,000 accepted)"
        );
    }
}

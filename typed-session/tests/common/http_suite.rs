//! The HTTP lifecycle suite: written once, run on every backend by
//! `http_suite!` (see `http.rs`). axum on 127.0.0.1, a raw HTTP/1.1 client,
//! a manual clock for timeouts.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use typed_session::{Flash, SessionLayer, SessionSchema, SessionView, TypedSession};

use super::harness::{Harness, assert_count};
use super::{Response, http_get, http_post, serve};

/// What a browser does with a response: keep the cookie it sets (cookie
/// mode sends a new one on every write), drop it when it is removed.
pub fn follow(cookie: &mut String, res: &Response) {
    if let Some(c) = res.cookie()
        && !res.removes_cookie()
    {
        *cookie = c;
    }
}

/// `POST`s every path at once with `cookie`; the responses in path order.
pub async fn post_concurrently(
    addr: std::net::SocketAddr,
    cookie: &str,
    paths: impl IntoIterator<Item = String>,
) -> Vec<Response> {
    let tasks: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let cookie = cookie.to_owned();
            tokio::spawn(async move { http_post(addr, &path, Some(&cookie)).await })
        })
        .collect();
    let mut responses = Vec::with_capacity(tasks.len());
    for t in tasks {
        responses.push(t.await.expect("task"));
    }
    responses
}

pub fn not_banned(user: &Option<u64>) -> Result<(), String> {
    if *user == Some(666) {
        Err("banned".into())
    } else {
        Ok(())
    }
}

#[derive(SessionSchema)]
pub struct App {
    #[session(readonly, validate = not_banned, on_invalid = "reject")]
    pub user_id: Option<u64>,
    pub counter: u64,
    #[session(flash)]
    pub notices: Flash<String>,
}

pub async fn login(session: TypedSession<App>) -> &'static str {
    session
        .regenerate_with(|s| s.user_id = Some(42))
        .expect("valid");
    "ok"
}

pub async fn read(view: SessionView<App>) -> String {
    format!("user={:?} counter={}", view.user_id(), view.counter())
}

pub async fn maybe(session: Option<TypedSession<App>>) -> &'static str {
    if session.is_some() { "some" } else { "none" }
}

pub async fn inc(session: TypedSession<App>) -> String {
    let n = session
        .update_counter(|c| {
            *c += 1;
            *c
        })
        .expect("no rule");
    format!("counter={n}")
}

pub async fn logout(session: TypedSession<App>) -> &'static str {
    session.destroy();
    "bye"
}

pub async fn flash_push(session: TypedSession<App>) -> &'static str {
    session.notices().push("saved".into());
    "pushed"
}

pub async fn flash_read(session: TypedSession<App>) -> String {
    session.notices().drain().join(",")
}

pub async fn extract_only(_session: TypedSession<App>) -> &'static str {
    "nothing written"
}

pub async fn remember(session: TypedSession<App>) -> &'static str {
    session.set_expiry(Some(Duration::from_secs(30 * 24 * 3600)));
    "remembered"
}

pub fn routes() -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/read", get(read))
        .route("/maybe", get(maybe))
        .route("/inc", post(inc))
        .route("/logout", post(logout))
        .route("/flash", post(flash_push).get(flash_read))
        .route("/extract", post(extract_only))
        .route("/remember", post(remember))
}

pub fn plain_layer<H: Harness>(h: &H) -> SessionLayer {
    h.layer().with_secure(false)
}

pub fn app(layer: SessionLayer) -> Router {
    routes()
        .layer(layer)
        .route("/healthz", get(|| async { "ok" }))
}

pub async fn login_cookie(addr: std::net::SocketAddr) -> String {
    let res = http_post(addr, "/login", None).await;
    assert_eq!(res.status, 200);
    res.cookie().expect("login sets a cookie")
}

macro_rules! wide {
    ($($f:ident),*) => {
        /// A session of 100 fields and a shared one, for concurrent writers.
        #[derive(SessionSchema)]
        pub struct Wide {
            $(pub $f: u32,)*
            pub same: u32,
        }

        /// Increments field `n`.
        pub fn bump(w: &mut Wide, n: usize) {
            let fields = [$(&mut w.$f),*];
            *fields[n] += 1;
        }

        /// The 100 fields.
        pub fn values(w: &Wide) -> Vec<u32> {
            vec![$(w.$f),*]
        }
    };
}

wide!(
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20,
    f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31, f32, f33, f34, f35, f36, f37, f38, f39,
    f40, f41, f42, f43, f44, f45, f46, f47, f48, f49, f50, f51, f52, f53, f54, f55, f56, f57, f58,
    f59, f60, f61, f62, f63, f64, f65, f66, f67, f68, f69, f70, f71, f72, f73, f74, f75, f76, f77,
    f78, f79, f80, f81, f82, f83, f84, f85, f86, f87, f88, f89, f90, f91, f92, f93, f94, f95, f96,
    f97, f98, f99
);

/// Runs `POST path` with `cookie`, holding the handler at a gate until the
/// caller has done something in between (a logout, a store delete).
pub struct Gated {
    pub gate: Arc<tokio::sync::Notify>,
    pub entered: Arc<tokio::sync::Notify>,
}

impl Gated {
    fn new() -> Self {
        Gated {
            gate: Arc::new(tokio::sync::Notify::new()),
            entered: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// A handler that waits at the gate, then runs `f` on the session.
    fn route(&self, f: fn(&TypedSession<App>)) -> axum::routing::MethodRouter {
        let (gate, entered) = (self.gate.clone(), self.entered.clone());
        post(move |session: TypedSession<App>| {
            let (gate, entered) = (gate.clone(), entered.clone());
            async move {
                entered.notify_one();
                gate.notified().await;
                f(&session);
                "late"
            }
        })
    }
}

/// A lifecycle call on a session, named for failure messages.
pub type Named = (&'static str, fn(&TypedSession<App>));

pub fn regenerations() -> [Named; 3] {
    [
        ("regenerate", |s| s.regenerate()),
        ("regenerate_with", |s| {
            s.regenerate_with(|a| a.user_id = Some(7)).unwrap();
        }),
        ("regenerate_clear", |s| s.regenerate_clear()),
    ]
}

/// Runs each form of regenerate in a request that loaded the session
/// before `end` (a logout, a store delete) ended it; each must answer 409
/// and leave nothing alive. `false` from `end`: the backend cannot do it.
pub async fn regenerate_after_the_end<H: Harness, F, Fut>(h: &H, logged_in_writes: bool, end: F)
where
    F: Fn(std::net::SocketAddr, String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for (name, f) in regenerations() {
        let gated = Gated::new();
        let server = serve(
            routes()
                .route("/slow", gated.route(f))
                .layer(plain_layer(h)),
        )
        .await;
        let cookie = login_cookie(server.addr).await;
        if logged_in_writes {
            http_post(server.addr, "/inc", Some(&cookie)).await;
        }
        let (addr, c2) = (server.addr, cookie.clone());
        let in_flight = tokio::spawn(async move { http_post(addr, "/slow", Some(&c2)).await });
        gated.entered.notified().await;
        let ended = end(addr, cookie.clone()).await;
        gated.gate.notify_one();
        let late = in_flight.await.unwrap();
        if !ended {
            return;
        }
        if !h.keeps_records() {
            // Nothing on the server to end: the late response's cookie wins.
            assert_eq!(late.status, 200, "{name}: {}", late.body);
            continue;
        }
        assert_eq!(late.status, 409, "{name}: {}", late.body);
        assert_eq!(late.body, "session ended");
        assert!(
            late.cookies()
                .iter()
                .all(|c| c.max_age() == Some(cookie::time::Duration::ZERO)),
            "{name}: only a removal cookie, no new session: {:?}",
            late.set_cookies()
        );
        assert_count(h, 0, name).await;
        assert_eq!(
            http_get(addr, "/read", Some(&cookie)).await.body,
            "user=None counter=0"
        );
    }
}

/// Signals, once extracted, that the extractors before it have run.
pub struct Extracted;

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for Extracted {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        if let Some(n) = parts.extensions.get::<Arc<tokio::sync::Notify>>() {
            n.notify_one();
        }
        Ok(Extracted)
    }
}

/// Instantiates the suite for one backend, every test of it:
/// `http_suite!(memory, Stored::new(MemoryStore::new(), MemoryStore::len));`.
/// The tests are written here, inside the macro, so a new test runs on
/// every backend; the helpers above are shared.
#[macro_export]
macro_rules! http_suite {
    ($backend:ident, $harness:expr) => {
        /// The backend's harness, built where the suite is instantiated.
        fn $backend() -> impl $crate::common::harness::Harness {
            $harness
        }

        mod $backend {
            use $crate::common::http_suite::*;
            #[allow(unused_imports)]
            use std::sync::Arc;
            #[allow(unused_imports)]
            use std::time::Duration;
            #[allow(unused_imports)]
            use axum::Router;
            #[allow(unused_imports)]
            use axum::extract::Path;
            #[allow(unused_imports)]
            use axum::routing::{get, post};
            #[allow(unused_imports)]
            use typed_session::clock::ManualClock;
            #[allow(unused_imports)]
            use typed_session::{
                Flash, SameSite, SessionLayer, SessionSchema, SessionView, SigningKey, TypedSession,
            };
            #[allow(unused_imports)]
            use $crate::common::harness::{Harness, assert_count};
            #[allow(unused_imports)]
            use $crate::common::{Response, http_get, http_post, request, serve};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn default_cookie_attributes() {
                let h = super::$backend();
                let server = serve(app(h.layer())).await;
                let res = http_post(server.addr, "/login", None).await;
                let set = res.cookies();
                assert_eq!(set.len(), 1, "{set:?}");
                let c = &set[0];
                assert_eq!(c.name(), "__Host-session", "Secure, so __Host- by default");
                assert_eq!(c.http_only(), Some(true), "{c}");
                assert_eq!(c.secure(), Some(true), "{c}");
                assert_eq!(c.same_site(), Some(cookie::SameSite::Lax), "{c}");
                assert_eq!(c.path(), Some("/"), "{c}");
                assert_eq!(c.max_age(), None, "browser-session cookie by default: {c}");
                assert_eq!(c.domain(), None, "{c}");
                let value = res.cookie().unwrap();
                let id = value.trim_start_matches("__Host-session=");
                if h.keeps_records() {
                    assert_eq!(id.len(), 22, "128-bit id, base64url");
                } else {
                    assert!(id.len() > 80, "the sealed session: {}", id.len());
                }
                assert_eq!(res.header("cache-control"), Some("no-store"));
                assert_eq!(res.header("vary"), Some("cookie"));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn configured_cookie_attributes() {
                let h = super::$backend();
                let layer = h
                    .layer()
                    .with_cookie_name("shop")
                    .with_same_site(SameSite::Strict)
                    .with_domain("example.test")
                    .with_path("/app")
                    .with_max_age(Some(Duration::from_secs(3600)))
                    .with_http_only(false);
                let server = serve(Router::new().nest("/app", routes()).layer(layer)).await;
                let res = http_post(server.addr, "/app/login", None).await;
                let c = &res.cookies()[0];
                assert_eq!(c.name(), "shop", "{c}");
                assert_eq!(c.secure(), Some(true), "{c}");
                assert_eq!(c.same_site(), Some(cookie::SameSite::Strict), "{c}");
                assert_eq!(c.path(), Some("/app"), "{c}");
                assert_eq!(c.domain(), Some("example.test"), "{c}");
                assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(3600)), "{c}");
                assert_eq!(c.http_only(), None, "{c}");

                let conflicting = h.layer().with_host_prefix(true).with_domain("example.test");
                assert_eq!(
                    conflicting.check(),
                    Err(typed_session::ConfigError::HostPrefixMismatch),
                    "the prefix cannot be forced together with a domain"
                );
                let host = h.layer().with_host_prefix(true);
                let server = serve(app(host)).await;
                let res = http_post(server.addr, "/login", None).await;
                let c = &res.cookies()[0];
                assert_eq!(c.name(), "__Host-session", "{c}");
                assert_eq!(
                    (c.secure(), c.path(), c.domain()),
                    (Some(true), Some("/"), None),
                    "{c}"
                );
                let cookie = res.cookie().unwrap();
                let res = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(res.body, "user=Some(42) counter=0");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_set_no_cookie_and_write_nothing() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let cookie = login_cookie(server.addr).await;
                for _ in 0..3 {
                    let res = http_get(server.addr, "/read", Some(&cookie)).await;
                    assert_eq!(res.status, 200);
                    assert_eq!(res.body, "user=Some(42) counter=0");
                    assert!(
                        res.set_cookies().is_empty(),
                        "a pure read must not set a cookie: {:?}",
                        res.headers
                    );
                    assert_eq!(
                        res.header("vary"),
                        Some("cookie"),
                        "the response depends on the cookie"
                    );
                    assert_eq!(res.header("cache-control"), Some("no-store"));
                }
                let res = http_get(server.addr, "/healthz", Some(&cookie)).await;
                assert!(
                    res.set_cookies().is_empty() && res.header("vary").is_none(),
                    "routes without a session are untouched"
                );
                // A write sends no new cookie either: the id did not change. In cookie
                // mode the cookie is the record, so a write sends it.
                let mut cookie = cookie;
                let res = http_post(server.addr, "/inc", Some(&cookie)).await;
                assert_eq!(res.body, "counter=1");
                assert_eq!(res.set_cookies().is_empty(), h.keeps_records());
                follow(&mut cookie, &res);
                assert_eq!(
                    http_get(server.addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=1"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cookieless_requests_create_nothing() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                for i in 0..1000 {
                    let res = match i % 3 {
                        0 => http_get(server.addr, "/read", None).await,
                        1 => http_get(server.addr, "/maybe", None).await,
                        _ => http_post(server.addr, "/extract", None).await,
                    };
                    assert_eq!(res.status, 200);
                    assert!(res.set_cookies().is_empty(), "request {i} set a cookie");
                }
                assert_count(&h, 0, "no record after 1,000 cookie-less requests").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn regenerate_changes_the_id_and_kills_the_old_one() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let mut first = login_cookie(server.addr).await;
                let res = http_post(server.addr, "/inc", Some(&first)).await;
                follow(&mut first, &res);
                let res = http_post(server.addr, "/login", Some(&first)).await;
                let second = res.cookie().expect("regenerate sends the new id");
                assert_ne!(first, second);
                assert_eq!(
                    http_get(server.addr, "/read", Some(&second)).await.body,
                    "user=Some(42) counter=1",
                    "data kept"
                );
                let old = http_get(server.addr, "/maybe", Some(&first)).await;
                if !h.keeps_records() {
                    // Documented: nothing on the server remembers the old cookie, so a
                    // copy of it opens until its own deadline (revocation aside).
                    assert_eq!(old.body, "some");
                    assert_eq!(
                        http_get(server.addr, "/read", Some(&first)).await.body,
                        "user=Some(42) counter=1",
                        "the old copy still opens"
                    );
                    return;
                }
                assert_eq!(old.body, "none", "the old id no longer works");
                assert!(
                    old.set_cookies().is_empty(),
                    "a read never removes a cookie: a stale response must not log a newer session out"
                );
                assert_count(&h, 1, "").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn destroy_ends_the_session_for_good() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let cookie = login_cookie(server.addr).await;
                let res = http_post(server.addr, "/logout", Some(&cookie)).await;
                assert_eq!(res.body, "bye");
                assert!(res.removes_cookie(), "{:?}", res.set_cookies());
                assert_count(&h, 0, "").await;
                let replay = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(
                    replay.body,
                    if h.keeps_records() {
                        "user=None counter=0"
                    } else {
                        // Documented: destroy removes the browser's cookie; a copy kept
                        // elsewhere opens until its deadline (see the revocation tests).
                        "user=Some(42) counter=0"
                    },
                    "a replayed cookie gets a fresh anonymous session"
                );
                let res = http_post(server.addr, "/inc", Some(&cookie)).await;
                let fresh = res
                    .cookie()
                    .expect("a write after replay starts a new session");
                assert_ne!(fresh, cookie);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn destroy_wins_over_a_request_in_flight() {
                let h = super::$backend();
                // A request that loaded the session before it was destroyed must not
                // bring it back when it saves.
                let layer = plain_layer(&h);
                let gate = Arc::new(tokio::sync::Notify::new());
                let entered = Arc::new(tokio::sync::Notify::new());
                let (g, e) = (gate.clone(), entered.clone());
                let slow = post(move |session: TypedSession<App>| {
                    let (g, e) = (g.clone(), e.clone());
                    async move {
                        e.notify_one();
                        g.notified().await;
                        session.update_counter(|c| *c += 1).expect("no rule");
                        "late write"
                    }
                });
                let server = serve(routes().route("/slow", slow).layer(layer)).await;
                let cookie = login_cookie(server.addr).await;
                let addr = server.addr;
                let c2 = cookie.clone();
                let in_flight = tokio::spawn(async move { http_post(addr, "/slow", Some(&c2)).await });
                entered.notified().await;
                assert_eq!(http_post(addr, "/logout", Some(&cookie)).await.body, "bye");
                gate.notify_one();
                let late = in_flight.await.expect("task");
                if !h.keeps_records() {
                    // Last response wins in the browser: the late write's cookie.
                    assert_eq!(late.status, 200);
                    assert!(late.cookie().is_some() && !late.removes_cookie());
                    return;
                }
                assert_eq!(
                    late.status, 409,
                    "the late write is refused, not silently lost: {}",
                    late.body
                );
                assert!(late.removes_cookie());
                assert_count(&h, 0, "the destroyed session did not come back").await;
                assert_eq!(http_get(addr, "/maybe", Some(&cookie)).await.body, "none");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn idle_timeout_with_a_manual_clock() {
                let h = super::$backend();
                let clock = ManualClock::new();
                let layer = plain_layer(&h)
                    .with_clock(clock.clone())
                    .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
                    .with_absolute_timeout(None);
                let server = serve(app(layer)).await;
                let mut cookie = login_cookie(server.addr).await;
                let first = cookie.clone();
                // Active every 20 minutes for two hours: never idle for 30.
                for _ in 0..6 {
                    clock.advance(Duration::from_secs(20 * 60));
                    let res = http_get(server.addr, "/read", Some(&cookie)).await;
                    assert_eq!(res.body, "user=Some(42) counter=0");
                    assert_eq!(
                        res.set_cookies().is_empty(),
                        h.keeps_records(),
                        "refreshing the idle deadline needs no cookie (cookie mode re-seals)"
                    );
                    follow(&mut cookie, &res);
                }
                if !h.keeps_records() {
                    // The deadline is sealed inside: the first cookie, replayed, is
                    // long dead however its Max-Age reads.
                    assert_eq!(
                        http_get(server.addr, "/read", Some(&first)).await.body,
                        "user=None counter=0"
                    );
                }
                clock.advance(Duration::from_secs(31 * 60));
                let res = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(
                    res.body, "user=None counter=0",
                    "idle for 31 minutes: expired"
                );
                assert!(res.set_cookies().is_empty(), "a read removes no cookie");
                assert_count(&h, 0, "the expired record is deleted").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn absolute_timeout_with_a_manual_clock() {
                let h = super::$backend();
                let clock = ManualClock::new();
                let layer = plain_layer(&h)
                    .with_clock(clock.clone())
                    .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
                    .with_absolute_timeout(Some(Duration::from_secs(2 * 3600)));
                let server = serve(app(layer)).await;
                let mut cookie = login_cookie(server.addr).await;
                for _ in 0..5 {
                    clock.advance(Duration::from_secs(20 * 60));
                    let res = http_post(server.addr, "/inc", Some(&cookie)).await;
                    assert_eq!(res.status, 200);
                    follow(&mut cookie, &res);
                }
                clock.advance(Duration::from_secs(19 * 60));
                assert_eq!(
                    http_get(server.addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=5",
                    "1 h 59 min: alive"
                );
                clock.advance(Duration::from_secs(2 * 60));
                assert_eq!(
                    http_get(server.addr, "/read", Some(&cookie)).await.body,
                    "user=None counter=0",
                    "2 h 01 min: expired although active"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn login_starts_a_new_absolute_lifetime_and_plain_regenerate_keeps_it() {
                let h = super::$backend();
                let clock = ManualClock::new();
                let layer = plain_layer(&h)
                    .with_clock(clock.clone())
                    .with_idle_timeout(None)
                    .with_absolute_timeout(Some(Duration::from_secs(2 * 3600)));
                let regen = post(|s: TypedSession<App>| async move {
                    s.regenerate();
                    "regenerated"
                });
                let server = serve(routes().route("/regen", regen).layer(layer)).await;
                // Anonymous at t0, log in at t0 + 1 h 59 min.
                let anonymous = http_post(server.addr, "/inc", None).await.cookie().unwrap();
                clock.advance(Duration::from_secs(119 * 60));
                let logged_in = http_post(server.addr, "/login", Some(&anonymous))
                    .await
                    .cookie()
                    .unwrap();
                clock.advance(Duration::from_secs(60 * 60));
                assert_eq!(
                    http_get(server.addr, "/read", Some(&logged_in)).await.body,
                    "user=Some(42) counter=1",
                    "2 h 59 min after the first visit, 1 h after login: alive"
                );
                // A plain regenerate keeps the lifetime that started at login.
                let regenerated = http_post(server.addr, "/regen", Some(&logged_in))
                    .await
                    .cookie()
                    .unwrap();
                clock.advance(Duration::from_secs(61 * 60));
                assert_eq!(
                    http_get(server.addr, "/read", Some(&regenerated))
                        .await
                        .body,
                    "user=None counter=0",
                    "2 h 01 min after login: expired despite the regenerate"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rolling_and_remember_me_send_max_age() {
                let h = super::$backend();
                let layer = plain_layer(&h)
                    .with_rolling(true)
                    .with_max_age(Some(Duration::from_secs(600)));
                let server = serve(app(layer)).await;
                let cookie = login_cookie(server.addr).await;
                let res = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(
                    res.cookie().as_deref(),
                    Some(cookie.as_str()),
                    "rolling re-sends the same id"
                );
                assert_eq!(res.cookies()[0].max_age(), Some(cookie::time::Duration::seconds(600)));
                let mut cookie = cookie;
                let res = http_post(server.addr, "/remember", Some(&cookie)).await;
                assert_eq!(
                    res.cookies()[0].max_age(),
                    Some(cookie::time::Duration::seconds(2_592_000)),
                    "{:?}",
                    res.set_cookies()
                );
                follow(&mut cookie, &res);
                let res = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(
                    res.cookies()[0].max_age(),
                    Some(cookie::time::Duration::seconds(2_592_000)),
                    "the per-session lifetime is kept"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writes_to_different_fields_all_survive() {
                let h = super::$backend();
                let wide = Router::new()
                    .route(
                        "/start",
                        post(|s: TypedSession<Wide>| async move {
                            s.update(|w| w.same = 0).expect("no rule");
                            "ok"
                        }),
                    )
                    .route(
                        "/bump/{n}",
                        post(|s: TypedSession<Wide>, Path(n): Path<usize>| async move {
                            s.update(|w| bump(w, n)).expect("no rule");
                            "ok"
                        }),
                    )
                    .route(
                        "/same",
                        post(|s: TypedSession<Wide>| async move {
                            s.update(|w| w.same += 1).expect("no rule");
                            "ok"
                        }),
                    )
                    .route(
                        "/values",
                        get(|s: SessionView<Wide>| async move {
                            let v = s.read(values);
                            format!(
                                "{} {}",
                                v.iter()
                                    .map(|x| x.to_string())
                                    .collect::<Vec<_>>()
                                    .join(","),
                                s.read(|w| w.same)
                            )
                        }),
                    );
                let server = serve(wide.layer(plain_layer(&h))).await;
                let start = http_post(server.addr, "/start", None).await;
                // `same` was 0 and stays 0: nothing changed, so nothing was stored...
                assert!(start.cookie().is_none());
                let start = http_post(server.addr, "/same", None).await;
                let cookie = start.cookie().expect("session created");
                let addr = server.addr;

                let mut last = None;
                for res in post_concurrently(addr, &cookie, (0..100).map(|n| format!("/bump/{n}"))).await {
                    assert_eq!(res.status, 200);
                    last = res.cookie();
                }
                if !h.keeps_records() {
                    // Documented: each response carries its own request's session; the
                    // browser keeps whichever arrives last, with one field bumped.
                    let body = http_get(addr, "/values", last.as_deref()).await.body;
                    let (fields, _) = body.split_once(' ').expect("two parts");
                    assert_eq!(
                        fields.split(',').filter(|v| *v == "1").count(),
                        1,
                        "{fields}"
                    );
                    return;
                }
                let body = http_get(addr, "/values", Some(&cookie)).await.body;
                let (fields, _) = body.split_once(' ').expect("two parts");
                assert!(
                    fields.split(',').all(|v| v == "1"),
                    "every one of the 100 fields kept its increment: {fields}"
                );

                // The same field from 100 requests at once: every request succeeds and
                // the field ends between 1 and 100 (+1 from /same above): concurrent
                // writes of one field are last-writer-wins, as documented.
                let ok = post_concurrently(addr, &cookie, (0..100).map(|_| "/same".to_owned()))
                    .await
                    .iter()
                    .filter(|res| res.status == 200)
                    .count();
                assert_eq!(ok, 100);
                let body = http_get(addr, "/values", Some(&cookie)).await.body;
                let same: u32 = body
                    .rsplit(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("number");
                assert!((2..=101).contains(&same), "same = {same}");
                println!(
                    "100 concurrent increments of one field ended at {} (started at 1)",
                    same
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_cookies_get_a_fresh_session_and_no_panic() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let cookie = login_cookie(server.addr).await;
                let value = cookie.trim_start_matches("session=").to_owned();
                let mut tampered = value.clone().into_bytes();
                tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(tampered).unwrap();
                let oversized = "A".repeat(5000);
                let cases: Vec<String> = vec![
                    format!("session={tampered}"),
                    format!("session={}", &value[..10]),
                    format!("session={oversized}"),
                    format!("session={value}; session={tampered}"),
                    "session=".to_owned(),
                    "session=%00%ff".to_owned(),
                    "session=\"quoted\"".to_owned(),
                    format!("session={value}.extra"),
                    "garbage without equals".to_owned(),
                ];
                for case in &cases {
                    let res = request(server.addr, "GET", "/read", &[case.as_str()]).await;
                    assert_eq!(res.status, 200, "{case}");
                    assert_eq!(res.body, "user=None counter=0", "{case}");
                }
                // The same cookie twice in two headers (same value) is still fine.
                let res = request(server.addr, "GET", "/read", &[&cookie, &cookie]).await;
                assert_eq!(res.body, "user=Some(42) counter=0");
                // Two different values in two headers: refused.
                let other = login_cookie(server.addr).await;
                let res = request(server.addr, "GET", "/read", &[&cookie, &other]).await;
                assert_eq!(res.body, "user=None counter=0");
                assert_count(&h, 2, "bad cookies created nothing").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn flash_messages_across_requests() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let mut cookie = login_cookie(server.addr).await;
                let res = http_post(server.addr, "/flash", Some(&cookie)).await;
                follow(&mut cookie, &res);
                let res = http_get(server.addr, "/flash", Some(&cookie)).await;
                assert_eq!(res.body, "saved");
                follow(&mut cookie, &res);
                assert_eq!(
                    http_get(server.addr, "/flash", Some(&cookie)).await.body,
                    "",
                    "read once"
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reject_policy_answers_400() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let cookie = login_cookie(server.addr).await;
                // A record whose readonly user id fails its rule, straight into the store.
                if !h
                    .rewrite(&cookie, |data| {
                        data.replace("\"user_id\":42", "\"user_id\":666")
                    })
                    .await
                {
                    return;
                }
                let res = http_get(server.addr, "/read", Some(&cookie)).await;
                assert_eq!(res.status, 400);
                assert_eq!(res.body, "invalid session");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn signed_cookies_and_key_rotation() {
                let h = super::$backend();
                let old =
                    SigningKey::new(b"an old secret (2019-04) that is long enough to use".to_vec()).unwrap();
                let new =
                    SigningKey::new(b"a new secret (2026-11) that is long enough to use".to_vec()).unwrap();
                let server_old = serve(app(plain_layer(&h).with_signing_keys(old.clone(), []))).await;
                let cookie = login_cookie(server_old.addr).await;
                if h.keeps_records() {
                    assert_eq!(
                        cookie.trim_start_matches("session=").len(),
                        22 + 1 + 22,
                        "id.tag"
                    );
                }

                let server_new = serve(app(
                    plain_layer(&h).with_signing_keys(new.clone(), [old.clone()])
                ))
                .await;
                let res = http_get(server_new.addr, "/read", Some(&cookie)).await;
                assert_eq!(
                    res.body, "user=Some(42) counter=0",
                    "old key still verifies"
                );
                let resigned = res.cookie().expect("re-signed with the new key");
                assert_ne!(resigned, cookie);
                if h.keeps_records() {
                    assert_eq!(resigned[..30], cookie[..30], "same id");
                }
                let res = http_get(server_new.addr, "/read", Some(&resigned)).await;
                assert!(res.set_cookies().is_empty(), "re-keyed once");

                let server_only_new = serve(app(plain_layer(&h).with_signing_keys(new, []))).await;
                assert_eq!(
                    http_get(server_only_new.addr, "/read", Some(&resigned))
                        .await
                        .body,
                    "user=Some(42) counter=0"
                );
                assert_eq!(
                    http_get(server_only_new.addr, "/read", Some(&cookie))
                        .await
                        .body,
                    "user=None counter=0",
                    "retired key"
                );
                let mut forged = resigned.clone();
                forged.pop();
                forged.push(if resigned.ends_with('A') { 'B' } else { 'A' });
                assert_eq!(
                    http_get(server_only_new.addr, "/read", Some(&forged))
                        .await
                        .body,
                    "user=None counter=0",
                    "bad tag"
                );
            }

            /// Finding: a request that loaded the session before a logout brought the
            /// user back under a fresh id when it regenerated. Now it gets 409 and the
            /// session stays ended, for every form of regenerate.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn logout_during_an_in_flight_regenerate_ends_it() {
                let h = super::$backend();
                regenerate_after_the_end(&h, true, |addr, cookie| async move {
                    assert_eq!(http_post(addr, "/logout", Some(&cookie)).await.body, "bye");
                    true
                })
                .await;
            }

            /// The same with the record deleted through the store (an admin ending a session).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn store_delete_during_an_in_flight_regenerate_ends_it() {
                let h = super::$backend();
                let store = h.clone();
                regenerate_after_the_end(&h, false, move |_, cookie| {
                    let store = store.clone();
                    async move { store.delete(&cookie).await }
                })
                .await;
            }

            /// A login whose body is drip-fed across a logout: the session loads with
            /// the request head, the logout lands, then the body arrives and the
            /// handler regenerates. The session must stay ended.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slow_request_body_across_a_logout() {
                let h = super::$backend();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};

                let loaded = Arc::new(tokio::sync::Notify::new());
                let relogin = post(
                    |s: TypedSession<App>, _: Extracted, body: String| async move {
                        s.regenerate_with(|a| a.user_id = Some(9)).unwrap();
                        body
                    },
                );
                let server = serve(
                    routes()
                        .route("/relogin", relogin)
                        .layer(plain_layer(&h))
                        .layer(axum::Extension(loaded.clone())),
                )
                .await;
                let cookie = login_cookie(server.addr).await;
                let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                let head = format!(
                    "POST /relogin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Length: 5\r\n\r\nhe"
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                loaded.notified().await;
                assert_eq!(
                    http_post(server.addr, "/logout", Some(&cookie)).await.body,
                    "bye"
                );
                stream.write_all(b"llo").await.unwrap();
                let mut raw = Vec::new();
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
                    .await
                    .unwrap()
                    .unwrap();
                let res = $crate::common::parse(&raw);
                assert_eq!(
                    res.status,
                    if h.keeps_records() { 409 } else { 200 },
                    "{}",
                    res.body
                );
                assert_count(&h, 0, "the logged-out session stays gone").await;
            }

            /// A handler that saves explicitly, sees the session ended, ignores it:
            /// the layer's own commit must not recreate the old data under a new id.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn explicit_save_after_the_session_ended_resurrects_nothing() {
                let h = super::$backend();
                let gate = Arc::new(tokio::sync::Notify::new());
                let entered = Arc::new(tokio::sync::Notify::new());
                let (g, e) = (gate.clone(), entered.clone());
                let stubborn = post(move |s: TypedSession<App>| {
                    let (g, e) = (g.clone(), e.clone());
                    async move {
                        e.notify_one();
                        g.notified().await;
                        s.update_counter(|c| *c += 1).unwrap();
                        let first = s.save().await;
                        format!("{}", first.is_err())
                    }
                });
                let server = serve(routes().route("/stubborn", stubborn).layer(plain_layer(&h))).await;
                let cookie = login_cookie(server.addr).await;
                let (addr, c2) = (server.addr, cookie.clone());
                let in_flight = tokio::spawn(async move { http_post(addr, "/stubborn", Some(&c2)).await });
                entered.notified().await;
                http_post(addr, "/logout", Some(&cookie)).await;
                gate.notify_one();
                let late = in_flight.await.unwrap();
                if !h.keeps_records() {
                    assert_eq!(late.body, "false", "cookie mode: the save re-seals");
                    return;
                }
                assert_eq!(late.body, "true", "the explicit save failed");
                assert!(
                    late.cookies().iter().all(|c| c.max_age() == Some(cookie::time::Duration::ZERO)),
                    "{:?}",
                    late.set_cookies()
                );
                assert_count(&h, 0, "nothing recreated").await;
            }

            /// Finding: a handler's `Cache-Control: public` survived on a response
            /// carrying the session cookie.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shared_caches_never_store_a_session_cookie() {
                let h = super::$backend();
                let public = |body: &'static str| {
                    (
                        [(axum::http::header::CACHE_CONTROL, "public, max-age=3600")],
                        body,
                    )
                };
                let cached_login = post(move |s: TypedSession<App>| async move {
                    s.regenerate_with(|a| a.user_id = Some(1)).unwrap();
                    public("in")
                });
                let cached_read = get(move |s: SessionView<App>| async move {
                    let _ = s.counter();
                    public("read")
                });
                let server = serve(
                    Router::new()
                        .route("/login", cached_login)
                        .route("/read", cached_read)
                        .layer(plain_layer(&h)),
                )
                .await;
                let res = http_post(server.addr, "/login", None).await;
                assert!(res.cookie().is_some());
                assert_eq!(res.header("cache-control"), Some("no-store"));
                let res = http_get(server.addr, "/read", res.cookie().as_deref()).await;
                assert!(res.set_cookies().is_empty());
                assert_eq!(
                    res.header("cache-control"),
                    Some("public, max-age=3600"),
                    "without a Set-Cookie the handler's choice stands"
                );
            }

            /// Finding: `set_expiry(Some(Duration::MAX))` with both timeouts off panicked.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn huge_remember_me_is_capped_not_a_panic() {
                let h = super::$backend();
                let forever = post(|s: TypedSession<App>| async move {
                    s.set_expiry(Some(Duration::MAX));
                    s.update_counter(|c| *c += 1).unwrap();
                    "forever"
                });
                let layer = plain_layer(&h)
                    .with_idle_timeout(None)
                    .with_absolute_timeout(None);
                let server = serve(routes().route("/forever", forever).layer(layer)).await;
                let res = http_post(server.addr, "/forever", None).await;
                assert_eq!(res.status, 200, "{}", res.body);
                let set = &res.cookies()[0];
                assert_eq!(
                    set.max_age(),
                    Some(cookie::time::Duration::seconds(34_560_000)),
                    "400 days at most: {set}"
                );
                let cookie = res.cookie().unwrap();
                assert_eq!(
                    http_get(server.addr, "/read", Some(&cookie)).await.body,
                    "user=None counter=1"
                );
            }

            /// Finding: sessions could grow without bound. A write past the limit is
            /// refused (413, or `Error::TooLarge` to a handler that saves), and the
            /// stored session keeps its last good value.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oversized_sessions_are_refused_with_413() {
                let h = super::$backend();
                let big = post(|s: TypedSession<App>| async move {
                    s.notices().push("x".repeat(4000));
                    "pushed"
                });
                let big_save = post(|s: TypedSession<App>| async move {
                    s.notices().push("y".repeat(4000));
                    match s.save().await {
                        Err(typed_session::Error::TooLarge { size, limit }) => format!("{size} > {limit}"),
                        other => format!("{other:?}"),
                    }
                });
                let layer = plain_layer(&h).with_max_session_bytes(2048);
                let server = serve(
                    routes()
                        .route("/big", big)
                        .route("/big-save", big_save)
                        .layer(layer),
                )
                .await;
                let mut cookie = login_cookie(server.addr).await;
                let res = http_post(server.addr, "/inc", Some(&cookie)).await;
                follow(&mut cookie, &res);
                let res = http_post(server.addr, "/big", Some(&cookie)).await;
                assert_eq!(res.status, 413);
                assert_eq!(res.body, "session too large");
                let res = http_post(server.addr, "/big-save", Some(&cookie)).await;
                assert!(res.body.ends_with("> 2048"), "{}", res.body);
                assert_eq!(
                    http_get(server.addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=1",
                    "the stored session is unchanged"
                );
                assert_eq!(
                    http_get(server.addr, "/flash", Some(&cookie)).await.body,
                    ""
                );
                // A new session that is too large is not created at all.
                let res = http_post(server.addr, "/big", None).await;
                assert_eq!(res.status, 413);
                assert!(res.set_cookies().is_empty());
                assert_count(&h, 1, "only the logged-in session").await;
            }

            /// Finding: a cookie planted by a sibling subdomain shadowed the real one.
            /// With `Secure` (the default) the cookie is `__Host-` prefixed, which
            /// browsers accept only from this exact host over HTTPS; an unprefixed
            /// cookie of the bare name is someone else's and is ignored.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn host_prefix_is_the_default_with_secure() {
                let h = super::$backend();
                let server = serve(app(h.layer())).await;
                let res = http_post(server.addr, "/login", None).await;
                let cookie = res.cookie().unwrap();
                assert!(cookie.starts_with("__Host-session="), "{cookie}");
                let planted = cookie.replacen("__Host-session=", "session=", 1);
                let both = format!("{planted}; {cookie}");
                assert_eq!(
                    request(server.addr, "GET", "/read", &[&both]).await.body,
                    "user=Some(42) counter=0",
                    "the sibling's cookie does not shadow ours"
                );
                assert_eq!(
                    http_get(server.addr, "/read", Some(&planted)).await.body,
                    "user=None counter=0"
                );
                let plain = serve(app(h.layer().with_secure(false))).await;
                let res = http_post(plain.addr, "/login", None).await;
                assert!(
                    res.cookie().unwrap().starts_with("session="),
                    "no prefix without Secure"
                );
            }

            /// Finding: two overlapping requests lost the earlier one's flash messages
            /// (last writer won the flash field). Now a conflict merges flash fields
            /// message by message: pushes are appended, reads remove what they showed.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_flash_messages_are_neither_lost_nor_repeated() {
                let h = super::$backend();
                if !h.keeps_records() {
                    // Cookie mode: racing requests are last-response-wins (documented).
                    return;
                }
                let push = post(|s: TypedSession<App>, Path(n): Path<u32>| async move {
                    s.notices().push(format!("m{n}"));
                    "pushed"
                });
                let server = serve(routes().route("/push/{n}", push).layer(plain_layer(&h))).await;
                let addr = server.addr;
                let cookie = login_cookie(addr).await;
                for res in post_concurrently(addr, &cookie, (0..40).map(|n| format!("/push/{n}"))).await {
                    assert_eq!(res.status, 200);
                }
                let shown = http_get(addr, "/flash", Some(&cookie)).await.body;
                let mut got: Vec<&str> = shown.split(',').collect();
                got.sort_unstable();
                let mut want: Vec<String> = (0..40).map(|n| format!("m{n}")).collect();
                want.sort_unstable();
                assert_eq!(got, want, "every pushed message, once");
                assert_eq!(http_get(addr, "/flash", Some(&cookie)).await.body, "");

                // A read racing pushes: what it showed is gone, what they pushed stays.
                http_post(addr, "/push/100", Some(&cookie)).await;
                let reader = {
                    let cookie = cookie.clone();
                    tokio::spawn(async move { http_get(addr, "/flash", Some(&cookie)).await.body })
                };
                for res in post_concurrently(addr, &cookie, (0..20).map(|n| format!("/push/{n}"))).await {
                    assert_eq!(res.status, 200);
                }
                let first = reader.await.unwrap();
                let rest = http_get(addr, "/flash", Some(&cookie)).await.body;
                let mut all: Vec<&str> = first
                    .split(',')
                    .chain(rest.split(','))
                    .filter(|m| !m.is_empty())
                    .collect();
                all.sort_unstable();
                let mut want: Vec<String> = (0..20)
                    .map(|n| format!("m{n}"))
                    .chain(["m100".to_owned()])
                    .collect();
                want.sort_unstable();
                assert_eq!(all, want, "shown once in total: {first:?} then {rest:?}");
            }

            /// Finding: a handler that changed the session and then failed still saved
            /// the change. The commit policy: a 5xx commits nothing (except a destroy,
            /// and what an explicit save already wrote); 2xx-4xx commit; `commit_on`
            /// changes it.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_requests_commit_nothing_half_done() {
                let h = super::$backend();
                use axum::http::StatusCode;
                let routes = || {
                    routes()
                        .route(
                            "/fail",
                            post(|s: TypedSession<App>| async move {
                                s.update_counter(|c| *c += 1).unwrap();
                                s.notices().push("half done".into());
                                StatusCode::INTERNAL_SERVER_ERROR
                            }),
                        )
                        .route(
                            "/reject",
                            post(|s: TypedSession<App>| async move {
                                s.update_counter(|c| *c += 10).unwrap();
                                s.notices().push("fix the form".into());
                                StatusCode::UNPROCESSABLE_ENTITY
                            }),
                        )
                        .route(
                            "/drain-fail",
                            get(|s: TypedSession<App>| async move {
                                let shown = s.notices().drain().join(",");
                                (StatusCode::BAD_GATEWAY, shown)
                            }),
                        )
                        .route(
                            "/logout-fail",
                            post(|s: TypedSession<App>| async move {
                                s.destroy();
                                StatusCode::INTERNAL_SERVER_ERROR
                            }),
                        )
                        .route(
                            "/save-then-fail",
                            post(|s: TypedSession<App>| async move {
                                s.update_counter(|c| *c += 100).unwrap();
                                s.save().await.unwrap();
                                s.update_counter(|c| *c += 1000).unwrap();
                                StatusCode::INTERNAL_SERVER_ERROR
                            }),
                        )
                };
                let server = serve(routes().layer(plain_layer(&h))).await;
                let addr = server.addr;

                // A new session that fails: nothing created, no cookie.
                let res = http_post(addr, "/fail", None).await;
                assert_eq!(res.status, 500);
                assert!(res.set_cookies().is_empty(), "{:?}", res.set_cookies());
                assert_count(&h, 0, "a failed request creates nothing").await;

                let mut cookie = login_cookie(addr).await;
                let res = http_post(addr, "/fail", Some(&cookie)).await;
                assert_eq!(res.status, 500);
                assert!(res.set_cookies().is_empty());
                assert_eq!(
                    http_get(addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=0"
                );

                // A 4xx commits: the flash explains the error on the next page.
                let res = http_post(addr, "/reject", Some(&cookie)).await;
                assert_eq!(res.status, 422);
                follow(&mut cookie, &res);
                assert_eq!(
                    http_get(addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=10"
                );

                // A read that fails shows the messages but does not consume them.
                let res = http_get(addr, "/drain-fail", Some(&cookie)).await;
                assert_eq!((res.status, res.body.as_str()), (502, "fix the form"));
                let res = http_get(addr, "/flash", Some(&cookie)).await;
                assert_eq!(res.body, "fix the form", "shown again after the failure");
                follow(&mut cookie, &res);

                // What an explicit save wrote stays; what came after it does not.
                let res = http_post(addr, "/save-then-fail", Some(&cookie)).await;
                assert_eq!(res.status, 500);
                follow(&mut cookie, &res);
                assert_eq!(
                    http_get(addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=110"
                );

                // A destroy happens whatever the status.
                let res = http_post(addr, "/logout-fail", Some(&cookie)).await;
                assert_eq!(res.status, 500);
                assert!(res.removes_cookie(), "{:?}", res.set_cookies());
                if h.keeps_records() {
                    assert_eq!(
                        http_get(addr, "/read", Some(&cookie)).await.body,
                        "user=None counter=0"
                    );
                }

                // commit_on: only successes commit.
                let strict = serve(routes().layer(plain_layer(&h).commit_on(|s| s.is_success()))).await;
                let cookie = login_cookie(strict.addr).await;
                let res = http_post(strict.addr, "/reject", Some(&cookie)).await;
                assert_eq!(res.status, 422);
                assert!(res.set_cookies().is_empty());
                assert_eq!(
                    http_get(strict.addr, "/read", Some(&cookie)).await.body,
                    "user=Some(42) counter=0"
                );
            }

            /// Hostile cookies and hostile records: each request gets a fresh
            /// anonymous session or a typed 4xx, and the server keeps serving.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hostile_cookies_and_records_get_nothing() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let addr = server.addr;
                let cookie = login_cookie(addr).await;
                let value = cookie.trim_start_matches("session=").to_owned();
                let many: String = (0..500).map(|i| format!("c{i}=v{i}; ")).collect();
                let cases: Vec<(&str, String)> = vec![
                    (
                        "wrong length",
                        format!("session={}", &value[..value.len() - 1]),
                    ),
                    ("too long", format!("session={value}A")),
                    (
                        "bad alphabet",
                        format!(
                            "session={}",
                            value.replace(|c: char| c.is_ascii_alphabetic(), "+")
                        ),
                    ),
                    ("control byte", format!("session={}\u{1}", &value[..10])),
                    ("64 KiB value", format!("session={}", "A".repeat(64 * 1024))),
                    ("500 other cookies first", format!("{many}session={value}")),
                    (
                        "ours twice, planted first",
                        format!("session=AAAAAAAAAAAAAAAAAAAAAA; session={value}"),
                    ),
                    (
                        "ours twice, planted last",
                        format!("session={value}; session=AAAAAAAAAAAAAAAAAAAAAA"),
                    ),
                    (
                        "unknown well-formed id",
                        "session=eyN3Jqjlj5CDtQKzauc8mA".to_owned(),
                    ),
                    (
                        "__Host- without its guarantees",
                        format!("__Host-session={value}"),
                    ),
                ];
                for (why, header) in &cases {
                    let res = request(addr, "GET", "/read", &[header.as_str()]).await;
                    if why == &"control byte" && res.status == 400 {
                        continue; // refused by the HTTP parser before any session code
                    }
                    assert_eq!(res.status, 200, "{why}");
                    assert_eq!(res.body, "user=None counter=0", "{why}");
                    assert!(res.set_cookies().is_empty(), "{why}: a read sets nothing");
                }
                // NUL and CR in a header: the HTTP parser refuses the request itself.
                let nul = request(addr, "GET", "/read", &["session=\0abc"]).await;
                assert!(nul.status == 400 || nul.status == 200, "{}", nul.status);
                // The 500-cookie header: ours is past the 256 looked at, so unseen.
                assert_eq!(
                    request(addr, "GET", "/read", &[&format!("session={value}; {many}")])
                        .await
                        .body,
                    "user=Some(42) counter=0",
                    "ours first is found"
                );

                // Records an attacker wrote into the store: 10,000 levels deep, 100 MiB.
                if h.keeps_records() {
                    let deep = format!(
                        "{{\"v\":1,\"c\":1,\"t\":1,\"d\":{{\"junk\":{}{}}}}}",
                        "[".repeat(10_000),
                        "]".repeat(10_000)
                    );
                    for (why, record) in [
                        ("10,000 levels deep", deep.into_bytes()),
                        ("100 MiB", {
                            let mut big = b"{\"v\":1,\"c\":1,\"t\":1,\"d\":{\"junk\":\"".to_vec();
                            big.resize(big.len() + 100 * 1024 * 1024, b'x');
                            big.extend_from_slice(b"\"}}");
                            big
                        }),
                    ] {
                        let cookie = login_cookie(addr).await;
                        let planted = h.plant(&cookie, record).await;
                        assert!(planted, "{why}: the record could not be planted in the store");
                        let res = http_get(addr, "/read", Some(&cookie)).await;
                        assert_eq!(res.status, 200, "{why} (planted: {planted})");
                        assert_eq!(
                            res.body, "user=None counter=0",
                            "{why} (planted: {planted})"
                        );
                    }
                }
                assert_eq!(
                    http_get(addr, "/healthz", None).await.body,
                    "ok",
                    "still serving"
                );
            }

            /// Session fixation: an id the client made up is never adopted; a write
            /// with it starts a session under a new id.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn attacker_chosen_ids_are_never_adopted() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let addr = server.addr;
                for chosen in [
                    "session=eyN3Jqjlj5CDtQKzauc8mA",
                    "session=AAAAAAAAAAAAAAAAAAAAAA",
                ] {
                    let res = http_post(addr, "/inc", Some(chosen)).await;
                    assert_eq!(res.body, "counter=1");
                    let issued = res.cookie().expect("a new session");
                    assert_ne!(issued, chosen, "the chosen id is not adopted");
                    assert_eq!(
                        http_get(addr, "/read", Some(chosen)).await.body,
                        "user=None counter=0"
                    );
                    let res = http_post(addr, "/login", Some(chosen)).await;
                    assert_ne!(res.cookie().as_deref(), Some(chosen));
                }
            }

            /// 1,000 sessions created at once: 1,000 distinct cookies, each its own session.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_thousand_concurrent_creates() {
                let h = super::$backend();
                let server = serve(app(plain_layer(&h))).await;
                let addr = server.addr;
                let mut cookies = std::collections::HashSet::new();
                for batch in 0..4 {
                    let tasks: Vec<_> = (0..250)
                        .map(|_| tokio::spawn(async move { http_post(addr, "/inc", None).await }))
                        .collect();
                    for t in tasks {
                        let res = t.await.unwrap();
                        assert_eq!(
                            (res.status, res.body.as_str()),
                            (200, "counter=1"),
                            "batch {batch}"
                        );
                        assert!(cookies.insert(res.cookie().unwrap()), "a duplicate cookie");
                    }
                }
                assert_eq!(cookies.len(), 1000);
                assert_count(&h, 1000, "one record per create").await;
            }

            /// Rolling renewal under concurrent requests: every response re-sends a
            /// cookie that opens the session, none removes it.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rolling_renewal_under_concurrent_requests() {
                let h = super::$backend();
                let layer = plain_layer(&h)
                    .with_rolling(true)
                    .with_max_age(Some(Duration::from_secs(600)));
                let server = serve(app(layer)).await;
                let addr = server.addr;
                let cookie = login_cookie(addr).await;
                let tasks: Vec<_> = (0..50)
                    .map(|i| {
                        let cookie = cookie.clone();
                        tokio::spawn(async move {
                            if i % 5 == 0 {
                                http_post(addr, "/inc", Some(&cookie)).await
                            } else {
                                http_get(addr, "/read", Some(&cookie)).await
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let res = t.await.unwrap();
                    assert_eq!(res.status, 200, "{}", res.body);
                    assert!(!res.removes_cookie());
                    let renewed = res.cookie().expect("rolling re-sends the cookie");
                    assert_eq!(res.cookies()[0].max_age(), Some(cookie::time::Duration::seconds(600)));
                    let body = http_get(addr, "/read", Some(&renewed)).await.body;
                    assert!(body.starts_with("user=Some(42)"), "{body}");
                }
            }
        }
    };
}

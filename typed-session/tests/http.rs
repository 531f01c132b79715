//! The runtime over real HTTP: axum on 127.0.0.1, a raw HTTP/1.1 client,
//! the memory store, a manual clock for timeouts.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use common::{http_get, http_post, request, serve};
use typed_session::clock::ManualClock;
use typed_session::store::{MemoryStore, Record, SaveOutcome, SessionStore};
use typed_session::{
    Flash, SameSite, SessionId, SessionKey, SessionLayer, SessionSchema, SessionView, SigningKey,
    StoreError, TypedSession,
};

fn not_banned(user: &Option<u64>) -> Result<(), String> {
    if *user == Some(666) {
        Err("banned".into())
    } else {
        Ok(())
    }
}

#[derive(SessionSchema)]
struct App {
    #[session(readonly, validate = not_banned, on_invalid = "reject")]
    user_id: Option<u64>,
    counter: u64,
    #[session(flash)]
    notices: Flash<String>,
}

async fn login(session: TypedSession<App>) -> &'static str {
    session
        .regenerate_with(|s| s.user_id = Some(42))
        .expect("valid");
    "ok"
}

async fn read(view: SessionView<App>) -> String {
    format!("user={:?} counter={}", view.user_id(), view.counter())
}

async fn maybe(session: Option<TypedSession<App>>) -> &'static str {
    if session.is_some() { "some" } else { "none" }
}

async fn inc(session: TypedSession<App>) -> String {
    let n = session
        .update_counter(|c| {
            *c += 1;
            *c
        })
        .expect("no rule");
    format!("counter={n}")
}

async fn logout(session: TypedSession<App>) -> &'static str {
    session.destroy();
    "bye"
}

async fn flash_push(session: TypedSession<App>) -> &'static str {
    session.notices().push("saved".into());
    "pushed"
}

async fn flash_read(session: TypedSession<App>) -> String {
    session.notices().drain().join(",")
}

async fn extract_only(_session: TypedSession<App>) -> &'static str {
    "nothing written"
}

async fn remember(session: TypedSession<App>) -> &'static str {
    session.set_expiry(Some(Duration::from_secs(30 * 24 * 3600)));
    "remembered"
}

fn routes() -> Router {
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

fn plain_layer(store: &MemoryStore) -> SessionLayer {
    SessionLayer::new(store.clone()).with_secure(false)
}

fn app(layer: SessionLayer) -> Router {
    routes()
        .layer(layer)
        .route("/healthz", get(|| async { "ok" }))
}

async fn login_cookie(addr: std::net::SocketAddr) -> String {
    let res = http_post(addr, "/login", None).await;
    assert_eq!(res.status, 200);
    res.cookie().expect("login sets a cookie")
}

#[tokio::test]
async fn default_cookie_attributes() {
    let store = MemoryStore::new();
    let server = serve(app(SessionLayer::new(store.clone()))).await;
    let res = http_post(server.addr, "/login", None).await;
    let set = res.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    let c = set[0];
    assert!(c.starts_with("session="), "{c}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(
        !c.contains("Max-Age"),
        "browser-session cookie by default: {c}"
    );
    assert!(!c.contains("Domain"), "{c}");
    let value = res.cookie().unwrap();
    let id = value.trim_start_matches("session=");
    assert_eq!(id.len(), 22, "128-bit id, base64url");
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert_eq!(res.header("vary"), Some("cookie"));
}

#[tokio::test]
async fn configured_cookie_attributes() {
    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone())
        .with_cookie_name("shop")
        .with_same_site(SameSite::Strict)
        .with_domain("example.test")
        .with_path("/app")
        .with_max_age(Some(Duration::from_secs(3600)))
        .with_http_only(false);
    let server = serve(Router::new().nest("/app", routes()).layer(layer)).await;
    let res = http_post(server.addr, "/app/login", None).await;
    let c = res.set_cookies()[0].to_owned();
    assert!(c.starts_with("shop="), "{c}");
    for attr in [
        "Secure",
        "SameSite=Strict",
        "Path=/app",
        "Domain=example.test",
        "Max-Age=3600",
    ] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("HttpOnly"), "{c}");

    let host = SessionLayer::new(MemoryStore::new())
        .with_host_prefix(true)
        .with_domain("ignored.test")
        .with_path("/ignored");
    let server = serve(app(host)).await;
    let res = http_post(server.addr, "/login", None).await;
    let c = res.set_cookies()[0].to_owned();
    assert!(c.starts_with("__Host-session="), "{c}");
    assert!(
        c.contains("Secure") && c.contains("Path=/") && !c.contains("Domain"),
        "{c}"
    );
    let cookie = res.cookie().unwrap();
    let res = http_get(server.addr, "/read", Some(&cookie)).await;
    assert_eq!(res.body, "user=Some(42) counter=0");
}

#[tokio::test]
async fn reads_set_no_cookie_and_write_nothing() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
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
    // A write sends no new cookie either: the id did not change.
    let res = http_post(server.addr, "/inc", Some(&cookie)).await;
    assert_eq!(res.body, "counter=1");
    assert!(res.set_cookies().is_empty());
    assert_eq!(
        http_get(server.addr, "/read", Some(&cookie)).await.body,
        "user=Some(42) counter=1"
    );
}

#[tokio::test]
async fn cookieless_requests_create_nothing() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
    for i in 0..1000 {
        let res = match i % 3 {
            0 => http_get(server.addr, "/read", None).await,
            1 => http_get(server.addr, "/maybe", None).await,
            _ => http_post(server.addr, "/extract", None).await,
        };
        assert_eq!(res.status, 200);
        assert!(res.set_cookies().is_empty(), "request {i} set a cookie");
    }
    assert_eq!(store.len(), 0, "no record after 1,000 cookie-less requests");
}

#[tokio::test]
async fn regenerate_changes_the_id_and_kills_the_old_one() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
    let first = login_cookie(server.addr).await;
    http_post(server.addr, "/inc", Some(&first)).await;
    let res = http_post(server.addr, "/login", Some(&first)).await;
    let second = res.cookie().expect("regenerate sends the new id");
    assert_ne!(first, second);
    assert_eq!(
        http_get(server.addr, "/read", Some(&second)).await.body,
        "user=Some(42) counter=1",
        "data kept"
    );
    let old = http_get(server.addr, "/maybe", Some(&first)).await;
    assert_eq!(old.body, "none", "the old id no longer works");
    assert!(old.removes_cookie(), "a dead cookie is removed");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn destroy_ends_the_session_for_good() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
    let cookie = login_cookie(server.addr).await;
    let res = http_post(server.addr, "/logout", Some(&cookie)).await;
    assert_eq!(res.body, "bye");
    assert!(res.removes_cookie(), "{:?}", res.set_cookies());
    assert_eq!(store.len(), 0);
    let replay = http_get(server.addr, "/read", Some(&cookie)).await;
    assert_eq!(
        replay.body, "user=None counter=0",
        "a replayed cookie gets a fresh anonymous session"
    );
    let res = http_post(server.addr, "/inc", Some(&cookie)).await;
    let fresh = res
        .cookie()
        .expect("a write after replay starts a new session");
    assert_ne!(fresh, cookie);
}

#[tokio::test]
async fn destroy_wins_over_a_request_in_flight() {
    // A request that loaded the session before it was destroyed must not
    // bring it back when it saves.
    let store = MemoryStore::new();
    let layer = plain_layer(&store);
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
    assert_eq!(
        late.status, 409,
        "the late write is refused, not silently lost: {}",
        late.body
    );
    assert!(late.removes_cookie());
    assert_eq!(store.len(), 0, "the destroyed session did not come back");
    assert_eq!(http_get(addr, "/maybe", Some(&cookie)).await.body, "none");
}

#[tokio::test]
async fn idle_timeout_with_a_manual_clock() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let layer = plain_layer(&store)
        .with_clock(clock.clone())
        .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
        .with_absolute_timeout(None);
    let server = serve(app(layer)).await;
    let cookie = login_cookie(server.addr).await;
    // Active every 20 minutes for two hours: never idle for 30.
    for _ in 0..6 {
        clock.advance(Duration::from_secs(20 * 60));
        let res = http_get(server.addr, "/read", Some(&cookie)).await;
        assert_eq!(res.body, "user=Some(42) counter=0");
        assert!(
            res.set_cookies().is_empty(),
            "refreshing the idle deadline needs no cookie"
        );
    }
    clock.advance(Duration::from_secs(31 * 60));
    let res = http_get(server.addr, "/read", Some(&cookie)).await;
    assert_eq!(
        res.body, "user=None counter=0",
        "idle for 31 minutes: expired"
    );
    assert!(res.removes_cookie());
    assert_eq!(store.len(), 0, "the expired record is deleted");
}

#[tokio::test]
async fn absolute_timeout_with_a_manual_clock() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let layer = plain_layer(&store)
        .with_clock(clock.clone())
        .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
        .with_absolute_timeout(Some(Duration::from_secs(2 * 3600)));
    let server = serve(app(layer)).await;
    let cookie = login_cookie(server.addr).await;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(
            http_post(server.addr, "/inc", Some(&cookie)).await.status,
            200
        );
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

#[tokio::test]
async fn login_starts_a_new_absolute_lifetime_and_plain_regenerate_keeps_it() {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let layer = plain_layer(&store)
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

#[tokio::test]
async fn rolling_and_remember_me_send_max_age() {
    let store = MemoryStore::new();
    let layer = plain_layer(&store)
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
    assert!(res.set_cookies()[0].contains("Max-Age=600"));
    let res = http_post(server.addr, "/remember", Some(&cookie)).await;
    assert!(
        res.set_cookies()[0].contains("Max-Age=2592000"),
        "{:?}",
        res.set_cookies()
    );
    let res = http_get(server.addr, "/read", Some(&cookie)).await;
    assert!(
        res.set_cookies()[0].contains("Max-Age=2592000"),
        "the per-session lifetime is kept"
    );
}

macro_rules! wide {
    ($($f:ident),*) => {
        #[derive(SessionSchema)]
        struct Wide {
            $($f: u32,)*
            same: u32,
        }

        fn bump(w: &mut Wide, n: usize) {
            let fields = [$(&mut w.$f),*];
            *fields[n] += 1;
        }

        fn values(w: &Wide) -> Vec<u32> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_different_fields_all_survive() {
    let store = MemoryStore::new();
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
    let server = serve(wide.layer(plain_layer(&store))).await;
    let start = http_post(server.addr, "/start", None).await;
    // `same` was 0 and stays 0: nothing changed, so nothing was stored...
    assert!(start.cookie().is_none());
    let start = http_post(server.addr, "/same", None).await;
    let cookie = start.cookie().expect("session created");
    let addr = server.addr;

    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let cookie = cookie.clone();
            tokio::spawn(async move {
                http_post(addr, &format!("/bump/{n}"), Some(&cookie))
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
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
    let ok = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cookie = cookie.clone();
            let ok = ok.clone();
            tokio::spawn(async move {
                if http_post(addr, "/same", Some(&cookie)).await.status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(ok.load(Ordering::SeqCst), 100);
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

#[tokio::test]
async fn bad_cookies_get_a_fresh_session_and_no_panic() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
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
    assert_eq!(store.len(), 2, "bad cookies created nothing");
}

#[tokio::test]
async fn extractor_without_layer_names_the_layer() {
    let server = serve(routes()).await;
    let res = http_post(server.addr, "/inc", None).await;
    assert_eq!(res.status, 500);
    assert!(res.body.contains("missing session layer"), "{}", res.body);
    assert!(res.body.contains("SessionLayer"), "{}", res.body);
}

#[tokio::test]
async fn flash_messages_across_requests() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
    let cookie = login_cookie(server.addr).await;
    http_post(server.addr, "/flash", Some(&cookie)).await;
    assert_eq!(
        http_get(server.addr, "/flash", Some(&cookie)).await.body,
        "saved"
    );
    assert_eq!(
        http_get(server.addr, "/flash", Some(&cookie)).await.body,
        "",
        "read once"
    );
}

#[tokio::test]
async fn reject_policy_answers_400() {
    let store = MemoryStore::new();
    let server = serve(app(plain_layer(&store))).await;
    let cookie = login_cookie(server.addr).await;
    // Write a record whose readonly user id fails its rule, straight into the store.
    let id = cookie.trim_start_matches("session=");
    let key = session_key(id);
    let rec = store.load(&key).await.unwrap().unwrap();
    let data = String::from_utf8(rec.data.to_vec())
        .unwrap()
        .replace("\"user_id\":42", "\"user_id\":666");
    let out = store
        .save(
            &key,
            Record::new(data, rec.revision + 1, rec.expires_at),
            rec.revision,
        )
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Saved);
    let res = http_get(server.addr, "/read", Some(&cookie)).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.body, "invalid session");
}

/// The store key of a cookie value, computed as the runtime does.
fn session_key(cookie_value: &str) -> SessionKey {
    let id_part = cookie_value.split('.').next().unwrap_or_default();
    SessionId::from_cookie_value(id_part).expect("an id").key()
}

#[tokio::test]
async fn signed_cookies_and_key_rotation() {
    let old = SigningKey::new(b"an old secret that is long enough to be used".to_vec()).unwrap();
    let new = SigningKey::new(b"a new secret that is also long enough to use".to_vec()).unwrap();
    let store = MemoryStore::new();
    let server_old = serve(app(plain_layer(&store).with_signing_keys(old.clone(), []))).await;
    let cookie = login_cookie(server_old.addr).await;
    assert_eq!(
        cookie.trim_start_matches("session=").len(),
        22 + 1 + 22,
        "id.tag"
    );

    let server_new = serve(app(
        plain_layer(&store).with_signing_keys(new.clone(), [old.clone()])
    ))
    .await;
    let res = http_get(server_new.addr, "/read", Some(&cookie)).await;
    assert_eq!(
        res.body, "user=Some(42) counter=0",
        "old key still verifies"
    );
    let resigned = res.cookie().expect("re-signed with the new key");
    assert_ne!(resigned, cookie);
    assert_eq!(resigned[..30], cookie[..30], "same id");

    let server_only_new = serve(app(plain_layer(&store).with_signing_keys(new, []))).await;
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

/// A custom store that is always down: the trait's error path, as a
/// connection-refused Redis would take it.
#[derive(Debug)]
struct DownStore;

impl SessionStore for DownStore {
    async fn load(&self, _: &SessionKey) -> Result<Option<Record>, StoreError> {
        Err(StoreError::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }
    async fn create(&self, _: &SessionKey, _: Record) -> Result<bool, StoreError> {
        Err(StoreError::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }
    async fn save(&self, _: &SessionKey, _: Record, _: u64) -> Result<SaveOutcome, StoreError> {
        Err(StoreError::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }
    async fn delete(&self, _: &SessionKey) -> Result<(), StoreError> {
        Err(StoreError::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }
}

#[tokio::test]
async fn a_store_that_is_down_gives_503_never_no_session() {
    let server = serve(app(SessionLayer::new(DownStore).with_secure(false))).await;
    let res = http_get(server.addr, "/read", Some("session=AAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.body, "session store unavailable");
    // A new session's first write fails at save time: also 503, not a 200 that lost the write.
    let res = http_post(server.addr, "/inc", None).await;
    assert_eq!(res.status, 503);
    assert!(res.set_cookies().is_empty());
    // Cookie-less reads never touch the store.
    assert_eq!(http_get(server.addr, "/read", None).await.status, 200);
}

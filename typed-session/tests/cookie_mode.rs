//! Cookie mode over real HTTP, beyond the shared lifecycle suite: the
//! 4096-byte budget, revocation ("log out everywhere"), re-sealing at most
//! once per tenth of the idle timeout, cookie-name binding, configuration.

#![cfg(feature = "cookie-store")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use common::{http_get, http_post, request, serve};
use typed_session::clock::ManualClock;
use typed_session::store::{MemoryStore, Record, SaveOutcome, SessionStore};
use typed_session::{
    ConfigError, Error, RevocationList, SessionConfig, SessionKey, SessionLayer, SessionSchema,
    SigningKey, StoreConfig, StoreError, TypedSession,
};

#[derive(SessionSchema)]
struct Notes {
    user: Option<u64>,
    notes: Vec<String>,
}

fn key() -> SigningKey {
    SigningKey::new(b"cookie mode tests: a secret of more than 32 bytes".to_vec()).unwrap()
}

fn layer() -> SessionLayer {
    SessionLayer::encrypted_cookie(key()).with_secure(false)
}

async fn login(session: TypedSession<Notes>, Path(user): Path<u64>) -> &'static str {
    session.regenerate_with(|s| s.user = Some(user)).unwrap();
    session.set_subject(Some(&format!("user:{user}")));
    "in"
}

async fn who(session: TypedSession<Notes>) -> String {
    format!("{:?}", session.user())
}

async fn note(session: TypedSession<Notes>, Path(len): Path<usize>) -> String {
    session.update_notes(|n| n.push("n".repeat(len))).unwrap();
    "noted".into()
}

async fn note_and_save(session: TypedSession<Notes>, Path(len): Path<usize>) -> String {
    session.update_notes(|n| n.push("s".repeat(len))).unwrap();
    match session.save().await {
        Err(Error::CookieTooLarge { size, limit }) => format!("too large: {size} > {limit}"),
        other => format!("{other:?}"),
    }
}

async fn logout(session: TypedSession<Notes>) -> &'static str {
    session.destroy();
    "out"
}

async fn rotate(session: TypedSession<Notes>) -> &'static str {
    session.regenerate();
    "rotated"
}

fn routes() -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/rotate", post(rotate))
        .route("/who", get(who))
        .route("/note/{len}", post(note))
        .route("/note-save/{len}", post(note_and_save))
}

#[tokio::test]
async fn the_cookie_budget_is_a_typed_error_never_a_dropped_cookie() {
    let server = serve(routes().layer(layer())).await;
    let res = http_post(server.addr, "/note/100", None).await;
    let small = res.cookie().unwrap();
    // Grow the session until it no longer fits: every accepted cookie fits
    // the 4096-byte budget, the first refused write is a 500 without a cookie.
    let mut cookie = small.clone();
    let mut largest = 0;
    let refused = loop {
        let res = http_post(server.addr, "/note/250", Some(&cookie)).await;
        if res.status != 200 {
            break res;
        }
        cookie = res.cookie().unwrap();
        largest = cookie.len();
        assert!(cookie.len() <= 4096, "{}", cookie.len());
    };
    assert!(
        largest > 3500,
        "the budget is used, not undercut: {largest}"
    );
    assert_eq!(refused.status, 500);
    assert_eq!(refused.body, "session could not be saved");
    assert!(
        refused.set_cookies().is_empty(),
        "the browser keeps its cookie"
    );
    // A handler that saves gets the typed error naming the size and limit.
    let res = http_post(server.addr, "/note-save/400", Some(&cookie)).await;
    assert!(res.body.starts_with("too large: "), "{}", res.body);
    assert!(res.body.ends_with(" > 4096"), "{}", res.body);
    // The last good cookie still opens.
    assert_eq!(
        http_get(server.addr, "/who", Some(&cookie)).await.status,
        200
    );
}

#[tokio::test]
async fn compression_is_a_setting_that_shrinks_repetitive_sessions() {
    let plain = serve(routes().layer(layer())).await;
    let packed = serve(routes().layer(layer().with_cookie_compression(true))).await;
    let a = http_post(plain.addr, "/note/2000", None)
        .await
        .cookie()
        .unwrap();
    let b = http_post(packed.addr, "/note/2000", None)
        .await
        .cookie()
        .unwrap();
    assert!(b.len() * 4 < a.len(), "{} vs {}", b.len(), a.len());
    // Either server opens the other's cookie: the flag is sealed inside.
    let res = http_post(plain.addr, "/note/1", Some(&b)).await;
    assert_eq!(res.status, 200);
    // 20 KB of notes fit in one compressed cookie, never in a plain one.
    let res = http_post(packed.addr, "/note/20000", None).await;
    assert_eq!(res.status, 200);
    assert!(res.cookie().unwrap().len() < 1000);
    assert_eq!(http_post(plain.addr, "/note/20000", None).await.status, 500);
}

#[tokio::test]
async fn a_value_moved_to_another_cookie_name_does_not_open() {
    let a = serve(routes().layer(layer().with_cookie_name("a"))).await;
    let b = serve(routes().layer(layer().with_cookie_name("b"))).await;
    let cookie = http_post(a.addr, "/login/5", None).await.cookie().unwrap();
    assert_eq!(
        http_get(a.addr, "/who", Some(&cookie)).await.body,
        "Some(5)"
    );
    let moved = cookie.replacen("a=", "b=", 1);
    assert_eq!(http_get(b.addr, "/who", Some(&moved)).await.body, "None");
    // Another app's secret: does not open either.
    let other = SessionLayer::encrypted_cookie(
        SigningKey::new(b"another application's secret, 32+ bytes".to_vec()).unwrap(),
    )
    .with_secure(false)
    .with_cookie_name("a");
    let c = serve(routes().layer(other)).await;
    assert_eq!(http_get(c.addr, "/who", Some(&cookie)).await.body, "None");
}

#[tokio::test]
async fn reads_reseal_at_most_once_per_tenth_of_the_idle_timeout() {
    let clock = ManualClock::new();
    let layer = layer()
        .with_clock(clock.clone())
        .with_idle_timeout(Some(Duration::from_secs(30 * 60)));
    let server = serve(routes().layer(layer)).await;
    let mut cookie = http_post(server.addr, "/login/1", None)
        .await
        .cookie()
        .unwrap();
    let mut resealed = 0;
    // A read every minute for an hour: a new cookie every 3 minutes at most.
    for _ in 0..60 {
        clock.advance(Duration::from_secs(60));
        let res = http_get(server.addr, "/who", Some(&cookie)).await;
        assert_eq!(res.body, "Some(1)");
        if let Some(c) = res.cookie() {
            resealed += 1;
            cookie = c;
        }
    }
    assert_eq!(resealed, 20, "once per 3 minutes");
}

async fn revocation_on(layer: SessionLayer, list: RevocationList) {
    let server = serve(routes().layer(layer.with_revocation(list.clone()))).await;
    let laptop = http_post(server.addr, "/login/1", None)
        .await
        .cookie()
        .unwrap();
    let phone = http_post(server.addr, "/login/1", None)
        .await
        .cookie()
        .unwrap();
    let other = http_post(server.addr, "/login/2", None)
        .await
        .cookie()
        .unwrap();
    let anonymous = http_post(server.addr, "/note/3", None)
        .await
        .cookie()
        .unwrap();
    for c in [&laptop, &phone] {
        assert_eq!(http_get(server.addr, "/who", Some(c)).await.body, "Some(1)");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    list.revoke_all("user:1").await.unwrap();
    for c in [&laptop, &phone] {
        assert_eq!(
            http_get(server.addr, "/who", Some(c)).await.body,
            "None",
            "every session of user 1 ended, wherever its cookie is"
        );
    }
    assert_eq!(
        http_get(server.addr, "/who", Some(&other)).await.body,
        "Some(2)"
    );
    assert_eq!(
        http_get(server.addr, "/who", Some(&anonymous)).await.status,
        200
    );
    // Logging in again after the revocation works.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = http_post(server.addr, "/login/1", None)
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        http_get(server.addr, "/who", Some(&again)).await.body,
        "Some(1)"
    );
}

#[tokio::test]
async fn revocation_logs_a_user_out_everywhere_in_cookie_mode() {
    revocation_on(layer(), RevocationList::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn revocation_works_the_same_over_a_server_side_store() {
    revocation_on(
        SessionLayer::new(MemoryStore::new()).with_secure(false),
        RevocationList::new(MemoryStore::new()),
    )
    .await;
}

#[cfg(feature = "file-store")]
#[tokio::test]
async fn revocation_fails_closed_when_its_store_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("revocations");
    let store = typed_session::store::FileStore::open(&dir).unwrap();
    let list = RevocationList::new(store);
    let server = serve(routes().layer(layer().with_revocation(list))).await;
    let cookie = http_post(server.addr, "/login/1", None)
        .await
        .cookie()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let res = http_get(server.addr, "/who", Some(&cookie)).await;
    let _ = std::fs::remove_file(&dir);
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.body, "session store unavailable");
    // Anonymous requests do not consult the list.
    let res = request(server.addr, "GET", "/who", &[]).await;
    assert_eq!(res.body, "None");
}

#[tokio::test]
async fn configuration_names_the_driver_and_requires_a_secret() {
    let mut config = SessionConfig::default();
    config.store = StoreConfig::Cookie(Default::default());
    assert_eq!(
        SessionLayer::from_config(&config).unwrap_err().inner(),
        &ConfigError::SecretRequired("cookie")
    );
    assert_eq!(
        config
            .validate()
            .map_err(|e| e.setting().map(str::to_owned)),
        Err(Some("secrets".to_owned()))
    );
    config.secrets = vec!["a configured secret for cookie mode, 32+ bytes".into()];
    config.secure = false;
    let layer = SessionLayer::from_config(&config).unwrap();
    assert!(format!("{layer:?}").contains("SealedCookie"));
    let server = serve(routes().layer(layer)).await;
    let cookie = http_post(server.addr, "/login/3", None)
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        http_get(server.addr, "/who", Some(&cookie)).await.body,
        "Some(3)"
    );
}

/// Finding (issue 22, item 7): a revocation issued from a host whose clock
/// is 3 s behind the host that bound the session did not end it. With the
/// skew margin set to the hosts' largest difference, it does.
#[tokio::test]
async fn a_revocation_from_a_host_behind_ends_sessions_with_a_skew_margin() {
    for (skew, ended) in [(Duration::ZERO, false), (Duration::from_secs(5), true)] {
        let list = RevocationList::new(MemoryStore::new()).with_clock_skew(skew);
        // The binding host's clock is 3 s ahead of the revoking host's.
        let ahead = ManualClock::new();
        ahead.advance(Duration::from_secs(3));
        let server =
            serve(routes().layer(layer().with_clock(ahead).with_revocation(list.clone()))).await;
        let cookie = http_post(server.addr, "/login/1", None)
            .await
            .cookie()
            .unwrap();
        list.revoke_all_at("user:1", std::time::SystemTime::now())
            .await
            .unwrap();
        let who = http_get(server.addr, "/who", Some(&cookie)).await.body;
        assert_eq!(who == "None", ended, "skew {skew:?}: {who}");
    }
}

/// A store on which every compare-and-set of the revocation loses (another
/// writer always got there first, with an older revocation).
#[derive(Debug, Clone, Default)]
struct AlwaysRaced;

impl SessionStore for AlwaysRaced {
    async fn load(&self, _: &SessionKey) -> Result<Option<Record>, StoreError> {
        Ok(Some(Record::new(
            b"1".to_vec(),
            7,
            std::time::SystemTime::now() + Duration::from_secs(60),
        )))
    }
    async fn create(&self, _: &SessionKey, _: Record) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn save(&self, k: &SessionKey, _: Record, _: u64) -> Result<SaveOutcome, StoreError> {
        Ok(SaveOutcome::Conflict(self.load(k).await?))
    }
    async fn delete(&self, _: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Finding (issue 22, item 7): `revoke_all` returned `Ok(())` after losing
/// every compare-and-set without writing anything.
#[tokio::test]
async fn a_revocation_that_never_lands_is_an_error() {
    let list = RevocationList::new(AlwaysRaced);
    let err = list.revoke_all("user:1").await.unwrap_err();
    assert!(
        std::error::Error::source(&err)
            .is_some_and(|s| s.to_string().contains("nothing was revoked")),
        "{err:?}"
    );
}

/// Finding (issue 22, item 6): in cookie mode a copy of a cookie taken
/// before a logout kept working, and each use re-sealed it with a new idle
/// deadline, so it lived until the absolute timeout. With a revocation
/// list, a logout (and a new id) ends every copy of that session, and a
/// copy older than the newest issued is never extended past its own
/// deadline.
#[tokio::test]
async fn copies_of_a_sealed_session_end_with_it_and_are_never_extended() {
    let clock = ManualClock::new();
    let list = RevocationList::new(MemoryStore::new());
    let layer = layer()
        .with_clock(clock.clone())
        .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
        .with_revocation(list);
    let server = serve(routes().layer(layer)).await;
    let login = |n: u64| {
        let addr = server.addr;
        async move {
            http_post(addr, &format!("/login/{n}"), None)
                .await
                .cookie()
                .unwrap()
        }
    };

    // A logout ends the copy kept by someone else.
    let cookie = login(1).await;
    let stolen = cookie.clone();
    assert_eq!(
        http_get(server.addr, "/who", Some(&stolen)).await.body,
        "Some(1)"
    );
    assert_eq!(
        http_post(server.addr, "/logout", Some(&cookie)).await.body,
        "out"
    );
    assert_eq!(
        http_get(server.addr, "/who", Some(&stolen)).await.body,
        "None"
    );

    // So does a new id: the copies of the old one end.
    let cookie = login(2).await;
    let stolen = cookie.clone();
    let rotated = http_post(server.addr, "/rotate", Some(&cookie))
        .await
        .cookie()
        .unwrap();
    assert_eq!(
        http_get(server.addr, "/who", Some(&rotated)).await.body,
        "Some(2)"
    );
    assert_eq!(
        http_get(server.addr, "/who", Some(&stolen)).await.body,
        "None"
    );

    // A copy older than the newest is served until its own deadline, and
    // its re-seals do not outlive it; the newest copy lives on.
    let mut legit = login(3).await;
    let stolen = legit.clone();
    clock.advance(Duration::from_secs(60));
    legit = http_post(server.addr, "/note/3", Some(&legit))
        .await
        .cookie()
        .unwrap();
    clock.advance(Duration::from_secs(19 * 60));
    let resealed = http_get(server.addr, "/who", Some(&stolen)).await;
    assert_eq!(resealed.body, "Some(3)", "served until its own deadline");
    let stolen = resealed.cookie().unwrap_or(stolen);
    legit = http_get(server.addr, "/who", Some(&legit))
        .await
        .cookie()
        .unwrap_or(legit);
    clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        http_get(server.addr, "/who", Some(&stolen)).await.body,
        "None",
        "the old copy died at its own deadline (30 minutes after it was sealed)"
    );
    assert_eq!(
        http_get(server.addr, "/who", Some(&legit)).await.body,
        "Some(3)"
    );
}

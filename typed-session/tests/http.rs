//! The runtime over real HTTP: the lifecycle suite (`common/http_suite.rs`)
//! instantiated once per backend, plus tests of one backend or none.

#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::routing::{get, post};
use common::harness::Stored;
use common::{http_get, http_post, serve};
use typed_session::store::{MemoryStore, Record, SaveOutcome, SessionStore};
use typed_session::{SessionKey, SessionLayer, SessionSchema, StoreError, TypedSession};

http_suite!(memory, Stored::new(MemoryStore::new(), MemoryStore::len));
#[cfg(feature = "file-store")]
#[path = "common/file.rs"]
mod file_common;
#[cfg(feature = "file-store")]
http_suite!(file, file_common::file_harness());

#[derive(SessionSchema)]
struct App {
    #[session(readonly)]
    user_id: Option<u64>,
    counter: u64,
}

async fn read(session: TypedSession<App>) -> String {
    format!("user={:?} counter={}", session.user_id(), session.counter())
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

fn routes() -> Router {
    Router::new()
        .route("/read", get(read))
        .route("/inc", post(inc))
}

fn app(layer: SessionLayer) -> Router {
    routes()
        .layer(layer)
        .route("/healthz", get(|| async { "ok" }))
}

#[tokio::test]
async fn extractor_without_layer_names_the_layer() {
    let server = serve(routes()).await;
    let res = http_post(server.addr, "/inc", None).await;
    assert_eq!(res.status, 500);
    assert!(res.body.contains("missing session layer"), "{}", res.body);
    assert!(res.body.contains("SessionLayer"), "{}", res.body);
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

/// Finding: a single client's flood of cookie-less writes logged out about
/// half of 1,000 signed-in users. Now: 10x the store's capacity in
/// anonymous sessions, and every signed-in user is still signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookieless_flood_of_ten_times_capacity_logs_nobody_out() {
    const CAPACITY: usize = 500;
    const USERS: usize = 250;
    const FLOOD: usize = 10 * CAPACITY;
    let store = MemoryStore::with_capacity(CAPACITY);
    let login = post(|s: TypedSession<App>| async move {
        s.regenerate_with(|a| a.user_id = Some(42)).unwrap();
        "in"
    });
    let server = serve(
        routes()
            .route("/login", login)
            .layer(SessionLayer::new(store.clone()).with_secure(false)),
    )
    .await;
    let mut cookies = Vec::new();
    for _ in 0..USERS {
        cookies.push(
            http_post(server.addr, "/login", None)
                .await
                .cookie()
                .unwrap(),
        );
    }
    let addr = server.addr;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut ok = 0usize;
                for _ in 0..FLOOD / 8 {
                    if http_post(addr, "/inc", None).await.status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let mut signed_in = 0;
    for c in &cookies {
        if http_get(addr, "/read", Some(c)).await.body == "user=Some(42) counter=0" {
            signed_in += 1;
        }
    }
    println!(
        "flood of {FLOOD} cookie-less writes ({accepted} accepted) into a store of {CAPACITY}: {signed_in} of {USERS} signed-in users still signed in"
    );
    assert_eq!(signed_in, USERS);
    assert!(store.len() <= CAPACITY);
}

/// The file store's directory disappears under a running app (unmounted,
/// deleted): requests that need the session get 503, never an anonymous
/// session that would lose what was acknowledged; when it is back, the app
/// serves again without a restart.
#[cfg(feature = "file-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_store_directory_gives_503_then_recovers() {
    let h = file_common::file_harness();
    let dir = h.store.path().to_path_buf();
    let server = serve(app(SessionLayer::new(h.store.clone()).with_secure(false))).await;
    let cookie = http_post(server.addr, "/inc", None).await.cookie().unwrap();
    let aside = dir.with_extension("aside");
    std::fs::rename(&dir, &aside).unwrap();
    let res = http_post(server.addr, "/inc", None).await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.body, "session store unavailable");
    let res = http_post(server.addr, "/inc", Some(&cookie)).await;
    assert_eq!(res.status, 503, "{}", res.body);
    let res = http_get(server.addr, "/read", Some(&cookie)).await;
    assert_eq!(
        res.status, 503,
        "a read is not served as an anonymous session"
    );
    std::fs::rename(&aside, &dir).unwrap();
    assert_eq!(
        http_post(server.addr, "/inc", Some(&cookie)).await.body,
        "counter=2"
    );
}

/// Makes `dir` refuse new files, even to root: permissions first, then the
/// immutable attribute (`chattr +i`) where permissions do not bind (root).
#[cfg(feature = "file-store")]
fn make_read_only(dir: &std::path::Path, on: bool) {
    use std::os::unix::fs::PermissionsExt;
    if !on {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(dir)
            .status();
    }
    let mode = if on { 0o500 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    let probe = dir.join("probe-writable");
    if on && std::fs::write(&probe, b"").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot make {} read-only (chattr +i failed)",
            dir.display()
        );
        assert!(std::fs::write(&probe, b"").is_err(), "still writable");
    }
}

/// A read-only session directory: writes get 503 (nothing acknowledged),
/// reads of existing sessions still work, and the app recovers without a
/// restart once the directory is writable again.
#[cfg(feature = "file-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_store_directory_gives_503_then_recovers() {
    let h = file_common::file_harness();
    let dir = h.store.path().to_path_buf();
    let server = serve(app(SessionLayer::new(h.store.clone()).with_secure(false))).await;
    let cookie = http_post(server.addr, "/inc", None).await.cookie().unwrap();
    make_read_only(&dir, true);
    let new = http_post(server.addr, "/inc", None).await;
    let write = http_post(server.addr, "/inc", Some(&cookie)).await;
    let read = http_get(server.addr, "/read", Some(&cookie)).await;
    make_read_only(&dir, false);
    assert_eq!(new.status, 503, "{}", new.body);
    assert_eq!(write.status, 503, "{}", write.body);
    assert_eq!(read.body, "user=None counter=1", "reads still work");
    assert_eq!(
        http_post(server.addr, "/inc", Some(&cookie)).await.body,
        "counter=2"
    );
}

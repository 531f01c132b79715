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
http_suite!(file, common::file::file_harness());
#[cfg(feature = "redis-store")]
http_suite!(redis, common::redis::node_harness());
#[cfg(feature = "redis-store")]
http_suite!(redis_local_copy, common::redis::node_harness_with_copy());
#[cfg(feature = "redis-store")]
http_suite!(redis_cluster, common::redis::cluster_harness());
#[cfg(feature = "redis-store")]
http_suite!(
    redis_cluster_local_copy,
    common::redis::cluster_harness_with_copy()
);
#[cfg(feature = "cookie-store")]
http_suite!(cookie, common::sealed::SealedCookie);

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
    let h = common::file::file_harness();
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

/// Makes a file store's directory (and its record subdirectories) refuse
/// new files, even to root: permissions first, then the immutable
/// attribute (`chattr +i`) where permissions do not bind (root).
#[cfg(feature = "file-store")]
fn make_read_only(dir: &std::path::Path, on: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend((0..256).map(|s| dir.join(format!("{s:02x}"))));
    if !on {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&dirs)
            .status();
    }
    let mode = if on { 0o500 } else { 0o700 };
    for d in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let probe = dirs[1].join("probe-writable");
    if on && std::fs::write(&probe, b"").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .args(&dirs)
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
    let h = common::file::file_harness();
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

/// A session with room to grow, for the full-disk test.
#[cfg(feature = "file-store")]
#[derive(SessionSchema)]
struct Blob {
    data: String,
}

/// A full disk under the file store (a 512 KiB tmpfs mounted for the test):
/// writes that do not fit get 503 (nothing acknowledged that is not on
/// disk), every acknowledged session still reads back whole, and once space
/// is freed writes succeed again without a restart. Mounting needs root;
/// without it the test says so and checks nothing (a documented skip).
#[cfg(feature = "file-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_503_and_keeps_what_was_acknowledged() {
    let dir = common::harness::TempDir::new("full-disk");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!(
            "SKIPPED: cannot mount a small tmpfs here (needs root): the full-disk case is not exercised"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let store = typed_session::store::FileStore::open(dir.path().join("sessions")).unwrap();
    let routes = Router::new()
        .route(
            "/grow",
            post(|s: TypedSession<Blob>| async move {
                s.update_data(|d| d.push_str(&"x".repeat(8 * 1024)))
                    .unwrap();
                s.with_data(|d| d.len().to_string())
            }),
        )
        .route(
            "/size",
            get(|s: TypedSession<Blob>| async move { s.with_data(|d| d.len().to_string()) }),
        )
        .route(
            "/end",
            post(|s: TypedSession<Blob>| async move {
                s.destroy();
                "ended"
            }),
        );
    let server = serve(routes.layer(SessionLayer::new(store).with_secure(false))).await;
    let addr = server.addr;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let res = http_post(addr, "/grow", None).await;
        match res.status {
            200 => acknowledged.push((res.cookie().unwrap(), res.body)),
            503 => {
                refused += 1;
                assert!(
                    res.set_cookies().is_empty(),
                    "no cookie for what was not written"
                );
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    assert!(
        refused >= 3,
        "the disk filled up ({} sessions written)",
        acknowledged.len()
    );
    for (cookie, size) in &acknowledged {
        assert_eq!(
            &http_get(addr, "/size", Some(cookie)).await.body,
            size,
            "intact"
        );
    }
    // Free space by ending half the sessions; writes work again.
    for (cookie, _) in acknowledged.iter().take(acknowledged.len() / 2) {
        assert_eq!(http_post(addr, "/end", Some(cookie)).await.body, "ended");
    }
    let res = http_post(addr, "/grow", None).await;
    assert_eq!(
        res.status, 200,
        "writes succeed again once space is free: {}",
        res.body
    );
    println!(
        "full disk: {} sessions acknowledged, {refused} writes refused with 503, all acknowledged intact",
        acknowledged.len()
    );
}

#[cfg(feature = "redis-store")]
mod redis_only {
    //! What only Redis has to get right: one command per operation, two app
    //! instances on one Redis, outages.

    use std::time::Duration;

    use axum::Router;
    use axum::extract::Path;
    use axum::routing::{get, post};
    use typed_session::store::{RedisStore, SessionStore};
    use typed_session::{SessionLayer, SessionView, TypedSession};

    use super::common::http_suite::{Wide, bump, values};
    use super::common::redis::{Server, prefix};
    use super::common::{http_get, http_post, serve};
    use super::{App, app};

    /// Counts the commands clients send (not those scripts run inside
    /// Redis), through `MONITOR`.
    struct Monitor(std::net::TcpStream);

    impl Monitor {
        fn start(server: &Server) -> Monitor {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(b"MONITOR\r\n").unwrap();
            let mut ok = [0u8; 5];
            s.read_exact(&mut ok).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            Monitor(s)
        }

        /// Client commands seen since the last call.
        fn count(&mut self) -> usize {
            use std::io::Read;
            std::thread::sleep(Duration::from_millis(50));
            let mut text = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = self.0.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| l.contains(" 127.0.0.1:") && !l.contains(" lua]"))
                .count()
        }
    }

    /// Commands (round trips) per operation, seen by `MONITOR`: 1 each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_command_per_operation() {
        use super::common::store_suite::{HOUR, key, record};
        let server = Server::start(&["--appendonly", "no"]);
        let store = RedisStore::new(&server.url())
            .unwrap()
            .with_prefix(prefix());
        // Load the scripts once (the first call of each: EVALSHA, SCRIPT LOAD, EVALSHA).
        let (a, b, c) = (key(1), key(2), key(3));
        store.create(&a, record("a", 1, HOUR)).await.unwrap();
        store.save(&a, record("a2", 2, HOUR), 1).await.unwrap();
        store
            .touch(&a, std::time::SystemTime::now() + HOUR)
            .await
            .unwrap();
        store
            .replace(&a, 2, &b, record("b", 1, HOUR))
            .await
            .unwrap();
        let mut monitor = Monitor::start(&server);
        monitor.count();
        let mut counts = Vec::new();
        store.load(&b).await.unwrap();
        counts.push(("load", monitor.count()));
        store.create(&c, record("c", 1, HOUR)).await.unwrap();
        counts.push(("create", monitor.count()));
        store.save(&c, record("c2", 2, HOUR), 1).await.unwrap();
        counts.push(("save", monitor.count()));
        store
            .touch(&c, std::time::SystemTime::now() + 2 * HOUR)
            .await
            .unwrap();
        counts.push(("touch", monitor.count()));
        store
            .replace(&c, 2, &a, record("a3", 1, HOUR))
            .await
            .unwrap();
        counts.push(("regenerate", monitor.count()));
        store.delete(&a).await.unwrap();
        counts.push(("delete", monitor.count()));
        println!("redis commands per operation: {counts:?}");
        for (name, n) in counts {
            assert_eq!(n, 1, "{name}");
        }
        // Over HTTP: a read is one GET, a write one GET and one EVALSHA.
        let http = serve(app(SessionLayer::new(store.clone()).with_secure(false))).await;
        let cookie = http_post(http.addr, "/inc", None).await.cookie().unwrap();
        http_post(http.addr, "/inc", Some(&cookie)).await;
        monitor.count();
        http_get(http.addr, "/read", Some(&cookie)).await;
        assert_eq!(monitor.count(), 1, "a read");
        http_post(http.addr, "/inc", Some(&cookie)).await;
        assert_eq!(monitor.count(), 2, "a write: load + save");
        http_post(http.addr, "/inc", None).await;
        assert_eq!(monitor.count(), 1, "a new session: one SET NX");
    }

    /// Two app instances (two layers, two connections) on one Redis: a login
    /// on one is seen on the other, 100 concurrent writes of disjoint fields
    /// through both lose nothing, a logout on one ends the session on both;
    /// without and with the local copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_app_instances_share_sessions() {
        two_app_instances(0).await;
        two_app_instances(1_000).await;
    }

    async fn two_app_instances(local_cache: usize) {
        let server = Server::start(&["--appendonly", "no"]);
        let prefix = prefix();
        let instance = || {
            let store = RedisStore::new(&server.url())
                .unwrap()
                .with_prefix(prefix.clone())
                .with_local_cache(local_cache);
            let login = post(|s: TypedSession<App>| async move {
                s.regenerate_with(|a| a.user_id = Some(7)).unwrap();
                "in"
            });
            let logout = post(|s: TypedSession<App>| async move {
                s.destroy();
                "out"
            });
            let wide = Router::new()
                .route(
                    "/start",
                    post(|s: TypedSession<Wide>| async move {
                        s.set_same(1).unwrap();
                        "ok"
                    }),
                )
                .route(
                    "/bump/{n}",
                    post(|s: TypedSession<Wide>, Path(n): Path<usize>| async move {
                        s.update(|w| bump(w, n)).unwrap();
                        "ok"
                    }),
                )
                .route(
                    "/values",
                    get(|s: SessionView<Wide>| async move {
                        s.read(values)
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    }),
                );
            super::routes()
                .route("/login", login)
                .route("/logout", logout)
                .layer(SessionLayer::new(store.clone()).with_secure(false))
                .nest(
                    "/wide",
                    wide.layer(
                        SessionLayer::new(store)
                            .with_secure(false)
                            .with_cookie_name("wide"),
                    ),
                )
        };
        let (a, b) = (serve(instance()).await, serve(instance()).await);
        let cookie = http_post(a.addr, "/login", None).await.cookie().unwrap();
        assert_eq!(
            http_get(b.addr, "/read", Some(&cookie)).await.body,
            "user=Some(7) counter=0"
        );
        let wide = http_post(a.addr, "/wide/start", None)
            .await
            .cookie()
            .unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|n| {
                let addr = if n % 2 == 0 { a.addr } else { b.addr };
                let wide = wide.clone();
                tokio::spawn(async move {
                    http_post(addr, &format!("/wide/bump/{n}"), Some(&wide))
                        .await
                        .status
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let got = http_get(b.addr, "/wide/values", Some(&wide)).await.body;
        assert!(
            got.split(',').all(|v| v == "1"),
            "every field kept its write: {got}"
        );
        assert_eq!(
            http_post(b.addr, "/logout", Some(&cookie)).await.body,
            "out"
        );
        assert_eq!(
            http_get(a.addr, "/read", Some(&cookie)).await.body,
            "user=None counter=0"
        );
    }

    /// Redis killed in the middle of traffic: 503 while it is down (within
    /// the timeout, never an anonymous session), full service soon after it
    /// restarts on the same port, and every write acknowledged before the
    /// kill still there (`appendfsync always`: acknowledged means durable).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_redis_gives_503_then_recovers_and_loses_nothing_acknowledged() {
        let durable = ["--appendonly", "yes", "--appendfsync", "always"];
        let server = Server::start(&durable);
        let port = server.port;
        let store = RedisStore::new(&server.url())
            .unwrap()
            .with_prefix(prefix())
            .with_connect_timeout(Duration::from_millis(300))
            .with_command_timeout(Duration::from_millis(300));
        let http = serve(app(SessionLayer::new(store).with_secure(false))).await;
        let mut acked = Vec::new();
        for _ in 0..50 {
            let res = http_post(http.addr, "/inc", None).await;
            assert_eq!(res.status, 200);
            acked.push(res.cookie().unwrap());
        }
        let pid = server.pid();
        server.signal(pid, "KILL");
        let dir = server.into_dir();
        let mut during = (0, 0);
        for c in acked.iter().take(20) {
            let start = std::time::Instant::now();
            let res = http_get(http.addr, "/read", Some(c)).await;
            during.0 += 1;
            if res.status == 503 {
                during.1 += 1;
            }
            assert!(start.elapsed() < Duration::from_secs(3), "no hang");
        }
        assert_eq!(
            during,
            (20, 20),
            "every request while Redis is down gets 503"
        );
        let restarted = std::time::Instant::now();
        let server = Server::start_on(port, &durable, dir);
        let mut recovered = None;
        for _ in 0..100 {
            if http_get(http.addr, "/read", Some(&acked[0])).await.status == 200 {
                recovered = Some(restarted.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let recovered = recovered.expect("service after the restart");
        let mut intact = 0;
        for c in &acked {
            if http_get(http.addr, "/read", Some(c)).await.body == "user=None counter=1" {
                intact += 1;
            }
        }
        println!(
            "redis killed: {} of {} requests during the outage got 503; served again {recovered:?} after the restart; {intact} of {} acknowledged writes intact",
            during.1,
            during.0,
            acked.len()
        );
        assert_eq!(intact, acked.len(), "no acknowledged write lost");
        assert!(recovered < Duration::from_secs(1), "{recovered:?}");
        drop(server);
    }

    /// A paused Redis (SIGSTOP) turns into 503 after the command timeout,
    /// not a hung request; resumed, it serves again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_redis_gives_503_after_the_timeout() {
        let server = Server::start(&["--appendonly", "no"]);
        let store = RedisStore::new(&server.url())
            .unwrap()
            .with_prefix(prefix())
            .with_command_timeout(Duration::from_millis(300));
        let http = serve(app(SessionLayer::new(store).with_secure(false))).await;
        let cookie = http_post(http.addr, "/inc", None).await.cookie().unwrap();
        let pid = server.pid();
        server.signal(pid, "STOP");
        let start = std::time::Instant::now();
        let res = http_get(http.addr, "/read", Some(&cookie)).await;
        let waited = start.elapsed();
        server.signal(pid, "CONT");
        assert_eq!(res.status, 503);
        assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
        let mut ok = false;
        for _ in 0..100 {
            if http_get(http.addr, "/read", Some(&cookie)).await.body == "user=None counter=1" {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "serves again once resumed");
    }

    /// The configured command timeout is the one that counts: a Redis
    /// paused for longer than the client library's own default (500 ms)
    /// but within the store's limit is waited for, not answered 503.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_within_the_command_timeout_is_waited_out() {
        let server = Server::start(&["--appendonly", "no"]);
        let store = RedisStore::new(&server.url())
            .unwrap()
            .with_prefix(prefix())
            .with_command_timeout(Duration::from_secs(5));
        let http = serve(app(SessionLayer::new(store).with_secure(false))).await;
        let cookie = http_post(http.addr, "/inc", None).await.cookie().unwrap();
        let pid = server.pid();
        server.signal(pid, "STOP");
        let resume = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            pid
        });
        let read = tokio::spawn({
            let addr = http.addr;
            async move { http_get(addr, "/read", Some(&cookie)).await }
        });
        let pid = tokio::task::spawn_blocking(move || resume.join().unwrap())
            .await
            .unwrap();
        server.signal(pid, "CONT");
        let res = read.await.unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(res.body, "user=None counter=1");
    }
}

fn small(n: &u32) -> Result<(), String> {
    if *n < 10 {
        Ok(())
    } else {
        Err(format!("{n} exceeds limit from table internal_quota_v2"))
    }
}

#[derive(SessionSchema)]
struct Limited {
    #[session(validate = small)]
    n: u32,
}

/// A refused write answers 422 naming the field, never the rule's message.
#[tokio::test]
async fn validation_errors_answer_422_without_the_rules_message() {
    let app = Router::new()
        .route(
            "/set",
            post(|s: TypedSession<Limited>| async move {
                s.set_n(50)?;
                Ok::<_, typed_session::ValidationError>("set")
            }),
        )
        .layer(SessionLayer::new(MemoryStore::new()).with_secure(false));
    let server = serve(app).await;
    let res = http_post(server.addr, "/set", None).await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body, "invalid value for session field `n`");
    assert!(res.set_cookies().is_empty(), "nothing was written");
}

/// Sends `n` cookie-less `GET path` requests on one keep-alive connection;
/// returns how many were answered 200 without a `Set-Cookie`.
async fn keep_alive_gets(addr: std::net::SocketAddr, path: &str, n: usize) -> usize {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut clean = 0;
    for _ in 0..n {
        write.write_all(request.as_bytes()).await.unwrap();
        let (mut status, mut length, mut sets_cookie) = (0, 0, false);
        let mut line = String::new();
        loop {
            line.clear();
            read.read_line(&mut line).await.unwrap();
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            } else if let Some(s) = l.strip_prefix("http/1.1 ") {
                status = s[..3].parse().unwrap();
            } else if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            } else if l.starts_with("set-cookie:") {
                sets_cookie = true;
            }
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await.unwrap();
        if status == 200 && !sets_cookie {
            clean += 1;
        }
    }
    clean
}

/// 100,000 requests without a cookie leave no record in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_cookieless_requests_leave_no_record() {
    let store = MemoryStore::new();
    let server = serve(app(SessionLayer::new(store.clone()).with_secure(false))).await;
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(keep_alive_gets(server.addr, "/read", 12_500)))
        .collect();
    let mut clean = 0;
    for w in workers {
        clean += w.await.unwrap();
    }
    assert_eq!(clean, 100_000, "every request answered, none set a cookie");
    assert_eq!(store.len(), 0, "no record");
    println!("100,000 cookie-less requests in {:?}", started.elapsed());
}

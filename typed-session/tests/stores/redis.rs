//! `RedisStore` on one node, with its local copy, and on a Cluster: the
//! contract, then pipelining, scripts, the local copy's freshness, dead
//! connections, TLS.

use std::time::SystemTime;

use crate::common;
use crate::common::store_suite::{HOUR, record};
use typed_session::SessionKey;
use typed_session::store::{Record, SaveOutcome, SessionStore};

store_suite!(redis, common::redis::node_harness().store);
store_suite!(
    redis_local_copy,
    common::redis::node_harness_with_copy().store
);
store_suite!(redis_cluster, common::redis::cluster_harness().store);
store_suite!(
    redis_cluster_local_copy,
    common::redis::cluster_harness_with_copy().store
);

/// Redis expires records itself: a record past its deadline is gone from
/// the server (not only unread), with no sweeper of ours.
#[tokio::test]
async fn redis_removes_expired_records_itself() {
    let h = common::redis::node_harness();
    let key = SessionKey::from_bytes([7; 32]);
    let soon = std::time::SystemTime::now() + std::time::Duration::from_millis(300);
    assert!(
        h.store
            .create(&key, Record::new("x", 1, soon))
            .await
            .unwrap()
    );
    assert_eq!((h.count)(&h.store), 1);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!((h.count)(&h.store), 0, "expired and removed by Redis");
}

/// On one node, the commands of concurrent requests go out as pipelines:
/// 200 concurrent loads take fewer socket reads on the server than
/// commands, every reply reaches its own caller, and a script flushed from
/// the server (as after a restart) is loaded again inside a busy pipeline.
#[tokio::test]
async fn redis_pipelines_concurrent_commands_and_reloads_flushed_scripts() {
    use std::sync::Arc;
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let store = Arc::new(RedisStore::new(&server.url()).unwrap());
    let keys: Vec<SessionKey> = (0..200u32)
        .map(|n| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            SessionKey::from_bytes(bytes)
        })
        .collect();
    let all = |f: fn(Arc<RedisStore>, SessionKey, u32) -> tokio::task::JoinHandle<()>| {
        let store = &store;
        let handles: Vec<_> = keys
            .iter()
            .zip(0u32..)
            .map(|(k, n)| f(Arc::clone(store), *k, n))
            .collect();
        async move {
            for h in handles {
                h.await.unwrap();
            }
        }
    };
    all(|s, k, n| {
        tokio::spawn(async move {
            assert!(
                s.create(&k, record(&format!("v{n}"), 1, HOUR))
                    .await
                    .unwrap()
            );
        })
    })
    .await;
    // (commands processed, socket reads) from one `INFO stats`.
    let stats = || -> (u64, u64) {
        let info = common::redis::command(server.port, "INFO stats").unwrap();
        let stat = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|n| n.trim().parse().ok())
                .unwrap()
        };
        (
            stat("total_commands_processed"),
            stat("total_reads_processed"),
        )
    };
    let before = stats();
    all(|s, k, n| {
        tokio::spawn(async move {
            let got = s.load(&k).await.unwrap().unwrap();
            assert_eq!(got.data, format!("v{n}").as_bytes(), "its own reply");
        })
    })
    .await;
    // The first INFO is counted after its reply: one command, one read.
    let after = stats();
    let (commands, reads) = (after.0 - before.0 - 1, after.1 - before.1 - 1);
    assert_eq!(commands, 200);
    assert!(reads < commands / 4, "{commands} commands in {reads} reads");

    assert!(
        common::redis::command(server.port, "SCRIPT FLUSH")
            .unwrap()
            .contains("OK")
    );
    all(|s, k, n| {
        tokio::spawn(async move {
            let saved = s.save(&k, record(&format!("w{n}"), 2, HOUR), 1).await;
            assert_eq!(saved.unwrap(), SaveOutcome::Saved);
            assert_eq!(
                s.load(&k).await.unwrap().unwrap().data,
                format!("w{n}").as_bytes()
            );
        })
    })
    .await;
}

/// The local copy: once this instance has read a record, loading it again
/// takes a `PING` (shared by concurrent requests), not a `GET`; a change by
/// another instance (another connection), or from outside any store, is
/// seen by the very next load; nothing is cached with the copy turned off.
#[tokio::test]
async fn redis_local_copy_is_used_and_never_stale() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let a = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(100);
    let b = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(100);
    let k = SessionKey::from_bytes([9; 32]);
    assert!(a.create(&k, record("v1", 1, HOUR)).await.unwrap());
    let (gets, pings) = (server.calls("get"), server.calls("ping"));
    for _ in 0..3 {
        assert_eq!(a.load(&k).await.unwrap().unwrap().data, "v1".as_bytes());
    }
    assert_eq!(server.calls("get") - gets, 1, "one GET, then the copy");
    assert_eq!(
        server.calls("ping") - pings,
        2,
        "a round trip before each use"
    );
    assert_eq!(
        a.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(a.load(&k).await.unwrap().unwrap().data, "v2".as_bytes());

    // b reads (and caches) it, a changes it: b's next load sees the change.
    assert_eq!(b.load(&k).await.unwrap().unwrap().revision, 2);
    assert_eq!(
        a.save(&k, record("v3", 3, HOUR), 2).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(b.load(&k).await.unwrap().unwrap().data, "v3".as_bytes());
    a.delete(&k).await.unwrap();
    assert_eq!(
        b.load(&k).await.unwrap(),
        None,
        "a logout on a ends it on b"
    );
    // A change made outside any store (a script, an operator) counts too.
    assert!(b.create(&k, record("v4", 1, HOUR)).await.unwrap());
    assert!(b.load(&k).await.unwrap().is_some());
    common::redis::command(server.port, &format!("DEL session:{k}")).unwrap();
    assert_eq!(b.load(&k).await.unwrap(), None, "a DEL from redis-cli");
    assert!(b.create(&k, record("v5", 1, HOUR)).await.unwrap());
    common::redis::command(server.port, "FLUSHALL").unwrap();
    assert_eq!(b.load(&k).await.unwrap(), None, "FLUSHALL");

    let off = RedisStore::new(&server.url()).unwrap();
    assert!(off.create(&k, record("v6", 1, HOUR)).await.unwrap());
    let gets = server.calls("get");
    off.load(&k).await.unwrap();
    off.load(&k).await.unwrap();
    assert_eq!(
        server.calls("get") - gets,
        2,
        "without the copy (the default) every load is a GET"
    );
}

/// Finding (issue 23): the scripts were loaded only after a `NOSCRIPT`
/// reply, so the first save after a start (or a failover) took four
/// commands. They are loaded when a connection is made; `check` connects,
/// pings and loads them, as `SessionLayer::from_config` does at start-up.
#[tokio::test]
async fn redis_scripts_are_loaded_with_the_connection() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let store = RedisStore::new(&server.url()).unwrap();
    store.check().await.unwrap();
    assert!(server.calls("script|load") >= 4, "check loads the scripts");
    common::redis::command(server.port, "SCRIPT FLUSH").unwrap();
    let k = SessionKey::from_bytes([0x5c; 32]);
    assert!(store.create(&k, record("v1", 1, HOUR)).await.unwrap());
    let before = server.calls("evalsha");
    assert_eq!(
        store.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        server.calls("evalsha") - before,
        1,
        "one EVALSHA: the connection loaded the scripts"
    );
    let down = RedisStore::new("redis://127.0.0.1:1")
        .unwrap()
        .with_connect_timeout(std::time::Duration::from_millis(300));
    assert!(down.check().await.is_err());
}

/// Finding (issue 22, item 1): a delete and a load of one key racing on
/// one instance could leave the deleted record as a trusted copy (5 in
/// 3,000 trials before the fix), which then served every later load. Each
/// trial here: the record cached, then a delete and a load at once, then
/// a load that must find nothing; the same for a save racing a load (the
/// later load must see the save). The deterministic interleaving is the
/// cache's unit test `a_read_during_an_own_write_is_never_trusted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_local_copy_never_keeps_an_own_delete_or_save_stale() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let store = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(10_000);
    let trials = 3_000u32;
    let (mut stale_deletes, mut stale_saves) = (0, 0);
    for i in 0..trials {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_le_bytes());
        bytes[31] = 0xd1;
        let k = SessionKey::from_bytes(bytes);
        assert!(store.create(&k, record("v1", 1, HOUR)).await.unwrap());
        assert!(store.load(&k).await.unwrap().is_some());
        let (a, b) = (store.clone(), store.clone());
        if i % 2 == 0 {
            let del = tokio::spawn(async move { a.delete(&k).await.unwrap() });
            let load = tokio::spawn(async move { b.load(&k).await.unwrap() });
            let (_, _) = (del.await.unwrap(), load.await.unwrap());
            if store.load(&k).await.unwrap().is_some() {
                stale_deletes += 1;
            }
        } else {
            let save =
                tokio::spawn(async move { a.save(&k, record("v2", 2, HOUR), 1).await.unwrap() });
            let load = tokio::spawn(async move { b.load(&k).await.unwrap() });
            assert_eq!(save.await.unwrap(), SaveOutcome::Saved);
            load.await.unwrap();
            if store.load(&k).await.unwrap().map(|r| r.revision) != Some(2) {
                stale_saves += 1;
            }
        }
    }
    eprintln!(
        "stale copies: {stale_deletes} after deletes, {stale_saves} after saves, in {trials} trials"
    );
    assert_eq!((stale_deletes, stale_saves), (0, 0));
}

/// Redis reports this instance's own saves to it (they run as scripts,
/// which `NOLOOP` does not cover), so after a save the copy is a suspect:
/// the next load checks its 40-byte header with one `GETRANGE` instead of
/// fetching the record. Another instance's save, touch or delete fails the
/// check, and that load reads the record.
#[tokio::test]
async fn redis_local_copy_survives_own_saves_by_a_header_check() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let a = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(100);
    let b = RedisStore::new(&server.url()).unwrap();
    let k = SessionKey::from_bytes([11; 32]);
    assert!(a.create(&k, record("v1", 1, HOUR)).await.unwrap());
    assert_eq!(a.load(&k).await.unwrap().unwrap().revision, 1);
    assert_eq!(
        a.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    let (gets, ranges) = (server.calls("get"), server.calls("getrange"));
    for _ in 0..3 {
        let got = a.load(&k).await.unwrap().unwrap();
        assert_eq!((got.data.as_ref(), got.revision), ("v2".as_bytes(), 2));
    }
    assert_eq!(server.calls("get") - gets, 0, "no GET after its own save");
    assert!(
        (1..=3).contains(&(server.calls("getrange") - ranges)),
        "a header check, then the copy (the check and the message about the \
         save can arrive in either order)"
    );

    // Another instance saves: the check fails and the load reads it.
    assert_eq!(
        b.save(&k, record("v3", 3, HOUR), 2).await.unwrap(),
        SaveOutcome::Saved
    );
    let gets = server.calls("get");
    assert_eq!(a.load(&k).await.unwrap().unwrap().data, "v3".as_bytes());
    assert_eq!(server.calls("get") - gets, 1);
    // Its own save again, then another instance's touch (same revision,
    // a new expiry): the header differs, the load sees the new expiry.
    assert_eq!(
        a.save(&k, record("v4", 4, HOUR), 3).await.unwrap(),
        SaveOutcome::Saved
    );
    let later = SystemTime::now() + 2 * HOUR;
    assert!(b.touch(&k, later).await.unwrap());
    let got = a.load(&k).await.unwrap().unwrap();
    assert_eq!((got.data.as_ref(), got.revision), ("v4".as_bytes(), 4));
    let millis = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(millis(got.expires_at), millis(later));
    // Its own save, then another instance's delete (a logout elsewhere).
    assert_eq!(
        a.save(&k, record("v5", 5, HOUR), 4).await.unwrap(),
        SaveOutcome::Saved
    );
    b.delete(&k).await.unwrap();
    assert_eq!(
        a.load(&k).await.unwrap(),
        None,
        "a logout on b ends it on a"
    );
}

/// A connection that ends takes its messages with it: copies made before
/// are kept but checked on their next use, so a change made while this
/// instance was not listening is seen, and an unchanged record is not
/// fetched again.
#[tokio::test]
async fn redis_local_copy_outlives_its_connection_untrusted() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let a = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(100);
    let b = RedisStore::new(&server.url()).unwrap();
    let (same, changed) = (
        SessionKey::from_bytes([31; 32]),
        SessionKey::from_bytes([32; 32]),
    );
    for k in [&same, &changed] {
        assert!(a.create(k, record("v1", 1, HOUR)).await.unwrap());
        assert_eq!(a.load(k).await.unwrap().unwrap().revision, 1);
    }
    // Every client's connection is cut; b reconnects and changes one key
    // while a has no connection to hear of it.
    common::redis::command(server.port, "CLIENT KILL TYPE normal").unwrap();
    assert_eq!(
        b.save(&changed, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved,
        "b's first command may not meet the cut: it gets a new connection"
    );
    let (gets, ranges) = (server.calls("get"), server.calls("getrange"));
    // a's first command may find its connection gone (an error, a 503 in
    // the app) or the reader may have seen the cut first: then it reconnects.
    let load = |k| {
        let a = &a;
        async move {
            match a.load(k).await {
                Ok(found) => found,
                Err(_) => a.load(k).await.unwrap(),
            }
        }
    };
    assert_eq!(load(&same).await.unwrap().data, "v1".as_bytes());
    assert_eq!(load(&changed).await.unwrap().data, "v2".as_bytes());
    assert_eq!(server.calls("getrange") - ranges, 2, "both copies checked");
    assert_eq!(
        server.calls("get") - gets,
        1,
        "only the changed one fetched"
    );
}

/// A server that refuses client-side tracking (here an ACL without the
/// `CLIENT` command; also Redis 5 or a proxy): no message says what changed,
/// so every use of a copy is a header check (`GETRANGE`), and another
/// instance's change still shows on the next load.
#[tokio::test]
async fn redis_without_tracking_checks_every_copy() {
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let acl = "ACL SETUSER default on nopass ~* &* +@all -client";
    assert!(
        common::redis::command(server.port, acl)
            .unwrap()
            .contains("OK")
    );
    let store = RedisStore::new(&server.url())
        .unwrap()
        .with_local_cache(100);
    let other = RedisStore::new(&server.url()).unwrap();
    let k = SessionKey::from_bytes([3; 32]);
    assert!(store.create(&k, record("v1", 1, HOUR)).await.unwrap());
    let (gets, ranges) = (server.calls("get"), server.calls("getrange"));
    for _ in 0..3 {
        assert_eq!(store.load(&k).await.unwrap().unwrap().data, "v1".as_bytes());
    }
    assert_eq!(server.calls("get") - gets, 1, "one GET, then checks");
    assert_eq!(server.calls("getrange") - ranges, 2);
    assert_eq!(
        other.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, "v2".as_bytes());
    other.delete(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
}

/// In a Cluster a copy is checked on every use too (no tracking there),
/// on the node that holds its slot.
#[tokio::test]
async fn redis_cluster_copy_is_checked_on_every_use() {
    use typed_session::store::RedisStore;

    // Its own Cluster: the command counts are this test's alone.
    let nodes = common::redis::start_cluster();
    let urls = || nodes.iter().map(common::redis::Server::url);
    let calls = |name: &str| nodes.iter().map(|n| n.calls(name)).sum::<u64>();
    let prefix = format!("copy{}:", std::process::id());
    let store = RedisStore::cluster(urls())
        .unwrap()
        .with_prefix(prefix.clone())
        .with_local_cache(100);
    let other = RedisStore::cluster(urls()).unwrap().with_prefix(prefix);
    let k = SessionKey::from_bytes([21; 32]);
    assert!(store.create(&k, record("v1", 1, HOUR)).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap().unwrap().revision, 1);
    assert_eq!(
        store.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    let (gets, ranges) = (calls("get"), calls("getrange"));
    for _ in 0..3 {
        assert_eq!(store.load(&k).await.unwrap().unwrap().data, "v2".as_bytes());
    }
    assert_eq!(calls("get") - gets, 0, "its own save is its copy");
    assert!(calls("getrange") - ranges >= 3, "each use checked");
    assert_eq!(
        other.save(&k, record("v3", 3, HOUR), 2).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, "v3".as_bytes());
    other.delete(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
}

/// A connection that stops answering without closing (a NAT or firewall
/// dropped it; here a proxy that stops forwarding it) costs one timeout:
/// the next command goes over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replaces_a_connection_that_went_silent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let silent = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (silent2, accepted2, port) = (Arc::clone(&silent), Arc::clone(&accepted), server.port);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let first = accepted2.fetch_add(1, Ordering::SeqCst) == 0;
            let upstream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            // Forwards bytes; the first connection stops (sockets kept
            // open) once `silent` is set.
            let pump = |silent: Arc<AtomicBool>| {
                move |mut from: tokio::net::tcp::OwnedReadHalf,
                      mut to: tokio::net::tcp::OwnedWriteHalf| async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if first && silent.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            };
            tokio::spawn(pump(Arc::clone(&silent2))(cr, uw));
            tokio::spawn(pump(Arc::clone(&silent2))(ur, cw));
        }
    });
    let store = RedisStore::new(&format!("redis://{proxy}"))
        .unwrap()
        .with_command_timeout(std::time::Duration::from_millis(300));
    let k = SessionKey::from_bytes([5; 32]);
    assert!(store.create(&k, record("v", 1, HOUR)).await.unwrap());
    silent.store(true, Ordering::SeqCst);
    assert!(store.load(&k).await.is_err(), "no answer: a timeout");
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, "v".as_bytes());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "over a second connection"
    );
}

/// A Redis address that accepts connections and never answers (a hung
/// server, a black hole): a burst of concurrent requests costs one connect
/// timeout and one connection attempt, not one attempt after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_a_burst_within_one_connect_timeout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use typed_session::store::RedisStore;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let store = Arc::new(
        RedisStore::new(&format!("redis://{addr}"))
            .unwrap()
            .with_connect_timeout(Duration::from_millis(500)),
    );
    let start = Instant::now();
    let loads: Vec<_> = (0..20u8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.load(&SessionKey::from_bytes([n; 32])).await.is_err() })
        })
        .collect();
    for load in loads {
        assert!(load.await.unwrap(), "an error, never a session");
    }
    let took = start.elapsed();
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection attempt");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}

/// `rediss://` (feature `redis-tls`): against a redis-server serving TLS
/// only, with a CA made for the test, the store contract holds (without and
/// with the local copy); without trusting that CA, or over plain TCP,
/// every operation is an error, never a session.
#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn redis_over_tls() {
    use std::process::{Command, Stdio};
    use typed_session::store::RedisStore;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=typed-session test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args([
            "--tls-cert-file",
            "srv.crt",
            "--tls-key-file",
            "srv.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let url = format!("rediss://127.0.0.1:{port}");
    // Each use gets its own key prefix, as the suites' keys are fixed.
    let uses = std::sync::atomic::AtomicUsize::new(0);
    let trusted = || {
        let n = uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RedisStore::new(&url)
            .unwrap()
            .with_prefix(format!("tls{n}:"))
            .with_root_certificate(&ca)
            .unwrap()
    };
    // Up once a TLS load answers.
    let probe = SessionKey::from_bytes([1; 32]);
    let start = std::time::Instant::now();
    while trusted().load(&probe).await.is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "TLS redis-server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    common::store_suite::basics(trusted()).await;
    common::store_suite::replace(trusted()).await;
    common::store_suite::basics(trusted().with_local_cache(100)).await;

    let k = SessionKey::from_bytes([2; 32]);
    let untrusted = RedisStore::new(&url).unwrap();
    assert!(
        untrusted.create(&k, record("v", 1, HOUR)).await.is_err(),
        "unknown CA"
    );
    let plain = RedisStore::new(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .with_command_timeout(std::time::Duration::from_millis(300));
    assert!(plain.load(&k).await.is_err(), "plain TCP to a TLS port");
    assert!(
        RedisStore::new(&format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .with_root_certificate(&ca)
            .is_err(),
        "a root certificate needs a rediss:// URL"
    );
    assert!(
        RedisStore::new(&url)
            .unwrap()
            .with_root_certificate(b"not a pem")
            .is_err()
    );

    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store outlives the runtime that used it (a store in a static, used by
/// several `#[tokio::test]`s): a flush dropped with its runtime before it
/// ran leaves no command stuck; in the next runtime the first command
/// reports the dead connection and the next one reconnects.
#[test]
fn redis_store_survives_the_runtime_that_used_it() {
    use std::sync::Arc;
    use std::time::Duration;
    use typed_session::store::RedisStore;

    let server = common::redis::Server::start(&["--appendonly", "no"]);
    let store = Arc::new(RedisStore::new(&server.url()).unwrap());
    let k = SessionKey::from_bytes([6; 32]);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    first.block_on(async {
        assert!(store.create(&k, record("v", 1, HOUR)).await.unwrap());
    });
    // Queue loads whose flushes are spawned but never run: the runtime
    // is dropped before it polls them.
    first.block_on(async {
        for _ in 0..3 {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.load(&k).await });
        }
        tokio::task::yield_now().await;
    });
    drop(first);
    runtime().block_on(async {
        // The connection died with its runtime: the first command finds
        // that out (an error, not a hang), the next one reconnects.
        let first = tokio::time::timeout(Duration::from_secs(5), store.load(&k)).await;
        assert!(first.is_ok(), "answered, not stuck");
        let load = tokio::time::timeout(Duration::from_secs(5), store.load(&k)).await;
        let record = load.expect("answered, not stuck").unwrap().unwrap();
        assert_eq!(record.data, "v".as_bytes());
    });
}

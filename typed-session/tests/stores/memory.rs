//! `MemoryStore`: the contract, then its bounds and eviction.

use std::time::Duration;

use crate::common::store_suite::{HOUR, record};
use typed_session::SessionKey;
use typed_session::store::{MemoryStore, SessionStore};

store_suite!(memory, MemoryStore::new());
#[tokio::test]
async fn memory_store_is_bounded() {
    let store = MemoryStore::with_capacity(100);
    for n in 0..=255u8 {
        let mut bytes = [n; 32];
        bytes[8] = n;
        assert!(
            store
                .create(&SessionKey::from_bytes(bytes), record("x", 1, HOUR))
                .await
                .unwrap()
        );
        assert!(
            store.len() <= 100,
            "len {} after {} inserts",
            store.len(),
            n as usize + 1
        );
    }
    assert_eq!(store.len(), 100);
}

#[tokio::test]
async fn memory_store_drops_expired_and_soonest_expiring_sessions_first() {
    // All keys in one shard (byte 8 picks the shard) so the sample sees them all.
    let one_shard = |n: u8| {
        let mut bytes = [n; 32];
        bytes[8] = 0;
        SessionKey::from_bytes(bytes)
    };
    let store = MemoryStore::with_capacity(11);
    for n in 0..9u8 {
        store
            .create(&one_shard(n), record("live", 1, HOUR))
            .await
            .unwrap();
    }
    store
        .create(
            &one_shard(100),
            record("dying", 1, Duration::from_millis(1)),
        )
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    store.sweep();
    assert_eq!(store.len(), 9, "sweep drops the expired session");
    store
        .create(&one_shard(101), record("new", 1, HOUR))
        .await
        .unwrap();
    store
        .create(&one_shard(102), record("soon", 1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(store.len(), 11);
    store
        .create(&one_shard(103), record("newest", 1, HOUR))
        .await
        .unwrap();
    assert_eq!(store.len(), 11, "full: one evicted");
    assert!(
        store.load(&one_shard(102)).await.unwrap().is_none(),
        "the one closest to expiry went"
    );
    for n in (0..9u8).chain([101, 103]) {
        assert!(
            store.load(&one_shard(n)).await.unwrap().is_some(),
            "live session {n} kept"
        );
    }
}

#[tokio::test]
async fn a_full_memory_store_keeps_accepting_new_sessions() {
    let store = MemoryStore::with_capacity(1000);
    for n in 0..20_000u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[8] = (n % 251) as u8;
        bytes[20..24].copy_from_slice(&n.to_be_bytes());
        let k = SessionKey::from_bytes(bytes);
        assert!(store.create(&k, record("x", 1, HOUR)).await.unwrap());
        assert!(
            store.load(&k).await.unwrap().is_some(),
            "the newest session is always kept"
        );
    }
    assert_eq!(store.len(), 1000);
}

fn spread_key(n: u32, salt: u8) -> SessionKey {
    let mut bytes = [salt; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    bytes[8] = (n % 251) as u8;
    bytes[20..24].copy_from_slice(&n.to_be_bytes());
    SessionKey::from_bytes(bytes)
}

/// Signs `n` users in: created anonymous, then regenerated (as a login does).
async fn sign_in(store: &MemoryStore, n: u32) -> Vec<SessionKey> {
    let mut keys = Vec::new();
    for i in 0..n {
        let (anon, signed) = (spread_key(i, 1), spread_key(i, 2));
        assert!(store.create(&anon, record("anon", 1, HOUR)).await.unwrap());
        let out = store
            .replace(&anon, 1, &signed, record("signed-in", 1, HOUR))
            .await
            .unwrap();
        assert_eq!(out, typed_session::store::ReplaceOutcome::Replaced);
        keys.push(signed);
    }
    keys
}

#[tokio::test]
async fn an_anonymous_flood_never_evicts_signed_in_sessions() {
    let store = MemoryStore::with_capacity(1000);
    let signed = sign_in(&store, 500).await;
    assert_eq!(store.anonymous_len(), 0);
    // 10x the capacity in new anonymous sessions.
    for i in 0..10_000 {
        assert!(
            store
                .create(&spread_key(i, 3), record("flood", 1, HOUR))
                .await
                .unwrap()
        );
        assert!(store.len() <= 1000);
    }
    let mut alive = 0;
    for k in &signed {
        if store.load(k).await.unwrap().is_some() {
            alive += 1;
        }
    }
    assert_eq!(alive, 500, "every signed-in session survived the flood");
    assert_eq!(store.anonymous_len(), 500, "the flood evicted only itself");
}

#[tokio::test]
async fn a_store_full_of_signed_in_sessions_refuses_anonymous_ones() {
    let store = MemoryStore::with_capacity(100);
    let signed = sign_in(&store, 100).await;
    let err = store
        .create(&spread_key(9999, 4), record("one more", 1, HOUR))
        .await
        .unwrap_err();
    assert!(
        std::error::Error::source(&err)
            .is_some_and(|s| s.to_string().contains("full of signed-in sessions")),
        "{err:?}"
    );
    for k in &signed {
        assert!(store.load(k).await.unwrap().is_some());
    }
    // A logout makes room again.
    store.delete(&signed[0]).await.unwrap();
    assert!(
        store
            .create(&spread_key(9999, 4), record("now", 1, HOUR))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_byte_budget_holds() {
    let store = MemoryStore::with_capacity(1_000_000).with_max_bytes(64 * 1024);
    let kib = "k".repeat(1024);
    for i in 0..1000 {
        assert!(
            store
                .create(&spread_key(i, 5), record(&kib, 1, HOUR))
                .await
                .unwrap()
        );
        assert!(
            store.bytes() <= 64 * 1024,
            "{} bytes after {i}",
            store.bytes()
        );
    }
    assert!(
        store.len() < 64,
        "{} sessions of 1 KiB in 64 KiB",
        store.len()
    );
    // A save that grows a session is bounded too.
    let k = spread_key(999, 5);
    let big = "b".repeat(128 * 1024);
    let err = store.save(&k, record(&big, 2, HOUR), 1).await;
    assert!(
        err.is_err(),
        "a session larger than the whole budget is refused"
    );
    assert!(store.bytes() <= 64 * 1024);
}

//! The `SessionStore` contract, checked against every built-in store (one
//! conformance suite, instantiated per store), plus store-specific behaviour.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use typed_session::SessionKey;
use typed_session::store::{MemoryStore, Record, SaveOutcome, SessionStore};

fn key(n: u8) -> SessionKey {
    let mut bytes = [0u8; 32];
    bytes[0] = n;
    bytes[8] = n.wrapping_mul(37);
    bytes[31] = 0xaa;
    SessionKey::from_bytes(bytes)
}

fn record(data: &str, revision: u64, ttl: Duration) -> Record {
    Record::new(data.as_bytes().to_vec(), revision, SystemTime::now() + ttl)
}

const HOUR: Duration = Duration::from_secs(3600);

async fn conformance(store: &impl SessionStore) {
    let k = key(1);
    assert_eq!(store.load(&k).await.unwrap(), None);

    // create is create-if-absent
    assert!(store.create(&k, record("a", 1, HOUR)).await.unwrap());
    assert!(
        !store.create(&k, record("b", 1, HOUR)).await.unwrap(),
        "never overwrites"
    );
    let got = store.load(&k).await.unwrap().unwrap();
    assert_eq!((&got.data[..], got.revision), (&b"a"[..], 1));

    // save is compare-and-set on the revision
    assert_eq!(
        store.save(&k, record("c", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    match store.save(&k, record("d", 2, HOUR), 1).await.unwrap() {
        SaveOutcome::Conflict(Some(current)) => {
            assert_eq!(
                (&current.data[..], current.revision),
                (&b"c"[..], 2),
                "the conflict reports what is stored"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(&store.load(&k).await.unwrap().unwrap().data[..], b"c");

    // delete, idempotent; a save after delete does not resurrect
    store.delete(&k).await.unwrap();
    store.delete(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert_eq!(
        store.save(&k, record("e", 3, HOUR), 2).await.unwrap(),
        SaveOutcome::Conflict(None)
    );
    assert_eq!(store.load(&k).await.unwrap(), None);

    // expired records are never returned, can be created over, and cannot be saved
    let e = key(2);
    assert!(
        store
            .create(&e, record("old", 1, Duration::from_millis(1)))
            .await
            .unwrap()
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(store.load(&e).await.unwrap(), None);
    assert_eq!(
        store.save(&e, record("x", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Conflict(None)
    );
    assert!(store.create(&e, record("new", 1, HOUR)).await.unwrap());
    assert_eq!(&store.load(&e).await.unwrap().unwrap().data[..], b"new");

    // keys are independent
    for n in 10..60 {
        assert!(
            store
                .create(&key(n), record(&n.to_string(), 1, HOUR))
                .await
                .unwrap()
        );
    }
    for n in 10..60 {
        assert_eq!(
            store.load(&key(n)).await.unwrap().unwrap().data,
            n.to_string().into_bytes()
        );
    }
}

/// The custom store of the `typed_session::store` module docs, checked
/// against the same contract.
#[derive(Debug, Default)]
struct MapStore(std::sync::Mutex<std::collections::HashMap<SessionKey, Record>>);

impl SessionStore for MapStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, typed_session::StoreError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .get(key)
            .filter(|r| r.expires_at > SystemTime::now())
            .cloned())
    }

    async fn create(
        &self,
        key: &SessionKey,
        record: Record,
    ) -> Result<bool, typed_session::StoreError> {
        let mut map = self.0.lock().unwrap();
        if map
            .get(key)
            .is_some_and(|r| r.expires_at > SystemTime::now())
        {
            return Ok(false);
        }
        map.insert(*key, record);
        Ok(true)
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, typed_session::StoreError> {
        let mut map = self.0.lock().unwrap();
        match map.get(key).filter(|r| r.expires_at > SystemTime::now()) {
            Some(current) if current.revision == expected => {
                map.insert(*key, record);
                Ok(SaveOutcome::Saved)
            }
            current => Ok(SaveOutcome::Conflict(current.cloned())),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), typed_session::StoreError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

#[tokio::test]
async fn documented_custom_store_conformance() {
    conformance(&MapStore::default()).await;
}

#[tokio::test]
async fn memory_store_conformance() {
    conformance(&MemoryStore::new()).await;
}

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

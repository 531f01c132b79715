//! The `SessionStore` contract: written once, run on every store by
//! `store_suite!` (see `stores.rs`).

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime};

use typed_session::SessionKey;
use typed_session::store::{Record, ReplaceOutcome, SaveOutcome, SessionStore};

pub fn key(n: u8) -> SessionKey {
    let mut bytes = [0u8; 32];
    bytes[0] = n;
    bytes[8] = n.wrapping_mul(37);
    bytes[31] = 0xaa;
    SessionKey::from_bytes(bytes)
}

pub fn record(data: &str, revision: u64, ttl: Duration) -> Record {
    Record::new(data.as_bytes().to_vec(), revision, SystemTime::now() + ttl)
}

pub const HOUR: Duration = Duration::from_secs(3600);

contract! {
    ($)
    /// create-if-absent, compare-and-set, delete, expiry, independent keys.
    pub async fn basics(store: impl SessionStore) {
        let store = &store;
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

    /// `touch` moves the expiry only, and never brings a record back.
    pub async fn touch(store: impl SessionStore) {
        let k = key(70);
        assert!(
            !store.touch(&k, SystemTime::now() + HOUR).await.unwrap(),
            "nothing to touch"
        );
        assert_eq!(store.load(&k).await.unwrap(), None, "touch creates nothing");
        assert!(
            store
                .create(&k, record("t", 1, Duration::from_millis(300)))
                .await
                .unwrap()
        );
        let later = SystemTime::now() + HOUR;
        assert!(store.touch(&k, later).await.unwrap());
        std::thread::sleep(Duration::from_millis(400));
        let got = store
            .load(&k)
            .await
            .unwrap()
            .expect("alive past its first expiry");
        assert_eq!(&got.data[..], b"t", "bytes unchanged");
        // A save at the revision load reports still works after a touch.
        let rev = got.revision;
        assert_eq!(
            store
                .save(&k, record("u", rev + 1, HOUR), rev)
                .await
                .unwrap(),
            SaveOutcome::Saved
        );
        store.delete(&k).await.unwrap();
        assert!(
            !store.touch(&k, later).await.unwrap(),
            "a deleted record stays deleted"
        );
        assert_eq!(store.load(&k).await.unwrap(), None);
    }

    /// `replace` is one step: checks the old record's revision, stores the new
    /// one, removes the old one; never revives a deleted record.
    pub async fn replace(store: impl SessionStore) {
        let (old, new) = (key(80), key(81));
        assert!(store.create(&old, record("v1", 1, HOUR)).await.unwrap());
        assert_eq!(
            store.save(&old, record("v2", 2, HOUR), 1).await.unwrap(),
            SaveOutcome::Saved
        );
        match store
            .replace(&old, 1, &new, record("n", 1, HOUR))
            .await
            .unwrap()
        {
            ReplaceOutcome::Conflict(Some(current)) => assert_eq!(current.revision, 2),
            other => panic!("a stale revision is a conflict: {other:?}"),
        }
        assert_eq!(
            store.load(&new).await.unwrap(),
            None,
            "nothing created on conflict"
        );
        assert_eq!(
            store
                .replace(&old, 2, &new, record("n", 1, HOUR))
                .await
                .unwrap(),
            ReplaceOutcome::Replaced
        );
        assert_eq!(store.load(&old).await.unwrap(), None, "the old id is dead");
        assert_eq!(&store.load(&new).await.unwrap().unwrap().data[..], b"n");
        // The old record is gone: replacing it again creates nothing.
        let third = key(82);
        assert_eq!(
            store
                .replace(&old, 2, &third, record("x", 1, HOUR))
                .await
                .unwrap(),
            ReplaceOutcome::Conflict(None)
        );
        assert_eq!(store.load(&third).await.unwrap(), None, "no resurrection");
        // A taken new key is refused and changes nothing.
        assert!(
            store
                .create(&third, record("taken", 1, HOUR))
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .replace(&new, 1, &third, record("y", 1, HOUR))
                .await
                .unwrap(),
            ReplaceOutcome::KeyTaken
        );
        assert_eq!(&store.load(&new).await.unwrap().unwrap().data[..], b"n");
        assert_eq!(
            &store.load(&third).await.unwrap().unwrap().data[..],
            b"taken"
        );
    }
}

/// Defines the contract's tests as functions (the TLS test calls them on
/// its own store) and `store_suite!`, which runs every one of them on a
/// store: a test written in `contract!` runs on every store.
macro_rules! contract {
    (($d:tt) $($(#[$attr:meta])* pub async fn $name:ident($store:ident: impl SessionStore) $body:block)*) => {
        $($(#[$attr])* pub async fn $name($store: impl SessionStore) $body)*

        /// Instantiates the store contract suite for one store, every
        /// test of it: `store_suite!(memory, MemoryStore::new());`, with
        /// `let` bindings that must live as long as the store (a
        /// temporary directory) before it.
        #[macro_export]
        macro_rules! store_suite {
            ($d suite:ident, $d(let $d var:ident = $d init:expr;)* $d make:expr) => {
                mod $d suite {
                    use super::*;
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $name() {
                            $d(let $d var = $d init;)*
                            $d crate::common::store_suite::$name($d make).await;
                        }
                    )*
                }
            };
        }
    };
}
use contract;

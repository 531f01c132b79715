//! Decoded copies of the records this process wrote, for every server-side
//! store: a load whose bytes are exactly those of a copy skips the parse.
//!
//! A copy is found by the session key and used only when the record the
//! store returned has the very bytes the copy was encoded to (the same
//! allocation, as the built-in stores return it, or equal bytes). So a
//! copy can never stand for a record another process or request wrote,
//! whatever the store: stale copies are only ever unused. Bounded in
//! entries and bytes; a full shard forgets an arbitrary entry.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::seam::TypedCache;
use crate::id::SessionKey;

const SHARDS: usize = 64;
/// Entries per shard: 16,384 copies in all.
const PER_SHARD: usize = 256;
/// Bytes per shard (records counted twice, for the decoded value beside
/// them): 64 MiB in all.
const BYTES_PER_SHARD: usize = 1 << 20;

struct Kept {
    data: Bytes,
    copy: TypedCache,
}

#[derive(Default)]
struct Shard {
    map: HashMap<SessionKey, Kept>,
    bytes: usize,
}

fn cost(data: &Bytes) -> usize {
    2 * data.len() + 64
}

pub(crate) struct Copies {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for Copies {
    fn default() -> Self {
        Copies {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Copies {
    fn shard(&self, key: &SessionKey) -> MutexGuard<'_, Shard> {
        self.shards[usize::from(key.as_bytes()[2]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy of `data` under `key`, if one is kept.
    pub(crate) fn get(&self, key: &SessionKey, data: &Bytes) -> Option<TypedCache> {
        let shard = self.shard(key);
        let kept = shard.map.get(key)?;
        let same = (kept.data.as_ptr() == data.as_ptr() && kept.data.len() == data.len())
            || kept.data == *data;
        same.then(|| kept.copy.clone())
    }

    /// Keeps `copy` as the decoded value of `data`, the record now under `key`.
    pub(crate) fn put(&self, key: &SessionKey, data: Bytes, copy: TypedCache) {
        let added = cost(&data);
        let mut shard = self.shard(key);
        // The copy of what was under `key` before is of no use any more,
        // whether or not this one is kept.
        if let Some(old) = shard.map.remove(key) {
            shard.bytes -= cost(&old.data);
        }
        if added > BYTES_PER_SHARD {
            return;
        }
        while shard.map.len() >= PER_SHARD || shard.bytes + added > BYTES_PER_SHARD {
            // Keys are hashes: the first is an arbitrary one.
            let Some(victim) = shard.map.keys().next().copied() else {
                break;
            };
            if let Some(old) = shard.map.remove(&victim) {
                shard.bytes -= cost(&old.data);
            }
        }
        shard.bytes += added;
        shard.map.insert(*key, Kept { data, copy });
    }

    /// Drops the copy under `key` (the record ended or was replaced).
    pub(crate) fn forget(&self, key: &SessionKey) {
        let mut shard = self.shard(key);
        if let Some(old) = shard.map.remove(key) {
            shard.bytes -= cost(&old.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::id::SessionId;

    fn typed(n: u32) -> TypedCache {
        TypedCache(Arc::new(n))
    }

    #[test]
    fn a_copy_serves_only_its_own_bytes() {
        let copies = Copies::default();
        let key = SessionId::random().key();
        let data = Bytes::from_static(br#"{"v":1}"#);
        copies.put(&key, data.clone(), typed(1));
        assert!(copies.get(&key, &data).is_some(), "same allocation");
        let equal = Bytes::copy_from_slice(&data);
        assert!(copies.get(&key, &equal).is_some(), "equal bytes");
        let other = Bytes::from_static(br#"{"v":2}"#);
        assert!(
            copies.get(&key, &other).is_none(),
            "another writer's record"
        );
        copies.forget(&key);
        assert!(copies.get(&key, &data).is_none());
    }

    #[test]
    fn copies_stay_within_their_bounds() {
        let copies = Copies::default();
        let data = Bytes::from(vec![b'x'; 1000]);
        for _ in 0..50_000 {
            copies.put(&SessionId::random().key(), data.clone(), typed(0));
        }
        for shard in copies.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            assert!(shard.map.len() <= PER_SHARD);
            assert!(shard.bytes <= BYTES_PER_SHARD);
            assert_eq!(shard.bytes, shard.map.len() * cost(&data));
        }
    }

    #[test]
    fn a_record_too_large_to_keep_drops_the_older_copy() {
        let copies = Copies::default();
        let key = SessionId::random().key();
        let small = Bytes::from_static(b"{}");
        copies.put(&key, small.clone(), typed(1));
        let huge = Bytes::from(vec![b'x'; BYTES_PER_SHARD]);
        copies.put(&key, huge.clone(), typed(2));
        assert!(copies.get(&key, &huge).is_none(), "too large to keep");
        assert!(copies.get(&key, &small).is_none(), "the older copy is gone");
        let shard = copies.shard(&key);
        assert_eq!((shard.map.len(), shard.bytes), (0, 0));
    }
}

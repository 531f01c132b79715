//! [`MemoryStore`]: a bounded, sharded in-process store.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use super::{Record, SaveOutcome, SessionStore};
use crate::clock::unix_millis;
use crate::error::StoreError;
use crate::id::SessionKey;

const SHARDS: usize = 64;
/// Every this many inserts into a shard, the shard drops its expired records.
const SWEEP_EVERY: u64 = 1024;
/// When full, the victim is the entry closest to expiry among this many.
const EVICTION_SAMPLE: usize = 16;

/// Sessions kept in this process's memory.
///
/// * Sharded (64 locks), so concurrent requests on different sessions rarely
///   contend; one load is a read lock and two reference-count increments, no copy.
/// * Keeps each session's decoded value beside its bytes, so a load skips
///   parsing JSON (validation on load still runs).
/// * Bounded: at most `capacity` sessions (default 1,000,000). When full, each
///   new session evicts one: the closest to expiry among 16 sampled from the
///   shard it lands in (an approximation, as Redis's eviction is, that keeps
///   every insert O(1) under a flood of new sessions; logged at `warn`, once
///   per 1,024 evictions).
/// * Expired sessions are never returned and are swept every 1,024 inserts per shard.
///
/// Data lives as long as the process: sessions do not survive a restart and
/// are not shared between instances (a persistent store, a custom
/// [`SessionStore`], does that). Clones share the same sessions.
///
/// ```
/// use typed_session::{SessionLayer, store::MemoryStore};
///
/// let store = MemoryStore::with_capacity(10_000);
/// let layer = SessionLayer::new(store.clone());
/// assert_eq!(store.len(), 0);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Shard]>,
    capacity: usize,
    /// Records held (expired ones not yet swept included).
    len: AtomicUsize,
    evictions: AtomicU64,
}

type Map = HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>;

struct Shard {
    map: RwLock<Map>,
    inserts: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Keys are SHA-256 outputs: any 8 bytes are already uniformly spread.
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// Passes the key's own bits through (see `Key::hash`).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    record: Record,
    expires_ms: u64,
}

impl Entry {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }

    fn to_record(&self) -> Record {
        self.record.clone()
    }

    fn from_record(record: Record) -> Self {
        Entry {
            expires_ms: unix_millis(record.expires_at),
            record,
        }
    }
}

impl MemoryStore {
    /// A store for up to 1,000,000 sessions.
    pub fn new() -> Self {
        MemoryStore::with_capacity(1_000_000)
    }

    /// A store for up to `capacity` sessions (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                map: RwLock::new(HashMap::default()),
                inserts: AtomicU64::new(0),
            })
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                capacity: capacity.max(1),
                len: AtomicUsize::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// `true` when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired session now (they are also dropped as the store is used).
    pub fn sweep(&self) {
        let now = unix_millis(SystemTime::now());
        for shard in self.inner.shards.iter() {
            self.inner.drop_expired(&mut write(&shard.map), now);
        }
    }

    fn shard(&self, key: &SessionKey) -> &Shard {
        let b = key.as_bytes();
        &self.inner.shards[usize::from(b[8]) % SHARDS]
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.inner.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means a panic elsewhere while holding it; every write
// below leaves the map consistent, so the data is still good.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Removes a shard's expired entries and keeps the count in step.
    fn drop_expired(&self, map: &mut Map, now: u64) {
        let before = map.len();
        map.retain(|_, e| e.live(now));
        self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
    }

    /// Makes room for one more entry in `shard`; called with its write lock
    /// held. O(1) amortized, also when the store is full (a flood of new
    /// sessions must not make each insert scan a shard).
    fn make_room(&self, shard: &Shard, map: &mut Map, now: u64) {
        let n = shard.inserts.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.drop_expired(map, now);
        }
        if self.len.load(Ordering::Relaxed) < self.capacity {
            return;
        }
        // Full: drop the entry closest to expiry among a few of this shard's
        // (keys are SHA-256 outputs, so the ones the table yields first are a
        // random sample); an expired one, if sampled, goes first.
        let victim = map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, e)| e.expires_ms)
            .map(|(k, _)| *k);
        if let Some(victim) = victim {
            map.remove(&victim);
            self.len.fetch_sub(1, Ordering::Relaxed);
            let evictions = self.evictions.fetch_add(1, Ordering::Relaxed);
            if evictions.is_multiple_of(1024) {
                tracing::warn!(
                    capacity = self.capacity,
                    evictions = evictions + 1,
                    "memory session store is full; evicting sessions close to expiry"
                );
            }
        }
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let now = unix_millis(SystemTime::now());
        let shard = self.shard(key);
        let map = read(&shard.map);
        Ok(map
            .get(&Key(*key.as_bytes()))
            .filter(|e| e.live(now))
            .map(Entry::to_record))
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        let now = unix_millis(SystemTime::now());
        let shard = self.shard(key);
        let mut map = write(&shard.map);
        self.inner.make_room(shard, &mut map, now);
        // One probe for both the liveness check and the insert.
        match map.entry(Key(*key.as_bytes())) {
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if slot.get().live(now) {
                    return Ok(false);
                }
                // An expired record under the same key: reuse its slot.
                slot.insert(Entry::from_record(record));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Entry::from_record(record));
                self.inner.len.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(true)
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let now = unix_millis(SystemTime::now());
        let shard = self.shard(key);
        let mut map = write(&shard.map);
        match map.get_mut(&Key(*key.as_bytes())) {
            Some(entry) if entry.live(now) => {
                if entry.record.revision == expected {
                    *entry = Entry::from_record(record);
                    Ok(SaveOutcome::Saved)
                } else {
                    Ok(SaveOutcome::Conflict(Some(entry.to_record())))
                }
            }
            _ => Ok(SaveOutcome::Conflict(None)),
        }
    }

    fn keeps_records_in_memory(&self) -> bool {
        true
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let shard = self.shard(key);
        if write(&shard.map).remove(&Key(*key.as_bytes())).is_some() {
            self.inner.len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

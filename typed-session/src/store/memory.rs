//! [`MemoryStore`]: a bounded, sharded in-process store that anonymous
//! traffic cannot use to push signed-in users out.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::clock::unix_millis;
use crate::error::StoreError;
use crate::id::SessionKey;

const SHARDS: usize = 64;
/// Every this many inserts into a shard, the shard drops its expired records.
const SWEEP_EVERY: u64 = 1024;
/// When full, the victim is the entry closest to expiry among this many.
const EVICTION_SAMPLE: usize = 16;
/// What one entry costs beyond its bytes (key, record, table slot, allocation
/// headers), for the byte budget; an estimate, as is counting the decoded
/// copy as large as the bytes it was decoded from.
const ENTRY_OVERHEAD: usize = 128;

/// Sessions kept in this process's memory: for one process, development,
/// tests and small deployments. Sessions do not survive a restart and are
/// not shared between instances: for that, use a persistent store
/// ([`FileStore`](crate::store) with the `file-store` feature, for
/// processes on one machine).
///
/// * Sharded (64 locks), so concurrent requests on different sessions rarely
///   contend; one load is a read lock and two reference-count increments, no copy.
/// * Keeps each session's decoded value beside its bytes, so a load skips
///   parsing JSON (validation on load still runs).
/// * Bounded in count (default 1,000,000 sessions) and in bytes (default
///   512 MiB, an estimate: the encoded bytes twice, for the decoded copy,
///   plus 128 per entry).
/// * **Anonymous traffic cannot evict signed-in users.** A session is
///   *anonymous* until its id is regenerated (`regenerate*`, which apps call
///   at login; a login on a request without a session counts too); then it
///   is *established*. When the store is full, a new
///   session evicts an anonymous one (the closest to expiry among 16
///   sampled, an O(1) approximation as Redis's eviction is; logged at `warn`
///   once per 1,024). Established sessions are never evicted: when nothing
///   anonymous is left, new anonymous sessions are refused (the request gets
///   `503 session store unavailable`) until sessions expire or log out. A
///   flood of cookie-less writes thus costs the flooder's own sessions, and
///   at worst new visitors, never the users already signed in.
/// * Expired sessions are never returned and are swept every 1,024 inserts per shard.
///
/// Clones share the same sessions.
///
/// ```
/// use typed_session::{SessionLayer, store::MemoryStore};
///
/// let store = MemoryStore::with_capacity(10_000).with_max_bytes(64 << 20);
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
    max_bytes: usize,
    /// Records held (expired ones not yet swept included).
    len: AtomicUsize,
    /// Of which anonymous.
    anonymous: AtomicUsize,
    /// Estimated bytes held.
    bytes: AtomicUsize,
    evictions: AtomicU64,
    refusals: AtomicU64,
}

type Map = HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Maps {
    /// Regenerated at least once (signed in).
    established: Map,
    anonymous: Map,
}

struct Shard {
    maps: RwLock<Maps>,
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
    cost: usize,
}

impl Entry {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }

    fn new(record: Record) -> Self {
        Entry {
            expires_ms: unix_millis(record.expires_at),
            cost: ENTRY_OVERHEAD + record.data.len(),
            record,
        }
    }
}

/// Which map of a shard an entry is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Established,
    Anonymous,
}

impl Maps {
    fn map(&mut self, class: Class) -> &mut Map {
        match class {
            Class::Established => &mut self.established,
            Class::Anonymous => &mut self.anonymous,
        }
    }

    fn find(&self, key: &Key) -> Option<(Class, &Entry)> {
        self.established
            .get(key)
            .map(|e| (Class::Established, e))
            .or_else(|| self.anonymous.get(key).map(|e| (Class::Anonymous, e)))
    }
}

/// The store is full of established sessions: a new anonymous session (or
/// a write that would grow the store past its byte budget) is refused.
#[derive(Debug, thiserror::Error)]
#[error("memory session store is full of signed-in sessions; new anonymous sessions are refused")]
struct Full;

impl MemoryStore {
    /// A store for up to 1,000,000 sessions and 512 MiB.
    pub fn new() -> Self {
        MemoryStore::with_capacity(1_000_000)
    }

    /// A store for up to `capacity` sessions (at least 1) and 512 MiB.
    pub fn with_capacity(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                maps: RwLock::new(Maps::default()),
                inserts: AtomicU64::new(0),
            })
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                capacity: capacity.max(1),
                max_bytes: 512 << 20,
                len: AtomicUsize::new(0),
                anonymous: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
                evictions: AtomicU64::new(0),
                refusals: AtomicU64::new(0),
            }),
        }
    }

    /// Bounds the estimated bytes held (default 512 MiB; at least 1 KiB).
    /// Call it before the store is shared: it applies to this handle only
    /// if clones already exist.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        let max_bytes = max_bytes.max(1024);
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.max_bytes = max_bytes,
            None => tracing::warn!("MemoryStore::with_max_bytes on a shared store is ignored"),
        }
        self
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Of [`len`](Self::len), the sessions never regenerated (anonymous).
    pub fn anonymous_len(&self) -> usize {
        self.inner.anonymous.load(Ordering::Relaxed)
    }

    /// The estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// `true` when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired session now (they are also dropped as the store is used).
    pub fn sweep(&self) {
        let now = unix_millis(SystemTime::now());
        for shard in self.inner.shards.iter() {
            self.inner.drop_expired(&mut write(&shard.maps), now);
        }
    }

    fn shard_index(key: &SessionKey) -> usize {
        usize::from(key.as_bytes()[8]) % SHARDS
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
            .field("max_bytes", &self.inner.max_bytes)
            .field("len", &self.len())
            .field("anonymous", &self.anonymous_len())
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means a panic elsewhere while holding it; every write
// below leaves the maps consistent, so the data is still good.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn added(&self, class: Class, cost: usize) {
        self.len.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        if class == Class::Anonymous {
            self.anonymous.fetch_add(1, Ordering::Relaxed);
        }
        self.report();
    }

    fn removed(&self, class: Class, cost: usize) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(cost, Ordering::Relaxed);
        if class == Class::Anonymous {
            self.anonymous.fetch_sub(1, Ordering::Relaxed);
        }
        self.report();
    }

    /// The gauges (feature `metrics`).
    fn report(&self) {
        crate::telemetry::live(
            "MemoryStore",
            self.len.load(Ordering::Relaxed) as f64,
            self.bytes.load(Ordering::Relaxed) as f64,
        );
    }

    fn resized(&self, old: usize, new: usize) {
        self.bytes.fetch_add(new, Ordering::Relaxed);
        self.bytes.fetch_sub(old, Ordering::Relaxed);
    }

    /// Inserts an entry whose counts were already added (reserved),
    /// replacing (and uncounting) any entry under the same key.
    fn insert_reserved(&self, maps: &mut Maps, class: Class, key: Key, entry: Entry) {
        if let Some(old) = maps.map(class).insert(key, entry) {
            self.removed(class, old.cost);
        }
    }

    fn remove(&self, maps: &mut Maps, key: &Key) -> Option<Entry> {
        for class in [Class::Established, Class::Anonymous] {
            if let Some(entry) = maps.map(class).remove(key) {
                self.removed(class, entry.cost);
                return Some(entry);
            }
        }
        None
    }

    /// Removes a shard's expired entries and keeps the counts in step.
    fn drop_expired(&self, maps: &mut Maps, now: u64) {
        for class in [Class::Established, Class::Anonymous] {
            maps.map(class).retain(|_, e| {
                let live = e.live(now);
                if !live {
                    self.removed(class, e.cost);
                }
                live
            });
        }
    }

    fn sweep_sometimes(&self, shard: &Shard, maps: &mut Maps, now: u64) {
        let n = shard.inserts.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.drop_expired(maps, now);
        }
    }

    fn over_budget(&self) -> bool {
        self.len.load(Ordering::Relaxed) > self.capacity
            || self.bytes.load(Ordering::Relaxed) > self.max_bytes
    }

    /// Evicts until the counts, which already include what the caller is
    /// about to add (reserved first, so that concurrent inserts into other
    /// shards see each other and the bound is exact), are within budget:
    /// expired entries and anonymous sessions only, never `keep`. `false`
    /// when nothing is left to evict. `held` are the shards whose locks the
    /// caller holds.
    fn make_room(&self, held: &mut [(usize, &mut Maps)], keep: &Key, now: u64) -> bool {
        while self.over_budget() {
            if !self.evict_one(held, keep, now) {
                let refusals = self.refusals.fetch_add(1, Ordering::Relaxed);
                if refusals.is_multiple_of(1024) {
                    tracing::warn!(
                        capacity = self.capacity,
                        max_bytes = self.max_bytes,
                        refusals = refusals + 1,
                        "memory session store is full of signed-in sessions; refusing new anonymous sessions"
                    );
                }
                return false;
            }
        }
        true
    }

    fn evict_one(&self, held: &mut [(usize, &mut Maps)], keep: &Key, now: u64) -> bool {
        for (_, maps) in held.iter_mut() {
            if self.evict_from(maps, keep, now) {
                return true;
            }
        }
        // Other shards: without waiting, so that two full shards evicting
        // into each other cannot deadlock.
        let start = self.evictions.load(Ordering::Relaxed) as usize;
        for i in 0..SHARDS {
            let index = (start + i) % SHARDS;
            if held.iter().any(|(h, _)| *h == index) {
                continue;
            }
            if let Ok(mut maps) = self.shards[index].maps.try_write()
                && self.evict_from(&mut maps, keep, now)
            {
                return true;
            }
        }
        false
    }

    fn evict_from(&self, maps: &mut Maps, keep: &Key, now: u64) -> bool {
        // An expired session of either kind goes first; then the anonymous
        // session closest to expiry among a sample (keys are SHA-256
        // outputs, so the first ones the table yields are a random sample).
        let expired = maps
            .established
            .iter()
            .take(EVICTION_SAMPLE)
            .find(|(k, e)| !e.live(now) && *k != keep)
            .map(|(k, _)| *k);
        if let Some(victim) = expired {
            self.remove(maps, &victim);
            return true;
        }
        let victim = maps
            .anonymous
            .iter()
            .filter(|(k, _)| *k != keep)
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, e)| e.expires_ms)
            .map(|(k, _)| *k);
        let Some(victim) = victim else {
            return false;
        };
        self.remove(maps, &victim);
        let evictions = self.evictions.fetch_add(1, Ordering::Relaxed);
        if evictions.is_multiple_of(1024) {
            tracing::warn!(
                capacity = self.capacity,
                evictions = evictions + 1,
                "memory session store is full; evicting anonymous sessions close to expiry"
            );
        }
        true
    }
}

impl MemoryStore {
    /// `create`; `established`: written by a login, never evicted for an
    /// anonymous session.
    pub(crate) fn create_as(
        &self,
        key: &SessionKey,
        record: Record,
        established: bool,
    ) -> Result<bool, StoreError> {
        let now = unix_millis(SystemTime::now());
        let index = Self::shard_index(key);
        let shard = &self.inner.shards[index];
        let k = Key(*key.as_bytes());
        let entry = Entry::new(record);
        let class = if established {
            Class::Established
        } else {
            Class::Anonymous
        };
        let mut maps = write(&shard.maps);
        self.inner.sweep_sometimes(shard, &mut maps, now);
        // A live record under the key, in either map: refused. An expired
        // one: replaced.
        if let Some((_, e)) = maps.find(&k) {
            if e.live(now) {
                return Ok(false);
            }
            self.inner.remove(&mut maps, &k);
        }
        // An established session (a login on a request without a session)
        // may take the place of an anonymous one like any other new session.
        self.inner.added(class, entry.cost);
        if !self.inner.make_room(&mut [(index, &mut maps)], &k, now) {
            self.inner.removed(class, entry.cost);
            return Err(StoreError::new(Full));
        }
        maps.map(class).insert(k, entry);
        Ok(true)
    }
}

impl SessionStore for MemoryStore {
    fn name(&self) -> &'static str {
        "MemoryStore"
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let now = unix_millis(SystemTime::now());
        let shard = &self.inner.shards[Self::shard_index(key)];
        let maps = read(&shard.maps);
        Ok(maps
            .find(&Key(*key.as_bytes()))
            .filter(|(_, e)| e.live(now))
            .map(|(_, e)| e.record.clone()))
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        self.create_as(key, record, false)
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let now = unix_millis(SystemTime::now());
        let index = Self::shard_index(key);
        let k = Key(*key.as_bytes());
        let entry = Entry::new(record);
        let mut maps = write(&self.inner.shards[index].maps);
        let mut grows = None;
        for class in [Class::Established, Class::Anonymous] {
            let Some(current) = maps.map(class).get_mut(&k) else {
                continue;
            };
            if !current.live(now) {
                return Ok(SaveOutcome::Conflict(None));
            }
            if current.record.revision != expected {
                return Ok(SaveOutcome::Conflict(Some(current.record.clone())));
            }
            if entry.cost <= current.cost {
                // The common case: one probe, no growth.
                self.inner.resized(current.cost, entry.cost);
                *current = entry;
                return Ok(SaveOutcome::Saved);
            }
            grows = Some((class, current.cost));
            break;
        }
        let Some((class, old_cost)) = grows else {
            return Ok(SaveOutcome::Conflict(None));
        };
        let growth = entry.cost - old_cost;
        self.inner.bytes.fetch_add(growth, Ordering::Relaxed);
        if !self.inner.make_room(&mut [(index, &mut maps)], &k, now) {
            self.inner.bytes.fetch_sub(growth, Ordering::Relaxed);
            return Err(StoreError::new(Full));
        }
        if let Some(slot) = maps.map(class).get_mut(&k) {
            *slot = entry;
        }
        Ok(SaveOutcome::Saved)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let shard = &self.inner.shards[Self::shard_index(key)];
        self.inner
            .remove(&mut write(&shard.maps), &Key(*key.as_bytes()));
        Ok(())
    }

    async fn touch(&self, key: &SessionKey, expires_at: SystemTime) -> Result<bool, StoreError> {
        let now = unix_millis(SystemTime::now());
        let shard = &self.inner.shards[Self::shard_index(key)];
        let k = Key(*key.as_bytes());
        let mut maps = write(&shard.maps);
        for class in [Class::Established, Class::Anonymous] {
            if let Some(entry) = maps.map(class).get_mut(&k) {
                if !entry.live(now) {
                    return Ok(false);
                }
                entry.record.expires_at = expires_at;
                entry.expires_ms = unix_millis(expires_at);
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn replace(
        &self,
        old: &SessionKey,
        expected: u64,
        new: &SessionKey,
        record: Record,
    ) -> Result<ReplaceOutcome, StoreError> {
        let now = unix_millis(SystemTime::now());
        let (i, j) = (Self::shard_index(old), Self::shard_index(new));
        let (ko, kn) = (Key(*old.as_bytes()), Key(*new.as_bytes()));
        // Both shards locked, in index order, so the check, the insert and
        // the removal are one step for every other request.
        let (mut first, mut second) = if i <= j {
            let a = write(&self.inner.shards[i].maps);
            let b = (i != j).then(|| write(&self.inner.shards[j].maps));
            (a, b)
        } else {
            let b = write(&self.inner.shards[j].maps);
            let a = write(&self.inner.shards[i].maps);
            (a, Some(b))
        };
        // `first` holds `old`'s shard, `second` (if any) `new`'s.
        let old_class = match first.find(&ko) {
            Some((class, e)) if e.live(now) && e.record.revision == expected => class,
            Some((_, e)) if e.live(now) => {
                return Ok(ReplaceOutcome::Conflict(Some(e.record.clone())));
            }
            _ => return Ok(ReplaceOutcome::Conflict(None)),
        };
        {
            let new_maps: &Maps = second.as_deref().unwrap_or(&first);
            if new_maps.find(&kn).is_some_and(|(_, e)| e.live(now)) {
                return Ok(ReplaceOutcome::KeyTaken);
            }
        }
        let entry = Entry::new(record);
        let cost = entry.cost;
        let Some(old_entry) = self.inner.remove(&mut first, &ko) else {
            return Ok(ReplaceOutcome::Conflict(None));
        };
        let new_maps: &mut Maps = match second.as_deref_mut() {
            Some(maps) => maps,
            None => &mut first,
        };
        self.inner.remove(new_maps, &kn);
        self.inner.added(Class::Established, cost);
        let fits = {
            let mut held: Vec<(usize, &mut Maps)> = match second.as_deref_mut() {
                Some(maps) => vec![(i, &mut *first), (j, maps)],
                None => vec![(i, &mut *first)],
            };
            self.inner.make_room(&mut held, &kn, now)
        };
        if !fits {
            // Nothing anonymous left to evict and the byte budget is spent:
            // put the old record back (it was removed above) and refuse.
            self.inner.removed(Class::Established, cost);
            self.inner.added(old_class, old_entry.cost);
            self.inner
                .insert_reserved(&mut first, old_class, ko, old_entry);
            return Err(StoreError::new(Full));
        }
        let new_maps: &mut Maps = match second.as_deref_mut() {
            Some(maps) => maps,
            None => &mut first,
        };
        self.inner
            .insert_reserved(new_maps, Class::Established, kn, entry);
        Ok(ReplaceOutcome::Replaced)
    }
}

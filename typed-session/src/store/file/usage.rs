//! What the store holds and its bounds: counts and bytes per subdirectory,
//! the anonymous sessions each holds, and eviction when a write would pass a bound.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::disk::class_of_file;
use super::{
    Class, DEFAULT_CAPACITY, DEFAULT_MAX_BYTES, EVICTION_SAMPLE, EVICTION_TRIES, Full, Inner,
    SHARDS,
};
use crate::error::StoreError;
use crate::id::SessionKey;

/// Sessions and bytes held, in total and per subdirectory, and each
/// subdirectory's anonymous sessions (the eviction candidates).
pub(super) struct Usage {
    pub(super) capacity: AtomicUsize,
    pub(super) max_bytes: AtomicU64,
    pub(super) count: AtomicI64,
    pub(super) bytes: AtomicI64,
    pub(super) shards: Box<[ShardUsage]>,
    pub(super) evictions: AtomicU64,
}

#[derive(Default)]
pub(super) struct ShardUsage {
    pub(super) count: AtomicI64,
    pub(super) bytes: AtomicI64,
    pub(super) anonymous: Mutex<KeySet>,
}

/// A set of keys with random access (for sampling).
#[derive(Default)]
pub(super) struct KeySet {
    pub(super) keys: Vec<SessionKey>,
    pub(super) at: HashMap<SessionKey, usize>,
}

impl KeySet {
    pub(super) fn insert(&mut self, key: SessionKey) {
        if !self.at.contains_key(&key) {
            self.at.insert(key, self.keys.len());
            self.keys.push(key);
        }
    }

    pub(super) fn remove(&mut self, key: &SessionKey) {
        if let Some(i) = self.at.remove(key) {
            self.keys.swap_remove(i);
            if let Some(moved) = self.keys.get(i) {
                self.at.insert(*moved, i);
            }
        }
    }
}

impl Usage {
    pub(super) fn new() -> Self {
        Usage {
            capacity: AtomicUsize::new(DEFAULT_CAPACITY),
            max_bytes: AtomicU64::new(DEFAULT_MAX_BYTES),
            count: AtomicI64::new(0),
            bytes: AtomicI64::new(0),
            shards: (0..SHARDS).map(|_| ShardUsage::default()).collect(),
            evictions: AtomicU64::new(0),
        }
    }

    pub(super) fn anonymous(&self, shard: usize) -> MutexGuard<'_, KeySet> {
        self.shards[shard]
            .anonymous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A record file of `len` bytes appeared (or grew by `len` with `files` 0).
    pub(super) fn add(&self, shard: usize, files: i64, len: i64) {
        let s = &self.shards[shard];
        s.count.fetch_add(files, Ordering::Relaxed);
        s.bytes.fetch_add(len, Ordering::Relaxed);
        self.count.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.report();
    }

    /// The gauges (feature `metrics`).
    pub(super) fn report(&self) {
        crate::telemetry::live(
            "FileStore",
            self.count.load(Ordering::Relaxed).max(0) as f64,
            self.bytes.load(Ordering::Relaxed).max(0) as f64,
        );
    }

    /// A subdirectory counted afresh (a sweep pass).
    pub(super) fn recounted(&self, shard: usize, files: i64, len: i64, anonymous: Vec<SessionKey>) {
        let s = &self.shards[shard];
        let old_files = s.count.swap(files, Ordering::Relaxed);
        let old_len = s.bytes.swap(len, Ordering::Relaxed);
        self.count.fetch_add(files - old_files, Ordering::Relaxed);
        self.bytes.fetch_add(len - old_len, Ordering::Relaxed);
        self.report();
        let mut set = KeySet::default();
        for key in anonymous {
            set.insert(key);
        }
        *self.anonymous(shard) = set;
    }

    /// Whether `files` more files and `len` more bytes fit.
    pub(super) fn fits(&self, files: i64, len: i64) -> bool {
        let count = self.count.load(Ordering::Relaxed).max(0) + files;
        let bytes = self.bytes.load(Ordering::Relaxed).max(0) + len;
        (files <= 0 || count <= self.capacity.load(Ordering::Relaxed) as i64)
            && (len <= 0 || bytes <= self.max_bytes.load(Ordering::Relaxed) as i64)
    }
}

impl Inner {
    /// Makes room for `files` more sessions and `len` more bytes by
    /// evicting anonymous sessions; `held`: the stripes the caller holds.
    pub(super) fn make_room(&self, files: i64, len: i64, held: &[usize]) -> Result<(), StoreError> {
        for _ in 0..EVICTION_TRIES {
            if self.usage.fits(files, len) {
                return Ok(());
            }
            if !self.evict_one(held)? {
                break;
            }
        }
        if self.usage.fits(files, len) {
            return Ok(());
        }
        Err(StoreError::new(Full {
            count: self.usage.count.load(Ordering::Relaxed),
            bytes: self.usage.bytes.load(Ordering::Relaxed),
            capacity: self.usage.capacity.load(Ordering::Relaxed),
            max_bytes: self.usage.max_bytes.load(Ordering::Relaxed),
        }))
    }

    /// Evicts the anonymous session closest to expiry among a sample;
    /// `false` when there is none to evict.
    pub(super) fn evict_one(&self, held: &[usize]) -> Result<bool, StoreError> {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let mut sample: Vec<(SessionKey, SystemTime)> = Vec::new();
        let mut draws = 0;
        while sample.len() < EVICTION_SAMPLE && draws < 4 * EVICTION_SAMPLE {
            draws += 1;
            let shard = rng.random_range(0..SHARDS);
            let key = {
                let set = self.usage.anonymous(shard);
                if set.keys.is_empty() {
                    continue;
                }
                set.keys[rng.random_range(0..set.keys.len())]
            };
            self.consider(&key, &mut sample);
        }
        if sample.is_empty() {
            // Few left: any one, in subdirectory order.
            for shard in 0..SHARDS {
                let first = self.usage.anonymous(shard).keys.first().copied();
                if let Some(key) = first {
                    self.consider(&key, &mut sample);
                    if !sample.is_empty() {
                        break;
                    }
                }
            }
        }
        let Some(&(victim, _)) = sample.iter().min_by_key(|(_, t)| *t) else {
            return Ok(false);
        };
        let stripe = Self::shard(&victim);
        let _lock = if held.contains(&stripe) {
            None
        } else {
            match self.try_lock_stripe(stripe)? {
                Some(lock) => Some(lock),
                // In use: another candidate next time.
                None => return Ok(true),
            }
        };
        if class_of_file(&self.record_path(&victim)) == Some(Class::Anonymous) {
            self.remove(&victim)?;
            let n = self.usage.evictions.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1024) {
                tracing::warn!(
                    evicted = n + 1,
                    "file session store full: evicting anonymous sessions (said once per 1,024)"
                );
            }
        } else {
            self.usage.anonymous(stripe).remove(&victim);
        }
        Ok(true)
    }

    /// Adds `key` to an eviction sample if its file is there (else it leaves
    /// the candidates).
    pub(super) fn consider(&self, key: &SessionKey, sample: &mut Vec<(SessionKey, SystemTime)>) {
        if sample.iter().any(|(k, _)| k == key) {
            return;
        }
        match fs::symlink_metadata(self.record_path(key)).and_then(|m| m.modified()) {
            Ok(t) => sample.push((*key, t)),
            Err(_) => self.usage.anonymous(Self::shard(key)).remove(key),
        }
    }
}

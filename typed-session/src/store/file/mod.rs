//! [`FileStore`]: sessions in files on the local disk, crash-safe, bounded,
//! and correct across processes sharing one directory.

mod disk;
mod sweep;
mod sync;
#[cfg(test)]
mod tests;
mod usage;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::error::StoreError;
use crate::id::SessionKey;

use self::disk::{
    Cached, Version, create_private_dir, no_follow, private_or_tightened, shard_name, tmp_name,
    write_private,
};
use self::sync::DirSyncs;
use self::usage::Usage;

pub use self::sync::Durability;

/// The first bytes of every record file: a format tag that also says the
/// session's class, then the revision. `TSF1` is the format from before
/// classes, read as established (never evicted).
const MAGIC_LEGACY: &[u8; 4] = b"TSF1";
const MAGIC_ANONYMOUS: &[u8; 4] = b"TSFa";
const MAGIC_ESTABLISHED: &[u8; 4] = b"TSFe";
const HEADER_BYTES: usize = 4 + 8;
/// Records live in 256 subdirectories, `00` to `ff`, by their key's first
/// byte: the sweeper covers them in turn, a bounded number of entries per
/// pass, and touches nothing it did not write.
const SHARDS: usize = 256;
/// A file that marks the directory as a session store's.
const MARKER: &str = ".typed-session-store";
/// Lock files: a record's operations hold the lock of its stripe (the
/// record's subdirectory), so that the lock files are a fixed set.
const LOCK_DIR: &str = ".locks";
const TMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this was left by a crash: the sweeper removes it.
const STALE_TMP: Duration = Duration::from_secs(600);
/// Directory entries one sweep pass looks at (it finishes the
/// subdirectory it is in, and covers at least one).
const SWEEP_BUDGET: usize = 10_000;
/// Default bounds: sessions, and bytes of record files.
const DEFAULT_CAPACITY: usize = 1_000_000;
const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Anonymous sessions sampled for one eviction (the closest to expiry goes).
const EVICTION_SAMPLE: usize = 16;
/// Evictions tried for one write before it is refused.
const EVICTION_TRIES: usize = 64;

/// Sessions in files under one directory: the store that needs no server.
///
/// * One file per session, named by the [`SessionKey`] (a SHA-256 of the id,
///   64 hex digits), in one of 256 subdirectories (`00` to `ff`, by the
///   key's first byte): never the cookie's value, so a directory listing
///   yields no cookie and no name can traverse out of the directory.
///   Directories are `0700`, files `0600`; a directory that already
///   exists and is writable by its group or by others is tightened to
///   `0700` when this process owns it, and is a startup error naming its
///   path and mode when it does not. Record files are opened with
///   `O_NOFOLLOW`: a symbolic link planted in their place is not followed.
/// * Crash-safe: a write goes to a temporary file in the record's
///   directory, which is fsynced, renamed over the record, and the directory
///   fsynced; a crash leaves the old record or the new one, never a torn
///   one. Temporary files left by a crash are never read as records and
///   are swept later.
/// * Correct across processes: every operation on a record holds an OS
///   file lock (one of 256 lock files in `.locks/`, picked by the key), so
///   two app processes sharing the directory keep create-if-absent,
///   compare-and-set and delete-is-final, and `replace` (regenerate) is one
///   step for both.
/// * The record's expiry is the file's modification time: `touch` sets it
///   and rewrites nothing; `load` never returns a file past it; a background
///   sweeper (started by [`FileStore::open`] inside a Tokio runtime, every
///   5 minutes by default) removes expired files off the request path. Each
///   pass takes the subdirectories in turn from where the last one stopped,
///   up to 10,000 entries, so successive passes cover the whole store
///   whatever its size; it removes only the files it wrote (record and
///   temporary names in its subdirectories) and ignores anything else.
/// * **Bounded, and anonymous traffic cannot evict signed-in users**, as
///   in the memory store: at most 1,000,000 sessions and 1 GiB of record
///   files by default ([`with_capacity`](FileStore::with_capacity),
///   [`with_max_bytes`](FileStore::with_max_bytes); `SESSION_FILE_CAPACITY`,
///   `SESSION_FILE_MAX_BYTES`). A session is *anonymous* until its id is
///   regenerated (a login), then *established*. A write past a bound evicts
///   anonymous sessions (the closest to expiry among 16 sampled; logged at
///   `warn` once per 1,024), never established ones; when only established
///   ones are left, new sessions are refused (`503`), never a full disk.
///   The counts are kept in memory (taken once at start-up, corrected by
///   each sweep pass), not by listing the directory per request; with
///   several processes on one directory, each bounds what it sees.
/// * Bounded reads: a record file larger than the limit (1 MiB by default)
///   is refused (logged at `warn`, served as no session), never read.
/// * A load reads its file on the calling thread (a small file, normally in
///   the page cache); every write runs on Tokio's blocking pool, since it
///   waits for two fsyncs.
/// * Errors (a missing, unwritable or full directory) are [`StoreError`]s
///   with their cause: requests get `503`, never a lost session.
///
/// ```
/// use typed_session::{SessionLayer, store::FileStore};
///
/// let dir = std::env::temp_dir().join(format!("typed-session-doc-{}", std::process::id()));
/// let store = FileStore::open(&dir).unwrap().with_capacity(100_000);
/// let layer = SessionLayer::new(store);
/// # let _ = layer;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_record_bytes: u64,
    /// Records this process read or wrote, each with the identity of the
    /// file it came from; a load that finds the file unchanged (same inode,
    /// size and time, one `stat`) uses it instead of reading and parsing.
    cache: Box<[Mutex<HashMap<SessionKey, Cached>>]>,
    /// What the store holds, and its bounds.
    usage: Usage,
    /// The subdirectory the next sweep pass starts at.
    sweep_cursor: AtomicUsize,
    /// [`Durability`]: 0 full, 1 os.
    durability: std::sync::atomic::AtomicU8,
    /// Directory syncs shared by concurrent writes.
    syncs: DirSyncs,
}

/// Cache shards, and entries per shard (4,096 x 16: 65,536 records).
const CACHE_SHARDS: usize = 16;
const CACHE_PER_SHARD: usize = 4096;

/// Whether a session has been through a login (see [`FileStore`]'s bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Anonymous,
    Established,
}

impl Class {
    fn magic(self) -> &'static [u8; 4] {
        match self {
            Class::Anonymous => MAGIC_ANONYMOUS,
            Class::Established => MAGIC_ESTABLISHED,
        }
    }

    fn of_magic(magic: &[u8]) -> Option<Class> {
        match magic {
            m if m == MAGIC_ANONYMOUS => Some(Class::Anonymous),
            m if m == MAGIC_ESTABLISHED || m == MAGIC_LEGACY => Some(Class::Established),
            _ => None,
        }
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("max_record_bytes", &self.inner.max_record_bytes)
            .field(
                "capacity",
                &self.inner.usage.capacity.load(Ordering::Relaxed),
            )
            .field(
                "max_bytes",
                &self.inner.usage.max_bytes.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// What failed, where, and the I/O error behind it.
#[derive(Debug, thiserror::Error)]
#[error("file store: {op} {path}")]
struct FileError {
    op: &'static str,
    path: String,
    #[source]
    source: io::Error,
}

fn failed(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::new(FileError { op, path, source })
}

/// A record file refused for its size.
#[derive(Debug, thiserror::Error)]
#[error("record file of {size} bytes is larger than the limit of {limit}")]
struct TooLarge {
    size: u64,
    limit: u64,
}

/// The session directory can be written by other users.
#[derive(Debug, thiserror::Error)]
#[error(
    "file store: {path} has mode {mode:04o} (writable by its group or by others) and belongs \
     to another user: make it 0700 and owned by the app's user"
)]
struct Insecure {
    path: String,
    mode: u32,
}

/// The store is full of established sessions (or of files it cannot evict).
#[derive(Debug, thiserror::Error)]
#[error(
    "file session store is full ({count} sessions, {bytes} bytes; bounds {capacity} and \
     {max_bytes}) and holds no anonymous session to evict; new sessions are refused"
)]
struct Full {
    count: i64,
    bytes: i64,
    capacity: usize,
    max_bytes: u64,
}

impl FileStore {
    /// Opens (creating it `0700` if missing) the directory `dir`, checks that
    /// files can be written in it and that no other user can, counts what
    /// it holds, and starts the sweeper when called inside a Tokio runtime.
    /// An error here is the startup error.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        FileStore::open_with(dir, 1 << 20, Some(Duration::from_secs(300)))
    }

    /// [`open`](Self::open) with a record size limit and a sweep interval
    /// (`None`: no background sweeper; call [`sweep`](Self::sweep) yourself).
    pub fn open_with(
        dir: impl AsRef<Path>,
        max_record_bytes: usize,
        sweep_every: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir).map_err(failed("create directory", &dir))?;
        // Writable? A probe file, written, synced and removed; its owner is
        // this process's user.
        let probe = dir.join(tmp_name("probe"));
        let probe_meta = write_private(&probe, b"probe", None, true)
            .and_then(|_| fs::symlink_metadata(&probe))
            .map_err(failed("write", &probe))?;
        fs::remove_file(&probe).map_err(failed("remove", &probe))?;
        private_or_tightened(&dir, &probe_meta)?;
        for sub in std::iter::once(LOCK_DIR.to_owned()).chain((0..SHARDS).map(shard_name)) {
            let path = dir.join(sub);
            create_private_dir(&path).map_err(failed("create directory", &path))?;
        }
        let marker = dir.join(MARKER);
        if fs::symlink_metadata(&marker).is_err() {
            fs::write(&marker, b"typed-session file store; records in 00..ff\n")
                .map_err(failed("write", &marker))?;
        }
        let store = FileStore {
            inner: Arc::new(Inner {
                dir,
                max_record_bytes: max_record_bytes as u64,
                cache: (0..CACHE_SHARDS).map(|_| Mutex::default()).collect(),
                usage: Usage::new(),
                sweep_cursor: AtomicUsize::new(0),
                durability: std::sync::atomic::AtomicU8::new(0),
                syncs: DirSyncs::new(),
            }),
        };
        store.inner.adopt_flat_records()?;
        for shard in 0..SHARDS {
            store.inner.sweep_shard(shard, false)?;
        }
        if let (Some(every), Ok(handle)) = (sweep_every, tokio::runtime::Handle::try_current()) {
            let weak = Arc::downgrade(&store.inner);
            handle.spawn(sweep_loop(weak, every.max(Duration::from_secs(1))));
        }
        Ok(store)
    }

    /// At most `sessions` sessions (at least 1; default 1,000,000): past
    /// it, a new session evicts anonymous ones, or is refused when only
    /// established ones are left.
    pub fn with_capacity(self, sessions: usize) -> Self {
        self.inner
            .usage
            .capacity
            .store(sessions.max(1), Ordering::Relaxed);
        self
    }

    /// What an acknowledged write survives (default [`Durability::Full`]).
    pub fn with_durability(self, durability: Durability) -> Self {
        let code = match durability {
            Durability::Full => 0,
            Durability::Os => 1,
        };
        self.inner.durability.store(code, Ordering::Relaxed);
        self
    }

    /// Directory syncs run so far, and the writes they covered: their
    /// ratio is the average batch of the group commit.
    pub fn sync_batches(&self) -> (u64, u64) {
        let st = self
            .inner
            .syncs
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (st.batches, st.writes)
    }

    /// At most `bytes` of record files (default 1 GiB), with the same policy.
    pub fn with_max_bytes(self, bytes: u64) -> Self {
        self.inner.usage.max_bytes.store(bytes, Ordering::Relaxed);
        self
    }

    /// Sessions held, as this process counts them.
    pub fn len(&self) -> usize {
        self.inner.usage.count.load(Ordering::Relaxed).max(0) as usize
    }

    /// `true` when it holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The directory of the session files.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// One sweep pass: removes expired record files and stale temporary
    /// files, taking the subdirectories in turn from where the last pass
    /// stopped, up to 10,000 entries (finishing the subdirectory it is in),
    /// and counts what is left there; returns how many files it removed.
    /// Blocking file I/O: from async code, run it with `spawn_blocking`.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        self.inner.sweep()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::new(io::Error::other(e)))?
    }
}

async fn sweep_loop(store: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = store.upgrade() else { return };
        match tokio::task::spawn_blocking(move || inner.sweep()).await {
            Ok(Ok(removed)) if removed > 0 => {
                tracing::debug!(removed, "file session store swept");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(cause = %crate::error::error_chain(&e), "file session store sweep failed")
            }
            Err(_) => return,
        }
    }
}

impl FileStore {
    /// `create`; `established`: written by a login, never evicted for an
    /// anonymous session.
    pub(crate) async fn create_as(
        &self,
        key: &SessionKey,
        record: Record,
        established: bool,
    ) -> Result<bool, StoreError> {
        let key = *key;
        self.run(move |s| {
            let (_held, stripes) = s.lock(&[&key])?;
            if s.read(&key, false)?.is_some() {
                return Ok(false);
            }
            let class = if established {
                Class::Established
            } else {
                Class::Anonymous
            };
            let len = (HEADER_BYTES + record.data.len()) as i64;
            // An expired file under the key is replaced: it counts no more.
            s.remove(&key)?;
            s.make_room(1, len, &stripes)?;
            let written = s.write(&key, &record, class)?;
            let shard = Inner::shard(&key);
            s.usage.add(shard, 1, written as i64);
            if class == Class::Anonymous {
                s.usage.anonymous(shard).insert(key);
            }
            Ok(true)
        })
        .await
    }
}

impl SessionStore for FileStore {
    fn name(&self) -> &'static str {
        "FileStore"
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        // No lock: a rename replaces the file atomically, and the open
        // handle reads one version. Read on the calling thread, not through
        // the blocking pool: a session file is a few hundred bytes, almost
        // always in the page cache (open, stat, one read, close: a few
        // microseconds), while a hand-off to the pool and back costs more
        // than the read itself. Writes, which fsync, go to the pool.
        Ok(self.inner.read(key, true)?.map(|found| found.record))
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        self.create_as(key, record, false).await
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: Record,
        expected: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let key = *key;
        self.run(move |s| {
            let (_held, stripes) = s.lock(&[&key])?;
            match s.read(&key, false)? {
                Some(current) if current.record.revision == expected => {
                    let len = (HEADER_BYTES + record.data.len()) as i64;
                    let growth = len - current.len as i64;
                    if growth > 0 {
                        s.make_room(0, growth, &stripes)?;
                    }
                    // A session keeps its class (a login makes a new one).
                    let written = s.write(&key, &record, current.class)?;
                    s.usage
                        .add(Inner::shard(&key), 0, written as i64 - current.len as i64);
                    Ok(SaveOutcome::Saved)
                }
                current => Ok(SaveOutcome::Conflict(current.map(|f| f.record))),
            }
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| {
            let _held = s.lock(&[&key])?;
            s.remove(&key)
        })
        .await
    }

    async fn touch(&self, key: &SessionKey, expires_at: SystemTime) -> Result<bool, StoreError> {
        let key = *key;
        self.run(move |s| {
            let _held = s.lock(&[&key])?;
            let path = s.record_path(&key);
            let file = match no_follow(OpenOptions::new().write(true)).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(failed("open", &path)(e)),
            };
            let before = file
                .metadata()
                .and_then(|m| Version::of(&m))
                .map_err(failed("stat", &path))?;
            if before.modified <= SystemTime::now() {
                return Ok(false);
            }
            // The expiry is the file's time: nothing else is rewritten.
            file.set_modified(expires_at)
                .map_err(failed("touch", &path))?;
            Ok(true)
        })
        .await
    }

    async fn replace(
        &self,
        old: &SessionKey,
        expected: u64,
        new: &SessionKey,
        record: Record,
    ) -> Result<ReplaceOutcome, StoreError> {
        let (old, new) = (*old, *new);
        self.run(move |s| {
            let (_held, stripes) = s.lock(&[&old, &new])?;
            let current = match s.read(&old, false)? {
                Some(current) if current.record.revision == expected => current,
                current => return Ok(ReplaceOutcome::Conflict(current.map(|f| f.record))),
            };
            if s.read(&new, false)?.is_some() {
                return Ok(ReplaceOutcome::KeyTaken);
            }
            // A regenerated session (a login) is established.
            let len = (HEADER_BYTES + record.data.len()) as i64;
            let growth = len - current.len as i64;
            if growth > 0 {
                s.make_room(0, growth, &stripes)?;
            }
            s.remove(&new)?;
            let written = s.write(&new, &record, Class::Established)?;
            s.usage.add(Inner::shard(&new), 1, written as i64);
            s.remove(&old)?;
            Ok(ReplaceOutcome::Replaced)
        })
        .await
    }
}

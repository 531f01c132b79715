//! [`FileStore`]: sessions in files on the local disk, crash-safe, bounded,
//! and correct across processes sharing one directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::error::StoreError;
use crate::id::SessionKey;

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

    fn of_record(record: &Record) -> Class {
        if record.established {
            Class::Established
        } else {
            Class::Anonymous
        }
    }
}

/// Sessions and bytes held, in total and per subdirectory, and each
/// subdirectory's anonymous sessions (the eviction candidates).
struct Usage {
    capacity: AtomicUsize,
    max_bytes: AtomicU64,
    count: AtomicI64,
    bytes: AtomicI64,
    shards: Box<[ShardUsage]>,
    evictions: AtomicU64,
}

#[derive(Default)]
struct ShardUsage {
    count: AtomicI64,
    bytes: AtomicI64,
    anonymous: Mutex<KeySet>,
}

/// A set of keys with random access (for sampling).
#[derive(Default)]
struct KeySet {
    keys: Vec<SessionKey>,
    at: HashMap<SessionKey, usize>,
}

impl KeySet {
    fn insert(&mut self, key: SessionKey) {
        if !self.at.contains_key(&key) {
            self.at.insert(key, self.keys.len());
            self.keys.push(key);
        }
    }

    fn remove(&mut self, key: &SessionKey) {
        if let Some(i) = self.at.remove(key) {
            self.keys.swap_remove(i);
            if let Some(moved) = self.keys.get(i) {
                self.at.insert(*moved, i);
            }
        }
    }
}

impl Usage {
    fn new() -> Self {
        Usage {
            capacity: AtomicUsize::new(DEFAULT_CAPACITY),
            max_bytes: AtomicU64::new(DEFAULT_MAX_BYTES),
            count: AtomicI64::new(0),
            bytes: AtomicI64::new(0),
            shards: (0..SHARDS).map(|_| ShardUsage::default()).collect(),
            evictions: AtomicU64::new(0),
        }
    }

    fn anonymous(&self, shard: usize) -> MutexGuard<'_, KeySet> {
        self.shards[shard]
            .anonymous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A record file of `len` bytes appeared (or grew by `len` with `files` 0).
    fn add(&self, shard: usize, files: i64, len: i64) {
        let s = &self.shards[shard];
        s.count.fetch_add(files, Ordering::Relaxed);
        s.bytes.fetch_add(len, Ordering::Relaxed);
        self.count.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.report();
    }

    /// The gauges (feature `metrics`).
    fn report(&self) {
        crate::telemetry::live(
            "FileStore",
            self.count.load(Ordering::Relaxed).max(0) as f64,
            self.bytes.load(Ordering::Relaxed).max(0) as f64,
        );
    }

    /// A subdirectory counted afresh (a sweep pass).
    fn recounted(&self, shard: usize, files: i64, len: i64, anonymous: Vec<SessionKey>) {
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
    fn fits(&self, files: i64, len: i64) -> bool {
        let count = self.count.load(Ordering::Relaxed).max(0) + files;
        let bytes = self.bytes.load(Ordering::Relaxed).max(0) + len;
        (files <= 0 || count <= self.capacity.load(Ordering::Relaxed) as i64)
            && (len <= 0 || bytes <= self.max_bytes.load(Ordering::Relaxed) as i64)
    }
}

/// What identifies one version of a record file: a write renames a new
/// file in (a new inode), a touch changes the time.
///
/// Inodes are reused as soon as they are freed, so the inode alone could
/// name an older version (another process's write, then ours, then theirs
/// again); the modification time of every write therefore carries random
/// nanoseconds below the millisecond the expiry needs, and the change time
/// is compared too. A load that is stale anyway can only see an older live
/// version: every write re-reads the file under its lock, never the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    inode: u64,
    changed: (i64, i64),
    len: u64,
    modified: SystemTime,
}

impl Version {
    fn of(meta: &fs::Metadata) -> io::Result<Self> {
        #[cfg(unix)]
        let (inode, changed) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), (meta.ctime(), meta.ctime_nsec()))
        };
        // Elsewhere no inode: the size and time still change with every write.
        #[cfg(not(unix))]
        let (inode, changed) = (0, (0, 0));
        Ok(Version {
            inode,
            changed,
            len: meta.len(),
            modified: meta.modified()?,
        })
    }
}

/// `t` to the millisecond, plus random nanoseconds below it: a file time
/// that differs between any two writes (see [`Version`]).
fn stamp(t: SystemTime) -> SystemTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ms = Duration::from_millis(since.as_millis().min(u128::from(u64::MAX)) as u64);
    let nanos = rand::Rng::random_range(&mut rand::rng(), 0..1_000_000u32);
    SystemTime::UNIX_EPOCH
        .checked_add(ms + Duration::from_nanos(u64::from(nanos)))
        .unwrap_or(t)
}

struct Cached {
    version: Version,
    record: Record,
    class: Class,
}

/// A live record file as read: the record, its class and its size.
struct Found {
    record: Record,
    class: Class,
    len: u64,
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

/// What a file store's acknowledged write survives.
///
/// ```
/// use typed_session::store::{Durability, FileStore};
///
/// let dir = std::env::temp_dir().join(format!("typed-session-doc-os-{}", std::process::id()));
/// let store = FileStore::open(&dir).unwrap().with_durability(Durability::Os);
/// # let _ = store;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A power cut (the default): every acknowledged write was fsynced,
    /// the file and the rename (its directory). Concurrent writes share
    /// the directory syncs (group commit), so the cost per write falls as
    /// concurrency rises; a lone write waits for no one.
    #[default]
    Full,
    /// A crash of the process, not of the machine: writes are
    /// rename-atomic (never torn) but not synced, so a power cut or a
    /// kernel crash can lose the last seconds of acknowledged writes (what
    /// PHP's, Laravel's and Rails' file sessions give). Much faster writes;
    /// choose it knowingly (`SESSION_FILE_DURABILITY=os`).
    Os,
}

/// Directory syncs shared by concurrent writes: a write that renamed its
/// record while a sync was running joins the next batch; the first write
/// of a batch that finds no sync running runs it at once (a lone write
/// waits for no one). A write is acknowledged only after a sync of its
/// directory that began after its rename.
struct DirSyncs {
    state: Mutex<SyncState>,
    done: std::sync::Condvar,
}

struct SyncState {
    /// The batch the next write joins (ids from 1).
    open: u64,
    /// Its subdirectories.
    pending: std::collections::BTreeSet<usize>,
    syncing: bool,
    /// The last batch synced (0: none yet).
    done_through: u64,
    /// Recent failed batches and their error (bounded).
    failed: std::collections::VecDeque<(u64, io::ErrorKind, String)>,
    /// Batches synced, and the writes they covered (the average batch).
    batches: u64,
    writes: u64,
}

impl DirSyncs {
    fn new() -> Self {
        DirSyncs {
            state: Mutex::new(SyncState {
                open: 1,
                pending: std::collections::BTreeSet::new(),
                syncing: false,
                done_through: 0,
                failed: std::collections::VecDeque::new(),
                batches: 0,
                writes: 0,
            }),
            done: std::sync::Condvar::new(),
        }
    }
}

impl Inner {
    /// Makes the rename (or removal) just done in subdirectory `shard`
    /// durable: waits for, or runs, a sync of that directory that began
    /// after it.
    fn sync_shard(&self, shard: usize) -> Result<(), StoreError> {
        if self.durability() == Durability::Os {
            return Ok(());
        }
        let syncs = &self.syncs;
        let mut st = syncs.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.pending.insert(shard);
        st.writes += 1;
        let mine = st.open;
        while st.done_through < mine {
            if st.syncing {
                st = syncs.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead the open batch: it closes now, later writes join the next.
            st.syncing = true;
            let batch = st.open;
            st.open += 1;
            let shards = std::mem::take(&mut st.pending);
            drop(st);
            let mut error = None;
            for s in shards {
                let dir = self.shard_dir(s);
                if let Err(e) = sync_dir(&dir) {
                    error = Some((e.kind(), format!("{}: {e}", dir.display())));
                }
            }
            st = syncs.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.syncing = false;
            st.done_through = batch;
            st.batches += 1;
            if let Some((kind, text)) = error {
                st.failed.push_back((batch, kind, text));
                if st.failed.len() > 64 {
                    st.failed.pop_front();
                }
            }
            syncs.done.notify_all();
        }
        match st.failed.iter().find(|(b, _, _)| *b == mine) {
            Some((_, kind, text)) => Err(failed("sync", &self.dir)(io::Error::new(
                *kind,
                text.clone(),
            ))),
            None => Ok(()),
        }
    }

    fn durability(&self) -> Durability {
        match self.durability.load(Ordering::Relaxed) {
            1 => Durability::Os,
            _ => Durability::Full,
        }
    }
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

fn shard_name(shard: usize) -> String {
    format!("{shard:02x}")
}

/// A temporary file's name: its birth time and a random part.
fn tmp_name(what: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{TMP_PREFIX}{secs}-{what}-{}", random_suffix())
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a temporary file named `name` is old enough to be a crash's.
fn stale_tmp(name: &str, now: SystemTime) -> bool {
    let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
        return false;
    };
    // `.tmp-<unix seconds>-...`: left by a write that crashed (or is still
    // running, if younger than ten minutes).
    let born = rest
        .split('-')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    born.is_none_or(|b| now.duration_since(b).is_ok_and(|age| age > STALE_TMP))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A directory writable by its group or others: tightened to `0700` when
/// this process's user (the owner of `ours`, a file it just made) owns it,
/// else refused.
fn private_or_tightened(dir: &Path, ours: &fs::Metadata) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::metadata(dir).map_err(failed("stat", dir))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            if meta.uid() != ours.uid() {
                return Err(StoreError::new(Insecure {
                    path: dir.display().to_string(),
                    mode,
                }));
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(failed("chmod", dir))?;
            tracing::info!(
                path = %dir.display(),
                was = format!("{mode:04o}"),
                "file session store directory was writable by others; tightened to 0700"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, ours);
    Ok(())
}

/// Options that never follow a symbolic link at the last component.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options
}

/// Writes `bytes` to a new file at `path` (`0600`), with its modification
/// time set to `mtime`, syncs it (`sync`), and says which version it wrote.
fn write_private(
    path: &Path,
    bytes: &[u8],
    mtime: Option<SystemTime>,
    sync: bool,
) -> io::Result<Version> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = no_follow(&mut options).open(path)?;
    file.write_all(bytes)?;
    if let Some(t) = mtime {
        file.set_modified(t)?;
    }
    if sync {
        // The data and the time (the expiry); the directory entry is the
        // rename's, synced with its directory.
        file.sync_all()?;
    }
    Version::of(&file.metadata()?)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn is_record_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The class of the record file at `path` (its first four bytes), if it is one.
fn class_of_file(path: &Path) -> Option<Class> {
    let mut file = no_follow(OpenOptions::new().read(true)).open(path).ok()?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    Class::of_magic(&magic)
}

/// A held stripe lock; released when dropped (the file is closed).
struct Held(#[allow(dead_code)] File);

impl Inner {
    fn shard(key: &SessionKey) -> usize {
        usize::from(key.as_bytes()[0]) % SHARDS
    }

    fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(shard_name(shard))
    }

    fn record_path(&self, key: &SessionKey) -> PathBuf {
        self.shard_dir(Self::shard(key)).join(key.to_string())
    }

    fn open_lock(&self, stripe: usize) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_DIR).join(shard_name(stripe));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        no_follow(&mut options)
            .open(&path)
            .map_err(failed("open lock", &path))
    }

    fn lock_stripe(&self, stripe: usize) -> Result<Held, StoreError> {
        let file = self.open_lock(stripe)?;
        let path = self.dir.join(LOCK_DIR).join(shard_name(stripe));
        file.lock().map_err(failed("lock", &path))?;
        Ok(Held(file))
    }

    /// The lock of `stripe` if nobody holds it now.
    fn try_lock_stripe(&self, stripe: usize) -> Result<Option<Held>, StoreError> {
        let file = self.open_lock(stripe)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Held(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                let path = self.dir.join(LOCK_DIR).join(shard_name(stripe));
                Err(failed("lock", &path)(e))
            }
        }
    }

    /// The locks of `keys`' stripes, each once, in stripe order (so two
    /// operations never wait on each other in opposite orders).
    fn lock(&self, keys: &[&SessionKey]) -> Result<(Vec<Held>, Vec<usize>), StoreError> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| Self::shard(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let held = stripes
            .iter()
            .map(|s| self.lock_stripe(*s))
            .collect::<Result<_, _>>()?;
        Ok((held, stripes))
    }

    fn cache_shard(&self, key: &SessionKey) -> MutexGuard<'_, HashMap<SessionKey, Cached>> {
        self.cache[usize::from(key.as_bytes()[1]) % CACHE_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, key: &SessionKey, version: Version, record: &Record, class: Class) {
        let mut shard = self.cache_shard(key);
        if shard.len() >= CACHE_PER_SHARD && !shard.contains_key(key) {
            // Full: forget one (keys are hashes, so the first is arbitrary).
            if let Some(victim) = shard.keys().next().copied() {
                shard.remove(&victim);
            }
        }
        shard.insert(
            *key,
            Cached {
                version,
                record: record.clone(),
                class,
            },
        );
    }

    fn forget(&self, key: &SessionKey) {
        self.cache_shard(key).remove(key);
    }

    /// The live record under `key`, if any. `cached`: a load may use the
    /// cache; a write's check under its lock (`false`) reads the file.
    fn read(&self, key: &SessionKey, cached: bool) -> Result<Option<Found>, StoreError> {
        let path = self.record_path(key);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(key);
                // No such record, unless the directory itself is gone
                // (unmounted, deleted): that is an outage, not "no session".
                return match fs::metadata(&self.dir) {
                    Ok(_) => Ok(None),
                    Err(e) => Err(failed("open directory", &self.dir)(e)),
                };
            }
            Err(e) => return Err(failed("stat", &path)(e)),
        };
        if !meta.file_type().is_file() {
            tracing::warn!(
                "file session store found something other than a file under a record's name; \
                 serving it as no session"
            );
            return Ok(None);
        }
        let version = Version::of(&meta).map_err(failed("stat", &path))?;
        if version.modified <= SystemTime::now() {
            return Ok(None);
        }
        if cached
            && let Some(hit) = self.cache_shard(key).get(key)
            && hit.version == version
        {
            return Ok(Some(Found {
                record: hit.record.clone(),
                class: hit.class,
                len: hit.version.len,
            }));
        }
        let mut file = match no_follow(OpenOptions::new().read(true)).open(&path) {
            Ok(f) => f,
            // Removed since the stat.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("open", &path)(e)),
        };
        // The version of the file actually opened (a write may have renamed
        // a new one in since the stat).
        let meta = file.metadata().map_err(failed("stat", &path))?;
        let version = Version::of(&meta).map_err(failed("stat", &path))?;
        if version.modified <= SystemTime::now() {
            return Ok(None);
        }
        let limit = self.max_record_bytes + HEADER_BYTES as u64;
        if meta.len() > limit {
            tracing::warn!(
                cause = %TooLarge { size: meta.len(), limit },
                "file session store refused a record file; serving it as no session"
            );
            return Ok(None);
        }
        // Record files are never changed in place (a write renames a new
        // file over them), so the size just read is the size to read: one
        // `read` for the whole record, no second one to see the end.
        let mut bytes = vec![0u8; meta.len() as usize];
        file.read_exact(&mut bytes).map_err(failed("read", &path))?;
        let class = (bytes.len() >= HEADER_BYTES)
            .then(|| Class::of_magic(&bytes[..4]))
            .flatten();
        let Some(class) = class else {
            tracing::warn!(
                "file session store found a record file it did not write; serving it as no session"
            );
            return Ok(None);
        };
        let mut revision = [0u8; 8];
        revision.copy_from_slice(&bytes[4..HEADER_BYTES]);
        bytes.drain(..HEADER_BYTES);
        let record = Record::new(bytes, u64::from_le_bytes(revision), version.modified);
        self.remember(key, version, &record, class);
        Ok(Some(Found {
            record,
            class,
            len: meta.len(),
        }))
    }

    /// Replaces (or creates) the record file atomically; its size.
    fn write(&self, key: &SessionKey, record: &Record, class: Class) -> Result<u64, StoreError> {
        let path = self.record_path(key);
        let dir = self.shard_dir(Self::shard(key));
        let tmp = dir.join(tmp_name("record"));
        let mut bytes = Vec::with_capacity(HEADER_BYTES + record.data.len());
        bytes.extend_from_slice(class.magic());
        bytes.extend_from_slice(&record.revision.to_le_bytes());
        bytes.extend_from_slice(&record.data);
        let sync = self.durability() == Durability::Full;
        let mut written = write_private(&tmp, &bytes, Some(stamp(record.expires_at)), sync);
        if matches!(&written, Err(e) if e.kind() == io::ErrorKind::NotFound)
            && fs::metadata(&self.dir).is_ok()
        {
            // The subdirectory was removed from under the store: again.
            create_private_dir(&dir).map_err(failed("create directory", &dir))?;
            written = write_private(&tmp, &bytes, Some(stamp(record.expires_at)), sync);
        }
        let written = written.and_then(|version| fs::rename(&tmp, &path).map(|()| version));
        let version = match written {
            Ok(version) => version,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.forget(key);
                return Err(failed("write", &path)(e));
            }
        };
        self.sync_shard(Self::shard(key))?;
        // Kept with the runtime's decoded copy, if it attached one.
        self.remember(key, version, record, class);
        Ok(version.len)
    }

    /// Removes the record file (its stripe held) and its accounting.
    fn remove(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.forget(key);
        let shard = Self::shard(key);
        let path = self.record_path(key);
        let len = match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => m.len(),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed("stat", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {
                self.usage.add(shard, -1, -(len as i64));
                self.usage.anonymous(shard).remove(key);
                self.sync_shard(shard)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed("remove", &path)(e)),
        }
    }

    /// Makes room for `files` more sessions and `len` more bytes by
    /// evicting anonymous sessions; `held`: the stripes the caller holds.
    fn make_room(&self, files: i64, len: i64, held: &[usize]) -> Result<(), StoreError> {
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
    fn evict_one(&self, held: &[usize]) -> Result<bool, StoreError> {
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
    fn consider(&self, key: &SessionKey, sample: &mut Vec<(SessionKey, SystemTime)>) {
        if sample.iter().any(|(k, _)| k == key) {
            return;
        }
        match fs::symlink_metadata(self.record_path(key)).and_then(|m| m.modified()) {
            Ok(t) => sample.push((*key, t)),
            Err(_) => self.usage.anonymous(Self::shard(key)).remove(key),
        }
    }

    /// One sweep pass (see [`FileStore::sweep`]).
    fn sweep(&self) -> Result<usize, StoreError> {
        let mut removed = self.sweep_top()?;
        let mut examined = 0;
        for _ in 0..SHARDS {
            let shard = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let (seen, gone) = self.sweep_shard(shard, true)?;
            examined += seen;
            removed += gone;
            if examined >= SWEEP_BUDGET {
                break;
            }
        }
        Ok(removed)
    }

    /// Stale temporary files at the top (the start-up probe's).
    fn sweep_top(&self) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(failed("list", &self.dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| stale_tmp(n, now))
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = fs::remove_file(entry.path());
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Sweeps one subdirectory (`remove`: expired and stale files go) and
    /// counts what is left in it; (entries seen, files removed).
    fn sweep_shard(&self, shard: usize, remove: bool) -> Result<(usize, usize), StoreError> {
        let dir = self.shard_dir(shard);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.usage.recounted(shard, 0, 0, Vec::new());
                return Ok((0, 0));
            }
            Err(e) => return Err(failed("list", &dir)(e)),
        };
        let now = SystemTime::now();
        let (mut seen, mut removed, mut files, mut bytes) = (0, 0, 0i64, 0i64);
        let mut anonymous = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            seen += 1;
            // Only plain files this store names: nothing else is touched
            // (a directory or a link with a record's name included).
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if stale_tmp(name, now) {
                if remove {
                    let _ = fs::remove_file(entry.path());
                    removed += 1;
                }
                continue;
            }
            let Some(key) = is_record_name(name)
                .then(|| SessionKey::from_hex(name))
                .flatten()
                .filter(|k| Self::shard(k) == shard)
            else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let expired = meta.modified().is_ok_and(|t| t <= now);
            if expired && remove {
                let _held = self.lock_stripe(shard)?;
                // Still expired under the lock (not rewritten meanwhile)?
                let still = fs::symlink_metadata(entry.path())
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t <= now);
                if still {
                    self.forget(&key);
                    if fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                    continue;
                }
            }
            files += 1;
            bytes += meta.len() as i64;
            if class_of_file(&entry.path()) == Some(Class::Anonymous) {
                anonymous.push(key);
            }
        }
        self.usage.recounted(shard, files, bytes, anonymous);
        Ok((seen, removed))
    }

    /// Record files of the layout before subdirectories (directly in the
    /// directory) move into their subdirectory.
    fn adopt_flat_records(&self) -> Result<(), StoreError> {
        for entry in fs::read_dir(&self.dir).map_err(failed("list", &self.dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(key) = name
                .to_str()
                .filter(|n| is_record_name(n))
                .and_then(SessionKey::from_hex)
            else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let (_held, _) = self.lock(&[&key])?;
            let target = self.record_path(&key);
            if fs::symlink_metadata(&target).is_ok() {
                let _ = fs::remove_file(entry.path());
            } else {
                fs::rename(entry.path(), &target).map_err(failed("move", &target))?;
            }
        }
        Ok(())
    }
}

impl SessionStore for FileStore {
    fn keeps_typed_copies(&self, _: super::Sealed) -> bool {
        // Records written by this process are cached with the runtime's
        // decoded copy, so loading them skips the parse.
        true
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
        let key = *key;
        self.run(move |s| {
            let (_held, stripes) = s.lock(&[&key])?;
            if s.read(&key, false)?.is_some() {
                return Ok(false);
            }
            let class = Class::of_record(&record);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "typed-session-file-unit-{tag}-{}-{}",
            std::process::id(),
            random_suffix()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn key(n: u32) -> SessionKey {
        // Spread over the subdirectories like real keys (SHA-256).
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(n.to_le_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&digest);
        SessionKey::from_bytes(bytes)
    }

    /// A record file as the store writes it, without the syncs (for
    /// planting many quickly).
    fn plant(store: &FileStore, key: &SessionKey, expires_at: SystemTime, class: Class) {
        let mut bytes = class.magic().to_vec();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(br#"{"v":1,"c":0,"t":0,"d":{}}"#);
        let path = store.inner.record_path(key);
        fs::write(&path, bytes).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(expires_at)
            .unwrap();
    }

    /// Finding (issue 22, item 2): each pass read the first 10,000
    /// directory entries again, so past 10,000 live sessions expired files
    /// further on were never removed (12,000 live + 3,000 expired: 503 left
    /// after 10 passes). Passes now take the subdirectories in turn.
    #[test]
    fn successive_sweeps_cover_the_whole_store() {
        let dir = temp("sweep");
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let past = SystemTime::now() - Duration::from_secs(60);
        for n in 0..12_000 {
            plant(&store, &key(n), later, Class::Anonymous);
        }
        for n in 12_000..15_000 {
            plant(&store, &key(n), past, Class::Anonymous);
        }
        let expired_left = || {
            (12_000..15_000)
                .filter(|n| store.inner.record_path(&key(*n)).exists())
                .count()
        };
        let mut passes = 0;
        while expired_left() > 0 {
            passes += 1;
            assert!(
                passes <= 3,
                "{} expired files left after {passes} passes",
                expired_left()
            );
            store.sweep().unwrap();
        }
        eprintln!("12,000 live + 3,000 expired: empty of expired files after {passes} passes");
        assert_eq!(store.len(), 12_000, "the live ones counted");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Finding (issue 22, item 4): a directory named like a record made
    /// every sweep fail; files the store did not write must stay.
    #[test]
    fn the_sweeper_touches_only_what_the_store_wrote() {
        let dir = temp("foreign");
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        let k = key(1);
        let shard_dir = store.inner.shard_dir(Inner::shard(&k));
        let record_like = shard_dir.join(k.to_string());
        fs::create_dir(&record_like).unwrap();
        let other = shard_dir.join("notes.txt");
        fs::write(&other, b"mine").unwrap();
        let past = SystemTime::now() - Duration::from_secs(60);
        let expired = key(2);
        plant(&store, &expired, past, Class::Anonymous);
        File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(past)
            .unwrap();
        for _ in 0..SHARDS {
            store.sweep().unwrap();
        }
        assert!(record_like.is_dir() && other.is_file(), "left alone");
        assert!(!store.inner.record_path(&expired).exists(), "swept");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A symbolic link in a record's place is not followed.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_planted_link_is_not_followed() {
        let dir = temp("link");
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        let target = dir.join("target");
        let k = key(3);
        let later = SystemTime::now() + Duration::from_secs(3600);
        plant(&store, &k, later, Class::Anonymous);
        fs::rename(store.inner.record_path(&k), &target).unwrap();
        std::os::unix::fs::symlink(&target, store.inner.record_path(&k)).unwrap();
        assert!(store.load(&k).await.unwrap().is_none());
        assert!(!store.touch(&k, later).await.unwrap_or(false));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Group- or world-writable: tightened when ours.
    #[cfg(unix)]
    #[test]
    fn an_open_directory_of_ours_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("mode");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        FileStore::open_with(&dir, 1 << 20, None).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn record(established: bool) -> Record {
        let mut r = Record::new(
            br#"{"v":1,"c":0,"t":0,"d":{}}"#.to_vec(),
            1,
            SystemTime::now() + Duration::from_secs(3600),
        );
        r.established = established;
        r
    }

    /// Group commit (issue 25): concurrent writes share the directory
    /// syncs, a lone write runs its own at once; `Durability::Os` syncs
    /// nothing and still writes whole files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_directory_syncs() {
        let dir = temp("group");
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        assert!(store.create(&key(1), record(false)).await.unwrap());
        assert_eq!(store.sync_batches(), (1, 1), "a lone write syncs alone");
        let tasks: Vec<_> = (0..64)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.create(&key(100 + n), record(false)).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        let (batches, writes) = store.sync_batches();
        eprintln!("65 writes, {batches} directory syncs");
        assert_eq!(writes, 65);
        assert!(batches <= writes, "{batches} > {writes}");
        for n in 0..64 {
            assert!(store.load(&key(100 + n)).await.unwrap().is_some());
        }
        let os = FileStore::open_with(temp("os"), 1 << 20, None)
            .unwrap()
            .with_durability(Durability::Os);
        assert!(os.create(&key(1), record(false)).await.unwrap());
        assert!(os.load(&key(1)).await.unwrap().is_some());
        assert_eq!(os.sync_batches(), (0, 0));
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(os.path()).unwrap();
    }

    /// Finding (issue 22, item 3): every cookie-less request left a file,
    /// without bound. Past the bound, anonymous sessions go (the oldest
    /// first), signed-in ones never; with only those left, new sessions
    /// are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_and_signed_in_sessions_are_never_evicted() {
        let dir = temp("bound");
        let store = FileStore::open_with(&dir, 1 << 20, None)
            .unwrap()
            .with_capacity(50);
        for n in 0..10 {
            assert!(store.create(&key(n), record(true)).await.unwrap());
        }
        for n in 100..1_100 {
            assert!(store.create(&key(n), record(false)).await.unwrap());
        }
        assert!(store.len() <= 50, "{} sessions", store.len());
        for n in 0..10 {
            assert!(
                store.load(&key(n)).await.unwrap().is_some(),
                "signed-in {n} evicted"
            );
        }
        assert!(
            store.load(&key(1_099)).await.unwrap().is_some(),
            "the newest stays"
        );
        let files: usize = (0..SHARDS)
            .map(|s| fs::read_dir(store.inner.shard_dir(s)).unwrap().count())
            .sum();
        assert!(files <= 50, "{files} files after 1,010 sessions");

        // Only signed-in sessions: a new one is refused.
        let store = store.with_capacity(10);
        for n in 100..1_100 {
            store.delete(&key(n)).await.unwrap();
        }
        assert_eq!(store.len(), 10);
        let refused = store.create(&key(5_000), record(false)).await;
        assert!(refused.is_err(), "{refused:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

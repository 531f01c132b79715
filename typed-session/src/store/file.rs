//! [`FileStore`]: sessions in files on the local disk, crash-safe and
//! correct across processes sharing one directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use super::{Record, ReplaceOutcome, SaveOutcome, SessionStore};
use crate::error::StoreError;
use crate::id::SessionKey;

/// The first bytes of every record file: a format tag, then the revision.
const MAGIC: &[u8; 4] = b"TSF1";
const HEADER_BYTES: usize = 4 + 8;
/// Lock files: a record's operations hold the lock of its stripe, so that
/// the lock files are a fixed set (no lock file to clean up per session).
const STRIPES: usize = 256;
const LOCK_DIR: &str = ".locks";
const TMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this was left by a crash: the sweeper removes it.
const STALE_TMP: Duration = Duration::from_secs(600);
/// Directory entries one sweep looks at, at most.
const SWEEP_BUDGET: usize = 10_000;

/// Sessions in files under one directory: the store that needs no server.
///
/// * One file per session, named by the [`SessionKey`] (a SHA-256 of the id,
///   64 hex digits): never the cookie's value, so a directory listing yields
///   no cookie and no name can traverse out of the directory. The directory
///   is created `0700`, files `0600`.
/// * Crash-safe: a write goes to a temporary file in the same directory,
///   which is fsynced, renamed over the record, and the directory fsynced; a
///   crash leaves the old record or the new one, never a torn one. Temporary
///   files left by a crash are never read as records and are swept later.
/// * Correct across processes: every operation on a record holds an OS
///   file lock (one of 256 lock files in `.locks/`, picked by the key), so
///   two app processes sharing the directory keep create-if-absent,
///   compare-and-set and delete-is-final, and `replace` (regenerate) is one
///   step for both.
/// * The record's expiry is the file's modification time: `touch` sets it
///   and rewrites nothing; `load` never returns a file past it; a background
///   sweeper (started by [`FileStore::open`] inside a Tokio runtime, every
///   5 minutes by default) removes expired files, looking at most at 10,000
///   entries a pass, off the request path.
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
/// let store = FileStore::open(&dir).unwrap();
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
}

/// Cache shards, and entries per shard (4,096 x 16: 65,536 records).
const CACHE_SHARDS: usize = 16;
const CACHE_PER_SHARD: usize = 4096;

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
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("max_record_bytes", &self.inner.max_record_bytes)
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

impl FileStore {
    /// Opens (creating it `0700` if missing) the directory `dir`, checks that
    /// files can be written in it, and starts the sweeper when called inside
    /// a Tokio runtime. An error here is the startup error.
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
        let locks = dir.join(LOCK_DIR);
        create_private_dir(&locks).map_err(failed("create directory", &locks))?;
        // Writable? A probe file, written, synced and removed.
        let probe = dir.join(tmp_name("probe"));
        write_private(&probe, b"probe", None).map_err(failed("write", &probe))?;
        fs::remove_file(&probe).map_err(failed("remove", &probe))?;
        let store = FileStore {
            inner: Arc::new(Inner {
                dir,
                max_record_bytes: max_record_bytes as u64,
                cache: (0..CACHE_SHARDS).map(|_| Mutex::default()).collect(),
            }),
        };
        if let (Some(every), Ok(handle)) = (sweep_every, tokio::runtime::Handle::try_current()) {
            let weak = Arc::downgrade(&store.inner);
            handle.spawn(sweep_loop(weak, every.max(Duration::from_secs(1))));
        }
        Ok(store)
    }

    /// The directory of the session files.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Removes expired record files and stale temporary files, looking at
    /// no more than 10,000 directory entries; returns how many it removed.
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

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `bytes` to a new file at `path` (`0600`), with its modification
/// time set to `mtime`, syncs it, and says which version it wrote.
fn write_private(path: &Path, bytes: &[u8], mtime: Option<SystemTime>) -> io::Result<Version> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    if let Some(t) = mtime {
        file.set_modified(t)?;
    }
    file.sync_all()?;
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

/// A held stripe lock; released when dropped (the file is closed).
struct Held(#[allow(dead_code)] File);

impl Inner {
    fn record_path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(key.to_string())
    }

    fn stripe(key: &SessionKey) -> usize {
        usize::from(key.as_bytes()[0]) % STRIPES
    }

    fn lock_stripe(&self, stripe: usize) -> Result<Held, StoreError> {
        let path = self.dir.join(LOCK_DIR).join(format!("{stripe:02x}"));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(failed("open lock", &path))?;
        file.lock().map_err(failed("lock", &path))?;
        Ok(Held(file))
    }

    /// The locks of `keys`' stripes, each once, in stripe order (so two
    /// operations never wait on each other in opposite orders).
    fn lock(&self, keys: &[&SessionKey]) -> Result<Vec<Held>, StoreError> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| Self::stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.lock_stripe(s)).collect()
    }

    fn cache_shard(
        &self,
        key: &SessionKey,
    ) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Cached>> {
        self.cache[usize::from(key.as_bytes()[1]) % CACHE_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, key: &SessionKey, version: Version, record: &Record) {
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
            },
        );
    }

    fn forget(&self, key: &SessionKey) {
        self.cache_shard(key).remove(key);
    }

    /// The live record under `key`, if any. `cached`: a load may use the
    /// cache; a write's check under its lock (`false`) reads the file.
    fn read(&self, key: &SessionKey, cached: bool) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(key);
        let meta = match fs::metadata(&path) {
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
        let version = Version::of(&meta).map_err(failed("stat", &path))?;
        if version.modified <= SystemTime::now() {
            return Ok(None);
        }
        if cached
            && let Some(hit) = self.cache_shard(key).get(key)
            && hit.version == version
        {
            return Ok(Some(hit.record.clone()));
        }
        let mut file = match File::open(&path) {
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
        if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
            tracing::warn!(
                "file session store found a record file it did not write; serving it as no session"
            );
            return Ok(None);
        }
        let mut revision = [0u8; 8];
        revision.copy_from_slice(&bytes[4..HEADER_BYTES]);
        bytes.drain(..HEADER_BYTES);
        let record = Record::new(bytes, u64::from_le_bytes(revision), version.modified);
        self.remember(key, version, &record);
        Ok(Some(record))
    }

    /// Replaces (or creates) the record file atomically.
    fn write(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let path = self.record_path(key);
        let tmp = self.dir.join(tmp_name("record"));
        let mut bytes = Vec::with_capacity(HEADER_BYTES + record.data.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&record.revision.to_le_bytes());
        bytes.extend_from_slice(&record.data);
        let written = write_private(&tmp, &bytes, Some(stamp(record.expires_at)))
            .and_then(|version| fs::rename(&tmp, &path).map(|()| version));
        let version = match written {
            Ok(version) => version,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                self.forget(key);
                return Err(failed("write", &path)(e));
            }
        };
        sync_dir(&self.dir).map_err(failed("sync", &self.dir))?;
        // Kept with the runtime's decoded copy, if it attached one.
        self.remember(key, version, record);
        Ok(())
    }

    fn remove(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.forget(key);
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(failed("sync", &self.dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed("remove", &path)(e)),
        }
    }

    fn sweep(&self) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        let entries = fs::read_dir(&self.dir).map_err(failed("list", &self.dir))?;
        for entry in entries.take(SWEEP_BUDGET) {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(mtime) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
                // `.tmp-<unix seconds>-...`: left by a write that crashed (or
                // is still running, if younger than ten minutes).
                let born = rest
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                if born.is_none_or(|b| now.duration_since(b).is_ok_and(|age| age > STALE_TMP)) {
                    let _ = fs::remove_file(entry.path());
                    removed += 1;
                }
                continue;
            }
            if !is_record_name(name) || mtime > now {
                continue;
            }
            let Some(key) = SessionKey::from_hex(name) else {
                continue;
            };
            let _held = self.lock(&[&key])?;
            // Still expired under the lock (not rewritten meanwhile)?
            let expired = fs::metadata(entry.path())
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= now);
            if expired {
                self.remove(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
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
        self.inner.read(key, true)
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        let key = *key;
        self.run(move |s| {
            let _held = s.lock(&[&key])?;
            if s.read(&key, false)?.is_some() {
                return Ok(false);
            }
            s.write(&key, &record)?;
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
            let _held = s.lock(&[&key])?;
            match s.read(&key, false)? {
                Some(current) if current.revision == expected => {
                    s.write(&key, &record)?;
                    Ok(SaveOutcome::Saved)
                }
                current => Ok(SaveOutcome::Conflict(current)),
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
            let file = match OpenOptions::new().write(true).open(&path) {
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
            let _held = s.lock(&[&old, &new])?;
            match s.read(&old, false)? {
                Some(current) if current.revision == expected => {}
                current => return Ok(ReplaceOutcome::Conflict(current)),
            }
            if s.read(&new, false)?.is_some() {
                return Ok(ReplaceOutcome::KeyTaken);
            }
            s.write(&new, &record)?;
            s.remove(&old)?;
            Ok(ReplaceOutcome::Replaced)
        })
        .await
    }
}

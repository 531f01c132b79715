//! Record files on disk: paths, stripe locks, the record cache, reading,
//! writing (temporary file, rename, and the syncs `Durability` asks for) and removal.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::sync::Durability;
use super::{
    CACHE_PER_SHARD, CACHE_SHARDS, Class, HEADER_BYTES, Inner, Insecure, LOCK_DIR, SHARDS,
    STALE_TMP, TMP_PREFIX, TooLarge, failed,
};
use crate::error::StoreError;
use crate::id::SessionKey;
use crate::store::Record;

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
pub(super) struct Version {
    pub(super) inode: u64,
    pub(super) changed: (i64, i64),
    pub(super) len: u64,
    pub(super) modified: SystemTime,
}

impl Version {
    pub(super) fn of(meta: &fs::Metadata) -> io::Result<Self> {
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
pub(super) fn stamp(t: SystemTime) -> SystemTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ms = Duration::from_millis(since.as_millis().min(u128::from(u64::MAX)) as u64);
    let nanos = rand::Rng::random_range(&mut rand::rng(), 0..1_000_000u32);
    SystemTime::UNIX_EPOCH
        .checked_add(ms + Duration::from_nanos(u64::from(nanos)))
        .unwrap_or(t)
}

pub(super) struct Cached {
    pub(super) version: Version,
    pub(super) record: Record,
    pub(super) class: Class,
}

/// A live record file as read: the record, its class and its size.
pub(super) struct Found {
    pub(super) record: Record,
    pub(super) class: Class,
    pub(super) len: u64,
}

pub(super) fn shard_name(shard: usize) -> String {
    format!("{shard:02x}")
}

/// A temporary file's name: its birth time and a random part.
pub(super) fn tmp_name(what: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{TMP_PREFIX}{secs}-{what}-{}", random_suffix())
}

pub(super) fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Whether a temporary file named `name` is old enough to be a crash's.
pub(super) fn stale_tmp(name: &str, now: SystemTime) -> bool {
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

pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A directory writable by its group or others: tightened to `0700` when
/// this process's user (the owner of `ours`, a file it just made) owns it,
/// else refused.
pub(super) fn private_or_tightened(dir: &Path, ours: &fs::Metadata) -> Result<(), StoreError> {
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
pub(super) fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options
}

/// Writes `bytes` to a new file at `path` (`0600`), with its modification
/// time set to `mtime`, syncs it (`sync`), and says which version it wrote.
pub(super) fn write_private(
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

pub(super) fn is_record_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The class of the record file at `path` (its first four bytes), if it is one.
pub(super) fn class_of_file(path: &Path) -> Option<Class> {
    let mut file = no_follow(OpenOptions::new().read(true)).open(path).ok()?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    Class::of_magic(&magic)
}

/// A held stripe lock; released when dropped (the file is closed).
pub(super) struct Held(#[allow(dead_code)] File);

impl Inner {
    pub(super) fn shard(key: &SessionKey) -> usize {
        usize::from(key.as_bytes()[0]) % SHARDS
    }

    pub(super) fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(shard_name(shard))
    }

    pub(super) fn record_path(&self, key: &SessionKey) -> PathBuf {
        self.shard_dir(Self::shard(key)).join(key.to_string())
    }

    pub(super) fn open_lock(&self, stripe: usize) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_DIR).join(shard_name(stripe));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        no_follow(&mut options)
            .open(&path)
            .map_err(failed("open lock", &path))
    }

    pub(super) fn lock_stripe(&self, stripe: usize) -> Result<Held, StoreError> {
        let file = self.open_lock(stripe)?;
        let path = self.dir.join(LOCK_DIR).join(shard_name(stripe));
        file.lock().map_err(failed("lock", &path))?;
        Ok(Held(file))
    }

    /// The lock of `stripe` if nobody holds it now.
    pub(super) fn try_lock_stripe(&self, stripe: usize) -> Result<Option<Held>, StoreError> {
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
    pub(super) fn lock(&self, keys: &[&SessionKey]) -> Result<(Vec<Held>, Vec<usize>), StoreError> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| Self::shard(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let held = stripes
            .iter()
            .map(|s| self.lock_stripe(*s))
            .collect::<Result<_, _>>()?;
        Ok((held, stripes))
    }

    pub(super) fn cache_shard(
        &self,
        key: &SessionKey,
    ) -> MutexGuard<'_, HashMap<SessionKey, Cached>> {
        self.cache[usize::from(key.as_bytes()[1]) % CACHE_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn remember(
        &self,
        key: &SessionKey,
        version: Version,
        record: &Record,
        class: Class,
    ) {
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

    pub(super) fn forget(&self, key: &SessionKey) {
        self.cache_shard(key).remove(key);
    }

    /// The live record under `key`, if any. `cached`: a load may use the
    /// cache; a write's check under its lock (`false`) reads the file.
    pub(super) fn read(&self, key: &SessionKey, cached: bool) -> Result<Option<Found>, StoreError> {
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
    pub(super) fn write(
        &self,
        key: &SessionKey,
        record: &Record,
        class: Class,
    ) -> Result<u64, StoreError> {
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
    pub(super) fn remove(&self, key: &SessionKey) -> Result<(), StoreError> {
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
}

//! The sweeper: expired records and stale temporary files removed, one
//! bounded pass at a time, and records of the old flat layout adopted.

use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::disk::{class_of_file, is_record_name, stale_tmp};
use super::{Class, Inner, SHARDS, SWEEP_BUDGET, failed};
use crate::error::StoreError;
use crate::id::SessionKey;

impl Inner {
    /// One sweep pass (see [`FileStore::sweep`]).
    pub(super) fn sweep(&self) -> Result<usize, StoreError> {
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
    pub(super) fn sweep_top(&self) -> Result<usize, StoreError> {
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
    pub(super) fn sweep_shard(
        &self,
        shard: usize,
        remove: bool,
    ) -> Result<(usize, usize), StoreError> {
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
    pub(super) fn adopt_flat_records(&self) -> Result<(), StoreError> {
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

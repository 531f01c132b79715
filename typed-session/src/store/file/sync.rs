//! Durability and the group commit of directory syncs.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use super::{Inner, failed};
use crate::error::StoreError;

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
pub(super) struct DirSyncs {
    pub(super) state: Mutex<SyncState>,
    pub(super) done: std::sync::Condvar,
}

pub(super) struct SyncState {
    /// The batch the next write joins (ids from 1).
    pub(super) open: u64,
    /// Its subdirectories.
    pub(super) pending: std::collections::BTreeSet<usize>,
    pub(super) syncing: bool,
    /// The last batch synced (0: none yet).
    pub(super) done_through: u64,
    /// Recent failed batches and their error (bounded).
    pub(super) failed: std::collections::VecDeque<(u64, io::ErrorKind, String)>,
    /// Batches synced, and the writes they covered (the average batch).
    pub(super) batches: u64,
    pub(super) writes: u64,
}

impl DirSyncs {
    pub(super) fn new() -> Self {
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
    pub(super) fn sync_shard(&self, shard: usize) -> Result<(), StoreError> {
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

    pub(super) fn durability(&self) -> Durability {
        match self.durability.load(Ordering::Relaxed) {
            1 => Durability::Os,
            _ => Durability::Full,
        }
    }
}

/// Makes a directory's entries (a rename, a removal) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

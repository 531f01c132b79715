//! Suite helpers for the file store (included only where the `file-store`
//! feature is on).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use crate::common::harness::{Stored, TempDir};

/// Live record files of a file store: 64-hex-digit names in its 256
/// subdirectories, expiry (the modification time) in the future.
pub fn live_files(store: &typed_session::store::FileStore) -> usize {
    let now = std::time::SystemTime::now();
    (0..256)
        .flat_map(|shard| {
            std::fs::read_dir(store.path().join(format!("{shard:02x}")))
                .into_iter()
                .flatten()
        })
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 64
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > now)
        })
        .count()
}

/// Where a file store in `dir` keeps the record of `key`: the
/// subdirectory of its first byte.
pub fn record_path(dir: &std::path::Path, key: &typed_session::SessionKey) -> std::path::PathBuf {
    dir.join(format!("{:02x}", key.as_bytes()[0]))
        .join(key.to_string())
}

/// Every record file (64-hex-digit name) in a file store's directory
/// `dir`, live or expired, across its 256 subdirectories.
pub fn record_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    (0..256)
        .flat_map(|shard| {
            std::fs::read_dir(dir.join(format!("{shard:02x}")))
                .into_iter()
                .flatten()
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_name().len() == 64)
        .map(|e| e.path())
        .collect()
}

/// A file store in a fresh temporary directory, as a suite harness.
pub fn file_harness() -> Stored<typed_session::store::FileStore> {
    let dir = TempDir::new("file");
    let store = typed_session::store::FileStore::open(dir.path()).unwrap();
    Stored::new(store, live_files).with_guard(dir)
}

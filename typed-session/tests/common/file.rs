//! Suite helpers for the file store (included only where the `file-store`
//! feature is on).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use crate::common::harness::{Stored, TempDir};

/// Live record files of a file store: 64-hex-digit names, expiry (the
/// modification time) in the future.
pub fn live_files(store: &typed_session::store::FileStore) -> usize {
    let now = std::time::SystemTime::now();
    std::fs::read_dir(store.path())
        .unwrap()
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

/// A file store in a fresh temporary directory, as a suite harness.
pub fn file_harness() -> Stored<typed_session::store::FileStore> {
    let dir = TempDir::new("file");
    let store = typed_session::store::FileStore::open(dir.path()).unwrap();
    Stored::new(store, live_files).with_guard(dir)
}

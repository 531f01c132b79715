//! Unit tests of the file store.

use std::fs::File;

use tempfile::TempDir;

use super::*;

/// A temporary directory (removed when dropped) and the store's path in it.
fn temp() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
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
    let (_tmp, dir) = temp();
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
}

/// Finding (issue 22, item 4): a directory named like a record made
/// every sweep fail; files the store did not write must stay.
#[test]
fn the_sweeper_touches_only_what_the_store_wrote() {
    let (_tmp, dir) = temp();
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
}

/// A symbolic link in a record's place is not followed.
#[cfg(unix)]
#[tokio::test]
async fn a_planted_link_is_not_followed() {
    let (_tmp, dir) = temp();
    let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
    let target = dir.join("target");
    let k = key(3);
    let later = SystemTime::now() + Duration::from_secs(3600);
    plant(&store, &k, later, Class::Anonymous);
    fs::rename(store.inner.record_path(&k), &target).unwrap();
    std::os::unix::fs::symlink(&target, store.inner.record_path(&k)).unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    assert!(!store.touch(&k, later).await.unwrap_or(false));
}

/// Group- or world-writable: tightened when ours.
#[cfg(unix)]
#[test]
fn an_open_directory_of_ours_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, dir) = temp();
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    FileStore::open_with(&dir, 1 << 20, None).unwrap();
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

fn record() -> Record {
    Record::new(
        br#"{"v":1,"c":0,"t":0,"d":{}}"#.to_vec(),
        1,
        SystemTime::now() + Duration::from_secs(3600),
    )
}

/// Group commit (issue 25): concurrent writes share the directory
/// syncs, a lone write runs its own at once; `Durability::Os` syncs
/// nothing and still writes whole files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_directory_syncs() {
    let (_tmp, dir) = temp();
    let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
    assert!(store.create(&key(1), record()).await.unwrap());
    assert_eq!(store.sync_batches(), (1, 1), "a lone write syncs alone");
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&key(100 + n), record()).await })
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
    let (_os_tmp, os_dir) = temp();
    let os = FileStore::open_with(os_dir, 1 << 20, None)
        .unwrap()
        .with_durability(Durability::Os);
    assert!(os.create(&key(1), record()).await.unwrap());
    assert!(os.load(&key(1)).await.unwrap().is_some());
    assert_eq!(os.sync_batches(), (0, 0));
}

/// Finding (issue 22, item 3): every cookie-less request left a file,
/// without bound. Past the bound, anonymous sessions go (the oldest
/// first), signed-in ones never; with only those left, new sessions
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_and_signed_in_sessions_are_never_evicted() {
    let (_tmp, dir) = temp();
    let store = FileStore::open_with(&dir, 1 << 20, None)
        .unwrap()
        .with_capacity(50);
    for n in 0..10 {
        assert!(store.create_as(&key(n), record(), true).await.unwrap());
    }
    for n in 100..1_100 {
        assert!(store.create(&key(n), record()).await.unwrap());
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
    let refused = store.create(&key(5_000), record()).await;
    assert!(refused.is_err(), "{refused:?}");
}

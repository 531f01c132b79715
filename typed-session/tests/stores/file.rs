//! `FileStore`: the contract, then what only a file store has to get
//! right: crash safety, permissions, bounded reads, two processes, sweeping.

use std::time::{Duration, SystemTime};

use crate::common::file::{record_files, record_path};
use crate::common::harness::TempDir;
use crate::common::store_suite::{HOUR, key, record};
use typed_session::SessionKey;
use typed_session::store::{FileStore, Record, SaveOutcome, SessionStore};

store_suite!(contract, let dir = TempDir::new("file-suite"); FileStore::open(dir.path()).unwrap());

fn open(dir: &TempDir) -> FileStore {
    FileStore::open_with(dir.path(), 1 << 20, None).unwrap()
}

#[tokio::test]
async fn file_names_are_keys_and_permissions_private() {
    let dir = TempDir::new("file-perm");
    let root = dir.path().join("nested/sessions");
    let store = FileStore::open(&root).unwrap();
    let k = key(1);
    assert!(store.create(&k, record("x", 1, HOUR)).await.unwrap());
    let path = record_path(&root, &k);
    assert!(path.exists(), "one file, named by the key's hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}

#[tokio::test]
async fn a_crash_leaves_the_old_record_or_the_new_never_a_torn_one() {
    let dir = TempDir::new("file-crash");
    let store = open(&dir);
    let k = key(2);
    assert!(store.create(&k, record("old", 1, HOUR)).await.unwrap());
    // A write that crashed before its rename: a partial temporary file.
    let tmp =
        record_path(dir.path(), &k).with_file_name(format!(".tmp-0-record-{}", "ab".repeat(8)));
    std::fs::write(&tmp, b"TSF1\x02\0\0\0\0\0\0\0ne").unwrap();
    let got = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        (&got.data[..], got.revision),
        (&b"old"[..], 1),
        "the old record, whole"
    );
    // A record file that is not ours (torn by something else, or planted).
    let other = key(3);
    std::fs::write(record_path(dir.path(), &other), b"garbage").unwrap();
    assert_eq!(store.load(&other).await.unwrap(), None, "refused, no panic");
    // The sweeper removes what the crash left, and nothing live.
    let removed = store.sweep().unwrap();
    assert!(removed >= 1);
    assert!(!tmp.exists(), "the stale temporary file is gone");
    assert!(store.load(&k).await.unwrap().is_some());
}

#[tokio::test]
async fn records_over_the_size_limit_are_refused_unread() {
    let dir = TempDir::new("file-big");
    let store = FileStore::open_with(dir.path(), 1024, None).unwrap();
    let k = key(4);
    let mut big = b"TSF1\x01\0\0\0\0\0\0\0".to_vec();
    big.extend(std::iter::repeat_n(b'{', 2 << 20));
    let path = record_path(dir.path(), &k);
    std::fs::write(&path, &big).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() + HOUR).unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(
        store
            .create(&key(5), record(&"x".repeat(1000), 1, HOUR))
            .await
            .unwrap()
    );
    assert!(
        store.load(&key(5)).await.unwrap().is_some(),
        "within the limit"
    );
}

#[tokio::test]
async fn touch_rewrites_nothing_but_the_expiry() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("file-touch");
    let store = open(&dir);
    let k = key(6);
    assert!(store.create(&k, record("t", 1, HOUR)).await.unwrap());
    let path = record_path(dir.path(), &k);
    let before = std::fs::metadata(&path).unwrap();
    let later = SystemTime::now() + 2 * HOUR;
    assert!(store.touch(&k, later).await.unwrap());
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.ino(), before.ino(), "the same file, not a rewrite");
    assert_eq!(after.len(), before.len());
    assert!(after.modified().unwrap() > before.modified().unwrap());
    let saved = store.save(&k, record("u", 2, HOUR), 1).await.unwrap();
    assert_eq!(saved, SaveOutcome::Saved);
    assert_ne!(
        std::fs::metadata(&path).unwrap().ino(),
        before.ino(),
        "a save renames a new file in"
    );
}

#[test]
fn a_directory_that_cannot_be_created_is_a_startup_error() {
    let dir = TempDir::new("file-bad");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = FileStore::open(file.join("sessions")).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("create directory"), "{chain}");
    let mut config = typed_session::SessionConfig::default();
    config.store = typed_session::StoreConfig::File(typed_session::FileConfig::default());
    if let typed_session::StoreConfig::File(f) = &mut config.store {
        f.path = file.join("sessions");
    }
    let err = typed_session::SessionLayer::from_config(&config).unwrap_err();
    assert!(
        err.setting()
            .is_some_and(|s| s.starts_with("store.path = ")),
        "{err}"
    );
    match err.inner() {
        typed_session::ConfigError::StoreUnavailable {
            driver: "file",
            reason,
        } => {
            assert!(reason.contains("create directory"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_removes_expired_files_in_the_background() {
    let dir = TempDir::new("file-sweep");
    let store = FileStore::open_with(dir.path(), 1 << 20, Some(Duration::from_secs(1))).unwrap();
    for n in 0..20 {
        assert!(
            store
                .create(&key(100 + n), record("s", 1, Duration::from_millis(200)))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .create(&key(200), record("live", 1, HOUR))
            .await
            .unwrap()
    );
    let files = || record_files(dir.path()).len();
    assert_eq!(files(), 21);
    // Bounded wait for a background pass (every second).
    for _ in 0..100 {
        if files() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        files(),
        1,
        "the expired files were swept, the live one kept"
    );
    assert!(store.load(&key(200)).await.unwrap().is_some());
}

const CHILD_DIR: &str = "TYPED_SESSION_FILE_CHILD_DIR";
const ROUNDS: u64 = 150;

/// Compare-and-set increments of one counter until `ROUNDS` succeed.
async fn increment(store: &FileStore, k: &SessionKey) {
    let mut done = 0;
    while done < ROUNDS {
        let current = store.load(k).await.unwrap().unwrap();
        let n: u64 = std::str::from_utf8(&current.data).unwrap().parse().unwrap();
        let next = Record::new(
            (n + 1).to_string().into_bytes(),
            current.revision + 1,
            current.expires_at,
        );
        if store.save(k, next, current.revision).await.unwrap() == SaveOutcome::Saved {
            done += 1;
        }
    }
}

/// Half of `two_processes_sharing_a_directory_lose_nothing`, run in a child process.
#[test]
fn file_store_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        increment(&store, &key(50)).await;
        let mut won = 0;
        for n in 0..100u8 {
            if store
                .create(&key(n.wrapping_add(120)), record("child", 1, HOUR))
                .await
                .unwrap()
            {
                won += 1;
            }
        }
        println!("CHILD won={won}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_a_directory_lose_nothing() {
    let dir = TempDir::new("file-procs");
    let store = open(&dir);
    let counter = key(50);
    assert!(store.create(&counter, record("0", 1, HOUR)).await.unwrap());
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file::file_store_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output();
    let parent = async {
        increment(&store, &counter).await;
        let mut won = 0;
        for n in 0..100u8 {
            if store
                .create(&key(n.wrapping_add(120)), record("parent", 1, HOUR))
                .await
                .unwrap()
            {
                won += 1;
            }
        }
        won
    };
    let (out, parent_won) = tokio::join!(child, parent);
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let child_won: u32 = text
        .lines()
        .find_map(|l| {
            l.split_once("CHILD won=")
                .map(|(_, n)| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| {
            panic!(
                "child output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let got = store.load(&counter).await.unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&got.data).unwrap(),
        (2 * ROUNDS).to_string(),
        "no lost update"
    );
    assert_eq!(got.revision, 2 * ROUNDS + 1);
    assert_eq!(parent_won + child_won, 100, "each key created exactly once");
}

#[tokio::test]
async fn records_survive_a_store_reopen() {
    let dir = TempDir::new("file-reopen");
    {
        let store = open(&dir);
        assert!(
            store
                .create(&key(7), record("kept", 1, HOUR))
                .await
                .unwrap()
        );
    }
    let again = open(&dir);
    let got = again.load(&key(7)).await.unwrap().unwrap();
    assert_eq!((&got.data[..], got.revision), (&b"kept"[..], 1));
}

const BURST_DIR: &str = "TYPED_SESSION_FILE_BURST_DIR";

/// The child of `a_killed_writer_loses_nothing_acknowledged`: writes
/// records as fast as it can and prints each one's number once its
/// write returned, until it is killed.
#[test]
fn file_store_burst_child() {
    let Some(dir) = std::env::var_os(BURST_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = FileStore::open_with(&dir, 1 << 20, None).unwrap();
        for n in 0u32.. {
            let k = burst_key(n);
            let body = burst_body(n);
            if n % 2 == 0 {
                assert!(
                    store
                        .create(
                            &k,
                            Record::new(body.into_bytes(), 1, SystemTime::now() + HOUR)
                        )
                        .await
                        .unwrap()
                );
            } else {
                // Odd records are created, then rewritten (a save), so
                // the kill can land in either kind of write.
                assert!(store.create(&k, record("first", 1, HOUR)).await.unwrap());
                let saved = store
                    .save(
                        &k,
                        Record::new(body.into_bytes(), 2, SystemTime::now() + HOUR),
                        1,
                    )
                    .await
                    .unwrap();
                assert_eq!(saved, SaveOutcome::Saved);
            }
            println!("ACK {n}");
        }
    });
}

fn burst_key(n: u32) -> SessionKey {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    SessionKey::from_bytes(bytes)
}

fn burst_body(n: u32) -> String {
    format!(
        "{{\"n\":{n},\"pad\":\"{}\"}}",
        "z".repeat(n as usize % 2000)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_nothing_acknowledged() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = TempDir::new("file-kill");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file::file_store_burst_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BURST_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    // Kill it in the middle of its burst: after 300 acknowledged writes.
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.trim().parse::<u32>().unwrap());
            if acked.len() == 300 {
                child.start_kill().unwrap();
                break;
            }
        }
    }
    child.wait().await.unwrap();
    let store = open(&dir);
    for &n in &acked {
        let got = store.load(&burst_key(n)).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("acknowledged record {n} lost"));
        assert_eq!(
            std::str::from_utf8(&got.data).unwrap(),
            burst_body(n),
            "record {n} intact"
        );
    }
    // Every record file in the directory is whole: it loads, and its
    // body is one of the two bodies its writer ever wrote.
    let mut files = 0;
    for path in record_files(dir.path()) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(k) = SessionKey::from_hex(&name) else {
            continue;
        };
        files += 1;
        let n = u32::from_le_bytes(k.as_bytes()[..4].try_into().unwrap());
        let got = store
            .load(&k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("torn or unreadable record {n}"));
        let body = std::str::from_utf8(&got.data).unwrap().to_owned();
        assert!(
            body == burst_body(n) || body == "first",
            "record {n} torn: {body:.40}"
        );
    }
    println!(
        "killed writer: {} writes acknowledged, {files} record files, all intact",
        acked.len()
    );
    assert!(files >= acked.len());
    // What the kill left half-written is swept, never read.
    store.sweep().unwrap();
}

/// Each store keeps what it read or wrote, checked against the file on
/// every load: another store (another process) on the same directory
/// writing, touching or deleting is seen at once.
#[tokio::test]
async fn a_cached_record_is_never_stale() {
    let dir = TempDir::new("file-cache");
    let (a, b) = (open(&dir), open(&dir));
    let k = key(8);
    assert!(a.create(&k, record("v1", 1, HOUR)).await.unwrap());
    assert_eq!(&a.load(&k).await.unwrap().unwrap().data[..], b"v1");
    assert_eq!(
        b.save(&k, record("v2", 2, HOUR), 1).await.unwrap(),
        SaveOutcome::Saved
    );
    let got = a.load(&k).await.unwrap().unwrap();
    assert_eq!(
        (&got.data[..], got.revision),
        (&b"v2"[..], 2),
        "a sees b's write"
    );
    let later = SystemTime::now() + 5 * HOUR;
    assert!(b.touch(&k, later).await.unwrap());
    let seen = a.load(&k).await.unwrap().unwrap().expires_at;
    assert!(seen > SystemTime::now() + 4 * HOUR, "a sees b's touch");
    b.delete(&k).await.unwrap();
    assert_eq!(a.load(&k).await.unwrap(), None, "a sees b's delete");
    assert_eq!(
        a.save(&k, record("v3", 3, HOUR), 2).await.unwrap(),
        SaveOutcome::Conflict(None),
        "and cannot write it back"
    );
}

//! What the shared suites need from a backend: a layer over it, and (for
//! server-side stores) a look at what is stored.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::Future;

use typed_session::store::{Record, SaveOutcome, SessionStore};
use typed_session::{SessionId, SessionKey, SessionLayer};

/// One backend under test. Every layer it returns shares the same sessions.
pub trait Harness: Clone + Send + Sync + 'static {
    /// A layer with the default settings over this backend.
    fn layer(&self) -> SessionLayer;
    /// Live sessions persisted server side; `None` when the backend keeps
    /// nothing on the server (the encrypted-cookie mode).
    fn count(&self) -> impl Future<Output = Option<usize>> + Send;
    /// Deletes the session of a cookie value straight in the store, as an
    /// admin tool would; `false` when the backend has no store.
    fn delete(&self, cookie_value: &str) -> impl Future<Output = bool> + Send;
    /// Rewrites the stored bytes of the session of a cookie value; `false`
    /// when the backend has no store.
    fn rewrite(
        &self,
        cookie_value: &str,
        f: fn(String) -> String,
    ) -> impl Future<Output = bool> + Send;
    /// Replaces the stored bytes of the session of a cookie value with
    /// `data`, as an attacker with write access to the store would; `false`
    /// when the backend has no store or the store refused the record.
    fn plant(&self, cookie_value: &str, data: Vec<u8>) -> impl Future<Output = bool> + Send;
    /// The stored bytes of the session of a cookie value, as text; `None`
    /// when the backend has no store (or no such record).
    fn stored(&self, cookie_value: &str) -> impl Future<Output = Option<String>> + Send {
        let _ = cookie_value;
        async { None }
    }
    /// `true` for server-side stores; `false` for cookie mode, where every
    /// write sends a new cookie, an old cookie opens until its deadline and
    /// racing requests are last-response-wins (its documented semantics,
    /// which the suite checks in place of the store's).
    fn keeps_records(&self) -> bool {
        true
    }
}

/// A server-side store and a way to count its live records, with whatever
/// must live as long as it (a temporary directory).
#[derive(Clone)]
pub struct Stored<T> {
    pub store: T,
    pub count: fn(&T) -> usize,
    guard: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

impl<T: SessionStore + Clone> Stored<T> {
    pub fn new(store: T, count: fn(&T) -> usize) -> Self {
        Stored {
            store,
            count,
            guard: None,
        }
    }

    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Some(std::sync::Arc::new(guard));
        self
    }
}

/// A directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
/// A temporary directory (`tempfile`), removed when dropped; `tag` names
/// what it is for.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("typed-session-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// The store key of a cookie value (`id` or `id.tag`), computed as the runtime does.
pub fn session_key(cookie_value: &str) -> SessionKey {
    let value = cookie_value
        .split_once('=')
        .map_or(cookie_value, |(_, v)| v);
    let id_part = value.split('.').next().expect("one part at least");
    SessionId::from_cookie_value(id_part).expect("an id").key()
}

impl<T: SessionStore + Clone> Harness for Stored<T> {
    fn layer(&self) -> SessionLayer {
        SessionLayer::new(self.store.clone())
    }

    async fn count(&self) -> Option<usize> {
        Some((self.count)(&self.store))
    }

    async fn delete(&self, cookie_value: &str) -> bool {
        self.store.delete(&session_key(cookie_value)).await.unwrap();
        true
    }

    async fn plant(&self, cookie_value: &str, data: Vec<u8>) -> bool {
        let key = session_key(cookie_value);
        let Ok(Some(rec)) = self.store.load(&key).await else {
            return false;
        };
        matches!(
            self.store
                .save(
                    &key,
                    Record::new(data, rec.revision + 1, rec.expires_at),
                    rec.revision
                )
                .await,
            Ok(SaveOutcome::Saved)
        )
    }

    async fn stored(&self, cookie_value: &str) -> Option<String> {
        let rec = self.store.load(&session_key(cookie_value)).await.ok()??;
        String::from_utf8(rec.data.to_vec()).ok()
    }

    async fn rewrite(&self, cookie_value: &str, f: fn(String) -> String) -> bool {
        let key = session_key(cookie_value);
        let rec = self.store.load(&key).await.unwrap().unwrap();
        let data = f(String::from_utf8(rec.data.to_vec()).unwrap());
        let out = self
            .store
            .save(
                &key,
                Record::new(data, rec.revision + 1, rec.expires_at),
                rec.revision,
            )
            .await
            .unwrap();
        assert_eq!(out, SaveOutcome::Saved);
        true
    }
}

/// Checks the number of live sessions where the backend can tell.
pub async fn assert_count<H: Harness>(h: &H, expected: usize, why: &str) {
    if let Some(n) = h.count().await {
        assert_eq!(n, expected, "live sessions: {why}");
    }
}

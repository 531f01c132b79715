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
}

/// A server-side store and a way to count its live records.
#[derive(Clone)]
pub struct Stored<T> {
    pub store: T,
    pub count: fn(&T) -> usize,
}

impl<T: SessionStore + Clone> Stored<T> {
    pub fn new(store: T, count: fn(&T) -> usize) -> Self {
        Stored { store, count }
    }
}

/// The store key of a cookie value (`id` or `id.tag`), computed as the runtime does.
pub fn session_key(cookie_value: &str) -> SessionKey {
    let value = cookie_value
        .split_once('=')
        .map_or(cookie_value, |(_, v)| v);
    let id_part = value.split('.').next().unwrap_or_default();
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

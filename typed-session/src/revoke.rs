//! [`RevocationList`]: ending every session of one user at once ("log out
//! everywhere"), for every backend, including the sealed cookie.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::clock::{from_unix_millis, unix_millis};
use crate::error::StoreError;
use crate::expiry::MAX_LIFETIME;
use crate::id::SessionKey;
use crate::store::{ErasedStore, Record, SaveOutcome, SessionStore};

/// How often `revoke_all` retries a lost race with another revocation.
const MAX_TRIES: usize = 16;

/// The digest a session keeps of its subject: the app's name for the user
/// never appears in a record or a cookie.
pub(crate) fn subject_digest(subject: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"typed-session subject\0");
    h.update(subject.as_bytes());
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn marker_key(digest: &[u8; 16]) -> SessionKey {
    let mut h = Sha256::new();
    h.update(b"typed-session revocation\0");
    h.update(digest);
    SessionKey::from_bytes(h.finalize().into())
}

/// A "not before" time per subject (a user), kept in any [`SessionStore`]:
/// a session bound to a subject with
/// [`TypedSession::set_subject`](crate::TypedSession::set_subject) at or
/// before the subject's revocation time is ended on its next request.
///
/// It is what makes "log out everywhere" work in cookie mode, where no
/// server-side record exists to delete, and it works the same over the
/// server-side stores. The cost: one store lookup per request whose session
/// has a subject (requests of anonymous sessions pay nothing). If the store
/// is down, those requests get `503`, never a session that may be revoked.
///
/// ```
/// use axum::{Router, routing::post};
/// use typed_session::{RevocationList, SessionLayer, SessionSchema, SigningKey, TypedSession};
/// use typed_session::store::MemoryStore;
///
/// #[derive(SessionSchema)]
/// struct Auth { user: Option<u64> }
///
/// async fn login(session: TypedSession<Auth>) {
///     session.regenerate_with(|s| s.user = Some(7)).unwrap();
///     session.set_subject(Some("user:7"));
/// }
///
/// let revocations = RevocationList::new(MemoryStore::new());
/// let key = SigningKey::new(b"an example secret of at least 32 bytes".to_vec()).unwrap();
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .layer(SessionLayer::new(MemoryStore::new()).with_revocation(revocations.clone()));
/// # let _ = (app, key);
/// # async {
/// // Later, from a "log out everywhere" button or an admin tool:
/// revocations.revoke_all("user:7").await.unwrap();
/// # };
/// ```
#[derive(Clone)]
pub struct RevocationList {
    store: Arc<dyn ErasedStore>,
    retention: Duration,
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RevocationList {
    /// Revocations kept in `store` (a Redis or file store shares them
    /// between app instances; a memory store only within one process).
    pub fn new(store: impl SessionStore) -> Self {
        RevocationList {
            store: Arc::new(store),
            retention: MAX_LIFETIME,
        }
    }

    /// How long a revocation is kept (default 400 days, the longest any
    /// session cookie lives). Set it to your absolute timeout to keep fewer
    /// records; shorter than the longest session lets an older session of a
    /// revoked user come back once its revocation is dropped.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention.min(MAX_LIFETIME);
        self
    }

    /// Ends every session bound to `subject` so far; sessions it binds
    /// afterwards (a new login) are not affected.
    pub async fn revoke_all(&self, subject: &str) -> Result<(), StoreError> {
        self.revoke_all_at(subject, SystemTime::now()).await
    }

    /// [`revoke_all`](Self::revoke_all) as of `at` (for tests with a manual clock).
    pub async fn revoke_all_at(&self, subject: &str, at: SystemTime) -> Result<(), StoreError> {
        let key = marker_key(&subject_digest(subject));
        let at_ms = unix_millis(at);
        let expires = from_unix_millis(
            at_ms.saturating_add(self.retention.as_millis().min(u128::from(u64::MAX)) as u64),
        );
        for _ in 0..MAX_TRIES {
            match self.store.load(&key).await? {
                None => {
                    let record = Record::new(at_ms.to_string().into_bytes(), 1, expires);
                    if self.store.create(&key, record).await? {
                        break;
                    }
                }
                Some(current) => {
                    let before = parse_ms(&current.data).unwrap_or(0);
                    if before >= at_ms {
                        break;
                    }
                    let record = Record::new(
                        at_ms.to_string().into_bytes(),
                        current.revision + 1,
                        expires,
                    );
                    if self.store.save(&key, record, current.revision).await? == SaveOutcome::Saved
                    {
                        break;
                    }
                }
            }
        }
        tracing::info!("sessions of one subject revoked");
        Ok(())
    }

    /// The subject's revocation time (unix ms), if any.
    pub(crate) async fn not_before(&self, digest: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .load(&marker_key(digest))
            .await?
            .and_then(|r| parse_ms(&r.data)))
    }
}

fn parse_ms(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data).ok()?.parse().ok()
}

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
///
/// # Clocks
///
/// A revocation ends the sessions bound at or before its time, each time
/// read from the clock of the host that made it. When hosts' clocks differ,
/// a revocation made on a host that is behind misses sessions bound on
/// another host in that difference; [`with_clock_skew`](Self::with_clock_skew)
/// moves every revocation later by the largest difference you allow, at the
/// cost of also ending a login made within that margin after it.
#[derive(Clone)]
pub struct RevocationList {
    store: Arc<dyn ErasedStore>,
    retention: Duration,
    skew: Duration,
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field("retention", &self.retention)
            .field("skew", &self.skew)
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
            skew: Duration::ZERO,
        }
    }

    /// The largest difference between the clocks of the hosts that bind
    /// sessions and the ones that revoke them (default zero: one host, or
    /// clocks kept within milliseconds by NTP). Every revocation counts as
    /// made `skew` later, so that a host whose clock is behind by up to
    /// `skew` still ends every session bound before it. What it costs: a
    /// login within `skew` after a revocation is ended by it too.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew.min(Duration::from_secs(3600));
        self
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

    /// [`revoke_all`](Self::revoke_all) as of `at` (for tests with a manual
    /// clock). An error when the store fails, or when other revocations of
    /// the same subject kept winning the race for 16 tries and none of them
    /// covers `at`: nothing was written, and nothing may be assumed revoked.
    pub async fn revoke_all_at(&self, subject: &str, at: SystemTime) -> Result<(), StoreError> {
        let key = marker_key(&subject_digest(subject));
        let at_ms = unix_millis(at + self.skew);
        let expires = from_unix_millis(
            at_ms.saturating_add(self.retention.as_millis().min(u128::from(u64::MAX)) as u64),
        );
        for _ in 0..MAX_TRIES {
            let done = match self.store.load(&key).await? {
                None => {
                    let record = Record::new(at_ms.to_string().into_bytes(), 1, expires);
                    self.store.create(&key, record).await?
                }
                // A later revocation already covers this one.
                Some(current) if parse_ms(&current.data).unwrap_or(0) >= at_ms => true,
                Some(current) => {
                    let record = Record::new(
                        at_ms.to_string().into_bytes(),
                        current.revision + 1,
                        expires,
                    );
                    self.store.save(&key, record, current.revision).await? == SaveOutcome::Saved
                }
            };
            if done {
                tracing::info!("sessions of one subject revoked");
                return Ok(());
            }
        }
        tracing::warn!(
            tries = MAX_TRIES,
            "revoking the sessions of one subject lost every race with other writes; nothing revoked"
        );
        Err(StoreError::new(Contended))
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

/// Every try of a revocation lost its compare-and-set to another write.
#[derive(Debug, thiserror::Error)]
#[error(
    "the revocation lost every compare-and-set to other writes of the same subject; nothing was revoked"
)]
struct Contended;

fn parse_ms(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data).ok()?.parse().ok()
}

//! [`RevocationList`]: ending every session of one user at once ("log out
//! everywhere"), for every backend, including the sealed cookie.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::backend::erased::ErasedStore;
use crate::clock::{from_unix_millis, unix_millis};
use crate::error::StoreError;
use crate::expiry::MAX_LIFETIME;
use crate::id::SessionKey;
use crate::store::{Record, SaveOutcome, SessionStore};

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
        let at_ms = unix_millis(at + self.skew);
        self.update(&subject_digest(subject), |state| {
            // A later revocation already covers this one.
            if state.not_before.is_some_and(|t| t >= at_ms) {
                return false;
            }
            state.not_before = Some(at_ms);
            true
        })
        .await?;
        crate::telemetry::count("typed_session_revocations_total", &[]);
        tracing::info!("sessions of one subject revoked");
        Ok(())
    }

    /// What is recorded for a subject: its revocation time and (cookie
    /// mode) its sealed sessions.
    pub(crate) async fn state(&self, digest: &[u8; 16]) -> Result<SubjectState, StoreError> {
        Ok(self
            .store
            .load(&marker_key(digest))
            .await?
            .map(|r| SubjectState::parse(&r.data))
            .unwrap_or_default())
    }

    /// Cookie mode: a copy of sealed session `id` was issued, written at
    /// `touched` (unix ms) and alive until `deadline`: older copies of it
    /// are no longer extended.
    pub(crate) async fn copy_issued(
        &self,
        digest: &[u8; 16],
        id: [u8; 16],
        touched: u64,
        deadline: u64,
    ) -> Result<(), StoreError> {
        self.update(digest, |state| {
            let copy = state.copy_mut(id);
            if copy.ended || (copy.latest >= touched && copy.deadline >= deadline) {
                return false;
            }
            copy.latest = copy.latest.max(touched);
            copy.deadline = copy.deadline.max(deadline);
            true
        })
        .await
    }

    /// Cookie mode: sealed session `id` ended (a logout, a new id): every
    /// copy of it, wherever it is, opens no more. Kept until `deadline`,
    /// the latest any copy of it could live.
    pub(crate) async fn copy_ended(
        &self,
        digest: &[u8; 16],
        id: [u8; 16],
        deadline: u64,
    ) -> Result<(), StoreError> {
        self.update(digest, |state| {
            let copy = state.copy_mut(id);
            if copy.ended {
                return false;
            }
            copy.ended = true;
            copy.deadline = copy.deadline.max(deadline);
            true
        })
        .await
    }

    /// Changes a subject's record with compare-and-set (`change` says
    /// whether it changed anything); expired session entries go on the way.
    async fn update(
        &self,
        digest: &[u8; 16],
        change: impl Fn(&mut SubjectState) -> bool,
    ) -> Result<(), StoreError> {
        let key = marker_key(digest);
        let now = unix_millis(SystemTime::now());
        for _ in 0..MAX_TRIES {
            let current = self.store.load(&key).await?;
            let mut state = current
                .as_ref()
                .map(|r| SubjectState::parse(&r.data))
                .unwrap_or_default();
            if !change(&mut state) {
                return Ok(());
            }
            state.prune(now);
            let retention = self.retention.as_millis().min(u128::from(u64::MAX)) as u64;
            let keep_until = state
                .copies
                .iter()
                .map(|c| c.deadline)
                .fold(now.saturating_add(retention), u64::max);
            let expires = from_unix_millis(keep_until);
            let done = match current {
                None => {
                    self.store
                        .create(&key, Record::new(state.encode(), 1, expires))
                        .await?
                }
                Some(current) => {
                    let record = Record::new(state.encode(), current.revision + 1, expires);
                    self.store.save(&key, record, current.revision).await? == SaveOutcome::Saved
                }
            };
            if done {
                return Ok(());
            }
        }
        tracing::warn!(
            tries = MAX_TRIES,
            "updating the revocation record of one subject lost every race with other writes; nothing written"
        );
        Err(StoreError::new(Contended))
    }
}

/// Most sealed sessions kept per subject (the ended ones are kept until
/// their deadline; of the others, the least recently written go first).
const MAX_COPIES: usize = 256;

/// A subject's revocation record: `NOT_BEFORE` (unix ms, or `-`), then
/// `;ID:LATEST:DEADLINE:STATE` per sealed session (`e` ended, `l` live).
/// A record of earlier versions is the number alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SubjectState {
    /// Sessions bound at or before this time are revoked.
    pub(crate) not_before: Option<u64>,
    copies: Vec<SealedCopy>,
}

/// What is known of one sealed session's copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedCopy {
    id: [u8; 16],
    /// The write time of the newest copy issued.
    pub(crate) latest: u64,
    /// The latest any copy lives.
    deadline: u64,
    /// Every copy of it is dead.
    pub(crate) ended: bool,
}

impl SubjectState {
    fn parse(data: &[u8]) -> Self {
        let text = std::str::from_utf8(data).unwrap_or_default();
        let mut parts = text.split(';');
        let not_before = parts.next().and_then(|t| t.parse().ok());
        let copies = parts
            .filter_map(|entry| {
                let mut f = entry.split(':');
                let hex = f.next()?;
                let latest = f.next()?.parse().ok()?;
                let deadline = f.next()?.parse().ok()?;
                let ended = f.next()? == "e";
                let mut id = [0u8; 16];
                hex::decode_to_slice(hex, &mut id).ok()?;
                Some(SealedCopy {
                    id,
                    latest,
                    deadline,
                    ended,
                })
            })
            .collect();
        SubjectState { not_before, copies }
    }

    fn encode(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut out = match self.not_before {
            Some(t) => t.to_string(),
            None => "-".to_owned(),
        };
        for c in &self.copies {
            out.push(';');
            out.push_str(&hex::encode(c.id));
            let state = if c.ended { 'e' } else { 'l' };
            let _ = write!(out, ":{}:{}:{state}", c.latest, c.deadline);
        }
        out.into_bytes()
    }

    /// What is known of sealed session `id`.
    pub(crate) fn copy(&self, id: &[u8; 16]) -> Option<&SealedCopy> {
        self.copies.iter().find(|c| c.id == *id)
    }

    fn copy_mut(&mut self, id: [u8; 16]) -> &mut SealedCopy {
        let at = match self.copies.iter().position(|c| c.id == id) {
            Some(at) => at,
            None => {
                self.copies.push(SealedCopy {
                    id,
                    latest: 0,
                    deadline: 0,
                    ended: false,
                });
                self.copies.len() - 1
            }
        };
        &mut self.copies[at]
    }

    /// Drops what expired, then (past the bound) the least recently
    /// written live sessions: an ended one is never dropped early, which
    /// would bring its copies back.
    fn prune(&mut self, now: u64) {
        self.copies.retain(|c| c.deadline > now);
        while self.copies.len() > MAX_COPIES {
            let Some(oldest) = self
                .copies
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.ended)
                .min_by_key(|(_, c)| c.latest)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.copies.remove(oldest);
        }
    }
}

/// Every try of a revocation lost its compare-and-set to another write.
#[derive(Debug, thiserror::Error)]
#[error(
    "the update of a revocation record lost every compare-and-set to other writes of the same subject; nothing was written, nothing was revoked"
)]
struct Contended;

//! The persistence seam: where a session lives between requests.
//!
//! The session core plans a write (create, save, touch, regenerate,
//! destroy) and hands it here; the backend carries it out and says what the
//! session's persisted state is afterwards. The one shape today is
//! [`server::ServerSide`]: the id in a (signed) cookie, the record in a
//! [`SessionStore`](crate::store::SessionStore). A backend that keeps the
//! record in the cookie itself adds a variant here, a module beside
//! `server`, and its settings in the config; the core does not change.

pub(crate) mod seam;
pub(crate) mod server;

use seam::{Found, Merge, Payload, Stored, Written};

use crate::cookies::CookieIn;
use crate::error::{Error, StoreError};
use crate::keys::{KeyRing, Purpose, SigningKey};

/// The kinds of persistence.
#[derive(Clone)]
pub(crate) enum Backend {
    /// Id in the cookie, record in a store.
    Server(server::ServerSide),
}

impl Backend {
    /// A short name for spans and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Server(b) => b.name(),
        }
    }

    /// Takes the configured secrets (newest first), derived for this backend's purpose.
    pub(crate) fn set_secrets(&mut self, secrets: &[SigningKey]) {
        match self {
            Backend::Server(b) => b.set_keys(KeyRing::derive(secrets, Purpose::IdSigning)),
        }
    }

    /// How many secrets are in use.
    pub(crate) fn key_count(&self) -> usize {
        match self {
            Backend::Server(b) => b.keys().len(),
        }
    }

    /// Whether writes should carry a decoded copy of the session.
    pub(crate) fn keeps_typed_copies(&self) -> bool {
        match self {
            Backend::Server(b) => b.keeps_typed_copies(),
        }
    }

    /// Whether every write changes the cookie (it holds the record), not
    /// only those that change the session's identity.
    pub(crate) fn cookie_holds_record(&self) -> bool {
        match self {
            Backend::Server(_) => false,
        }
    }

    /// Finds the session a request's cookie names.
    pub(crate) async fn load(&self, cookie: CookieIn<'_>) -> Result<Found, StoreError> {
        match self {
            Backend::Server(b) => b.load(cookie).await,
        }
    }

    /// Drops a record that loading found unusable (expired, failed validation).
    pub(crate) async fn discard(&self, stored: &Stored) {
        match self {
            Backend::Server(b) => b.discard(stored).await,
        }
    }

    /// Persists a new session.
    pub(crate) async fn create(&self, payload: Payload) -> Result<Stored, Error> {
        match self {
            Backend::Server(b) => b.create(payload).await,
        }
    }

    /// Writes changes to an existing session, merging after a lost race.
    pub(crate) async fn save(
        &self,
        stored: &Stored,
        payload: Payload,
        merge: Merge<'_>,
    ) -> Result<Written, Error> {
        match self {
            Backend::Server(b) => b.save(stored, payload, merge).await,
        }
    }

    /// Moves an unchanged session's idle deadline.
    pub(crate) async fn touch(&self, stored: &Stored, expires_at: u64) -> Result<Written, Error> {
        match self {
            Backend::Server(b) => b.touch(stored, expires_at).await,
        }
    }

    /// Gives an existing session a new identity, atomically ending the old
    /// one; `Gone` if the old one ended meanwhile (never resurrected).
    pub(crate) async fn regenerate(
        &self,
        stored: &Stored,
        payload: Payload,
        merge: Merge<'_>,
    ) -> Result<Written, Error> {
        match self {
            Backend::Server(b) => b.regenerate(stored, payload, merge).await,
        }
    }

    /// Ends a session for good.
    pub(crate) async fn destroy(&self, stored: &Stored) -> Result<(), Error> {
        match self {
            Backend::Server(b) => b.destroy(stored).await,
        }
    }

    /// The cookie value that names `stored`.
    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        match self {
            Backend::Server(b) => b.cookie_value(stored),
        }
    }
}

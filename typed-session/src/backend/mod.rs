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

use std::future::Future;

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

    // The dispatchers below return the backend's own future rather than
    // awaiting it in a future of their own: one state machine less on every
    // request. A second backend makes each return an enum of the two futures.

    /// Finds the session a request's cookie names.
    pub(crate) fn load<'a>(
        &'a self,
        cookie: CookieIn<'a>,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send + 'a {
        match self {
            Backend::Server(b) => b.load(cookie),
        }
    }

    /// Drops a record that loading found unusable (expired, failed validation).
    pub(crate) fn discard<'a>(
        &'a self,
        stored: &'a Stored,
    ) -> impl Future<Output = ()> + Send + 'a {
        match self {
            Backend::Server(b) => b.discard(stored),
        }
    }

    /// Persists a new session.
    pub(crate) fn create(
        &self,
        payload: Payload,
    ) -> impl Future<Output = Result<Stored, Error>> + Send + '_ {
        match self {
            Backend::Server(b) => b.create(payload),
        }
    }

    /// Writes changes to an existing session, merging after a lost race.
    pub(crate) fn save<'a>(
        &'a self,
        stored: &'a Stored,
        payload: Payload,
        merge: Merge<'a>,
    ) -> impl Future<Output = Result<Written, Error>> + Send + 'a {
        match self {
            Backend::Server(b) => b.save(stored, payload, merge),
        }
    }

    /// Moves an unchanged session's idle deadline.
    pub(crate) fn touch<'a>(
        &'a self,
        stored: &'a Stored,
        expires_at: u64,
    ) -> impl Future<Output = Result<Written, Error>> + Send + 'a {
        match self {
            Backend::Server(b) => b.touch(stored, expires_at),
        }
    }

    /// Gives an existing session a new identity, atomically ending the old
    /// one; `Gone` if the old one ended meanwhile (never resurrected).
    pub(crate) fn regenerate<'a>(
        &'a self,
        stored: &'a Stored,
        payload: Payload,
        merge: Merge<'a>,
    ) -> impl Future<Output = Result<Written, Error>> + Send + 'a {
        match self {
            Backend::Server(b) => b.regenerate(stored, payload, merge),
        }
    }

    /// Ends a session for good.
    pub(crate) fn destroy<'a>(
        &'a self,
        stored: &'a Stored,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        match self {
            Backend::Server(b) => b.destroy(stored),
        }
    }

    /// The cookie value that names `stored`.
    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        match self {
            Backend::Server(b) => b.cookie_value(stored),
        }
    }
}

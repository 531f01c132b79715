//! The persistence seam: where a session lives between requests.
//!
//! The session core plans a write (create, save, touch, regenerate,
//! destroy) and hands it here; the backend carries it out and says what the
//! session's persisted state is afterwards. Two shapes:
//! [`server::ServerSide`] (the id in a signed cookie, the record in a
//! [`SessionStore`](crate::store::SessionStore)) and, with the
//! `cookie-store` feature, `sealed::SealedCookie` (the record sealed in
//! the cookie; no I/O, so its operations complete at once).

#[cfg(feature = "cookie-store")]
pub(crate) mod sealed;
pub(crate) mod seam;
pub(crate) mod server;

use seam::{Found, Merge, Payload, Stored, Written};

#[cfg(feature = "cookie-store")]
use std::future::ready;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cookies::CookieIn;
use crate::error::{Error, StoreError};
use crate::keys::{KeyRing, Purpose, SigningKey};

/// The kinds of persistence.
#[derive(Clone)]
pub(crate) enum Backend {
    /// Id in the cookie, record in a store.
    Server(server::ServerSide),
    /// The record sealed in the cookie.
    #[cfg(feature = "cookie-store")]
    Sealed(sealed::SealedCookie),
}

pin_project_lite::pin_project! {
    /// The future of one dispatched operation: the server backend's own
    /// future, or a result the sealed backend computed without I/O. No box,
    /// no extra `async` state machine on the hot path.
    #[project = DispatchProj]
    pub(crate) enum Dispatch<F: Future> {
        Pending { #[pin] future: F },
        Done { result: Ready<F::Output> },
    }
}

impl<F: Future> Future for Dispatch<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            DispatchProj::Pending { future } => future.poll(cx),
            DispatchProj::Done { result } => Pin::new(result).poll(cx),
        }
    }
}

fn pending<F: Future>(future: F) -> Dispatch<F> {
    Dispatch::Pending { future }
}

#[cfg(feature = "cookie-store")]
fn done<F: Future>(result: F::Output) -> Dispatch<F> {
    Dispatch::Done {
        result: ready(result),
    }
}

impl Backend {
    /// A short name for spans and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Server(b) => b.name(),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => "SealedCookie",
        }
    }

    /// Takes the configured secrets (newest first), derived for this backend's purpose.
    pub(crate) fn set_secrets(&mut self, secrets: &[SigningKey]) {
        match self {
            Backend::Server(b) => b.set_keys(KeyRing::derive(secrets, Purpose::IdSigning)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.set_keys(KeyRing::derive(secrets, Purpose::Sealing)),
        }
    }

    /// Tells the backend the cookie's full name (sealed values are bound to it).
    pub(crate) fn bind_cookie_name(&mut self, name: &str) {
        match self {
            Backend::Server(_) => {
                let _ = name;
            }
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.bind_name(name),
        }
    }

    /// Cookie mode: deflate sealed sessions when that makes them smaller.
    pub(crate) fn set_compress(&mut self, on: bool) {
        match self {
            Backend::Server(_) => {
                let _ = on;
            }
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.set_compress(on),
        }
    }

    /// How many secrets are in use.
    pub(crate) fn key_count(&self) -> usize {
        match self {
            Backend::Server(b) => b.keys().len(),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.keys().len(),
        }
    }

    /// Whether writes should carry a decoded copy of the session.
    pub(crate) fn keeps_typed_copies(&self) -> bool {
        match self {
            Backend::Server(b) => b.keeps_typed_copies(),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => false,
        }
    }

    /// Whether every write changes the cookie (it holds the record), not
    /// only those that change the session's identity.
    /// Such a backend also refreshes a deadline (or re-keys) by rewriting
    /// the record, never by a touch.
    pub(crate) fn cookie_holds_record(&self) -> bool {
        match self {
            Backend::Server(_) => false,
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => true,
        }
    }

    // The dispatchers below return the backend's own future (or the sealed
    // backend's result) rather than awaiting it in a future of their own:
    // one state machine less on every request.

    /// Finds the session a request's cookie names.
    pub(crate) fn load<'a>(
        &'a self,
        cookie: CookieIn<'a>,
    ) -> Dispatch<impl Future<Output = Result<Found, StoreError>> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.load(cookie)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.load(cookie)),
        }
    }

    /// Drops a record that loading found unusable (expired, failed validation).
    pub(crate) fn discard<'a>(
        &'a self,
        stored: &'a Stored,
    ) -> Dispatch<impl Future<Output = ()> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.discard(stored)),
            #[cfg(feature = "cookie-store")]
            // Nothing on the server to drop.
            Backend::Sealed(_) => done(()),
        }
    }

    /// Persists a new session.
    pub(crate) fn create(
        &self,
        payload: Payload,
    ) -> Dispatch<impl Future<Output = Result<Stored, Error>> + Send + '_> {
        match self {
            Backend::Server(b) => pending(b.create(payload)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.create(&payload)),
        }
    }

    /// Writes changes to an existing session, merging after a lost race.
    pub(crate) fn save<'a>(
        &'a self,
        stored: &'a Stored,
        payload: Payload,
        merge: Merge<'a>,
    ) -> Dispatch<impl Future<Output = Result<Written, Error>> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.save(stored, payload, merge)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.save(stored, &payload)),
        }
    }

    /// Moves an unchanged session's idle deadline.
    pub(crate) fn touch<'a>(
        &'a self,
        stored: &'a Stored,
        expires_at: u64,
    ) -> Dispatch<impl Future<Output = Result<Written, Error>> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.touch(stored, expires_at)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.touch()),
        }
    }

    /// Gives an existing session a new identity, atomically ending the old
    /// one; `Gone` if the old one ended meanwhile (never resurrected).
    pub(crate) fn regenerate<'a>(
        &'a self,
        stored: &'a Stored,
        payload: Payload,
        merge: Merge<'a>,
    ) -> Dispatch<impl Future<Output = Result<Written, Error>> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.regenerate(stored, payload, merge)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.regenerate(&payload)),
        }
    }

    /// Ends a session for good.
    pub(crate) fn destroy<'a>(
        &'a self,
        stored: &'a Stored,
    ) -> Dispatch<impl Future<Output = Result<(), Error>> + Send + 'a> {
        match self {
            Backend::Server(b) => pending(b.destroy(stored)),
            #[cfg(feature = "cookie-store")]
            // The response removes the cookie; nothing else holds the session.
            Backend::Sealed(_) => done(Ok(())),
        }
    }

    /// The cookie value that names `stored`.
    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        match self {
            Backend::Server(b) => b.cookie_value(stored),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.cookie_value(stored),
        }
    }
}

//! The persistence seam: where a session lives between requests.
//!
//! The session core plans a write (create, save, touch, regenerate,
//! destroy) and hands it here; the backend carries it out and says what the
//! session's persisted state is afterwards. Two shapes:
//! [`server::ServerSide`] (the id in a signed cookie, the record in a
//! [`SessionStore`](crate::store::SessionStore)) and, with the
//! `cookie-store` feature, `sealed::SealedCookie` (the record sealed in
//! the cookie; no I/O, so its operations complete at once).

pub(crate) mod copies;
pub(crate) mod erased;
#[cfg(feature = "cookie-store")]
pub(crate) mod sealed;
pub(crate) mod seam;
pub(crate) mod server;

use seam::{Found, Merge, Payload, Stored, Written};

#[cfg(feature = "cookie-store")]
use std::future::ready;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cookies::CookieIn;
use crate::error::{Error, StoreError};
use crate::keys::{KeyRing, Purpose, SigningKey};
use crate::store::SessionStore;

/// What a layer's backend is, before its keys and cookie name are known:
/// the layer keeps it and builds the [`Backend`] from it whenever a
/// setting changes.
#[derive(Clone)]
pub(crate) enum BackendConfig {
    /// Id in the cookie, record in `store`.
    Server {
        store: Arc<dyn erased::ErasedStore>,
        establish: Option<Arc<dyn erased::Establish>>,
        /// Shared by every backend built from this configuration.
        copies: Arc<copies::Copies>,
    },
    /// The record sealed in the cookie, deflated when `compress` and smaller.
    #[cfg(feature = "cookie-store")]
    Sealed { compress: bool },
}

impl BackendConfig {
    /// A server-side backend over `store`.
    pub(crate) fn server<T: SessionStore>(store: T) -> Self {
        let store = Arc::new(store);
        BackendConfig::Server {
            establish: erased::establishing(store.clone()),
            store,
            copies: Arc::default(),
        }
    }

    /// Cookie mode: deflate sealed sessions when that makes them smaller;
    /// no effect on a server-side backend.
    pub(crate) fn set_compress(&mut self, on: bool) {
        #[cfg(feature = "cookie-store")]
        if let BackendConfig::Sealed { compress } = self {
            *compress = on;
        }
        let _ = on;
    }

    /// The backend, with `secrets` (newest first) derived for its purpose
    /// and its values bound to the cookie's full name.
    #[cfg_attr(not(feature = "cookie-store"), allow(unused_variables))]
    pub(crate) fn build(&self, secrets: &[SigningKey], cookie_name: &str) -> Backend {
        match self {
            BackendConfig::Server {
                store,
                establish,
                copies,
            } => Backend::Server(server::ServerSide::new(
                Arc::clone(store),
                establish.clone(),
                Arc::clone(copies),
                KeyRing::derive(secrets, Purpose::IdSigning),
            )),
            #[cfg(feature = "cookie-store")]
            BackendConfig::Sealed { compress } => Backend::Sealed(sealed::SealedCookie::new(
                KeyRing::derive(secrets, Purpose::Sealing),
                cookie_name,
                *compress,
            )),
        }
    }
}

/// The kinds of persistence, ready for requests.
#[derive(Clone)]
pub(crate) enum Backend {
    /// Id in the cookie, record in a store.
    Server(server::ServerSide),
    /// The record sealed in the cookie.
    #[cfg(feature = "cookie-store")]
    Sealed(sealed::SealedCookie),
}

/// How a backend refreshes the deadline of a session that was only read,
/// and so what its cookie is.
pub(crate) enum Refresh<'a> {
    /// The store moves the deadline without the record; the cookie names
    /// the record and changes only with the session's identity.
    Touch(&'a server::ServerSide),
    /// The record is rewritten: it lives in the cookie (its deadline and key
    /// sealed inside), so every write sends a new cookie, and copies of
    /// older cookies still open until their own deadline.
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    Rewrite,
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
    /// A short name for spans, logs and metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Server(b) => b.name(),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => "SealedCookie",
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
    pub(crate) fn keeps_copies(&self) -> bool {
        matches!(self, Backend::Server(_))
    }

    /// Whether every operation completes without waiting (no I/O).
    pub(crate) fn completes_at_once(&self) -> bool {
        match self {
            Backend::Server(_) => false,
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => true,
        }
    }

    /// How an unchanged session's deadline is refreshed.
    pub(crate) fn refresh(&self) -> Refresh<'_> {
        match self {
            Backend::Server(b) => Refresh::Touch(b),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(_) => Refresh::Rewrite,
        }
    }

    // The dispatchers below return the backend's own future (or the sealed
    // backend's result) rather than awaiting it in a future of their own:
    // one state machine less on every request. The server backend's write
    // futures are boxed: they are the largest, and inline they would grow
    // every request's commit future; cookie mode's results need no box.

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
            Backend::Server(b) => pending(Box::pin(b.create(payload))),
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
            Backend::Server(b) => pending(Box::pin(b.save(stored, payload, merge))),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => done(b.save(stored, &payload)),
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
            Backend::Server(b) => pending(Box::pin(b.regenerate(stored, payload, merge))),
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
            Backend::Server(b) => pending(Box::pin(b.destroy(stored))),
            #[cfg(feature = "cookie-store")]
            // The response removes the cookie; nothing else holds the session.
            Backend::Sealed(_) => done(Ok(())),
        }
    }

    /// The cookie value that names `stored`.
    pub(crate) fn cookie_value(&self, stored: &Stored) -> crate::cookies::CookieValue {
        match self {
            Backend::Server(b) => crate::cookies::CookieValue::Owned(b.cookie_value(stored)),
            #[cfg(feature = "cookie-store")]
            Backend::Sealed(b) => b.cookie_value(stored),
        }
    }
}

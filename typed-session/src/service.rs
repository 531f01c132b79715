//! [`SessionService`]: the request gets its session context, the response
//! gets the session saved, its cookie and the cache headers that go with it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_core::body::Body;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response};
use tower_service::Service;

use crate::error::{Error, describe_for_log};
use crate::extract::{RequestContext, SlotCell};
use crate::rejection::SessionRejection;
use crate::runtime::Runtime;

/// The service [`SessionLayer`](crate::SessionLayer) wraps around a router or handler.
#[derive(Clone)]
pub struct SessionService<Svc> {
    inner: Svc,
    runtime: Arc<Runtime>,
}

impl<Svc> SessionService<Svc> {
    pub(crate) fn new(inner: Svc, runtime: Arc<Runtime>) -> Self {
        SessionService { inner, runtime }
    }
}

impl<Svc> fmt::Debug for SessionService<Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<Svc, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<Svc>
where
    Svc: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    Svc::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let slot: SlotCell = Arc::new(Mutex::new(None));
        req.extensions_mut().insert(RequestContext {
            runtime: self.runtime.clone(),
            slot: slot.clone(),
        });
        let runtime = self.runtime.clone();
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = inner.call(req);
        Box::pin(async move {
            let mut response = future.await?.map(Body::new);
            // A rejection the extractor (or the handler) answered: in the
            // app's shape, if it gave one.
            if let Some(respond) = runtime.on_rejection
                && let Some(rejection) = response.extensions_mut().remove::<SessionRejection>()
            {
                response = respond(rejection);
            }
            let taken = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let Some(session) = taken else {
                return Ok(response);
            };
            if !(runtime.commit_on)(response.status()) {
                tracing::debug!(
                    status = response.status().as_u16(),
                    "response not committed by the commit policy; session changes dropped"
                );
                session.erased.discard_uncommitted();
            }
            let finish = match session.erased.finish_unchanged() {
                Some(finish) => finish,
                None => match session.erased.finish_at_once() {
                    Some(finish) => finish,
                    None => session.erased.finish().await,
                },
            };
            let mut response = match finish.result {
                Ok(()) => response,
                Err(err) => {
                    log_failed_save(&err);
                    let rejection = SessionRejection::from(&err);
                    match runtime.on_rejection {
                        Some(respond) => respond(rejection),
                        None => axum_core::response::IntoResponse::into_response(rejection),
                    }
                }
            };
            let headers = response.headers_mut();
            // Room for what is added below, in one growth at most.
            headers.reserve(3);
            let mut sets_cookie = false;
            if let Some(out) = finish.cookie
                && let Some(value) = runtime.cookie.header(out)
            {
                headers.append(SET_COOKIE, value);
                sets_cookie = true;
            }
            add_vary_cookie(headers);
            // A response that sets the session cookie must never be stored
            // by a shared cache, whatever the handler said; one that depends
            // on it gets `no-store` unless the handler chose otherwise.
            if sets_cookie || !headers.contains_key(CACHE_CONTROL) {
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(response)
        })
    }
}

fn log_failed_save(err: &Error) {
    match err {
        // Said (once per outage) and counted by the commit itself.
        Error::Store(_) => {}
        Error::Destroyed => {
            tracing::debug!("a write to a session destroyed meanwhile was dropped; answering 409");
        }
        Error::TooLarge { size, limit } => {
            tracing::warn!(size, limit, "session too large to save; answering 413");
        }
        Error::CookieTooLarge { size, limit } => {
            tracing::error!(
                size,
                limit,
                "sealed session cookie over the browsers' size limit; nothing sent, answering 500"
            );
        }
        other => {
            tracing::error!(cause = %describe_for_log(other), "session save failed; answering 503");
        }
    }
}

fn add_vary_cookie(headers: &mut HeaderMap) {
    if !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static("cookie"));
        return;
    }
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("cookie") || p.trim() == "*")
            })
            .unwrap_or(false)
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
}

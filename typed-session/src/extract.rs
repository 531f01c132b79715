//! The axum extractors: `TypedSession<S>`, `SessionView<S>` and their
//! `Option` forms, and the per-request context the layer hands them.

use std::sync::{Arc, Mutex};

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::backend::erased::BoxFuture;
use crate::handle::{SessionView, TypedSession};
use crate::persist::Finish;
use crate::rejection::SessionRejection;
use crate::runtime::Runtime;
use crate::schema::SessionSchema;
use crate::state::Core;

/// The request extension the layer adds and the extractors read.
#[derive(Clone)]
pub(crate) struct RequestContext {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) slot: SlotCell,
}

/// Type-erased access for the layer, which does not know `S`.
pub(crate) trait ErasedSession: Send + Sync + 'static {
    /// The response's part when nothing is to be written; no future, no allocation.
    fn finish_unchanged(&self) -> Option<Finish>;
    fn finish(&self) -> BoxFuture<'_, Finish>;
    /// The whole commit at once, when nothing in it can wait (no future on
    /// the heap); `None` when it could.
    fn finish_at_once(&self) -> Option<Finish>;
    /// The response may not commit: drop what is not written yet.
    fn discard_uncommitted(&self);
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<S: SessionSchema> ErasedSession for Core<S> {
    fn finish_unchanged(&self) -> Option<Finish> {
        Core::finish_unchanged(self)
    }
    fn finish(&self) -> BoxFuture<'_, Finish> {
        Box::pin(Core::finish(self))
    }
    fn finish_at_once(&self) -> Option<Finish> {
        Core::finish_at_once(self)
    }
    fn discard_uncommitted(&self) {
        Core::discard_uncommitted(self)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The session of one request, once extracted: kept so that every extractor
/// of the request shares it and the layer can save it.
pub(crate) struct Slot {
    pub(crate) erased: Box<dyn ErasedSession>,
}

impl Slot {
    fn core<S: SessionSchema>(&self) -> Result<Core<S>, SessionRejection> {
        self.erased
            .as_any()
            .downcast_ref::<Core<S>>()
            .cloned()
            .ok_or(SessionRejection::SchemaMismatch)
    }
}

pub(crate) type SlotCell = Arc<Mutex<Option<Slot>>>;

async fn core_for<S: SessionSchema>(parts: &Parts) -> Result<Core<S>, SessionRejection> {
    let Some(ctx) = parts.extensions.get::<RequestContext>() else {
        return Err(SessionRejection::MissingLayer);
    };
    if let Some(slot) = ctx
        .slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
    {
        return slot.core();
    }
    let cookie = ctx.runtime.cookie.find(&parts.headers);
    let core = Core::<S>::load(ctx.runtime.clone(), cookie).await?;
    let mut slot = ctx
        .slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(existing) = slot.as_ref() {
        return existing.core();
    }
    *slot = Some(Slot {
        erased: Box::new(core.clone()),
    });
    Ok(core)
}

/// Loads the session once per request; later extractions share it.
impl<S: SessionSchema, St: Send + Sync> FromRequestParts<St> for TypedSession<S> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        core_for::<S>(parts).await.map(TypedSession::from_core)
    }
}

/// `Some` only when the request carries a live stored session; `None` for an
/// anonymous request. Store failures are still rejections.
impl<S: SessionSchema, St: Send + Sync> OptionalFromRequestParts<St> for TypedSession<S> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &St,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = TypedSession::from_core(core_for::<S>(parts).await?);
        Ok((!session.is_new()).then_some(session))
    }
}

/// A read-only session: loads as `TypedSession` does, offers getters only.
impl<S: SessionSchema, St: Send + Sync> FromRequestParts<St> for SessionView<S> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        core_for::<S>(parts).await.map(SessionView::from_core)
    }
}

/// `Some` only when the request carries a live stored session.
impl<S: SessionSchema, St: Send + Sync> OptionalFromRequestParts<St> for SessionView<S> {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &St,
    ) -> Result<Option<Self>, Self::Rejection> {
        let view = SessionView::from_core(core_for::<S>(parts).await?);
        Ok((!view.is_new()).then_some(view))
    }
}

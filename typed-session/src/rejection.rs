//! Why a request could not get its session: typed, with fixed status and body.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::LoadRefused;

/// A request the session runtime refused. Each variant has a fixed status and
/// a generic body; the cause is logged, never sent.
///
/// ```
/// use http::StatusCode;
/// use typed_session::SessionRejection;
///
/// let r = SessionRejection::StoreUnavailable;
/// assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(r.body_text(), "session store unavailable");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The handler extracts a session but the route is not wrapped in a `SessionLayer`.
    #[error(
        "missing session layer: add `.layer(typed_session::SessionLayer::new(store))` to the router around this route"
    )]
    MissingLayer,
    /// The store failed (down, timed out); the cause is logged at `error`.
    #[error("session store unavailable")]
    StoreUnavailable,
    /// A stored field with `on_invalid = "reject"` failed to parse or validate.
    #[error("invalid session")]
    InvalidSession,
    /// The stored session was written by a newer version of the code.
    #[error("session unavailable")]
    UnsupportedVersion,
    /// Two different session types were extracted in one request.
    #[error("one request used two different session types")]
    SchemaMismatch,
    /// The session changed concurrently so often that the save gave up; retry.
    #[error("session busy, retry")]
    Busy,
    /// The handler changed a field that a newer version of the code stored
    /// in a shape this version cannot read (a rolling deploy); nothing was saved.
    #[error("session field belongs to a newer version")]
    NewerSchema,
    /// The handler wrote to a session that another request destroyed (or
    /// that expired) meanwhile; the write was not saved.
    #[error("session ended")]
    SessionEnded,
    /// The session grew past the layer's size limit; the write was not saved.
    #[error("session too large")]
    TooLarge,
    /// Cookie mode: the sealed session outgrew the 4096-byte cookie budget;
    /// the write was not sent (the cause is logged at `error`).
    #[error("session could not be saved")]
    CookieTooLarge,
}

impl From<LoadRefused> for SessionRejection {
    fn from(refused: LoadRefused) -> Self {
        match refused {
            LoadRefused::StoreUnavailable => SessionRejection::StoreUnavailable,
            LoadRefused::InvalidSession => SessionRejection::InvalidSession,
            LoadRefused::NewerVersion => SessionRejection::UnsupportedVersion,
        }
    }
}

impl SessionRejection {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::MissingLayer
            | SessionRejection::SchemaMismatch
            | SessionRejection::CookieTooLarge => StatusCode::INTERNAL_SERVER_ERROR,
            SessionRejection::StoreUnavailable
            | SessionRejection::UnsupportedVersion
            | SessionRejection::Busy => StatusCode::SERVICE_UNAVAILABLE,
            SessionRejection::InvalidSession => StatusCode::BAD_REQUEST,
            SessionRejection::SessionEnded | SessionRejection::NewerSchema => StatusCode::CONFLICT,
            SessionRejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The body of the response.
    pub fn body_text(&self) -> String {
        self.to_string()
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        if matches!(
            self,
            SessionRejection::MissingLayer | SessionRejection::SchemaMismatch
        ) {
            tracing::error!(rejection = %self, "session extractor misconfigured");
        }
        let mut response = (self.status(), self.body_text()).into_response();
        // The layer's `on_rejection` hook, if any, answers in its place.
        response.extensions_mut().insert(self);
        response
    }
}

impl IntoResponse for crate::ValidationError {
    fn into_response(self) -> Response {
        crate::telemetry::count(
            "typed_session_writes_refused_total",
            &[("reason", "validation")],
        );
        tracing::debug!(
            field = self.field().unwrap_or("<struct>"),
            "session write refused by a rule; answering 422"
        );
        (StatusCode::UNPROCESSABLE_ENTITY, self.public_text()).into_response()
    }
}

impl From<&crate::Error> for SessionRejection {
    fn from(err: &crate::Error) -> Self {
        match err {
            crate::Error::Conflict => SessionRejection::Busy,
            crate::Error::Destroyed => SessionRejection::SessionEnded,
            crate::Error::TooLarge { .. } => SessionRejection::TooLarge,
            crate::Error::CookieTooLarge { .. } => SessionRejection::CookieTooLarge,
            crate::Error::NewerSchema { .. } => SessionRejection::NewerSchema,
            crate::Error::Load(crate::LoadError::FutureVersion { .. }) => {
                SessionRejection::UnsupportedVersion
            }
            _ => SessionRejection::StoreUnavailable,
        }
    }
}

impl IntoResponse for crate::Error {
    fn into_response(self) -> Response {
        match &self {
            crate::Error::Validation(v) => v.clone().into_response(),
            crate::Error::NewerSchema { field, version } => {
                tracing::warn!(
                    field,
                    version,
                    "a write to a session field stored by a newer version of the code was refused; answering 409"
                );
                SessionRejection::NewerSchema.into_response()
            }
            other => {
                tracing::error!(cause = %crate::error::describe_for_log(other), "session save failed");
                SessionRejection::from(other).into_response()
            }
        }
    }
}

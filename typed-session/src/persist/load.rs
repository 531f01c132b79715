//! The load path of one session: cookie in, backend load, decode, expiry,
//! revocation, and what the extractor is told when it fails.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::backend::Refresh;
use crate::backend::seam::Found;
use crate::cookies::CookieIn;
use crate::envelope;
use crate::error::{LoadError, LoadRefused, describe_for_log, error_chain};
use crate::runtime::{NewerSchema, Runtime};
use crate::schema::SessionSchema;
use crate::state::{Core, State};
use crate::telemetry;

impl<S: SessionSchema> Core<S> {
    /// Loads the session the request's cookie names.
    pub(crate) async fn load(rt: Arc<Runtime>, cookie: CookieIn<'_>) -> Result<Self, LoadRefused> {
        let span = tracing::debug_span!(
            "session.load",
            backend = rt.backend.name(),
            outcome = tracing::field::Empty,
            duration_us = tracing::field::Empty
        );
        // Without a subscriber that wants the span, no span work at all
        // (entering, recording, forwarding to `log`) on the hot path.
        if span.is_disabled() {
            return Self::load_in_span(rt, cookie).await;
        }
        // Boxed, so that the span does not grow the future of every request
        // that runs without one.
        let started = std::time::Instant::now();
        let result = Box::pin(Self::load_in_span(rt, cookie).instrument(span.clone())).await;
        span.record("duration_us", started.elapsed().as_micros() as u64);
        span.record(
            "outcome",
            match &result {
                Ok(core) if core.lock().stored.is_some() => "loaded",
                Ok(_) => "new",
                Err(LoadRefused::StoreUnavailable) => "store unavailable",
                Err(_) => "rejected",
            },
        );
        result
    }

    async fn load_in_span(rt: Arc<Runtime>, cookie: CookieIn<'_>) -> Result<Self, LoadRefused> {
        let now = rt.now_ms();
        let started = telemetry::timing().then(std::time::Instant::now);
        let found = rt.backend.load(cookie).await.map_err(|e| {
            rt.health
                .failed(rt.backend.name(), "load", &error_chain(&e));
            LoadRefused::StoreUnavailable
        })?;
        if let Some(started) = started {
            telemetry::store_time(rt.backend.name(), "load", started.elapsed().as_secs_f64());
        }
        if matches!(found, Found::Live(_)) {
            rt.health.ok();
            telemetry::count(
                "typed_session_sessions_loaded_total",
                &[("backend", rt.backend.name())],
            );
        }
        let loaded = match found {
            Found::Live(loaded) => loaded,
            Found::Absent | Found::Dead => return Ok(Core::new(State::fresh(now), Some(rt))),
        };
        // Nothing this layer writes is larger: a bigger record was planted
        // or written under another configuration, and parsing it would cost
        // memory and time in proportion to it.
        if loaded.copy.is_none() && loaded.body.len() > rt.max_session_bytes.saturating_mul(2) {
            tracing::debug!(
                size = loaded.body.len(),
                limit = rt.max_session_bytes,
                "stored session larger than the layer writes; discarded, starting a new session"
            );
            rt.backend.discard(&loaded.stored).await;
            return Ok(Core::new(State::fresh(now), Some(rt)));
        }
        let decoded = match loaded.copy.as_ref().and_then(envelope::from_cache::<S>) {
            Some(from_cache) => from_cache,
            None => envelope::decode_body::<S>(&loaded.body),
        };
        match decoded {
            Ok(decoded) if decoded.newer.is_some() && rt.newer_schema == NewerSchema::Reject => {
                tracing::warn!(
                    found = decoded.newer.as_ref().map(|n| n.version),
                    known = S::VERSION,
                    "stored session is from a newer version of the code; rejecting the request \
                     (on_newer_schema(Reject))"
                );
                Err(LoadRefused::NewerVersion)
            }
            Ok(decoded) => {
                if rt
                    .policy
                    .expired(decoded.meta.created, loaded.stored.expires_at, now)
                {
                    tracing::debug!("session expired; starting a new session");
                    rt.backend.discard(&loaded.stored).await;
                    return Ok(Core::new(State::fresh(now), Some(rt)));
                }
                let mut copy_deadline = None;
                if let (Some(list), Some(subject)) = (&rt.revocation, decoded.meta.subject) {
                    let state = list.state(&subject.digest).await.map_err(|e| {
                        rt.health
                            .failed(rt.backend.name(), "revocation", &error_chain(&e));
                        LoadRefused::StoreUnavailable
                    })?;
                    if state.not_before.is_some_and(|t| subject.since <= t) {
                        tracing::debug!("session revoked; starting a new session");
                        rt.backend.discard(&loaded.stored).await;
                        return Ok(Core::new(State::fresh(now), Some(rt)));
                    }
                    // Cookie mode: a copy of a sealed session that ended
                    // (logged out, regenerated) opens no more; a copy older
                    // than the newest issued is served but never extended.
                    let rewritten = matches!(rt.backend.refresh(), Refresh::Rewrite);
                    if let Some(copy) = rewritten
                        .then(|| state.copy(loaded.stored.id.as_bytes()).copied())
                        .flatten()
                    {
                        if copy.ended {
                            tracing::debug!(
                                "sealed session ended on another copy; starting a new session"
                            );
                            return Ok(Core::new(State::fresh(now), Some(rt)));
                        }
                        if copy.latest > decoded.meta.touched {
                            copy_deadline = Some(loaded.stored.expires_at);
                        }
                    }
                }
                if let Some(from) = decoded.migrated_from {
                    tracing::info!(from, to = S::VERSION, "session migrated");
                }
                if let Some(newer) = &decoded.newer {
                    tracing::debug!(
                        found = newer.version,
                        known = S::VERSION,
                        unreadable = newer.foreign.count_ones(),
                        "stored session is from a newer version of the code; read field by field"
                    );
                }
                let mut state = State::new(decoded.value, now);
                state.changed = decoded.changed;
                state.meta = decoded.meta;
                state.stored = Some(loaded.stored);
                state.resign = loaded.resign;
                state.newer = decoded.newer;
                state.copy_deadline = copy_deadline;
                state.loaded_subject = decoded.meta.subject.map(|s| s.digest);
                Ok(Core::new(state, Some(rt)))
            }
            Err(LoadError::Reject(field)) => {
                tracing::debug!(
                    field = field.field(),
                    "stored session field invalid; rejecting the request"
                );
                Err(LoadRefused::InvalidSession)
            }
            Err(err) => {
                tracing::debug!(
                    reason = %describe_for_log(&err),
                    "stored session discarded; starting a new session"
                );
                rt.backend.discard(&loaded.stored).await;
                Ok(Core::new(State::fresh(now), Some(rt)))
            }
        }
    }
}

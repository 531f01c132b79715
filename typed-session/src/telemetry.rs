//! Metrics (feature `metrics`), through the `metrics` crate's facade: the
//! app installs the exporter it wants (Prometheus, StatsD, ...); without
//! one, or without the feature, every call here does nothing. `backend` is
//! the store's type name (`MemoryStore`, `FileStore`, `RedisStore`, your
//! store's) or `SealedCookie`.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `typed_session_sessions_created_total` | counter | `backend` | sessions written for the first time |
//! | `typed_session_sessions_loaded_total` | counter | `backend` | live sessions loaded for a request |
//! | `typed_session_sessions_saved_total` | counter | `backend` | changed sessions written back (refreshes included) |
//! | `typed_session_sessions_destroyed_total` | counter | `backend` | `destroy()` carried out |
//! | `typed_session_sessions_regenerated_total` | counter | `backend` | new ids (`regenerate*`) |
//! | `typed_session_conflicts_merged_total` | counter | | lost compare-and-sets merged and retried |
//! | `typed_session_writes_refused_total` | counter | `reason` (`too_large`, `validation`, `newer_schema`, `cookie_too_large`) | writes refused with 413 / 422 / 409 / 500 |
//! | `typed_session_store_errors_total` | counter | `backend`, `op` (`load`, `revocation`, `create`, `save`, `touch`, `regenerate`, `destroy`) | store failures (answered 503) |
//! | `typed_session_revocations_total` | counter | | `revoke_all` calls that landed |
//! | `typed_session_store_seconds` | histogram | `backend`, `op` (`load`, `create`, `save`, `touch`, `regenerate`, `destroy`) | store operation latency |
//! | `typed_session_live_sessions` | gauge | `backend` (`MemoryStore`, `FileStore`) | sessions the store holds |
//! | `typed_session_live_bytes` | gauge | `backend` (`MemoryStore`, `FileStore`) | bytes the store holds (its estimate) |

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

/// One more of counter `name` with `labels`.
pub(crate) fn count(name: &'static str, labels: &[(&'static str, &'static str)]) {
    #[cfg(feature = "metrics")]
    {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::from_static_parts(k, v))
            .collect();
        metrics::counter!(name, labels).increment(1);
    }
}

/// A store operation's latency.
pub(crate) fn store_time(backend: &'static str, op: &'static str, seconds: f64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("typed_session_store_seconds", "backend" => backend, "op" => op)
        .record(seconds);
}

/// What a store holds now.
#[cfg_attr(
    not(any(feature = "memory-store", feature = "file-store")),
    allow(dead_code)
)]
pub(crate) fn live(backend: &'static str, sessions: f64, bytes: f64) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("typed_session_live_sessions", "backend" => backend).set(sessions);
        metrics::gauge!("typed_session_live_bytes", "backend" => backend).set(bytes);
    }
}

/// Whether timing store operations is worth a clock read.
pub(crate) fn timing() -> bool {
    cfg!(feature = "metrics")
}

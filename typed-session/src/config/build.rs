//! From settings to a backend: the one place that builds the store a
//! [`StoreConfig`](super::StoreConfig) names, checks that it can start, and
//! says which setting is at fault when it cannot.

use super::SessionConfig;
use crate::backend::BackendConfig;
use crate::error::{ConfigError, StoreError, error_chain};

impl SessionConfig {
    /// The backend of the configured store, built and (unless
    /// `lazy_store`) checked; the settings must have passed `checked`.
    pub(crate) fn backend(&self) -> Result<BackendConfig, ConfigError> {
        match &self.store {
            #[cfg(feature = "memory-store")]
            super::StoreConfig::Memory(m) => Ok(BackendConfig::server(
                crate::store::MemoryStore::with_capacity(m.capacity).with_max_bytes(m.max_bytes),
            )),
            #[cfg(feature = "file-store")]
            super::StoreConfig::File(f) => {
                let store = crate::store::FileStore::open_with(
                    &f.path,
                    f.max_record_bytes,
                    Some(std::time::Duration::from_secs(f.sweep_interval_secs.max(1))),
                )
                .map_err(|e| {
                    let path = f.path.display();
                    self.named(
                        &format!("store.path = {path}"),
                        &format!("SESSION_FILE_PATH={path}"),
                        unavailable("file", &e),
                    )
                })?
                .with_capacity(f.capacity)
                .with_max_bytes(f.max_bytes)
                .with_durability(match f.durability {
                    super::FileDurability::Os => crate::store::Durability::Os,
                    _ => crate::store::Durability::Full,
                });
                Ok(BackendConfig::server(store))
            }
            #[cfg(feature = "redis-store")]
            super::StoreConfig::Redis(r) => {
                let url = r.redacted_url();
                let named = |e: StoreError| {
                    self.named(
                        &format!("store.url = {url}"),
                        &format!("REDIS_URL={url}"),
                        unavailable("redis", &e),
                    )
                };
                let mut store = if r.cluster {
                    crate::store::RedisStore::cluster(r.url.split(',').map(str::trim))
                } else {
                    crate::store::RedisStore::new(&r.url)
                }
                .map_err(named)?
                .with_prefix(r.prefix.clone())
                .with_connect_timeout(std::time::Duration::from_millis(
                    r.connect_timeout_ms.max(1),
                ))
                .with_command_timeout(std::time::Duration::from_millis(
                    r.command_timeout_ms.max(1),
                ))
                .with_local_cache(r.local_cache);
                if let Some(path) = &r.root_certificate_file {
                    store = store.with_root_certificate_file(path).map_err(|e| {
                        self.named(
                            &format!("store.root_certificate_file = {}", path.display()),
                            &format!("SESSION_REDIS_CA_FILE={}", path.display()),
                            unavailable("redis", &e),
                        )
                    })?;
                }
                if !self.lazy_store {
                    check_now(&store).map_err(named)?;
                }
                Ok(BackendConfig::server(store))
            }
            #[cfg(feature = "cookie-store")]
            super::StoreConfig::Cookie(c) => Ok(BackendConfig::Sealed {
                // `checked` has made sure there is a secret to seal with.
                compress: c.compress,
            }),
            // Reached only when some backend is not compiled in.
            #[allow(unreachable_patterns)]
            other => Err(ConfigError::DriverUnavailable(
                other.driver(),
                other.feature(),
            )),
        }
    }
}

#[cfg_attr(
    not(any(feature = "file-store", feature = "redis-store")),
    allow(dead_code)
)]
fn unavailable(driver: &'static str, e: &StoreError) -> ConfigError {
    ConfigError::StoreUnavailable {
        driver,
        reason: error_chain(e),
    }
}

/// Connects and checks the Redis store at start-up, on a thread of its own
/// (the caller may be inside or outside a runtime).
#[cfg(feature = "redis-store")]
fn check_now(store: &crate::store::RedisStore) -> Result<(), StoreError> {
    let store = store.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::new)?
            .block_on(store.check())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(StoreError::new(std::io::Error::other(
            "the store check panicked",
        )))
    })
}

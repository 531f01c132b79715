//! The store behind a server-side layer: [`SessionStore`] in object-safe
//! form, and the one thing the built-in stores do beyond the public
//! contract ([`Establish`]), found when the layer is built.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::StoreError;
use crate::id::SessionKey;
use crate::store::{Record, ReplaceOutcome, SaveOutcome, SessionStore};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`SessionStore`].
pub(crate) trait ErasedStore: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn load<'a>(&'a self, key: &'a SessionKey)
    -> BoxFuture<'a, Result<Option<Record>, StoreError>>;
    fn create<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn save<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<SaveOutcome, StoreError>>;
    fn delete<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Result<(), StoreError>>;
    fn touch<'a>(
        &'a self,
        key: &'a SessionKey,
        expires_at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn replace<'a>(
        &'a self,
        old: &'a SessionKey,
        expected: u64,
        new: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<ReplaceOutcome, StoreError>>;
}

impl<T: SessionStore> ErasedStore for T {
    fn name(&self) -> &'static str {
        SessionStore::name(self)
    }
    fn load<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(SessionStore::load(self, key))
    }
    fn create<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::create(self, key, record))
    }
    fn save<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<SaveOutcome, StoreError>> {
        Box::pin(SessionStore::save(self, key, record, expected))
    }
    fn delete<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::delete(self, key))
    }
    fn touch<'a>(
        &'a self,
        key: &'a SessionKey,
        expires_at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SessionStore::touch(self, key, expires_at))
    }
    fn replace<'a>(
        &'a self,
        old: &'a SessionKey,
        expected: u64,
        new: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<ReplaceOutcome, StoreError>> {
        Box::pin(SessionStore::replace(self, old, expected, new, record))
    }
}

/// Bounded built-in stores keep the sessions of signed-in users when they
/// must evict: a session created by a login (a regenerate on a request
/// that had none) says so. Replaced records (`replace`) are established
/// anyway.
pub(crate) trait Establish: Send + Sync + 'static {
    /// `create`, for a record written by a login.
    fn create_established<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

#[cfg(feature = "memory-store")]
impl Establish for crate::store::MemoryStore {
    fn create_established<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(self.create_as(key, record, true)))
    }
}

#[cfg(feature = "file-store")]
impl Establish for crate::store::FileStore {
    fn create_established<'a>(
        &'a self,
        key: &'a SessionKey,
        record: Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.create_as(key, record, true))
    }
}

/// The store's [`Establish`], when it is a built-in store that has one.
pub(crate) fn establishing(store: Arc<dyn Any + Send + Sync>) -> Option<Arc<dyn Establish>> {
    #[cfg(feature = "memory-store")]
    let store = match store.downcast::<crate::store::MemoryStore>() {
        Ok(memory) => return Some(memory),
        Err(other) => other,
    };
    #[cfg(feature = "file-store")]
    let store = match store.downcast::<crate::store::FileStore>() {
        Ok(file) => return Some(file),
        Err(other) => other,
    };
    let _ = store;
    None
}

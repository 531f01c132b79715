// The custom store shown in the `typed_session::store` module docs, and
// run through the store contract by `tests/stores/custom.rs`: one text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use typed_session::store::{Record, SaveOutcome, SessionStore};
use typed_session::{SessionKey, StoreError};

#[derive(Debug, Default)]
struct MapStore(Mutex<HashMap<SessionKey, Record>>);

impl MapStore {
    fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<SessionKey, Record>>, StoreError> {
        self.0.lock().map_err(|_| StoreError::new("lock poisoned"))
    }
}

impl SessionStore for MapStore {
    fn name(&self) -> &'static str {
        "map"
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let map = self.map()?;
        Ok(map.get(key).filter(|r| r.expires_at > SystemTime::now()).cloned())
    }

    async fn create(&self, key: &SessionKey, record: Record) -> Result<bool, StoreError> {
        let mut map = self.map()?;
        let live = map.get(key).is_some_and(|r| r.expires_at > SystemTime::now());
        if live {
            return Ok(false);
        }
        map.insert(*key, record);
        Ok(true)
    }

    async fn save(&self, key: &SessionKey, record: Record, expected: u64) -> Result<SaveOutcome, StoreError> {
        let mut map = self.map()?;
        match map.get(key).filter(|r| r.expires_at > SystemTime::now()) {
            Some(current) if current.revision == expected => {
                map.insert(*key, record);
                Ok(SaveOutcome::Saved)
            }
            current => Ok(SaveOutcome::Conflict(current.cloned())),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.map()?.remove(key);
        Ok(())
    }
}

//! Server-side persistence: the session id in a (signed) cookie, the record
//! in a [`SessionStore`] under the id's [`SessionKey`].

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use bytes::Bytes;

use super::copies::Copies;
use super::erased::{ErasedStore, Establish};
use super::seam::{Body, Found, Loaded, Merge, Payload, Stored, TypedCache, Written, cookie_value};
use crate::clock::from_unix_millis;
use crate::cookies::CookieIn;
use crate::error::{Error, StoreError, error_chain};
use crate::frame;
use crate::id::{ID_COOKIE_LEN, SessionId, SessionKey};
use crate::keys::KeyRing;
use crate::store::{Record, ReplaceOutcome, SaveOutcome};

/// How often a concurrent save re-reads and merges before giving up: enough
/// for a hundred requests writing one session at once (each retry follows
/// another request's successful write, so the loop always progresses).
const MAX_MERGES: usize = 128;
/// How often a create retries with a fresh id if the id is taken (it never is).
const MAX_CREATE_TRIES: usize = 3;
/// Bytes of a cookie tag: a key id, then 15 bytes (120 bits) of HMAC-SHA256.
const TAG_BYTES: usize = 16;
/// Length of the tag in the cookie (unpadded base64url).
const TAG_COOKIE_LEN: usize = 22;

/// The id-in-cookie, record-in-store backend.
#[derive(Clone)]
pub(crate) struct ServerSide {
    store: Arc<dyn ErasedStore>,
    /// The store's own `create` for logins, when it tells them apart.
    establish: Option<Arc<dyn Establish>>,
    /// Decoded copies of the records written through this layer.
    copies: Arc<Copies>,
    /// Subkeys for id tags; empty when cookies are not signed.
    keys: KeyRing,
}

/// A write's record: the payload framed as the JSON record, and the
/// decoded copy it stands for.
struct Framed {
    data: Bytes,
    copy: Option<TypedCache>,
    expires_at: u64,
    established: bool,
}

impl Framed {
    fn of(payload: Payload) -> Self {
        Framed {
            data: Bytes::from(frame::frame(
                payload.version,
                &payload.meta,
                &payload.fields,
            )),
            copy: payload.copy,
            expires_at: payload.expires_at,
            established: payload.established,
        }
    }

    fn record(&self, revision: u64) -> Record {
        Record::new(
            self.data.clone(),
            revision,
            from_unix_millis(self.expires_at),
        )
    }

    /// After a lost compare-and-set: the merged record, of which no copy is kept.
    fn merged(&mut self, merge: Merge<'_>, theirs: &[u8]) -> Result<(), Error> {
        self.data = Bytes::from(merge_or_give_up(merge, theirs)?);
        self.copy = None;
        Ok(())
    }
}

fn store_failed(op: &'static str) -> impl FnOnce(StoreError) -> Error {
    move |e| {
        // The outage itself is said once, by the runtime's health.
        tracing::debug!(op, cause = %error_chain(&e), "session store failed");
        Error::Store(e)
    }
}

impl ServerSide {
    pub(crate) fn new(
        store: Arc<dyn ErasedStore>,
        establish: Option<Arc<dyn Establish>>,
        copies: Arc<Copies>,
        keys: KeyRing,
    ) -> Self {
        ServerSide {
            store,
            establish,
            copies,
            keys,
        }
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub(crate) fn name(&self) -> &'static str {
        self.store.name()
    }

    /// Keeps the copy of a record just written under `key`.
    fn keep(&self, key: &SessionKey, framed: Framed) {
        match framed.copy {
            Some(copy) => self.copies.put(key, framed.data, copy),
            None => self.copies.forget(key),
        }
    }

    /// The tag of `id` under the current key; `None` when signing is off.
    fn tag(&self, id: &SessionId) -> Option<[u8; TAG_BYTES]> {
        let key = self.keys.current()?;
        let mac = key.mac(id.as_bytes());
        let mut out = [0u8; TAG_BYTES];
        out[0] = key.id;
        out[1..].copy_from_slice(&mac[..TAG_BYTES - 1]);
        Some(out)
    }

    /// The id a cookie value names, if it verifies; `true` when it verified
    /// under an older key (or carries a tag signing no longer wants).
    pub(crate) fn verify(&self, value: &str) -> Option<(SessionId, bool)> {
        let (id_part, tag_part) = match value.split_once('.') {
            Some((id, tag)) => (id, Some(tag)),
            None => (value, None),
        };
        let id = SessionId::from_cookie_value(id_part)?;
        let tag_shaped = |t: &str| {
            t.len() == TAG_COOKIE_LEN
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if self.keys.is_empty() {
            // Signing is off: a tag from an earlier configuration is dropped
            // (and the cookie re-sent without it); anything else is tampering.
            return match tag_part {
                None => Some((id, false)),
                Some(t) if tag_shaped(t) => Some((id, true)),
                Some(_) => None,
            };
        }
        let tag_part = tag_part?;
        let mut given = [0u8; TAG_BYTES];
        if tag_part.len() != TAG_COOKIE_LEN
            || !matches!(
                URL_SAFE_NO_PAD.decode_slice(tag_part, &mut given),
                Ok(TAG_BYTES)
            )
        {
            return None;
        }
        for (position, key) in self.keys.candidates(given[0]) {
            let mac = key.mac(id.as_bytes());
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                &mac[..TAG_BYTES - 1],
                &given[1..],
            )) {
                return Some((id, position > 0));
            }
        }
        None
    }

    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        let mut value = String::with_capacity(ID_COOKIE_LEN + 1 + TAG_COOKIE_LEN);
        stored.id.expose_into(&mut value);
        if let Some(tag) = self.tag(&stored.id) {
            value.push('.');
            URL_SAFE_NO_PAD.encode_string(tag, &mut value);
        }
        value
    }

    pub(crate) async fn load(&self, cookie: CookieIn<'_>) -> Result<Found, StoreError> {
        let value = match cookie_value(cookie) {
            Ok(value) => value,
            Err(none) => return Ok(none.into()),
        };
        let Some((id, resign)) = self.verify(value) else {
            tracing::debug!("session cookie unusable (malformed or badly signed)");
            return Ok(Found::Dead);
        };
        let key = id.key();
        let Some(record) = self.store.load(&key).await? else {
            tracing::debug!("no live stored session for the cookie");
            return Ok(Found::Dead);
        };
        Ok(Found::Live(Loaded {
            stored: Stored {
                id,
                revision: record.revision,
                expires_at: crate::clock::unix_millis(record.expires_at),
                sealed: None,
            },
            copy: self.copies.get(&key, &record.data),
            body: Body::Framed(record.data),
            resign,
        }))
    }

    pub(crate) async fn discard(&self, stored: &Stored) {
        let key = stored.id.key();
        self.copies.forget(&key);
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(cause = %error_chain(&e), "session store failed to delete a discarded session");
        }
    }

    pub(crate) async fn create(&self, payload: Payload) -> Result<Stored, Error> {
        let framed = Framed::of(payload);
        for _ in 0..MAX_CREATE_TRIES {
            let id = SessionId::random();
            let key = id.key();
            let record = framed.record(1);
            let created = match (&self.establish, framed.established) {
                (Some(store), true) => store.create_established(&key, record).await,
                _ => self.store.create(&key, record).await,
            }
            .map_err(store_failed("create"))?;
            if created {
                tracing::debug!("session created");
                let expires_at = framed.expires_at;
                self.keep(&key, framed);
                return Ok(Stored {
                    id,
                    revision: 1,
                    expires_at,
                    sealed: None,
                });
            }
        }
        Err(Error::Conflict)
    }

    pub(crate) async fn save(
        &self,
        stored: &Stored,
        payload: Payload,
        merge: Merge<'_>,
    ) -> Result<Written, Error> {
        let key = stored.id.key();
        let mut framed = Framed::of(payload);
        let mut expected = stored.revision;
        for _ in 0..MAX_MERGES {
            let outcome = self
                .store
                .save(&key, framed.record(expected + 1), expected)
                .await
                .map_err(store_failed("save"))?;
            match outcome {
                SaveOutcome::Saved => {
                    let expires_at = framed.expires_at;
                    self.keep(&key, framed);
                    return Ok(Written::Done(Stored {
                        id: stored.id.clone(),
                        revision: expected + 1,
                        expires_at,
                        sealed: None,
                    }));
                }
                SaveOutcome::Conflict(None) => {
                    self.copies.forget(&key);
                    return Ok(Written::Gone);
                }
                SaveOutcome::Conflict(Some(current)) => {
                    tracing::debug!("concurrent session write; merging the changed fields");
                    framed.merged(merge, &current.data)?;
                    expected = current.revision;
                }
            }
        }
        Err(Error::Conflict)
    }

    pub(crate) async fn touch(&self, stored: &Stored, expires_at: u64) -> Result<Written, Error> {
        let alive = self
            .store
            .touch(&stored.id.key(), from_unix_millis(expires_at))
            .await
            .map_err(store_failed("touch"))?;
        Ok(if alive {
            Written::Done(Stored {
                expires_at,
                sealed: None,
                ..stored.clone()
            })
        } else {
            Written::Gone
        })
    }

    pub(crate) async fn regenerate(
        &self,
        stored: &Stored,
        payload: Payload,
        merge: Merge<'_>,
    ) -> Result<Written, Error> {
        let old = stored.id.key();
        let mut framed = Framed::of(payload);
        let mut expected = stored.revision;
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > MAX_MERGES {
                return Err(Error::Conflict);
            }
            let id = SessionId::random();
            let key = id.key();
            let outcome = self
                .store
                .replace(&old, expected, &key, framed.record(1))
                .await
                .map_err(store_failed("regenerate"))?;
            match outcome {
                ReplaceOutcome::Replaced => {
                    tracing::info!("session id regenerated");
                    self.copies.forget(&old);
                    let expires_at = framed.expires_at;
                    self.keep(&key, framed);
                    return Ok(Written::Done(Stored {
                        id,
                        revision: 1,
                        expires_at,
                        sealed: None,
                    }));
                }
                ReplaceOutcome::Conflict(None) => {
                    tracing::debug!("session ended before its id could be regenerated");
                    self.copies.forget(&old);
                    return Ok(Written::Gone);
                }
                ReplaceOutcome::Conflict(Some(current)) => {
                    tracing::debug!("concurrent session write during regenerate; merging");
                    framed.merged(merge, &current.data)?;
                    expected = current.revision;
                }
                ReplaceOutcome::KeyTaken => {}
            }
        }
    }

    pub(crate) async fn destroy(&self, stored: &Stored) -> Result<(), Error> {
        let key = stored.id.key();
        self.copies.forget(&key);
        self.store
            .delete(&key)
            .await
            .map_err(store_failed("delete"))?;
        tracing::info!("session destroyed");
        Ok(())
    }
}

fn merge_or_give_up(merge: Merge<'_>, theirs: &[u8]) -> Result<Vec<u8>, Error> {
    crate::telemetry::count("typed_session_conflicts_merged_total", &[]);
    merge(theirs).map_err(|e| match e {
        // Decided, not failed: the answer for this request.
        Error::NewerSchema { .. } | Error::Load(crate::LoadError::FutureVersion { .. }) => e,
        e => {
            tracing::warn!(
                cause = %crate::error::describe_for_log(&e),
                "concurrent session write could not be merged"
            );
            Error::Conflict
        }
    })
}

#[cfg(test)]
mod tests {
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::backend::{Backend, BackendConfig};
    use crate::cookies::CookieSettings;
    use crate::keys::SigningKey;
    use crate::store::MemoryStore;

    impl BackendConfig {
        fn build_server(&self, keys: &[SigningKey]) -> ServerSide {
            match self.build(keys, "session") {
                Backend::Server(b) => b,
                #[allow(unreachable_patterns)]
                _ => panic!("a server-side configuration"),
            }
        }
    }

    fn backend(signed: bool) -> ServerSide {
        let keys = match signed {
            true => vec![
                SigningKey::new(b"a test secret of at least 32 bytes, random".to_vec()).unwrap(),
            ],
            false => vec![],
        };
        BackendConfig::server(MemoryStore::new()).build_server(&keys)
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                map.append(COOKIE, v);
            }
        }
        map
    }

    fn read(b: &ServerSide, s: &CookieSettings, h: &HeaderMap) -> Option<(SessionId, bool)> {
        match s.find(h) {
            CookieIn::Value(v) => b.verify(v),
            _ => None,
        }
    }

    /// Bounded random search over cookie headers: never a panic, and nothing
    /// but an exact id (or id.tag) is accepted.
    #[test]
    fn random_cookie_headers_never_panic_or_pass() {
        let mut settings = CookieSettings::new("session".into());
        settings.secure = false;
        settings.refresh();
        let (plain, signed) = (backend(false), backend(true));
        let id = SessionId::random();
        let stored = Stored {
            id: id.clone(),
            revision: 1,
            expires_at: 0,
            sealed: None,
        };
        let good_plain = format!("session={}", plain.cookie_value(&stored));
        let good_signed = format!("session={}", signed.cookie_value(&stored));
        assert_eq!(good_signed.len(), "session=".len() + 22 + 1 + 22);
        assert!(read(&plain, &settings, &headers(&[good_plain.as_bytes()])).is_some());
        assert_eq!(
            read(&signed, &settings, &headers(&[good_signed.as_bytes()])),
            Some((id.clone(), false))
        );

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e55_1014);
        let alphabet = b"session=;. \"=,AZaz09-_+/%\\\x7f\xc3\xa9";
        let mut accepted = 0usize;
        for round in 0..100_000 {
            let base = if round % 2 == 0 {
                &good_plain
            } else {
                &good_signed
            };
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..4) {
                    0 if !bytes.is_empty() => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = alphabet[rng.random_range(0..alphabet.len())];
                    }
                    1 if !bytes.is_empty() => {
                        bytes.truncate(rng.random_range(0..bytes.len()));
                    }
                    2 => {
                        let i = rng.random_range(0..=bytes.len());
                        bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
                    }
                    _ => bytes.extend(std::iter::repeat_n(b'A', rng.random_range(0..5000))),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let h = headers(&[&bytes]);
            // Unsigned: any other well-formed id is just another id (the store
            // will not know it), so only its form is checked.
            if let Some((got, _)) = read(&plain, &settings, &h) {
                assert_eq!(
                    SessionId::from_cookie_value(&got.expose()),
                    Some(got),
                    "{text:?}"
                );
            }
            // Signed: only mutations that left our exact cookie intact pass.
            if let Some((got, _)) = read(&signed, &settings, &h) {
                assert_eq!(got, id, "{text:?}");
                accepted += 1;
            }
        }
        assert!(
            accepted < 10_000,
            "most mutations are refused ({accepted} of 100,000 accepted)"
        );
    }

    #[test]
    fn rotation_verifies_old_keys_and_signs_with_the_new_one() {
        let old = SigningKey::new(b"the old secret, at least 32 bytes long".to_vec()).unwrap();
        let new = SigningKey::new(b"the new secret, at least 32 bytes long".to_vec()).unwrap();
        let before =
            BackendConfig::server(MemoryStore::new()).build_server(std::slice::from_ref(&old));
        let after = BackendConfig::server(MemoryStore::new()).build_server(&[new, old]);
        let stored = Stored {
            id: SessionId::random(),
            revision: 1,
            expires_at: 0,
            sealed: None,
        };
        let old_cookie = before.cookie_value(&stored);
        assert_eq!(after.verify(&old_cookie), Some((stored.id.clone(), true)));
        let new_cookie = after.cookie_value(&stored);
        assert_eq!(after.verify(&new_cookie), Some((stored.id.clone(), false)));
        assert_eq!(
            before.verify(&new_cookie),
            None,
            "the old ring does not know the new key"
        );
    }
}

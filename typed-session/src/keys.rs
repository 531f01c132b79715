//! Secrets and the keys derived from them: [`SigningKey`] (a configured
//! secret) and the crate's [`KeyRing`] (per-purpose subkeys with key ids).

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A secret for the session cookies: at least 32 bytes, not one byte repeated.
///
/// Its `Debug` output is redacted.
///
/// ```
/// use typed_session::SigningKey;
///
/// assert!(SigningKey::new(b"too short".to_vec()).is_err());
/// assert!(SigningKey::new(vec![7u8; 32]).is_err(), "a placeholder, not a key");
/// let key = SigningKey::new(b"an example secret of at least 32 bytes".to_vec()).unwrap();
/// assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key from its bytes; an error below 32 bytes or for one byte repeated.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::SecretTooShort { len: bytes.len() });
        }
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err(ConfigError::SecretNotRandom);
        }
        Ok(SigningKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// What a subkey is for: one secret never serves two purposes directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// HMAC tags on session ids in the cookie (server-side stores).
    IdSigning,
    /// Sealing whole sessions into the cookie (the encrypted-cookie mode).
    #[allow(dead_code)] // used by the encrypted-cookie backend
    Sealing,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::IdSigning => b"typed-session v1 cookie id signing",
            Purpose::Sealing => b"typed-session v1 cookie sealing",
        }
    }
}

/// Salt of the HKDF extract step: fixed, so the same secret gives the same
/// keys in every process.
const SALT: &[u8] = b"typed-session key ring";

/// One derived key and its id.
#[derive(Clone)]
pub(crate) struct RingKey {
    /// A short public name of the key, carried in cookies so that opening
    /// one tries the right key first. Derived, so it reveals nothing.
    pub(crate) id: u8,
    pub(crate) key: [u8; 32],
}

/// The keys of one purpose, derived with HKDF-SHA256 from the configured
/// secrets, newest first: the first signs or seals, every one verifies or opens.
#[derive(Clone, Default)]
pub(crate) struct KeyRing {
    keys: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyRing {
    /// The ring of `purpose` for `secrets` (newest first).
    pub(crate) fn derive<'a>(
        secrets: impl IntoIterator<Item = &'a SigningKey>,
        purpose: Purpose,
    ) -> Self {
        let keys = secrets
            .into_iter()
            .map(|secret| {
                let hk = Hkdf::<Sha256>::new(Some(SALT), secret.bytes());
                let mut key = [0u8; 32];
                let mut id = [0u8; 1];
                // 32 and 1 bytes are far below HKDF-SHA256's 8,160-byte limit.
                let _ = hk.expand(purpose.info(), &mut key);
                let _ = hk.expand_multi_info(&[purpose.info(), b" key id"], &mut id);
                RingKey { id: id[0], key }
            })
            .collect();
        KeyRing { keys }
    }

    /// No secrets configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key that signs or seals.
    pub(crate) fn current(&self) -> Option<&RingKey> {
        self.keys.first()
    }

    /// The keys that may have produced a value marked with key id `id`,
    /// with their position (0 = current): normally one.
    pub(crate) fn candidates(&self, id: u8) -> impl Iterator<Item = (usize, &RingKey)> {
        self.keys
            .iter()
            .enumerate()
            .filter(move |(_, k)| k.id == id)
    }
}

impl RingKey {
    /// HMAC-SHA256 of `data` under this key.
    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SigningKey {
        SigningKey::new(s.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn purposes_and_secrets_give_different_keys() {
        let a = key("a secret that is at least 32 bytes long");
        let b = key("another secret, also 32 bytes or longer");
        let signing = KeyRing::derive([&a, &b], Purpose::IdSigning);
        let sealing = KeyRing::derive([&a], Purpose::Sealing);
        assert_eq!(signing.len(), 2);
        let (s0, s1) = (&signing.keys[0], &signing.keys[1]);
        assert_ne!(s0.key, s1.key);
        assert_ne!(s0.key, sealing.keys[0].key);
        assert_ne!(&s0.key[..], a.bytes(), "derived, not the secret itself");
        let again = KeyRing::derive([&a], Purpose::IdSigning);
        assert_eq!(again.keys[0].key, s0.key, "deterministic");
        assert_eq!(again.keys[0].id, s0.id);
        assert!(signing.candidates(s0.id).any(|(i, _)| i == 0));
        assert_eq!(format!("{signing:?}"), "KeyRing { keys: 2 }");
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(
            SigningKey::new(vec![b'x'; 20]),
            Err(ConfigError::SecretTooShort { len: 20 })
        );
        assert_eq!(
            SigningKey::new(vec![0u8; 64]),
            Err(ConfigError::SecretNotRandom)
        );
    }
}

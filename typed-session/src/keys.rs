//! Secrets and the keys derived from them: [`SigningKey`] (a configured
//! secret) and the crate's [`KeyRing`] (per-purpose subkeys with key ids).

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ConfigError;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A secret for the session cookies: at least 32 bytes, and not an
/// obvious placeholder (see [`SigningKey::new`]).
///
/// Its `Debug` output is redacted.
///
/// ```
/// use typed_session::SigningKey;
///
/// assert!(SigningKey::new(b"too short".to_vec()).is_err());
/// assert!(SigningKey::new(vec![7u8; 32]).is_err(), "a placeholder, not a key");
/// assert!(SigningKey::new(b"passwordpasswordpasswordpassword".to_vec()).is_err());
/// let key = SigningKey::new(b"an example secret of at least 32 bytes".to_vec()).unwrap();
/// assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

/// The least entropy a secret must show, in bits (estimated from its byte
/// frequencies, an estimate that undercounts random text: a 32-character
/// hex secret, 128 bits, estimates about 120).
const MIN_ESTIMATED_BITS: f64 = 96.0;

/// Why a secret of the right length is still an obvious placeholder, if it
/// is one: fewer than 10 different bytes, a short pattern repeated, plain
/// words (letters and at least three spaces), or under 96 bits of
/// estimated entropy.
pub(crate) fn weakness(bytes: &[u8]) -> Option<&'static str> {
    let mut counts = [0usize; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let distinct = counts.iter().filter(|c| **c > 0).count();
    if distinct < 10 {
        return Some("fewer than 10 different characters");
    }
    let len = bytes.len();
    if (1..=len / 2).any(|p| bytes.iter().enumerate().all(|(i, b)| *b == bytes[i % p])) {
        return Some("a short pattern repeated");
    }
    if bytes.iter().all(|b| b.is_ascii_alphabetic() || *b == b' ')
        && bytes.iter().filter(|b| **b == b' ').count() >= 3
    {
        return Some("plain words");
    }
    let bits: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / len as f64;
            -p * p.log2()
        })
        .sum::<f64>()
        * len as f64;
    if bits < MIN_ESTIMATED_BITS {
        return Some("too predictable");
    }
    None
}

impl SigningKey {
    /// A key from its bytes. Refused: fewer than 32 bytes
    /// ([`ConfigError::SecretTooShort`]), one byte repeated
    /// ([`ConfigError::SecretNotRandom`]), and other obvious placeholders
    /// ([`ConfigError::SecretWeak`]): fewer than 10 different bytes, a short
    /// pattern repeated (`"changemechangemechangemechangeme"`), plain words
    /// (letters and spaces only), or under 96 bits of estimated entropy.
    /// Generate one with `openssl rand -base64 48`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let key = SigningKey::allowing_weak(bytes)?;
        match weakness(&key.0) {
            Some(reason) => Err(ConfigError::SecretWeak { reason }),
            None => Ok(key),
        }
    }

    /// [`new`](Self::new) that accepts a weak secret of 32 bytes or more
    /// (not one byte repeated), with a `warn` log saying why it is weak.
    /// What it costs: a secret an attacker can guess lets them forge
    /// signed session ids and, in cookie mode, read and forge whole
    /// sessions. For a migration period only.
    pub fn allowing_weak(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::SecretTooShort { len: bytes.len() });
        }
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err(ConfigError::SecretNotRandom);
        }
        if let Some(reason) = weakness(&bytes) {
            tracing::warn!(
                reason,
                "a weak session secret is in use (allowed explicitly); generate one with `openssl rand -base64 48`"
            );
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
        SigningKey::new(s.as_bytes().to_vec()).unwrap()
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

    /// Finding (issue 22, item 8): `passwordpassword...` and
    /// `changemechangeme...` were accepted as secrets.
    #[test]
    fn placeholders_are_refused_and_random_secrets_accepted() {
        for (weak, why) in [
            (
                "passwordpasswordpasswordpassword",
                "fewer than 10 different characters",
            ),
            (
                "changemechangemechangemechangeme",
                "fewer than 10 different characters",
            ),
            (
                "abcdefghijkabcdefghijkabcdefghijk",
                "a short pattern repeated",
            ),
            ("my very own session secret for the shop", "plain words"),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabcdefghijk",
                "too predictable",
            ),
        ] {
            assert_eq!(
                SigningKey::new(weak.as_bytes().to_vec()),
                Err(ConfigError::SecretWeak { reason: why }),
                "{weak}"
            );
            assert!(SigningKey::allowing_weak(weak.as_bytes().to_vec()).is_ok());
        }
        for strong in [
            // openssl rand -base64 48, -hex 16, -hex 32
            "q0bB7m1bqkO1S6tZ1f0j0y0mZc2v4gW0Y8E6m1n0Q9p3Xw7kL2zR5dT8uH4sA1cF",
            "9f86d081884c7d659a2feaa0c55ad015",
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "signing secret 7f3a9 that is longer than 32 bytes",
        ] {
            assert!(
                SigningKey::new(strong.as_bytes().to_vec()).is_ok(),
                "{strong}"
            );
        }
        let random: [u8; 32] = rand::random();
        assert!(SigningKey::new(random.to_vec()).is_ok());
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

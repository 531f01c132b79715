//! Session ids (the secret in the cookie) and session keys (what stores see).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Bytes of randomness in a session id: 128 bits from the OS CSPRNG.
const ID_BYTES: usize = 16;
/// Length of an id in the cookie (unpadded base64url of 16 bytes).
pub(crate) const ID_COOKIE_LEN: usize = 22;

/// The secret id of a session, as carried in the cookie.
///
/// ```
/// use typed_session::SessionId;
///
/// // An admin tool that ends the session of a cookie it was handed:
/// let id = SessionId::from_cookie_value("eyN3Jqjlj5CDtQKzauc8mA").expect("an id");
/// let key = id.key(); // what to pass to `SessionStore::delete`
/// assert_eq!(key.to_string().len(), 64);
/// assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
/// assert!(SessionId::from_cookie_value("not an id").is_none());
/// ```
///
/// 128 bits from a CSPRNG seeded by the operating system. It never appears in `Debug`
/// output or logs, and stores never see it: they get the [`SessionKey`]
/// derived from it, so a dump of a store's keys cannot be turned into cookies.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A new random id, from `rand`'s thread-local CSPRNG (ChaCha12, seeded
    /// and periodically reseeded from the OS): as unpredictable as the OS
    /// generator without a system call per id.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        SessionId(bytes)
    }

    /// Parses the id part of a cookie value (before any `.` signature);
    /// `None` for anything that is not exactly an id. For admin tools that
    /// need the [`SessionKey`] of a cookie; the runtime verifies signatures itself.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        if value.len() != ID_COOKIE_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(value.as_bytes(), &mut bytes) {
            // The engine rejects stray low bits in the last character, so one
            // id has exactly one cookie value (tested below).
            Ok(ID_BYTES) => Some(SessionId(bytes)),
            _ => None,
        }
    }

    /// The cookie value of this id. It is a bearer secret: do not log it.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Appends the cookie value of this id to `out`.
    pub(crate) fn expose_into(&self, out: &mut String) {
        URL_SAFE_NO_PAD.encode_string(self.0, out);
    }

    /// An id from its bytes (as carried inside a sealed cookie).
    #[cfg_attr(not(feature = "cookie-store"), allow(dead_code))]
    pub(crate) fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        SessionId(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// The key under which stores keep this session.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The store key of a session: SHA-256 of its id.
///
/// ```
/// use typed_session::SessionKey;
///
/// let key = SessionKey::from_bytes([0xab; 32]);
/// assert_eq!(SessionKey::from_hex(&key.to_string()), Some(key));
/// ```
///
/// Knowing a key does not let anyone present the session's cookie, so keys
/// may appear in store listings and logs. [`Display`](fmt::Display) gives 64
/// lowercase hex digits, safe for file names and Redis keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a key from its 32 bytes (for stores that keep keys in binary).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionKey(bytes)
    }

    /// Parses the 64-hex-digit form written by `Display`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(SessionKey(out))
    }
}

impl SessionKey {
    /// The 64 lowercase hex digits of the key.
    pub(crate) fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        // 32 bytes fill 64 digits exactly: cannot fail.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = SessionId::random();
        let text = id.expose();
        assert_eq!(text.len(), ID_COOKIE_LEN);
        assert_eq!(SessionId::from_cookie_value(&text), Some(id.clone()));
        assert_eq!(SessionId::from_cookie_value(""), None);
        assert_eq!(SessionId::from_cookie_value(&text[1..]), None);
        assert_eq!(SessionId::from_cookie_value(&format!("{text}A")), None);
        assert_eq!(SessionId::from_cookie_value("!!!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
        let key = id.key();
        assert_eq!(SessionKey::from_hex(&key.to_string()), Some(key));
        assert_ne!(SessionId::random(), id);
    }

    #[test]
    fn non_canonical_encoding_is_rejected() {
        let id = SessionId([0xff; 16]);
        let text = id.expose();
        let mut other = text.clone();
        // The last char carries 2 spare bits; flip one of them.
        other.pop();
        other.push('_');
        assert_ne!(other, text);
        assert_eq!(SessionId::from_cookie_value(&other), None);
    }
}

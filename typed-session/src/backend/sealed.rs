//! Cookie mode (feature `cookie-store`): the whole session sealed in the
//! cookie with XChaCha20-Poly1305; nothing is kept on the server.
//!
//! The cookie value is unpadded base64url of
//! `FORMAT (1) | key id (1) | nonce (24) | ciphertext | tag (16)`, sealed
//! under the key ring's sealing key with the associated data
//! `"typed-session sealed" | FORMAT | cookie name`, so a value moved to
//! another cookie name, another app's secret or another format does not open.
//!
//! The plaintext is `flags (1) | deadline (8) | id (16) | body`, where the
//! deadline is the session's expiry (unix ms, the nearer of the idle and
//! absolute deadlines) and the body, deflated when flag bit 0 is set, is
//! `schema version (4) | created (8) | touched (8) | max-age (8, all ones for
//! none) | subject (1 = none, or 2 then digest (16) | since (8)) | fields as
//! JSON`. Integers are big-endian.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};

use super::seam::{Found, Loaded, Payload, Stored, Written, cookie_value};
use crate::cookies::CookieIn;
use crate::error::{Error, StoreError};
use crate::header::{self, Header, Subject};
use crate::id::SessionId;
use crate::keys::{KeyRing, RingKey};

/// The sealed format's version, first byte of every value.
const FORMAT: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Format byte, key id, nonce.
const PREFIX_BYTES: usize = 2 + NONCE_BYTES;
/// Flags, deadline, id.
const LEAD_BYTES: usize = 1 + 8 + 16;
/// Version, created, touched, max-age, subject marker.
const BODY_HEAD_BYTES: usize = 4 + 8 + 8 + 8 + 1;
const FLAG_DEFLATED: u8 = 1;
/// The whole `Set-Cookie` `name=value` may not exceed this (browsers' limit).
pub(crate) const COOKIE_BUDGET: usize = 4096;
/// Largest body a deflated value may inflate to. Only values that opened
/// (so were sealed by us) are inflated; the bound still holds.
const MAX_INFLATED: usize = 64 * 1024;

/// Why a cookie did not open; logged at debug level, never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NotBase64,
    Truncated,
    UnknownFormat,
    UnknownKey,
    /// Tampered, sealed under another name or secret.
    Forged,
    Malformed,
}

impl Refused {
    fn reason(self) -> &'static str {
        match self {
            Refused::NotBase64 => "not unpadded base64url",
            Refused::Truncated => "too short to be sealed",
            Refused::UnknownFormat => "unknown format version",
            Refused::UnknownKey => "sealed under an unknown key",
            Refused::Forged => "does not open (tampered, another cookie name or another secret)",
            Refused::Malformed => "opened but malformed",
        }
    }
}

/// The sealed-cookie backend.
#[derive(Clone)]
pub(crate) struct SealedCookie {
    keys: KeyRing,
    /// Associated data: a domain tag, the format, the cookie's full name.
    aad: Arc<[u8]>,
    /// The full cookie name's length, part of the size budget.
    name_len: usize,
    compress: bool,
}

/// What opening a value gives.
pub(crate) struct Opened {
    pub(crate) id: SessionId,
    pub(crate) expires_at: u64,
    /// The record as the core decodes it.
    pub(crate) data: Vec<u8>,
    /// Opened under an older key.
    pub(crate) old_key: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the plaintext.
        f.debug_struct("Opened")
            .field("bytes", &self.data.len())
            .field("old_key", &self.old_key)
            .finish_non_exhaustive()
    }
}

impl SealedCookie {
    pub(crate) fn new(keys: KeyRing, compress: bool) -> Self {
        let mut sealed = SealedCookie {
            keys,
            aad: Arc::from(&[][..]),
            name_len: 0,
            compress,
        };
        sealed.bind_name("session");
        sealed
    }

    /// Binds values to the cookie's full name (as sent, with any prefix).
    pub(crate) fn bind_name(&mut self, name: &str) {
        let mut aad = b"typed-session sealed\0".to_vec();
        aad.push(FORMAT);
        aad.extend_from_slice(name.as_bytes());
        self.aad = Arc::from(aad);
        self.name_len = name.len();
    }

    pub(crate) fn set_keys(&mut self, keys: KeyRing) {
        self.keys = keys;
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub(crate) fn set_compress(&mut self, on: bool) {
        self.compress = on;
    }

    fn cipher(key: &RingKey) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(key.key))
    }

    /// Seals a record under the current key.
    pub(crate) fn seal(&self, id: &SessionId, payload: &Payload) -> Result<String, Error> {
        let Some(key) = self.keys.current() else {
            // The layer refuses cookie mode without a key; kept as an error, not a panic.
            return Err(Error::Store(StoreError::new(std::io::Error::other(
                "cookie mode has no sealing key",
            ))));
        };
        // Our own encoding: taking it apart cannot fail.
        let parts = header::parts(&payload.data).map_err(Error::Load)?;
        let mut body = Vec::with_capacity(BODY_HEAD_BYTES + 24 + parts.data.len());
        body.extend_from_slice(&parts.version.to_be_bytes());
        body.extend_from_slice(&parts.header.created.to_be_bytes());
        body.extend_from_slice(&parts.header.touched.to_be_bytes());
        body.extend_from_slice(&parts.header.max_age.unwrap_or(u64::MAX).to_be_bytes());
        match parts.header.subject {
            None => body.push(1),
            Some(subject) => {
                body.push(2);
                body.extend_from_slice(&subject.digest);
                body.extend_from_slice(&subject.since.to_be_bytes());
            }
        }
        body.extend_from_slice(parts.data);
        let mut flags = 0u8;
        if self.compress {
            let deflated = miniz_oxide::deflate::compress_to_vec(&body, 6);
            if deflated.len() < body.len() {
                body = deflated;
                flags |= FLAG_DEFLATED;
            }
        }

        let sealed_len = PREFIX_BYTES + LEAD_BYTES + body.len() + TAG_BYTES;
        let size = self.name_len + 1 + base64_len(sealed_len);
        if size > COOKIE_BUDGET {
            return Err(Error::CookieTooLarge {
                size,
                limit: COOKIE_BUDGET,
            });
        }
        let mut nonce = [0u8; NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut buf = Vec::with_capacity(sealed_len);
        buf.push(FORMAT);
        buf.push(key.id);
        buf.extend_from_slice(&nonce);
        buf.push(flags);
        buf.extend_from_slice(&payload.expires_at.to_be_bytes());
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(&body);
        let tag = Self::cipher(key)
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &self.aad,
                (&mut buf[PREFIX_BYTES..]).into(),
            )
            .map_err(|_| {
                Error::Store(StoreError::new(std::io::Error::other(
                    "sealing the session failed",
                )))
            })?;
        buf.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(&buf))
    }

    /// Opens a cookie value. Every refusal happens before any allocation
    /// larger than the value itself, and nothing but the tag check (constant
    /// time) depends on a key.
    pub(crate) fn open(&self, value: &str) -> Result<Opened, Refused> {
        if value.len() > COOKIE_BUDGET {
            return Err(Refused::Truncated);
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| Refused::NotBase64)?;
        if raw.len() < PREFIX_BYTES + LEAD_BYTES + BODY_HEAD_BYTES + TAG_BYTES {
            return Err(Refused::Truncated);
        }
        if raw[0] != FORMAT {
            return Err(Refused::UnknownFormat);
        }
        let nonce = XNonce::try_from(&raw[2..PREFIX_BYTES]).map_err(|_| Refused::Truncated)?;
        let tag_at = raw.len() - TAG_BYTES;
        let tag = Tag::try_from(&raw[tag_at..]).map_err(|_| Refused::Truncated)?;
        let mut opened_with = None;
        let mut candidates = self.keys.candidates(raw[1]).peekable();
        if candidates.peek().is_none() {
            return Err(Refused::UnknownKey);
        }
        // In place: the tag is checked before anything is decrypted, so a
        // failed attempt leaves the bytes as they were for the next key.
        for (position, key) in candidates {
            if Self::cipher(key)
                .decrypt_inout_detached(
                    &nonce,
                    &self.aad,
                    (&mut raw[PREFIX_BYTES..tag_at]).into(),
                    &tag,
                )
                .is_ok()
            {
                opened_with = Some(position);
                break;
            }
        }
        let Some(position) = opened_with else {
            return Err(Refused::Forged);
        };
        let (lead, body) = raw[PREFIX_BYTES..tag_at].split_at(LEAD_BYTES);
        let flags = lead[0];
        if flags & !FLAG_DEFLATED != 0 {
            return Err(Refused::Malformed);
        }
        let expires_at = be_u64(&lead[1..9]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&lead[9..25]);
        let inflated;
        let body = if flags & FLAG_DEFLATED != 0 {
            inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(body, MAX_INFLATED)
                .map_err(|_| Refused::Malformed)?;
            &inflated[..]
        } else {
            body
        };
        let (header, version, data) = parse_body(body).ok_or(Refused::Malformed)?;
        Ok(Opened {
            id: SessionId::from_bytes(id),
            expires_at,
            data: header::assemble(version, &header, data),
            old_key: position > 0,
        })
    }

    pub(crate) fn load(&self, cookie: CookieIn<'_>) -> Result<Found, StoreError> {
        let value = match cookie_value(cookie) {
            Ok(value) => value,
            Err(found) => return Ok(found),
        };
        match self.open(value) {
            Ok(opened) => Ok(Found::Live(Loaded {
                stored: Stored {
                    id: opened.id,
                    revision: 0,
                    expires_at: opened.expires_at,
                    sealed: Some(Arc::from(value)),
                },
                data: Bytes::from(opened.data),
                cache: None,
                resign: opened.old_key,
            })),
            Err(refused) => {
                tracing::debug!(
                    reason = refused.reason(),
                    "sealed session cookie refused; starting a new session"
                );
                Ok(Found::Dead)
            }
        }
    }

    fn written(&self, id: SessionId, payload: &Payload) -> Result<Stored, Error> {
        let value = self.seal(&id, payload)?;
        Ok(Stored {
            id,
            revision: 0,
            expires_at: payload.expires_at,
            sealed: Some(Arc::from(value)),
        })
    }

    pub(crate) fn create(&self, payload: &Payload) -> Result<Stored, Error> {
        self.written(SessionId::random(), payload)
    }

    /// A save re-seals: the browser keeps whichever response arrives last.
    pub(crate) fn save(&self, stored: &Stored, payload: &Payload) -> Result<Written, Error> {
        self.written(stored.id.clone(), payload).map(Written::Done)
    }

    /// A touch cannot move a deadline sealed inside the cookie without the
    /// record: the core plans a save instead (see `Backend::touch_rewrites`).
    pub(crate) fn touch(&self) -> Result<Written, Error> {
        Err(Error::Store(StoreError::new(std::io::Error::other(
            "a sealed cookie is refreshed by re-sealing it, not by a touch",
        ))))
    }

    /// A new id for the same record. The old value still opens until its
    /// deadline: nothing on the server remembers it.
    pub(crate) fn regenerate(&self, payload: &Payload) -> Result<Written, Error> {
        self.written(SessionId::random(), payload)
            .map(Written::Done)
    }

    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        stored.sealed.as_deref().unwrap_or_default().to_owned()
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// The body's header fields and the JSON of the fields.
fn parse_body(body: &[u8]) -> Option<(Header, u32, &[u8])> {
    if body.len() < BODY_HEAD_BYTES {
        return None;
    }
    let version = u32::from_be_bytes(body[0..4].try_into().ok()?);
    let created = be_u64(&body[4..12]);
    let touched = be_u64(&body[12..20]);
    let max_age = match be_u64(&body[20..28]) {
        u64::MAX => None,
        secs => Some(secs),
    };
    let (subject, rest) = match body[28] {
        1 => (None, &body[29..]),
        2 if body.len() >= 29 + 24 => {
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&body[29..45]);
            (
                Some(Subject {
                    digest,
                    since: be_u64(&body[45..53]),
                }),
                &body[53..],
            )
        }
        _ => return None,
    };
    let header = Header {
        created,
        touched,
        max_age,
        subject,
    };
    Some((header, version, rest))
}

/// Unpadded base64 length of `n` bytes.
fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::keys::{Purpose, SigningKey};

    fn secret(s: &str) -> SigningKey {
        SigningKey::new(s.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn backend(secrets: &[&str]) -> SealedCookie {
        let keys: Vec<SigningKey> = secrets.iter().map(|s| secret(s)).collect();
        SealedCookie::new(KeyRing::derive(&keys, Purpose::Sealing), false)
    }

    const A: &str = "the first test secret, at least 32 bytes";
    const B: &str = "the second test secret, 32 bytes or more";

    fn payload(data: &str) -> Payload {
        let header = Header {
            created: 1_700_000_000_000,
            touched: 1_700_000_000_500,
            max_age: Some(3600),
            subject: Some(Subject {
                digest: [9; 16],
                since: 1_700_000_000_100,
            }),
        };
        Payload {
            data: Bytes::from(header::assemble(3, &header, data.as_bytes())),
            expires_at: 1_700_000_900_000,
            cache: None,
            established: false,
        }
    }

    fn open_err(b: &SealedCookie, v: &str) -> Refused {
        match b.open(v) {
            Err(r) => r,
            Ok(o) => panic!("opened: {o:?}"),
        }
    }

    #[test]
    fn seal_then_open_gives_the_record_back() {
        let b = backend(&[A]);
        let id = SessionId::random();
        let data = r#"{"cart":[1,2,3],"name":"Ada"}"#;
        let p = payload(data);
        let value = b.seal(&id, &p).unwrap_or_else(|e| panic!("{e}"));
        let opened = b.open(&value).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(opened.id, id);
        assert_eq!(opened.expires_at, p.expires_at);
        assert_eq!(opened.data, p.data.to_vec(), "the envelope round-trips");
        assert!(!opened.old_key);
        // A fresh nonce per seal: the same record never seals the same way.
        assert_ne!(b.seal(&id, &p).unwrap_or_default(), value);
        // Compact: 26-byte prefix, 25-byte lead, 29-byte body head (+24
        // with a subject), 16-byte tag, then the fields' JSON as is.
        let overhead = PREFIX_BYTES + LEAD_BYTES + BODY_HEAD_BYTES + 24 + TAG_BYTES;
        assert_eq!(value.len(), base64_len(overhead + data.len()));
        assert_eq!(overhead, 120);
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let b = backend(&[A]);
        let value = b
            .seal(&SessionId::random(), &payload(r#"{"n":1}"#))
            .unwrap_or_default();
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap_or_default();
        let enc = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);

        assert_eq!(open_err(&b, "not*base64"), Refused::NotBase64);
        assert_eq!(open_err(&b, &format!("{value}=")), Refused::NotBase64);
        assert_eq!(
            open_err(&b, &format!("+{}", &value[1..])),
            Refused::NotBase64
        );
        assert_eq!(open_err(&b, &value[..40]), Refused::Truncated);
        assert_eq!(open_err(&b, ""), Refused::Truncated);
        let mut other_format = raw.clone();
        other_format[0] = 2;
        assert_eq!(open_err(&b, &enc(&other_format)), Refused::UnknownFormat);
        let mut other_key = raw.clone();
        other_key[1] = other_key[1].wrapping_add(1);
        assert_eq!(open_err(&b, &enc(&other_key)), Refused::UnknownKey);
        let mut trailing = raw.clone();
        trailing.push(0);
        assert_eq!(open_err(&b, &enc(&trailing)), Refused::Forged);
        let mut cut = raw.clone();
        cut.pop();
        assert_eq!(open_err(&b, &enc(&cut)), Refused::Forged);
        // Every single flipped bit past the key id is caught by the tag.
        for i in 2..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                assert_eq!(
                    open_err(&b, &enc(&t)),
                    Refused::Forged,
                    "byte {i} bit {bit}"
                );
            }
        }
        // Another secret whose key id happens to differ, or another cookie name.
        let other = backend(&[B]);
        assert!(other.open(&value).is_err());
        let mut renamed = backend(&[A]);
        renamed.bind_name("__Host-session");
        assert_eq!(open_err(&renamed, &value), Refused::Forged);
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_new_key() {
        let old = backend(&[A]);
        let rotated = backend(&[B, A]);
        let retired = backend(&[B]);
        let id = SessionId::random();
        let value = old.seal(&id, &payload("{}")).unwrap_or_default();
        let opened = rotated.open(&value).unwrap_or_else(|r| panic!("{r:?}"));
        assert!(opened.old_key, "re-seal under the current key");
        let resealed = rotated.seal(&id, &payload("{}")).unwrap_or_default();
        assert!(!rotated.open(&resealed).map(|o| o.old_key).unwrap_or(true));
        assert!(retired.open(&resealed).is_ok());
        assert!(
            retired.open(&value).is_err(),
            "the retired key opens nothing"
        );
    }

    /// Two secrets whose derived key ids collide (1 in 256): opening tries
    /// both, and a failed attempt does not spoil the bytes for the next.
    #[test]
    fn colliding_key_ids_still_open() {
        let base = backend(&[A]);
        let id_a = base.keys.current().map(|k| k.id);
        let other = (0..10_000)
            .map(|i| format!("a candidate secret number {i:05}, 32+ bytes"))
            .find(|s| backend(&[s.as_str()]).keys.current().map(|k| k.id) == id_a)
            .unwrap_or_else(|| panic!("no collision in 10,000 secrets"));
        let value = base
            .seal(&SessionId::random(), &payload("{}"))
            .unwrap_or_default();
        let both = backend(&[other.as_str(), A]);
        let opened = both.open(&value).unwrap_or_else(|r| panic!("{r:?}"));
        assert!(
            opened.old_key,
            "opened by the second key after the first failed"
        );
    }

    #[test]
    fn the_cookie_budget_is_a_typed_error_and_compression_only_when_smaller() {
        let mut b = backend(&[A]);
        let id = SessionId::random();
        let big = format!(r#"{{"notes":"{}"}}"#, "x".repeat(4000));
        match b.seal(&id, &payload(&big)) {
            Err(Error::CookieTooLarge { size, limit }) => {
                assert_eq!(limit, 4096);
                assert!(size > 4096, "{size}");
            }
            other => panic!("{other:?}"),
        }
        b.set_compress(true);
        let sealed = b
            .seal(&id, &payload(&big))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            sealed.len() < 400,
            "4 KB of one letter deflates: {}",
            sealed.len()
        );
        let opened = b.open(&sealed).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(opened.data, payload(&big).data.to_vec());
        // Incompressible data is sealed as is (flag clear): no growth.
        let noise: String = {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            (0..300)
                .map(|_| char::from(b'a' + rng.random_range(0..26)))
                .collect()
        };
        let small = format!(r#"{{"n":"{noise}"}}"#);
        let plain = backend(&[A])
            .seal(&id, &payload(&small))
            .unwrap_or_default();
        let maybe = b.seal(&id, &payload(&small)).unwrap_or_default();
        assert!(maybe.len() <= plain.len());
    }

    /// Bounded random mutation of sealed values: never a panic, never an
    /// accepted value other than the exact original.
    #[test]
    fn random_mutations_never_open() {
        let b = backend(&[A, B]);
        let value = b
            .seal(&SessionId::random(), &payload(r#"{"cart":[1,2,3]}"#))
            .unwrap_or_default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ea1);
        let alphabet = b"AZaz09-_+/=.%\x00\x7f";
        for _ in 0..20_000 {
            let mut bytes = value.as_bytes().to_vec();
            match rng.random_range(0..4) {
                0 => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = alphabet[rng.random_range(0..alphabet.len())];
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                2 => {
                    let i = rng.random_range(0..=bytes.len());
                    bytes.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
                }
                _ => bytes.extend(std::iter::repeat_n(b'A', rng.random_range(1..5000))),
            }
            let text = String::from_utf8_lossy(&bytes);
            if text != value {
                assert!(b.open(&text).is_err(), "{text}");
            }
        }
    }
}

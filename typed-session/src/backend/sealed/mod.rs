//! Cookie mode (feature `cookie-store`): the whole session sealed in the
//! cookie with XChaCha20-Poly1305; nothing is kept on the server.
//!
//! The cookie value is unpadded base64url of
//! `FORMAT (1) | key id (1) | nonce (16) | ciphertext | tag (16)`, sealed
//! under the key ring's sealing key with the associated data
//! `"typed-session sealed" | FORMAT | cookie name`, so a value moved to
//! another cookie name, another app's secret or another format does not open.
//! The nonce is 128 random bits, extended with zeros to XChaCha20's 192: two
//! seals under one key share a nonce with a chance of about q²/2¹²⁹ after q
//! seals (below 2⁻⁴⁹ after a trillion), where AES-GCM's 96 random bits
//! allow 2³² seals per key; the 8 bytes left out keep the cookie short.
//!
//! The plaintext (format 2) is as small as the record allows: integers are
//! LEB128 varints, and times other than the deadline are differences.
//!
//! ```text
//! flags (1)          bit 0: fields deflated, bit 1: max-age, bit 2: subject
//! deadline           unix ms: the session's expiry, nearer of idle and absolute
//! created - deadline zigzag
//! touched - created  zigzag
//! schema version
//! [max-age]          seconds, when bit 1
//! [id (16) | subject digest (16) | since - created (zigzag)], when bit 2
//! fields             the JSON object, deflated when bit 0
//! ```
//!
//! The session id is sealed only for a session bound to a subject, the one
//! kind whose copies a revocation list tracks; any other session gets a
//! fresh id on every request. Values of format 1 (fixed-width integers, the
//! id always) still open, and are re-sealed in format 2 on their next write.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::seam::{Body, Found, Loaded, Payload, Stored, Written, cookie_value};
use crate::cookies::{CookieIn, CookieValue};
use crate::error::{Error, StoreError};
use crate::frame::Meta;

use self::format::{Fields, parse, parse_format_1, put_delta, put_varint};
use crate::id::SessionId;
use crate::keys::KeyRing;

/// The sealed format written, first byte of every value.
mod aead;
mod format;
#[cfg(test)]
mod tests;

const FORMAT: u8 = 2;
/// The first format: still opened.
const FORMAT_1: u8 = 1;
/// Random nonce bytes in the value; XChaCha20's other 8 are zeros.
const NONCE_BYTES: usize = 16;
use self::aead::TAG_BYTES;
/// Format byte, key id, nonce.
const PREFIX_BYTES: usize = 2 + NONCE_BYTES;
/// Format 1's nonce was all 24 bytes.
const FORMAT_1_PREFIX_BYTES: usize = 2 + 24;
/// The shortest plaintext of format 2: flags, five one-byte varints, `{}`.
const MIN_PLAIN: usize = 1 + 5 + 2;
const FLAG_DEFLATED: u8 = 1;
const FLAG_MAX_AGE: u8 = 2;
const FLAG_SUBJECT: u8 = 4;
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
    /// Associated data of each format: a domain tag, the format, the
    /// cookie's full name.
    aad: Arc<[Vec<u8>; 2]>,
    /// The full cookie name's length, part of the size budget.
    name_len: usize,
    compress: bool,
}

/// What opening a value gives.
pub(crate) struct Opened {
    pub(crate) id: SessionId,
    pub(crate) expires_at: u64,
    pub(crate) version: u32,
    pub(crate) meta: Meta,
    /// The fields' JSON object.
    pub(crate) fields: Vec<u8>,
    /// Opened under an older key.
    pub(crate) old_key: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the plaintext.
        f.debug_struct("Opened")
            .field("bytes", &self.fields.len())
            .field("old_key", &self.old_key)
            .finish_non_exhaustive()
    }
}

impl SealedCookie {
    /// Seals under `keys`, binding values to the cookie's full name (as
    /// sent, with any prefix).
    pub(crate) fn new(keys: KeyRing, name: &str, compress: bool) -> Self {
        let aad = |format: u8| {
            let mut aad = b"typed-session sealed\0".to_vec();
            aad.push(format);
            aad.extend_from_slice(name.as_bytes());
            aad
        };
        SealedCookie {
            keys,
            aad: Arc::new([aad(FORMAT_1), aad(FORMAT)]),
            name_len: name.len(),
            compress,
        }
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Seals a record under the current key.
    pub(crate) fn seal(&self, id: &SessionId, payload: &Payload) -> Result<String, Error> {
        let Some(key) = self.keys.current() else {
            // The layer refuses cookie mode without a key; kept as an error, not a panic.
            return Err(Error::Store(StoreError::new(std::io::Error::other(
                "cookie mode has no sealing key",
            ))));
        };
        let meta = &payload.meta;
        let mut flags = 0u8;
        let deflated = match self.compress {
            true => Some(miniz_oxide::deflate::compress_to_vec(&payload.fields, 6))
                .filter(|d| d.len() < payload.fields.len()),
            false => None,
        };
        let fields = match &deflated {
            Some(d) => {
                flags |= FLAG_DEFLATED;
                &d[..]
            }
            None => &payload.fields[..],
        };
        if meta.max_age.is_some() {
            flags |= FLAG_MAX_AGE;
        }
        if meta.subject.is_some() {
            flags |= FLAG_SUBJECT;
        }
        let mut buf = Vec::with_capacity(PREFIX_BYTES + 80 + fields.len() + TAG_BYTES);
        buf.push(FORMAT);
        buf.push(key.id);
        let mut nonce = [0u8; NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        buf.extend_from_slice(&nonce);
        let nonce = full_nonce(&nonce);
        buf.push(flags);
        put_varint(&mut buf, payload.expires_at);
        put_delta(&mut buf, meta.created, payload.expires_at);
        put_delta(&mut buf, meta.touched, meta.created);
        put_varint(&mut buf, u64::from(payload.version));
        if let Some(max_age) = meta.max_age {
            put_varint(&mut buf, max_age);
        }
        if let Some(subject) = &meta.subject {
            buf.extend_from_slice(id.as_bytes());
            buf.extend_from_slice(&subject.digest);
            put_delta(&mut buf, subject.since, meta.created);
        }
        buf.extend_from_slice(fields);

        let size = self.name_len + 1 + base64_len(buf.len() + TAG_BYTES);
        if size > COOKIE_BUDGET {
            return Err(Error::CookieTooLarge {
                size,
                limit: COOKIE_BUDGET,
            });
        }
        let tag = aead::seal(&key.key, &nonce, &self.aad[1], &mut buf[PREFIX_BYTES..]).ok_or_else(
            || {
                Error::Store(StoreError::new(std::io::Error::other(
                    "sealing the session failed",
                )))
            },
        )?;
        buf.extend_from_slice(&tag);
        let mut value = String::with_capacity(base64_len(buf.len()));
        URL_SAFE_NO_PAD.encode_string(&buf, &mut value);
        Ok(value)
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
        if raw.len() < PREFIX_BYTES + MIN_PLAIN + TAG_BYTES {
            return Err(Refused::Truncated);
        }
        let aad = match raw[0] {
            FORMAT_1 => &self.aad[0],
            FORMAT => &self.aad[1],
            _ => return Err(Refused::UnknownFormat),
        };
        let (nonce, prefix) = match raw[0] {
            FORMAT_1 => {
                let mut nonce = [0u8; 24];
                nonce.copy_from_slice(
                    raw.get(2..FORMAT_1_PREFIX_BYTES)
                        .ok_or(Refused::Truncated)?,
                );
                (nonce, FORMAT_1_PREFIX_BYTES)
            }
            _ => {
                let mut random = [0u8; NONCE_BYTES];
                random.copy_from_slice(&raw[2..PREFIX_BYTES]);
                (full_nonce(&random), PREFIX_BYTES)
            }
        };
        if raw.len() < prefix + MIN_PLAIN + TAG_BYTES {
            return Err(Refused::Truncated);
        }
        let tag_at = raw.len() - TAG_BYTES;
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&raw[tag_at..]);
        let candidates = self.keys.candidates(raw[1]).count();
        if candidates == 0 {
            return Err(Refused::UnknownKey);
        }
        // A failed attempt leaves the bytes scrambled: with more than one
        // candidate (two secrets whose key ids collide), each tries a copy.
        let sealed = (candidates > 1).then(|| raw[prefix..tag_at].to_vec());
        let mut opened_with = None;
        for (position, key) in self.keys.candidates(raw[1]) {
            if let Some(sealed) = &sealed {
                raw[prefix..tag_at].copy_from_slice(sealed);
            }
            if aead::open(&key.key, &nonce, aad, &mut raw[prefix..tag_at], &tag) {
                opened_with = Some(position);
                break;
            }
        }
        let Some(position) = opened_with else {
            return Err(Refused::Forged);
        };
        let plain = &raw[prefix..tag_at];
        let (parsed, fields) = match raw[0] {
            FORMAT_1 => parse_format_1(plain),
            _ => parse(plain),
        }
        .ok_or(Refused::Malformed)?;
        let fields = match fields {
            Fields::Inflated(fields) => fields,
            Fields::Tail(at) => {
                // The tail of the plaintext: moved to the front of the
                // buffer it is in, not copied into another.
                let start = prefix + at;
                raw.copy_within(start..tag_at, 0);
                raw.truncate(tag_at - start);
                raw
            }
        };
        Ok(Opened {
            id: parsed
                .id
                .map_or_else(SessionId::random, SessionId::from_bytes),
            expires_at: parsed.expires_at,
            version: parsed.version,
            meta: parsed.meta,
            fields,
            old_key: position > 0,
        })
    }

    pub(crate) fn load(&self, cookie: CookieIn<'_>) -> Result<Found, StoreError> {
        let value = match cookie_value(cookie) {
            Ok(value) => value,
            Err(none) => return Ok(none.into()),
        };
        match self.open(value) {
            Ok(opened) => Ok(Found::Live(Loaded {
                stored: Stored {
                    id: opened.id,
                    revision: 0,
                    expires_at: opened.expires_at,
                    sealed: Some(Arc::from(value)),
                },
                body: Body::Parts {
                    version: opened.version,
                    meta: opened.meta,
                    fields: opened.fields,
                },
                copy: None,
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

    /// A new id for the same record. The old value still opens until its
    /// deadline: nothing on the server remembers it.
    pub(crate) fn regenerate(&self, payload: &Payload) -> Result<Written, Error> {
        self.written(SessionId::random(), payload)
            .map(Written::Done)
    }

    pub(crate) fn cookie_value(&self, stored: &Stored) -> CookieValue {
        match &stored.sealed {
            Some(value) => CookieValue::Shared(Arc::clone(value)),
            None => CookieValue::Owned(String::new()),
        }
    }
}

/// XChaCha20's 192-bit nonce from the value's 128 random bits.
fn full_nonce(random: &[u8; NONCE_BYTES]) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..NONCE_BYTES].copy_from_slice(random);
    nonce
}

/// Unpadded base64 length of `n` bytes.
fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

//! Cookie mode (feature `cookie-store`): the whole session sealed in the
//! cookie with XChaCha20-Poly1305; nothing is kept on the server.
//!
//! The cookie value is unpadded base64url of
//! `FORMAT (1) | key id (1) | nonce (24) | ciphertext | tag (16)`, sealed
//! under the key ring's sealing key with the associated data
//! `"typed-session sealed" | FORMAT | cookie name`, so a value moved to
//! another cookie name, another app's secret or another format does not open.
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
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};

use super::seam::{Body, Found, Loaded, Payload, Stored, Written, cookie_value};
use crate::cookies::CookieIn;
use crate::error::{Error, StoreError};
use crate::frame::{Meta, Subject};
use crate::id::SessionId;
use crate::keys::{KeyRing, RingKey};

/// The sealed format written, first byte of every value.
const FORMAT: u8 = 2;
/// The first format: still opened.
const FORMAT_1: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Format byte, key id, nonce.
const PREFIX_BYTES: usize = 2 + NONCE_BYTES;
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

/// Appends `n` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends the signed difference `a - b`, zigzag-encoded.
fn put_delta(out: &mut Vec<u8>, a: u64, b: u64) {
    let d = a.wrapping_sub(b) as i64;
    put_varint(out, ((d << 1) ^ (d >> 63)) as u64);
}

/// Reads a varint at the start of `rest` and moves past it.
fn take_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for (i, &b) in rest.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        n |= bits << (7 * i);
        if b & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Some(n);
        }
    }
    None
}

/// `base` plus a zigzag difference read from `rest`.
fn take_delta(rest: &mut &[u8], base: u64) -> Option<u64> {
    let z = take_varint(rest)?;
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    Some(base.wrapping_add(d as u64))
}

fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(*head)
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
        let tag = Self::cipher(key)
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &self.aad[1],
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
        if raw.len() < PREFIX_BYTES + MIN_PLAIN + TAG_BYTES {
            return Err(Refused::Truncated);
        }
        let aad = match raw[0] {
            FORMAT_1 => &self.aad[0],
            FORMAT => &self.aad[1],
            _ => return Err(Refused::UnknownFormat),
        };
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
                .decrypt_inout_detached(&nonce, aad, (&mut raw[PREFIX_BYTES..tag_at]).into(), &tag)
                .is_ok()
            {
                opened_with = Some(position);
                break;
            }
        }
        let Some(position) = opened_with else {
            return Err(Refused::Forged);
        };
        let plain = &raw[PREFIX_BYTES..tag_at];
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
                let start = PREFIX_BYTES + at;
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

    pub(crate) fn cookie_value(&self, stored: &Stored) -> String {
        stored.sealed.as_deref().unwrap_or_default().to_owned()
    }
}

/// A plaintext's fields before the record's fields.
struct Parsed {
    expires_at: u64,
    version: u32,
    meta: Meta,
    id: Option<[u8; 16]>,
}

/// Where a plaintext's record fields are.
enum Fields {
    /// From this offset to the end.
    Tail(usize),
    /// Deflated in the plaintext: here inflated.
    Inflated(Vec<u8>),
}

fn inflate(deflated: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED).ok()
}

/// Format 2's lead, and the fields.
fn parse(plain: &[u8]) -> Option<(Parsed, Fields)> {
    let mut rest = plain;
    let [flags] = take::<1>(&mut rest)?;
    if flags & !(FLAG_DEFLATED | FLAG_MAX_AGE | FLAG_SUBJECT) != 0 {
        return None;
    }
    let expires_at = take_varint(&mut rest)?;
    let created = take_delta(&mut rest, expires_at)?;
    let touched = take_delta(&mut rest, created)?;
    let version = u32::try_from(take_varint(&mut rest)?).ok()?;
    let max_age = match flags & FLAG_MAX_AGE {
        0 => None,
        _ => Some(take_varint(&mut rest)?),
    };
    let (id, subject) = match flags & FLAG_SUBJECT {
        0 => (None, None),
        _ => {
            let id = take::<16>(&mut rest)?;
            let digest = take::<16>(&mut rest)?;
            let since = take_delta(&mut rest, created)?;
            (Some(id), Some(Subject { digest, since }))
        }
    };
    let meta = Meta {
        created,
        touched,
        max_age,
        subject,
    };
    let parsed = Parsed {
        expires_at,
        version,
        meta,
        id,
    };
    let fields = match flags & FLAG_DEFLATED {
        0 => Fields::Tail(plain.len() - rest.len()),
        _ => Fields::Inflated(inflate(rest)?),
    };
    Some((parsed, fields))
}

/// Format 1: `flags (1) | deadline (8) | id (16) | body`, the body (deflated
/// when flag bit 0) `version (4) | created (8) | touched (8) | max-age (8, all
/// ones for none) | subject (1 = none, or 2 then digest (16) | since (8)) |
/// fields`, big-endian.
fn parse_format_1(plain: &[u8]) -> Option<(Parsed, Fields)> {
    let mut rest = plain;
    let [flags] = take::<1>(&mut rest)?;
    if flags & !FLAG_DEFLATED != 0 {
        return None;
    }
    let expires_at = u64::from_be_bytes(take::<8>(&mut rest)?);
    let id = Some(take::<16>(&mut rest)?);
    if flags & FLAG_DEFLATED != 0 {
        let body = inflate(rest)?;
        let mut tail = &body[..];
        let parsed = parse_format_1_body(&mut tail, expires_at, id)?;
        let at = body.len() - tail.len();
        return Some((parsed, Fields::Inflated(body[at..].to_vec())));
    }
    let parsed = parse_format_1_body(&mut rest, expires_at, id)?;
    Some((parsed, Fields::Tail(plain.len() - rest.len())))
}

fn parse_format_1_body(rest: &mut &[u8], expires_at: u64, id: Option<[u8; 16]>) -> Option<Parsed> {
    let version = u32::from_be_bytes(take::<4>(rest)?);
    let created = u64::from_be_bytes(take::<8>(rest)?);
    let touched = u64::from_be_bytes(take::<8>(rest)?);
    let max_age = match u64::from_be_bytes(take::<8>(rest)?) {
        u64::MAX => None,
        secs => Some(secs),
    };
    let subject = match take::<1>(rest)? {
        [1] => None,
        [2] => Some(Subject {
            digest: take::<16>(rest)?,
            since: u64::from_be_bytes(take::<8>(rest)?),
        }),
        _ => return None,
    };
    Some(Parsed {
        expires_at,
        version,
        meta: Meta {
            created,
            touched,
            max_age,
            subject,
        },
        id,
    })
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
        SigningKey::new(s.as_bytes().to_vec()).unwrap()
    }

    fn named(secrets: &[&str], name: &str, compress: bool) -> SealedCookie {
        let keys: Vec<SigningKey> = secrets.iter().map(|s| secret(s)).collect();
        SealedCookie::new(KeyRing::derive(&keys, Purpose::Sealing), name, compress)
    }

    fn backend(secrets: &[&str]) -> SealedCookie {
        named(secrets, "session", false)
    }

    const A: &str = "the first test secret, at least 32 bytes";
    const B: &str = "the second test secret, 32 bytes or more";

    fn meta() -> Meta {
        Meta {
            created: 1_700_000_000_000,
            touched: 1_700_000_000_500,
            max_age: Some(3600),
            subject: Some(Subject {
                digest: [9; 16],
                since: 1_700_000_000_100,
            }),
        }
    }

    fn payload(data: &str) -> Payload {
        Payload {
            version: 3,
            meta: meta(),
            fields: data.as_bytes().to_vec(),
            expires_at: 1_700_000_900_000,
            copy: None,
            established: false,
        }
    }

    /// A value in format 1, as the previous release sealed it.
    fn seal_format_1(b: &SealedCookie, id: &SessionId, p: &Payload, deflate: bool) -> String {
        let mut body = Vec::new();
        body.extend_from_slice(&p.version.to_be_bytes());
        body.extend_from_slice(&p.meta.created.to_be_bytes());
        body.extend_from_slice(&p.meta.touched.to_be_bytes());
        body.extend_from_slice(&p.meta.max_age.unwrap_or(u64::MAX).to_be_bytes());
        match p.meta.subject {
            None => body.push(1),
            Some(s) => {
                body.push(2);
                body.extend_from_slice(&s.digest);
                body.extend_from_slice(&s.since.to_be_bytes());
            }
        }
        body.extend_from_slice(&p.fields);
        if deflate {
            body = miniz_oxide::deflate::compress_to_vec(&body, 6);
        }
        let key = b.keys.current().unwrap();
        let nonce = [7u8; NONCE_BYTES];
        let mut buf = vec![FORMAT_1, key.id];
        buf.extend_from_slice(&nonce);
        buf.push(u8::from(deflate));
        buf.extend_from_slice(&p.expires_at.to_be_bytes());
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(&body);
        let tag = SealedCookie::cipher(key)
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &b.aad[0],
                (&mut buf[PREFIX_BYTES..]).into(),
            )
            .unwrap();
        buf.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(&buf)
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
        for subject in [true, false] {
            let mut p = payload(data);
            if !subject {
                p.meta.subject = None;
                p.meta.max_age = None;
            }
            let value = b.seal(&id, &p).unwrap();
            let opened = b.open(&value).unwrap();
            assert_eq!(
                opened.id == id,
                subject,
                "the id is sealed with a subject only"
            );
            assert_eq!(opened.expires_at, p.expires_at);
            assert_eq!(opened.version, p.version);
            assert_eq!(opened.meta, p.meta);
            assert_eq!(opened.fields, p.fields, "the fields round-trip");
            assert!(!opened.old_key);
            // A fresh nonce per seal: the same record never seals the same way.
            assert_ne!(b.seal(&id, &p).unwrap(), value);
            // Compact: 26-byte prefix, 16-byte tag, and a lead of a flags
            // byte and varints (6-byte deadline, 3-byte lifetime, 2-byte
            // touch, 1-byte version, 2-byte max-age), plus the id, the
            // subject's digest and a 2-byte since with a subject.
            let lead = match subject {
                true => 1 + 6 + 3 + 2 + 1 + 2 + 16 + 16 + 2,
                false => 1 + 6 + 3 + 2 + 1,
            };
            let overhead = PREFIX_BYTES + lead + TAG_BYTES;
            assert_eq!(value.len(), base64_len(overhead + data.len()));
        }
    }

    #[test]
    fn values_of_the_first_format_still_open() {
        for compress in [false, true] {
            let b = named(&[A], "session", compress);
            let id = SessionId::random();
            let p = payload(r#"{"cart":[1,2,3],"name":"Ada"}"#);
            let value = seal_format_1(&b, &id, &p, compress);
            let opened = b.open(&value).unwrap();
            assert_eq!(opened.id, id);
            assert_eq!(opened.expires_at, p.expires_at);
            assert_eq!((opened.version, opened.meta), (p.version, p.meta));
            assert_eq!(opened.fields, p.fields);
        }
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut rest = &out[..];
            assert_eq!(take_varint(&mut rest), Some(n));
            assert!(rest.is_empty());
            for base in [0, 1_700_000_000_000, u64::MAX] {
                let mut out = Vec::new();
                put_delta(&mut out, n, base);
                let mut rest = &out[..];
                assert_eq!(take_delta(&mut rest, base), Some(n));
            }
        }
        // Eleven bytes, or a tenth byte over the top bit: refused.
        let mut rest = &[0xffu8; 11][..];
        assert_eq!(take_varint(&mut rest), None);
        let mut rest = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..];
        assert_eq!(take_varint(&mut rest), None);
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let b = backend(&[A]);
        let value = b
            .seal(&SessionId::random(), &payload(r#"{"n":1}"#))
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
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
        other_format[0] = 3;
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
        let renamed = named(&[A], "__Host-session", false);
        assert_eq!(open_err(&renamed, &value), Refused::Forged);
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_new_key() {
        let old = backend(&[A]);
        let rotated = backend(&[B, A]);
        let retired = backend(&[B]);
        let id = SessionId::random();
        let value = old.seal(&id, &payload("{}")).unwrap();
        let opened = rotated.open(&value).unwrap();
        assert!(opened.old_key, "re-seal under the current key");
        let resealed = rotated.seal(&id, &payload("{}")).unwrap();
        assert!(!rotated.open(&resealed).unwrap().old_key);
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
            .expect("a collision in 10,000 secrets");
        let value = base.seal(&SessionId::random(), &payload("{}")).unwrap();
        let both = backend(&[other.as_str(), A]);
        let opened = both.open(&value).unwrap();
        assert!(
            opened.old_key,
            "opened by the second key after the first failed"
        );
    }

    #[test]
    fn the_cookie_budget_is_a_typed_error_and_compression_only_when_smaller() {
        let b = backend(&[A]);
        let id = SessionId::random();
        let big = format!(r#"{{"notes":"{}"}}"#, "x".repeat(4000));
        match b.seal(&id, &payload(&big)) {
            Err(Error::CookieTooLarge { size, limit }) => {
                assert_eq!(limit, 4096);
                assert!(size > 4096, "{size}");
            }
            other => panic!("{other:?}"),
        }
        let b = named(&[A], "session", true);
        let sealed = b.seal(&id, &payload(&big)).unwrap();
        assert!(
            sealed.len() < 400,
            "4 KB of one letter deflates: {}",
            sealed.len()
        );
        let opened = b.open(&sealed).unwrap();
        assert_eq!(opened.fields, payload(&big).fields);
        // Incompressible data is sealed as is (flag clear): no growth.
        let noise: String = {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            (0..300)
                .map(|_| char::from(b'a' + rng.random_range(0..26)))
                .collect()
        };
        let small = format!(r#"{{"n":"{noise}"}}"#);
        let plain = backend(&[A]).seal(&id, &payload(&small)).unwrap();
        let maybe = b.seal(&id, &payload(&small)).unwrap();
        assert!(maybe.len() <= plain.len());
    }

    /// Bounded random mutation of sealed values: never a panic, never an
    /// accepted value other than the exact original.
    #[test]
    fn random_mutations_never_open() {
        let b = backend(&[A, B]);
        let value = b
            .seal(&SessionId::random(), &payload(r#"{"cart":[1,2,3]}"#))
            .unwrap();
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

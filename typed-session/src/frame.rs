//! What the runtime keeps beside a session's fields: its timestamps,
//! lifetime and subject ([`Meta`]), the set of fields changed in this
//! request ([`FieldMask`]), and the JSON record that frames the fields for
//! the server-side stores
//! `{"v":VERSION,"c":CREATED_MS,"t":TOUCHED_MS,"m":MAX_AGE_S,"s":"SUBJECT:SINCE_MS","d":{...}}`,
//! which needs no schema (the sealed cookie frames the same parts in binary).

use std::io::Write as _;

use serde::Deserialize;
use serde::de;
use serde_json::value::RawValue;

use crate::error::LoadError;

/// One bit per field (at most 128 fields).
pub(crate) type FieldMask = u128;

/// Timestamps and settings kept beside the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Creation time (for the absolute timeout), unix ms.
    pub(crate) created: u64,
    /// Last time the record's bytes were written, unix ms. The idle deadline
    /// is the record's expiry, which a touch moves without rewriting the bytes.
    pub(crate) touched: u64,
    /// Per-session cookie lifetime set with `set_expiry`, seconds.
    pub(crate) max_age: Option<u64>,
    /// Whom the session belongs to, for revocation (`set_subject`).
    pub(crate) subject: Option<Subject>,
}

/// The subject a session was bound to: a digest of the app's name for the
/// user (never the name itself), and when the binding was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subject {
    pub(crate) digest: [u8; 16],
    /// Unix ms of the binding; revocations at or after it end the session.
    pub(crate) since: u64,
}

impl Meta {
    /// A meta for a session that starts at `now`.
    pub(crate) fn new(now: u64) -> Self {
        Meta {
            created: now,
            touched: now,
            max_age: None,
            subject: None,
        }
    }
}

/// A record written by newer code (a rolling deploy, or a rollback), as
/// this code read it: field by field, with everything it could not read
/// kept as stored, so that a write changes only the fields it changed.
#[derive(Debug, Clone)]
pub(crate) struct Newer {
    /// The record's version, kept on every write.
    pub(crate) version: u32,
    /// Every stored field, in stored order, with its value's exact bytes.
    pub(crate) fields: Vec<(String, Box<RawValue>)>,
    /// Fields this code knows whose stored values do not decode into its
    /// types: read as their default, never written by this code.
    pub(crate) foreign: FieldMask,
    /// Fields this request has written over the stored bytes (their value
    /// is now this code's, on every later write of this request too).
    pub(crate) written: FieldMask,
}

#[derive(Deserialize)]
pub(crate) struct RawEnvelope<'a> {
    pub(crate) v: u32,
    pub(crate) c: u64,
    pub(crate) t: u64,
    #[serde(default)]
    pub(crate) m: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) s: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) d: &'a RawValue,
}

impl RawEnvelope<'_> {
    pub(crate) fn meta(&self) -> Result<Meta, LoadError> {
        let subject = match self.s {
            None => None,
            Some(s) => Some(parse_subject(s).ok_or_else(|| {
                LoadError::Corrupt(de::Error::custom("malformed session subject"))
            })?),
        };
        Ok(Meta {
            created: self.c,
            touched: self.t,
            max_age: self.m,
            subject,
        })
    }
}

/// `HEX32:SINCE` as written by [`write_frame`].
fn parse_subject(s: &str) -> Option<Subject> {
    let (hex, since) = s.split_once(':')?;
    let mut digest = [0u8; 16];
    hex::decode_to_slice(hex, &mut digest).ok()?;
    Some(Subject {
        digest,
        since: since.parse().ok()?,
    })
}

/// A JSON record taken apart: its version, meta and the fields' object.
pub(crate) struct Parts<'a> {
    pub(crate) version: u32,
    pub(crate) meta: Meta,
    /// The JSON object of the fields.
    pub(crate) data: &'a [u8],
}

/// An envelope laid out exactly as [`write_frame`] writes it (no
/// whitespace, the keys in its order, `d` last), taken apart without
/// scanning the data: the data is everything between `"d":` and the final
/// `}`. `None` for any other layout, which the JSON parser then reads; a
/// caller that finds the data is not one JSON object (say a key after `d`)
/// must fall back to that parser as well.
pub(crate) fn split_written(bytes: &[u8]) -> Option<Parts<'_>> {
    let mut rest = bytes.strip_prefix(b"{\"v\":")?;
    let version = u32::try_from(take_number(&mut rest)?).ok()?;
    rest = rest.strip_prefix(b",\"c\":")?;
    let created = take_number(&mut rest)?;
    rest = rest.strip_prefix(b",\"t\":")?;
    let touched = take_number(&mut rest)?;
    let mut max_age = None;
    if let Some(after) = rest.strip_prefix(b",\"m\":") {
        rest = after;
        max_age = Some(take_number(&mut rest)?);
    }
    let mut subject = None;
    if let Some(after) = rest.strip_prefix(b",\"s\":\"") {
        let end = after.iter().position(|&b| b == b'"')?;
        subject = Some(parse_subject(std::str::from_utf8(&after[..end]).ok()?)?);
        rest = &after[end + 1..];
    }
    let data = rest.strip_prefix(b",\"d\":")?.strip_suffix(b"}")?;
    if !(data.starts_with(b"{") && data.ends_with(b"}")) {
        return None;
    }
    Some(Parts {
        version,
        meta: Meta {
            created,
            touched,
            max_age,
            subject,
        },
        data,
    })
}

/// A JSON unsigned integer at the start of `rest` (no sign, no leading
/// zero, within `u64`), and `rest` moved past it.
fn take_number(rest: &mut &[u8]) -> Option<u64> {
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, tail) = rest.split_at(len);
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    *rest = tail;
    Some(n)
}

/// The JSON record of `fields` (a JSON object) at `version` under `meta`,
/// in an allocation of exactly its size.
pub(crate) fn frame(version: u32, meta: &Meta, fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame_len(version, meta) + fields.len());
    write_frame(&mut out, version, meta);
    out.extend_from_slice(fields);
    out.push(b'}');
    out
}

/// The length of the framing [`frame`] puts around the fields.
pub(crate) fn frame_len(version: u32, meta: &Meta) -> usize {
    fn digits(mut n: u64) -> usize {
        let mut len = 1;
        while n >= 10 {
            n /= 10;
            len += 1;
        }
        len
    }
    // {"v": ,"c": ,"t": ,"d": }
    let mut len = 5 + 5 + 5 + 5 + 1;
    len += digits(u64::from(version)) + digits(meta.created) + digits(meta.touched);
    if let Some(m) = meta.max_age {
        len += 5 + digits(m);
    }
    if let Some(subject) = &meta.subject {
        // ,"s":"HEX32:SINCE"
        len += 6 + 32 + 1 + digits(subject.since) + 1;
    }
    len
}

pub(crate) fn write_frame(out: &mut Vec<u8>, version: u32, meta: &Meta) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"v\":{version},\"c\":{},\"t\":{}",
        meta.created, meta.touched
    );
    if let Some(m) = meta.max_age {
        let _ = write!(out, ",\"m\":{m}");
    }
    if let Some(subject) = &meta.subject {
        out.extend_from_slice(b",\"s\":\"");
        let mut digits = [0u8; 32];
        // 16 bytes fill 32 digits exactly: cannot fail.
        let _ = hex::encode_to_slice(subject.digest, &mut digits);
        out.extend_from_slice(&digits);
        let _ = write!(out, ":{}\"", subject.since);
    }
    out.extend_from_slice(b",\"d\":");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn written(meta: &Meta) -> Vec<u8> {
        let fields = br#"{"a":1,"b":[1,{"c":"}"}]}"#;
        let bytes = frame(3, meta, fields);
        assert_eq!(bytes.len(), frame_len(3, meta) + fields.len());
        assert_eq!(bytes.capacity(), bytes.len());
        bytes
    }

    #[test]
    fn the_written_layout_splits_as_the_parser_reads_it() {
        let plain = Meta::new(1_700_000_000_000);
        let full = Meta {
            max_age: Some(3600),
            subject: Some(Subject {
                digest: [0xab; 16],
                since: 1_700_000_000_001,
            }),
            ..plain
        };
        for meta in [plain, full] {
            let bytes = written(&meta);
            let fast = split_written(&bytes).unwrap();
            let raw: RawEnvelope<'_> = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(fast.version, raw.v);
            assert_eq!(fast.meta, raw.meta().unwrap());
            assert_eq!(fast.data, raw.d.get().as_bytes());
        }
    }

    #[test]
    fn any_other_layout_is_left_to_the_parser() {
        for other in [
            &br#"{"v":3,"c":1,"t":2,"d":{} }"#[..],
            br#"{ "v":3,"c":1,"t":2,"d":{}}"#,
            br#"{"c":1,"v":3,"t":2,"d":{}}"#,
            br#"{"v":03,"c":1,"t":2,"d":{}}"#,
            br#"{"v":3,"c":-1,"t":2,"d":{}}"#,
            br#"{"v":3,"c":1,"t":99999999999999999999,"d":{}}"#,
            br#"{"v":4294967296,"c":1,"t":2,"d":{}}"#,
            br#"{"v":3,"c":1,"t":2,"d":[]}"#,
            br#"{"v":3,"c":1,"t":2,"d":{},"x":1}"#,
            br#"{"v":3,"c":1,"t":2,"s":"nothex:1","d":{}}"#,
            br#"{"v":3,"c":1,"t":2,"d":{}"#,
        ] {
            assert!(
                split_written(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}

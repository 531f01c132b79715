//! The plaintext of a sealed value, format 2 (and format 1, still read):
//! LEB128 varints, zigzag differences, and the parsers.

use super::{FLAG_DEFLATED, FLAG_MAX_AGE, FLAG_SUBJECT, MAX_INFLATED};
use crate::frame::{Meta, Subject};

/// Appends `n` as an unsigned LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends the signed difference `a - b`, zigzag-encoded.
pub(super) fn put_delta(out: &mut Vec<u8>, a: u64, b: u64) {
    let d = a.wrapping_sub(b) as i64;
    put_varint(out, ((d << 1) ^ (d >> 63)) as u64);
}

/// Reads a varint at the start of `rest` and moves past it.
pub(super) fn take_varint(rest: &mut &[u8]) -> Option<u64> {
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
pub(super) fn take_delta(rest: &mut &[u8], base: u64) -> Option<u64> {
    let z = take_varint(rest)?;
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    Some(base.wrapping_add(d as u64))
}

pub(super) fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(*head)
}

/// A plaintext's fields before the record's fields.
pub(super) struct Parsed {
    pub(super) expires_at: u64,
    pub(super) version: u32,
    pub(super) meta: Meta,
    pub(super) id: Option<[u8; 16]>,
}

/// Where a plaintext's record fields are.
pub(super) enum Fields {
    /// From this offset to the end.
    Tail(usize),
    /// Deflated in the plaintext: here inflated.
    Inflated(Vec<u8>),
}

pub(super) fn inflate(deflated: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED).ok()
}

/// Format 2's lead, and the fields.
pub(super) fn parse(plain: &[u8]) -> Option<(Parsed, Fields)> {
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
pub(super) fn parse_format_1(plain: &[u8]) -> Option<(Parsed, Fields)> {
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

pub(super) fn parse_format_1_body(
    rest: &mut &[u8],
    expires_at: u64,
    id: Option<[u8; 16]>,
) -> Option<Parsed> {
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

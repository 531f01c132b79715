//! The record as Redis holds it: one string, the revision and expiry as
//! two 20-digit decimal fields (the *stamp*, which the scripts compare and
//! patch as text), then the session bytes; and the replies the scripts give.

use redis::Value;

use super::Unexpected;
use crate::clock::{from_unix_millis, unix_millis};
use crate::error::StoreError;
use crate::store::Record;

/// Width of each decimal field of the record stamp: revision, then expiry
/// (unix ms), zero-padded, so scripts compare and patch them as text.
pub(super) const FIELD: usize = 20;
pub(super) const STAMP: usize = 2 * FIELD;

/// A reply, with an error reply turned into an error.
pub(super) fn checked(reply: Value) -> Result<Value, StoreError> {
    reply.extract_error().map_err(StoreError::new)
}

/// One stamp field: `n` as 20 zero-padded decimal digits (`u64::MAX`
/// has 20).
pub(super) fn field(mut n: u64) -> [u8; FIELD] {
    let mut digits = [b'0'; FIELD];
    for digit in digits.iter_mut().rev() {
        // `n % 10` is below 10.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits
}

pub(super) fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAMP + record.data.len());
    out.extend_from_slice(&encode_stamp(record));
    out.extend_from_slice(&record.data);
    out
}

/// A record's stamp: revision and expiry.
pub(super) fn encode_stamp(record: &Record) -> [u8; STAMP] {
    let mut out = [0; STAMP];
    out[..FIELD].copy_from_slice(&field(record.revision));
    out[FIELD..].copy_from_slice(&field(unix_millis(record.expires_at)));
    out
}

pub(super) fn decode(value: Vec<u8>) -> Result<Record, StoreError> {
    let number = |range: std::ops::Range<usize>| {
        value
            .get(range)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| StoreError::new(Unexpected))
    };
    let revision = number(0..FIELD)?;
    let expires = number(FIELD..STAMP)?;
    // The payload is shared with the reply's buffer, not copied.
    let data = bytes::Bytes::from(value).slice(STAMP..);
    Ok(Record::new(data, revision, from_unix_millis(expires)))
}

pub(super) enum Reply {
    Done(i64),
    Gone,
    Current(Record),
}

pub(super) fn reply(value: Value) -> Result<Reply, StoreError> {
    match value {
        // A script's `false`: nil in RESP2, a boolean in RESP3.
        Value::Nil | Value::Boolean(false) => Ok(Reply::Gone),
        Value::Int(n) => Ok(Reply::Done(n)),
        Value::BulkString(bytes) => decode(bytes).map(Reply::Current),
        _ => Err(StoreError::new(Unexpected)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn stamp_fields_are_twenty_padded_digits() {
        assert_eq!(&field(0), b"00000000000000000000");
        assert_eq!(&field(42), b"00000000000000000042");
        assert_eq!(&field(u64::MAX), u64::MAX.to_string().as_bytes());
        let record = Record::new(
            b"{}".to_vec(),
            7,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        );
        let back = decode(encode(&record)).unwrap();
        assert_eq!(back, record);
    }
}

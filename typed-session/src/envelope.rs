//! The stored form of a session: a JSON envelope
//! `{"v":VERSION,"c":CREATED_MS,"t":TOUCHED_MS,"m":MAX_AGE_S,"s":"SUBJECT:SINCE_MS","d":{FIELD:VALUE,...}}`
//! (`m` and `s` only when set; the framing lives in `header`).
//!
//! Fields are encoded and decoded one by one, so that one bad field gets its
//! own `on_invalid` policy instead of failing the whole record, and so that a
//! concurrent save can merge the fields it changed into another writer's record.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{FieldError, LoadError, describe_for_log};
use crate::header::{FieldMask, Header, RawEnvelope, split_written, write_header};
use crate::schema::{OnInvalid, SessionSchema};
use crate::store::TypedCache;

/// A decoded record: the value, the fields that loading changed (resets,
/// migrations), and the header.
pub(crate) struct Decoded<S> {
    pub(crate) value: S,
    pub(crate) changed: FieldMask,
    pub(crate) header: Header,
    pub(crate) migrated_from: Option<u32>,
}

/// All stored fields.
pub(crate) fn stored_mask<S: SessionSchema>() -> FieldMask {
    S::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| f.stored)
        .fold(0u128, |mask, (i, _)| mask | (1u128 << i))
}

pub(crate) fn encode<S: SessionSchema>(
    value: &S,
    header: &Header,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    write_header(&mut out, S::VERSION, header);
    out.push(b'{');
    let mut first = true;
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if !meta.stored {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, meta.key)?;
        out.push(b':');
        value.encode_field(index, &mut out)?;
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

pub(crate) fn decode<S: SessionSchema>(bytes: &[u8]) -> Result<Decoded<S>, LoadError> {
    // A record of this version as this crate writes it: the data is parsed
    // once, not also skipped over by the envelope's parser.
    if let Some(parts) = split_written(bytes).filter(|p| p.version == S::VERSION)
        && let Ok(data) = std::str::from_utf8(parts.data)
    {
        match decode_fields::<S>(data, None) {
            // Not one JSON object after all: the full parse decides.
            Err(LoadError::Corrupt(_)) => {}
            decoded => {
                return decoded.map(|(value, changed)| Decoded {
                    value,
                    changed,
                    header: parts.header,
                    migrated_from: None,
                });
            }
        }
    }
    decode_parsed(bytes)
}

/// [`decode`] with the whole envelope through the JSON parser (any layout,
/// older versions).
pub(crate) fn decode_parsed<S: SessionSchema>(bytes: &[u8]) -> Result<Decoded<S>, LoadError> {
    let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(LoadError::Corrupt)?;
    let header = raw.header()?;
    if raw.v > S::VERSION {
        return Err(LoadError::FutureVersion {
            found: raw.v,
            known: S::VERSION,
        });
    }
    let mut migrated_from = None;
    let data: Cow<'_, str> = if raw.v < S::VERSION {
        migrated_from = Some(raw.v);
        let mut value: serde_json::Value =
            serde_json::from_str(raw.d.get()).map_err(LoadError::Corrupt)?;
        for from in raw.v.max(1)..S::VERSION {
            value =
                S::migrate(from, value).map_err(|source| LoadError::Migration { from, source })?;
        }
        Cow::Owned(value.to_string())
    } else {
        Cow::Borrowed(raw.d.get())
    };
    let (value, mut changed) = decode_fields::<S>(&data, migrated_from)?;
    if migrated_from.is_some() {
        changed = stored_mask::<S>();
    }
    Ok(Decoded {
        value,
        changed,
        header,
        migrated_from,
    })
}

/// Decodes the data object field by field, applying each field's `on_invalid`
/// policy. Returns the value and the fields reset on the way.
/// `migrated_from`: the record's version when migrations ran.
fn decode_fields<S: SessionSchema>(
    data: &str,
    migrated_from: Option<u32>,
) -> Result<(S, FieldMask), LoadError> {
    let mut slots: Vec<Option<&RawValue>> = vec![None; S::FIELDS.len()];
    let mut de = serde_json::Deserializer::from_str(data);
    Splitter::<S> {
        slots: &mut slots,
        marker: std::marker::PhantomData,
    }
    .deserialize(&mut de)
    .map_err(LoadError::Corrupt)?;
    de.end().map_err(LoadError::Corrupt)?;

    let mut value = S::fresh();
    let mut parse_errors: Vec<(usize, BoxError)> = Vec::new();
    for (index, slot) in slots.into_iter().enumerate() {
        let Some(raw) = slot else { continue };
        if let Err(e) = value.decode_field(index, raw.get()) {
            warn_drift::<S>(index, migrated_from, &e);
            parse_errors.push((index, Box::new(e)));
        }
    }
    let changed = apply_load_rules(&mut value, parse_errors)?;
    Ok((value, changed))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A stored field of this code's own version (or just migrated to it) that
/// does not decode: the stored shape changed without a version bump (or a
/// migration missed it). Said at `warn` once per field per process, with
/// the type, the field and the error's category, never the value; the
/// field's `on_invalid` policy applies as for any invalid field.
fn warn_drift<S: SessionSchema>(index: usize, migrated_from: Option<u32>, err: &serde_json::Error) {
    static WARNED: OnceLock<Mutex<HashSet<(&'static str, &'static str)>>> = OnceLock::new();
    let field = S::FIELDS[index].name;
    let first = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((S::NAME, field));
    if !first {
        return;
    }
    let reason = describe_for_log(err);
    match migrated_from {
        None => tracing::warn!(
            schema = S::NAME,
            version = S::VERSION,
            field,
            %reason,
            "a stored field of the current version does not decode: its stored shape changed \
             without a version bump (run typed_session::schema::assert_recorded in a test); \
             the field's on_invalid policy applies (said once per field)"
        ),
        Some(from) => tracing::warn!(
            schema = S::NAME,
            version = S::VERSION,
            from,
            field,
            %reason,
            "a stored field does not decode after the migrations: a migration step missed a \
             change of its shape (run typed_session::schema::assert_recorded in a test); the \
             field's on_invalid policy applies (said once per field)"
        ),
    }
}

/// Validation on load: every field's rule (or its parse error) and the
/// struct rule, with each field's `on_invalid` policy. Returns the fields reset.
pub(crate) fn apply_load_rules<S: SessionSchema>(
    value: &mut S,
    mut parse_errors: Vec<(usize, BoxError)>,
) -> Result<FieldMask, LoadError> {
    let mut changed: FieldMask = 0;
    for (index, meta) in S::FIELDS.iter().enumerate() {
        let failed = match parse_errors.iter().position(|(i, _)| *i == index) {
            Some(pos) => Some(parse_errors.swap_remove(pos).1),
            None => value
                .validate_field(index)
                .err()
                .map(|e| Box::new(e) as BoxError),
        };
        let Some(source) = failed else { continue };
        match meta.on_invalid {
            OnInvalid::Reset => {
                tracing::debug!(field = meta.name, reason = %describe_for_log(&*source), "stored session field invalid; reset to its default");
                value.reset_field(index);
                changed |= 1u128 << index;
            }
            OnInvalid::Destroy => {
                return Err(LoadError::Destroy(FieldError::new(meta.name, Some(source))));
            }
            OnInvalid::Reject => {
                return Err(LoadError::Reject(FieldError::new(meta.name, Some(source))));
            }
        }
    }
    if let Err(e) = value.validate() {
        return Err(LoadError::Destroy(FieldError::new(
            "<struct>",
            Some(Box::new(e)),
        )));
    }
    Ok(changed)
}

/// The decoded value a store that keeps records in memory holds beside the bytes.
pub(crate) struct Cached<S> {
    pub(crate) header: Header,
    pub(crate) value: S,
}

/// Loads from a record's typed cache when it holds a value of this schema:
/// no parsing, but the same validation as a decode.
pub(crate) fn from_cache<S: SessionSchema>(
    cache: &TypedCache,
) -> Option<Result<Decoded<S>, LoadError>> {
    let cached = cache.0.downcast_ref::<Cached<S>>()?;
    let mut value = cached.value.clone_schema();
    Some(
        apply_load_rules(&mut value, Vec::new()).map(|changed| Decoded {
            value,
            changed,
            header: cached.header,
            migrated_from: None,
        }),
    )
}

/// Deserializes the data object into per-field raw JSON slices, borrowed
/// from the input; unknown keys are skipped.
struct Splitter<'s, 'de, S> {
    slots: &'s mut Vec<Option<&'de RawValue>>,
    marker: std::marker::PhantomData<S>,
}

impl<'de, S: SessionSchema> DeserializeSeed<'de> for Splitter<'_, 'de, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: SessionSchema> Visitor<'de> for Splitter<'_, 'de, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of session fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let found = S::FIELDS
                .iter()
                .position(|f| f.stored && f.key == key.0.as_ref());
            match found {
                Some(index) => {
                    if self.slots[index].is_some() {
                        return Err(de::Error::custom("duplicate field in stored session"));
                    }
                    self.slots[index] = Some(map.next_value::<&'de RawValue>()?);
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A map key, borrowed when the input has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Merges the fields in `changed` from `ours` into `theirs` (another writer's
/// record of the same version), keeping every other field of theirs; the
/// header is ours (`header`, as we are writing it), with the later write time.
pub(crate) fn merge<S: SessionSchema>(
    theirs: &[u8],
    ours: &S,
    changed: FieldMask,
    header: &Header,
) -> Result<Vec<u8>, LoadError> {
    let raw: RawEnvelope<'_> = serde_json::from_slice(theirs).map_err(LoadError::Corrupt)?;
    if raw.v != S::VERSION {
        return Err(LoadError::FutureVersion {
            found: raw.v,
            known: S::VERSION,
        });
    }
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw.d.get()).map_err(LoadError::Corrupt)?;
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if changed & (1u128 << index) == 0 || !meta.stored {
            continue;
        }
        let mut buf = Vec::new();
        // A flash field merges message by message, so that no message
        // pushed by either request is lost and none is shown twice.
        let theirs_field = map.get(meta.key).map(|v| v.to_string());
        let merged = match (&theirs_field, meta.flash) {
            (Some(theirs), true) => ours
                .merge_flash_field(index, theirs, &mut buf)
                .map_err(LoadError::Corrupt)?,
            _ => false,
        };
        if !merged {
            ours.encode_field(index, &mut buf)
                .map_err(LoadError::Corrupt)?;
        }
        let value: serde_json::Value = serde_json::from_slice(&buf).map_err(LoadError::Corrupt)?;
        map.insert(meta.key.to_owned(), value);
    }
    let header = Header {
        created: header.created,
        touched: header.touched.max(raw.t),
        max_age: header.max_age.or(raw.m),
        subject: header.subject.or(raw.header()?.subject),
    };
    let mut out = Vec::with_capacity(theirs.len() + 32);
    write_header(&mut out, S::VERSION, &header);
    serde_json::to_writer(&mut out, &map).map_err(LoadError::Corrupt)?;
    out.push(b'}');
    Ok(out)
}

//! The stored form of a session: a JSON envelope
//! `{"v":VERSION,"c":CREATED_MS,"t":TOUCHED_MS,"m":MAX_AGE_S,"s":"SUBJECT:SINCE_MS","d":{FIELD:VALUE,...}}`
//! (`m` and `s` only when set; the framing lives in `meta`).
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

use crate::backend::seam::{Body, TypedCache};
use crate::error::{Error, FieldError, LoadError, describe_for_log};
use crate::frame::{FieldMask, Meta, Newer, RawEnvelope, split_written, write_frame};
use crate::runtime::NewerSchema;
use crate::schema::{OnInvalid, SessionSchema};

/// A decoded record: the value, the fields that loading changed (resets,
/// migrations), and the meta.
pub(crate) struct Decoded<S> {
    pub(crate) value: S,
    pub(crate) changed: FieldMask,
    pub(crate) meta: Meta,
    pub(crate) migrated_from: Option<u32>,
    /// Set when the record was written by newer code (a higher version).
    pub(crate) newer: Option<Newer>,
}

/// All stored fields.
pub(crate) fn stored_mask<S: SessionSchema>() -> FieldMask {
    S::FIELDS
        .iter()
        .enumerate()
        .filter(|(_, f)| f.stored)
        .fold(0u128, |mask, (i, _)| mask | (1u128 << i))
}

/// The fields' JSON object of `value` (the record's parts are framed by the backend).
pub(crate) fn encode<S: SessionSchema>(value: &S) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(192);
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
    out.push(b'}');
    Ok(out)
}

/// Decodes a record as its backend read it.
pub(crate) fn decode_body<S: SessionSchema>(body: &Body) -> Result<Decoded<S>, LoadError> {
    match body {
        Body::Framed(bytes) => decode::<S>(bytes),
        Body::Parts {
            version,
            meta,
            fields,
        } => {
            let data = std::str::from_utf8(fields)
                .map_err(|_| LoadError::Corrupt(de::Error::custom("fields are not UTF-8")))?;
            decode_raw::<S>(*version, *meta, data)
        }
    }
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
                    meta: parts.meta,
                    migrated_from: None,
                    newer: None,
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
    decode_raw::<S>(raw.v, raw.meta()?, raw.d.get())
}

/// Decodes the fields' object `data` of a record at `version`: migrated
/// when older, field by field when newer.
fn decode_raw<S: SessionSchema>(
    version: u32,
    meta: Meta,
    data: &str,
) -> Result<Decoded<S>, LoadError> {
    if version > S::VERSION {
        return decode_newer::<S>(version, data, meta);
    }
    let mut migrated_from = None;
    let data: Cow<'_, str> = if version < S::VERSION {
        migrated_from = Some(version);
        let mut value: serde_json::Value =
            serde_json::from_str(data).map_err(LoadError::Corrupt)?;
        for from in version.max(1)..S::VERSION {
            value =
                S::migrate(from, value).map_err(|source| LoadError::Migration { from, source })?;
        }
        Cow::Owned(value.to_string())
    } else {
        Cow::Borrowed(data)
    };
    let (value, mut changed) = decode_fields::<S>(&data, migrated_from)?;
    if migrated_from.is_some() {
        changed = stored_mask::<S>();
    }
    Ok(Decoded {
        value,
        changed,
        meta,
        migrated_from,
        newer: None,
    })
}

/// A record of a newer version, field by field: what decodes is used, what
/// does not is marked foreign (its default in memory, never written back),
/// and every stored field is kept for the write.
fn decode_newer<S: SessionSchema>(
    version: u32,
    data: &str,
    meta: Meta,
) -> Result<Decoded<S>, LoadError> {
    let fields = raw_fields(data).map_err(LoadError::Corrupt)?;
    let mut value = S::fresh();
    let mut foreign: FieldMask = 0;
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if !meta.stored {
            continue;
        }
        let Some((_, raw)) = fields.iter().find(|(k, _)| k == meta.key) else {
            continue;
        };
        if let Err(e) = value.decode_field(index, raw.get()) {
            tracing::debug!(
                schema = S::NAME,
                field = meta.name,
                found = version,
                known = S::VERSION,
                reason = %describe_for_log(&e),
                "a field written by a newer version does not decode into this version's type; \
                 kept as stored, read as its default, not written by this code"
            );
            foreign |= 1u128 << index;
        }
    }
    let changed = apply_load_rules(&mut value, Vec::new(), foreign)?;
    Ok(Decoded {
        value,
        changed,
        meta,
        migrated_from: None,
        newer: Some(Newer {
            version,
            fields,
            foreign,
            written: 0,
        }),
    })
}

/// The data object's fields, each with its value's exact bytes, in stored
/// order; a key stored twice is an error.
fn raw_fields(data: &str) -> Result<Vec<(String, Box<RawValue>)>, serde_json::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object of session fields")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Self::Value = Vec::new();
            while let Some(key) = map.next_key::<Key<'de>>()? {
                if out.iter().any(|(k, _)| *k == key.0) {
                    return Err(de::Error::custom("duplicate field in stored session"));
                }
                let value = map.next_value::<Box<RawValue>>()?;
                out.push((key.0.into_owned(), value));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(data);
    let fields = de.deserialize_map(Fields)?;
    de.end()?;
    Ok(fields)
}

/// Encodes over a newer version's record: the fields in `changed` (and
/// those this request wrote before) get this code's value, every other
/// stored field keeps its bytes, and the record keeps its version. A change
/// to a field this code could not read is refused.
/// Returns the fields' JSON object, to be written at `newer.version`.
pub(crate) fn encode_over<S: SessionSchema>(
    value: &S,
    changed: FieldMask,
    newer: &Newer,
) -> Result<Vec<u8>, Error> {
    if let Some(index) = first_bit(changed & newer.foreign) {
        return Err(Error::NewerSchema {
            field: S::FIELDS[index].name,
            version: newer.version,
        });
    }
    let ours = changed | newer.written;
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let mut done: FieldMask = 0;
    for (i, (key, raw)) in newer.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).map_err(Error::Serialize)?;
        out.push(b':');
        match field_index::<S>(key).filter(|&index| ours & (1u128 << index) != 0) {
            Some(index) => {
                value
                    .encode_field(index, &mut out)
                    .map_err(Error::Serialize)?;
                done |= 1u128 << index;
            }
            None => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    // Fields this request set that the record did not hold.
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if !meta.stored || ours & !done & (1u128 << index) == 0 {
            continue;
        }
        if out.last() != Some(&b'{') {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, meta.key).map_err(Error::Serialize)?;
        out.push(b':');
        value
            .encode_field(index, &mut out)
            .map_err(Error::Serialize)?;
    }
    out.push(b'}');
    Ok(out)
}

/// The index of the stored field with this key.
fn field_index<S: SessionSchema>(key: &str) -> Option<usize> {
    S::FIELDS.iter().position(|f| f.stored && f.key == key)
}

fn first_bit(mask: FieldMask) -> Option<usize> {
    (mask != 0).then(|| mask.trailing_zeros() as usize)
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
    let changed = apply_load_rules(&mut value, parse_errors, 0)?;
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
/// struct rule, with each field's `on_invalid` policy. Returns the fields
/// reset. Fields in `foreign` (a newer version's, not readable here) are
/// left alone: never reset or destroyed by this code.
pub(crate) fn apply_load_rules<S: SessionSchema>(
    value: &mut S,
    mut parse_errors: Vec<(usize, BoxError)>,
    foreign: FieldMask,
) -> Result<FieldMask, LoadError> {
    let mut changed: FieldMask = 0;
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if foreign & (1u128 << index) != 0 {
            continue;
        }
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
    pub(crate) meta: Meta,
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
        apply_load_rules(&mut value, Vec::new(), 0).map(|changed| Decoded {
            value,
            changed,
            meta: cached.meta,
            migrated_from: None,
            newer: None,
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
            let found = field_index::<S>(&key.0);
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

/// Merges the fields in `changed` from `ours` into `theirs` (another
/// writer's record), keeping every other field of theirs; the meta is
/// ours (`meta`, as we are writing it), with the later write time.
/// Their record may be of any version: an older one is migrated first and
/// written at ours; a newer one keeps its version and every field we did
/// not change, and a change to a field whose stored shape we cannot read
/// is refused (or, with [`NewerSchema::Reject`], the whole merge).
pub(crate) fn merge<S: SessionSchema>(
    theirs: &[u8],
    ours: &S,
    changed: FieldMask,
    meta: &Meta,
    newer_schema: NewerSchema,
) -> Result<Vec<u8>, Error> {
    let corrupt = |e| Error::Load(LoadError::Corrupt(e));
    let raw: RawEnvelope<'_> = serde_json::from_slice(theirs).map_err(corrupt)?;
    let (version, mut fields) = match raw.v.cmp(&S::VERSION) {
        std::cmp::Ordering::Equal => (S::VERSION, raw_fields(raw.d.get()).map_err(corrupt)?),
        std::cmp::Ordering::Less => {
            let mut value: serde_json::Value =
                serde_json::from_str(raw.d.get()).map_err(corrupt)?;
            for from in raw.v.max(1)..S::VERSION {
                value = S::migrate(from, value)
                    .map_err(|source| Error::Load(LoadError::Migration { from, source }))?;
            }
            let fields = raw_fields(&value.to_string()).map_err(corrupt)?;
            (S::VERSION, fields)
        }
        std::cmp::Ordering::Greater if newer_schema == NewerSchema::Reject => {
            return Err(Error::Load(LoadError::FutureVersion {
                found: raw.v,
                known: S::VERSION,
            }));
        }
        std::cmp::Ordering::Greater => {
            let fields = raw_fields(raw.d.get()).map_err(corrupt)?;
            // Only fields whose stored shape this code reads are ours to write.
            let mut probe = S::fresh();
            for (index, meta) in S::FIELDS.iter().enumerate() {
                if changed & (1u128 << index) == 0 || !meta.stored {
                    continue;
                }
                if let Some((_, stored)) = fields.iter().find(|(k, _)| k == meta.key)
                    && probe.decode_field(index, stored.get()).is_err()
                {
                    return Err(Error::NewerSchema {
                        field: meta.name,
                        version: raw.v,
                    });
                }
            }
            (raw.v, fields)
        }
    };
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if changed & (1u128 << index) == 0 || !meta.stored {
            continue;
        }
        let mut buf = Vec::new();
        let slot = fields.iter().position(|(k, _)| k == meta.key);
        // A flash field merges message by message, so that no message
        // pushed by either request is lost and none is shown twice.
        let merged = match (slot, meta.flash) {
            (Some(at), true) => ours
                .merge_flash_field(index, fields[at].1.get(), &mut buf)
                .map_err(corrupt)?,
            _ => false,
        };
        if !merged {
            ours.encode_field(index, &mut buf).map_err(corrupt)?;
        }
        let encoded = String::from_utf8(buf)
            .map_err(|_| corrupt(de::Error::custom("a field did not encode as UTF-8")))?;
        let value = RawValue::from_string(encoded).map_err(corrupt)?;
        match slot {
            Some(at) => fields[at].1 = value,
            None => fields.push((meta.key.to_owned(), value)),
        }
    }
    let meta = Meta {
        created: meta.created,
        touched: meta.touched.max(raw.t),
        max_age: meta.max_age.or(raw.m),
        subject: meta.subject.or(raw.meta().map_err(Error::Load)?.subject),
    };
    let mut out = Vec::with_capacity(theirs.len() + 32);
    write_frame(&mut out, version, &meta);
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).map_err(corrupt)?;
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

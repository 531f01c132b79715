//! Stored records built from a recorded shape, and what loading them into
//! the current code gives: the check behind "compatible" and the replay of
//! older versions through the migrations.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::SessionSchema;
use super::shape::{Def, Recorded, Shape, Variant};

/// Deeper than this, options are `None` and collections empty (a type
/// inside itself ends).
const MAX_DEPTH: usize = 8;
/// Most samples per record (one per enum variant index, and one minimal).
const MAX_SAMPLES: usize = 64;

/// Sample data objects for a recorded shape: the i-th picks variant `i` of
/// every enum (modulo its count) with every option `Some` and every
/// collection holding one element, then one with every option `None` and
/// every collection empty. Integers are their type's extreme (so a
/// narrowing is seen), strings longer than one character (so `String` to
/// `char` is seen). Fields whose shape is opaque are left out.
pub(crate) fn samples(rec: &Recorded) -> Vec<Map<String, Value>> {
    let widest = rec
        .defs
        .values()
        .map(|d| match d {
            Def::Enum(v) => v.len(),
            Def::Struct(_) => 1,
        })
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_SAMPLES - 1);
    let mut out = Vec::new();
    for pick in 0..widest {
        out.push(sample(rec, Some(pick)));
    }
    out.push(sample(rec, None));
    out
}

fn sample(rec: &Recorded, pick: Option<usize>) -> Map<String, Value> {
    let s = Sampler {
        defs: &rec.defs,
        pick,
    };
    rec.fields
        .iter()
        .filter_map(|(key, shape)| Some((key.clone(), s.value(shape, 0)?)))
        .collect()
}

struct Sampler<'a> {
    defs: &'a BTreeMap<String, Def>,
    /// `None`: the minimal sample.
    pick: Option<usize>,
}

impl Sampler<'_> {
    fn value(&self, shape: &Shape, depth: usize) -> Option<Value> {
        let full = self.pick.is_some() && depth < MAX_DEPTH;
        Some(match shape {
            Shape::Unit => Value::Null,
            Shape::Bool => Value::Bool(true),
            Shape::I8 => Value::from(i8::MIN),
            Shape::I16 => Value::from(i16::MIN),
            Shape::I32 => Value::from(i32::MIN),
            Shape::I64 => Value::from(i64::MIN),
            Shape::I128 => Value::from(i64::MIN),
            Shape::U8 => Value::from(u8::MAX),
            Shape::U16 => Value::from(u16::MAX),
            Shape::U32 => Value::from(u32::MAX),
            Shape::U64 | Shape::U128 => Value::from(u64::MAX),
            Shape::F32 | Shape::F64 => Value::from(1.5),
            Shape::Char => Value::from("c"),
            Shape::Str => Value::from("sample"),
            Shape::Bytes => Value::Array(vec![Value::from(255)]),
            Shape::Option(inner) if full => self.value(inner, depth + 1)?,
            Shape::Option(_) => Value::Null,
            Shape::Seq(inner) if full => Value::Array(vec![self.value(inner, depth + 1)?]),
            Shape::Seq(_) => Value::Array(Vec::new()),
            Shape::Map(key, value) if full => {
                let mut map = Map::new();
                map.insert(self.key(key)?, self.value(value, depth + 1)?);
                Value::Object(map)
            }
            Shape::Map(..) => Value::Object(Map::new()),
            Shape::Tuple(items) => Value::Array(
                items
                    .iter()
                    .map(|s| self.value(s, depth + 1))
                    .collect::<Option<_>>()?,
            ),
            Shape::Array(inner, len) => {
                let one = self.value(inner, depth + 1)?;
                Value::Array(vec![one; *len])
            }
            Shape::Named(name) => match self.defs.get(name)? {
                Def::Struct(fields) => Value::Object(self.object(fields, depth)?),
                Def::Enum(variants) if variants.is_empty() => return None,
                Def::Enum(variants) => {
                    let (vname, form) = &variants[self.pick.unwrap_or(0) % variants.len()];
                    let inner = match form {
                        Variant::Unit => return Some(Value::from(vname.as_str())),
                        Variant::Newtype(s) => self.value(s, depth + 1)?,
                        Variant::Tuple(items) => Value::Array(
                            items
                                .iter()
                                .map(|s| self.value(s, depth + 1))
                                .collect::<Option<_>>()?,
                        ),
                        Variant::Struct(fields) => Value::Object(self.object(fields, depth)?),
                    };
                    let mut map = Map::new();
                    map.insert(vname.clone(), inner);
                    Value::Object(map)
                }
            },
            Shape::Opaque(_) => return None,
        })
    }

    fn object(&self, fields: &[(String, Shape)], depth: usize) -> Option<Map<String, Value>> {
        fields
            .iter()
            .map(|(n, s)| Some((n.clone(), self.value(s, depth + 1)?)))
            .collect()
    }

    /// A map key as JSON writes it: always a string.
    fn key(&self, shape: &Shape) -> Option<String> {
        match self.value(shape, MAX_DEPTH)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A stored field that does not load.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) field: String,
    pub(crate) reason: String,
}

/// Loads a data object into `S` field by field: the fields that fail, and
/// the stored keys `S` does not know (data the next write drops).
pub(crate) fn load<S: SessionSchema>(data: &Map<String, Value>) -> (Vec<Failure>, Vec<String>) {
    let mut value = S::fresh();
    let mut failures = Vec::new();
    for (index, meta) in S::FIELDS.iter().enumerate() {
        if !meta.stored {
            continue;
        }
        if let Some(raw) = data.get(meta.key)
            && let Err(e) = value.decode_field(index, &raw.to_string())
        {
            // The position is in a sample, not in anything the user has.
            let reason = e.to_string();
            let reason = match reason.rfind(" at line ") {
                Some(at) => reason[..at].to_owned(),
                None => reason,
            };
            failures.push(Failure {
                field: meta.key.to_owned(),
                reason,
            });
        }
    }
    let unknown = data
        .keys()
        .filter(|k| !S::FIELDS.iter().any(|f| f.stored && f.key == k.as_str()))
        .cloned()
        .collect();
    (failures, unknown)
}

/// A sample of an older version through the migration chain to `S::VERSION`.
pub(crate) fn migrate<S: SessionSchema>(
    from: u32,
    data: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut value = Value::Object(data);
    for step in from.max(1)..S::VERSION {
        value = S::migrate(step, value)
            .map_err(|e| format!("the migration from version {step} failed: {e}"))?;
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("the migrations did not return a JSON object".to_owned()),
    }
}

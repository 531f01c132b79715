//! The current shape of a schema, traced from its fields' `Deserialize`
//! impls with `serde-reflection` (no extra derive needed).
//!
//! What it cannot follow becomes `opaque(..)` in the record, with the
//! reason's category: a type that asks the format for "any" value
//! (`deserialize_any`: untagged and internally tagged enums,
//! `#[serde(flatten)]`, `serde_json::Value`) and a type whose `Deserialize`
//! refuses the tracer's placeholder values (a date parsed from a string, a
//! non-zero number). Such a field is still checked for presence, but a
//! change inside it is not seen.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, Named, Samples, Tracer, TracerConfig, VariantFormat,
};

use super::shape::{Def, Recorded, Shape, Variant};
use super::{FieldType, FieldTypes, SessionSchema, Traced};

/// The shape of `S` as its code stands, with the fields that could not be
/// traced and why.
pub(crate) fn current<S: SessionSchema>() -> (Recorded, Vec<String>) {
    let mut tracer = FieldTracer {
        fields: Vec::new(),
        defs: BTreeMap::new(),
        notes: Vec::new(),
    };
    S::visit_field_types(&mut tracer);
    let FieldTracer {
        fields,
        defs,
        notes,
    } = tracer;
    let mut fields_by_index = fields;
    fields_by_index.sort_by_key(|(i, _)| *i);
    let fields = fields_by_index
        .into_iter()
        .map(|(i, shape)| (S::FIELDS[i].key.to_owned(), shape))
        .collect();
    (
        Recorded {
            name: S::NAME.to_owned(),
            version: S::VERSION,
            fields,
            defs,
        },
        notes,
    )
}

struct FieldTracer {
    fields: Vec<(usize, Shape)>,
    defs: BTreeMap<String, Def>,
    notes: Vec<String>,
}

impl FieldTypes for FieldTracer {
    fn field(&mut self, index: usize, ty: FieldType) {
        let type_name = ty.type_name;
        let shape = match (ty.trace)() {
            Ok((format, registry)) => {
                let mut conv = Convert {
                    registry: &registry,
                    defs: &mut self.defs,
                    clash: None,
                    visiting: BTreeSet::new(),
                };
                let shape = conv.shape(&format);
                match conv.clash {
                    None => shape,
                    Some(name) => {
                        self.notes.push(format!(
                            "field {index} ({type_name}): two different types are named `{name}`; \
                             the field is recorded as opaque (rename one with #[serde(rename)])"
                        ));
                        Shape::Opaque("name clash".into())
                    }
                }
            }
            Err(e) => {
                let (category, why) = categorize(&e);
                self.notes.push(format!("{type_name}: {why} ({e})"));
                Shape::Opaque(category.into())
            }
        };
        self.fields.push((index, shape));
    }
}

fn categorize(e: &serde_reflection::Error) -> (&'static str, &'static str) {
    match e {
        serde_reflection::Error::NotSupported(what) if what.contains("any") => (
            "deserialize_any",
            "its Deserialize asks for any value (an untagged or internally tagged enum, \
             #[serde(flatten)], serde_json::Value): recorded as opaque, only its presence is checked",
        ),
        serde_reflection::Error::Custom(_) | serde_reflection::Error::DeserializationError(_) => (
            "validating",
            "its Deserialize refused the tracer's placeholder value (a validating type such as a \
             date or a non-zero number): recorded as opaque, only its presence is checked",
        ),
        _ => (
            "untraceable",
            "the tracer could not follow it: recorded as opaque, only its presence is checked",
        ),
    }
}

/// Most passes over one type (each explores the next variant of every enum
/// not yet fully seen) and most restarts (each learns nested enums' names).
const MAX_PASSES: usize = 4096;
const MAX_RESTARTS: usize = 16;

/// Traces `T` until every variant of every enum it reaches is seen.
pub(crate) fn traced<T: DeserializeOwned>() -> Traced {
    let samples = Samples::new();
    // Enums that `trace_type` would not revisit (nested ones): their names
    // come from a failed attempt's `MissingVariants`, then the next attempt
    // keeps exploring them too.
    let mut enums: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_RESTARTS {
        let mut tracer = Tracer::new(TracerConfig::default().is_human_readable(true));
        let mut format = None;
        for _ in 0..MAX_PASSES {
            let (f, _) = tracer.trace_type_once::<T>(&samples)?;
            if let Format::TypeName(name) = &f {
                enums.insert(name.clone());
            }
            format = Some(f);
            let mut incomplete = false;
            for name in &enums {
                incomplete |= tracer.check_incomplete_enum(name).is_some();
            }
            if !incomplete {
                break;
            }
        }
        match tracer.registry() {
            Ok(registry) => {
                return Ok((format.unwrap_or(Format::Unit), registry));
            }
            Err(serde_reflection::Error::MissingVariants(names)) => {
                let before = enums.len();
                enums.extend(names);
                if enums.len() == before {
                    return Err(serde_reflection::Error::MissingVariants(
                        enums.into_iter().collect(),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(serde_reflection::Error::MissingVariants(
        enums.into_iter().collect(),
    ))
}

/// serde-reflection's formats to ours: JSON-transparent containers
/// (newtype, tuple and unit structs) are inlined.
struct Convert<'a> {
    registry: &'a serde_reflection::Registry,
    defs: &'a mut BTreeMap<String, Def>,
    /// A name defined differently by another field's types.
    clash: Option<String>,
    /// The containers whose definitions are being built.
    visiting: BTreeSet<String>,
}

impl Convert<'_> {
    fn shape(&mut self, format: &Format) -> Shape {
        match format {
            Format::Variable(_) => Shape::Opaque("untraceable".into()),
            Format::TypeName(name) => self.named(name),
            Format::Unit => Shape::Unit,
            Format::Bool => Shape::Bool,
            Format::I8 => Shape::I8,
            Format::I16 => Shape::I16,
            Format::I32 => Shape::I32,
            Format::I64 => Shape::I64,
            Format::I128 => Shape::I128,
            Format::U8 => Shape::U8,
            Format::U16 => Shape::U16,
            Format::U32 => Shape::U32,
            Format::U64 => Shape::U64,
            Format::U128 => Shape::U128,
            Format::F32 => Shape::F32,
            Format::F64 => Shape::F64,
            Format::Char => Shape::Char,
            Format::Str => Shape::Str,
            Format::Bytes => Shape::Bytes,
            Format::Option(inner) => Shape::Option(Box::new(self.shape(inner))),
            Format::Seq(inner) => Shape::Seq(Box::new(self.shape(inner))),
            Format::Map { key, value } => {
                Shape::Map(Box::new(self.shape(key)), Box::new(self.shape(value)))
            }
            Format::Tuple(items) => Shape::Tuple(items.iter().map(|f| self.shape(f)).collect()),
            Format::TupleArray { content, size } => {
                Shape::Array(Box::new(self.shape(content)), *size)
            }
        }
    }

    fn named(&mut self, name: &str) -> Shape {
        let Some(container) = self.registry.get(name) else {
            return Shape::Opaque("untraceable".into());
        };
        let def = match container {
            ContainerFormat::UnitStruct => return Shape::Unit,
            ContainerFormat::NewTypeStruct(inner) => return self.shape(inner),
            ContainerFormat::TupleStruct(items) => {
                return Shape::Tuple(items.iter().map(|f| self.shape(f)).collect());
            }
            // A type inside itself: its definition is being built.
            _ if self.visiting.contains(name) => return Shape::Named(name.to_owned()),
            ContainerFormat::Struct(fields) => {
                self.visiting.insert(name.to_owned());
                Def::Struct(self.fields(fields))
            }
            ContainerFormat::Enum(variants) => {
                self.visiting.insert(name.to_owned());
                Def::Enum(
                    variants
                        .values()
                        .map(|v| (v.name.clone(), self.variant(&v.value)))
                        .collect(),
                )
            }
        };
        self.visiting.remove(name);
        match self.defs.get(name) {
            Some(existing) if *existing != def => self.clash = Some(name.to_owned()),
            Some(_) => {}
            None => {
                self.defs.insert(name.to_owned(), def);
            }
        }
        Shape::Named(name.to_owned())
    }

    fn fields(&mut self, fields: &[Named<Format>]) -> Vec<(String, Shape)> {
        fields
            .iter()
            .map(|f| (f.name.clone(), self.shape(&f.value)))
            .collect()
    }

    fn variant(&mut self, v: &VariantFormat) -> Variant {
        match v {
            VariantFormat::Variable(_) | VariantFormat::Unit => Variant::Unit,
            VariantFormat::NewType(inner) => Variant::Newtype(self.shape(inner)),
            VariantFormat::Tuple(items) => {
                Variant::Tuple(items.iter().map(|f| self.shape(f)).collect())
            }
            VariantFormat::Struct(fields) => Variant::Struct(self.fields(fields)),
        }
    }
}

//! The stored shape of a session schema: each stored field's name and the
//! serde format of its type, as JSON stores it (container names are kept
//! for reading, not compared: JSON does not store them). Flattened into
//! one line per path for comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The serde format of a value, as stored in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    Unit,
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    Option(Box<Shape>),
    Seq(Box<Shape>),
    Map(Box<Shape>, Box<Shape>),
    Tuple(Vec<Shape>),
    Array(Box<Shape>, usize),
    /// A struct or enum defined in [`Recorded::defs`].
    Named(String),
    /// A type the tracer could not follow; the reason's category.
    Opaque(String),
}

/// A named container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Def {
    Struct(Vec<(String, Shape)>),
    Enum(Vec<(String, Variant)>),
}

/// One variant of an enum (externally tagged, serde's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Variant {
    Unit,
    Newtype(Shape),
    Tuple(Vec<Shape>),
    Struct(Vec<(String, Shape)>),
}

/// The recorded shape of one schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) name: String,
    pub(crate) version: u32,
    /// Stored field keys and their shapes, in declaration order.
    pub(crate) fields: Vec<(String, Shape)>,
    pub(crate) defs: BTreeMap<String, Def>,
}

const PRIMITIVES: &[(&str, Shape)] = &[
    ("()", Shape::Unit),
    ("bool", Shape::Bool),
    ("i8", Shape::I8),
    ("i16", Shape::I16),
    ("i32", Shape::I32),
    ("i64", Shape::I64),
    ("i128", Shape::I128),
    ("u8", Shape::U8),
    ("u16", Shape::U16),
    ("u32", Shape::U32),
    ("u64", Shape::U64),
    ("u128", Shape::U128),
    ("f32", Shape::F32),
    ("f64", Shape::F64),
    ("char", Shape::Char),
    ("String", Shape::Str),
    ("bytes", Shape::Bytes),
];

impl Shape {
    /// The primitive named `name` in the recorded text.
    pub(crate) fn primitive(name: &str) -> Option<Shape> {
        PRIMITIVES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    }

    /// Written as in the recorded file: `Option<Vec<CartLine>>`. With
    /// `names = false`, a named container is written by its kind
    /// (`struct`, `enum`): what JSON stores does not depend on the name.
    pub(crate) fn describe(&self, defs: &BTreeMap<String, Def>, names: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, defs, names);
        out
    }

    fn write(&self, out: &mut String, defs: &BTreeMap<String, Def>, names: bool) {
        if let Some((name, _)) = PRIMITIVES.iter().find(|(_, s)| s == self) {
            out.push_str(name);
            return;
        }
        let list = |out: &mut String, items: &[Shape]| {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                item.write(out, defs, names);
            }
        };
        match self {
            Shape::Option(inner) => {
                out.push_str("Option<");
                inner.write(out, defs, names);
                out.push('>');
            }
            Shape::Seq(inner) => {
                out.push_str("Vec<");
                inner.write(out, defs, names);
                out.push('>');
            }
            Shape::Map(key, value) => {
                out.push_str("Map<");
                key.write(out, defs, names);
                out.push_str(", ");
                value.write(out, defs, names);
                out.push('>');
            }
            Shape::Tuple(items) => {
                out.push('(');
                list(out, items);
                if items.len() == 1 {
                    out.push(',');
                }
                out.push(')');
            }
            Shape::Array(inner, len) => {
                out.push('[');
                inner.write(out, defs, names);
                let _ = write!(out, "; {len}]");
            }
            Shape::Named(name) if names => out.push_str(name),
            Shape::Named(name) => out.push_str(match defs.get(name) {
                Some(Def::Struct(_)) => "struct",
                Some(Def::Enum(_)) => "enum",
                None => "undefined",
            }),
            Shape::Opaque(reason) => {
                let _ = write!(out, "opaque({})", quote_name(reason));
            }
            _ => {}
        }
    }
}

/// A name as the recorded text writes it: bare when it is an identifier,
/// else a JSON string.
pub(crate) fn quote_name(name: &str) -> String {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        name.to_owned()
    } else {
        serde_json::Value::String(name.to_owned()).to_string()
    }
}

/// One path of a flattened shape: `cart[].quantity`.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) path: String,
    /// The enclosing path, if any.
    pub(crate) parent: Option<String>,
    /// Compared: the shape without container names.
    pub(crate) key: String,
    /// Shown: the shape with container names.
    pub(crate) display: String,
}

impl Recorded {
    /// One line per path: every field, and inside it every struct field,
    /// enum variant, sequence element (`[]`), map value (`{}`) and tuple
    /// element (`.0`); options are transparent. A type inside itself
    /// (recursion) is listed once.
    pub(crate) fn flatten(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut walker = Walker {
            defs: &self.defs,
            lines: &mut lines,
            stack: Vec::new(),
        };
        for (key, shape) in &self.fields {
            walker.entry(quote_name(key), None, shape);
        }
        lines
    }

    /// The named containers a shape reaches, for writing only those.
    pub(crate) fn reachable(&self) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&Shape> = self.fields.iter().map(|(_, s)| s).collect();
        while let Some(shape) = todo.pop() {
            match shape {
                Shape::Option(i) | Shape::Seq(i) | Shape::Array(i, _) => todo.push(i),
                Shape::Map(k, v) => {
                    todo.push(k);
                    todo.push(v);
                }
                Shape::Tuple(items) => todo.extend(items),
                Shape::Named(name) if seen.insert(name.clone()) => match self.defs.get(name) {
                    Some(Def::Struct(fields)) => todo.extend(fields.iter().map(|(_, s)| s)),
                    Some(Def::Enum(variants)) => {
                        for (_, v) in variants {
                            match v {
                                Variant::Unit => {}
                                Variant::Newtype(s) => todo.push(s),
                                Variant::Tuple(items) => todo.extend(items),
                                Variant::Struct(fields) => {
                                    todo.extend(fields.iter().map(|(_, s)| s))
                                }
                            }
                        }
                    }
                    None => {}
                },
                _ => {}
            }
        }
        seen
    }
}

struct Walker<'a> {
    defs: &'a BTreeMap<String, Def>,
    lines: &'a mut Vec<Line>,
    /// The named containers being walked (recursion stops at a repeat).
    stack: Vec<String>,
}

impl Walker<'_> {
    fn entry(&mut self, path: String, parent: Option<&str>, shape: &Shape) {
        self.lines.push(Line {
            path: path.clone(),
            parent: parent.map(str::to_owned),
            key: shape.describe(self.defs, false),
            display: shape.describe(self.defs, true),
        });
        self.inside(&path, shape);
    }

    fn inside(&mut self, path: &str, shape: &Shape) {
        match shape {
            Shape::Option(inner) => self.inside(path, inner),
            Shape::Seq(inner) | Shape::Array(inner, _) => {
                self.nested(format!("{path}[]"), path, inner)
            }
            Shape::Map(_, value) => self.nested(format!("{path}{{}}"), path, value),
            Shape::Tuple(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.entry(format!("{path}.{i}"), Some(path), item);
                }
            }
            Shape::Named(name) => {
                if self.stack.contains(name) {
                    return;
                }
                let Some(def) = self.defs.get(name) else {
                    return;
                };
                self.stack.push(name.clone());
                match def {
                    Def::Struct(fields) => self.fields(path, fields),
                    Def::Enum(variants) => {
                        for (variant, form) in variants {
                            let vpath = format!("{path}::{}", quote_name(variant));
                            let (key, display) = match form {
                                Variant::Unit => {
                                    ("unit variant".to_owned(), "unit variant".to_owned())
                                }
                                Variant::Newtype(s) => (
                                    format!("variant({})", s.describe(self.defs, false)),
                                    format!("variant({})", s.describe(self.defs, true)),
                                ),
                                Variant::Tuple(items) => {
                                    let t = Shape::Tuple(items.clone());
                                    (
                                        format!("variant{}", t.describe(self.defs, false)),
                                        format!("variant{}", t.describe(self.defs, true)),
                                    )
                                }
                                Variant::Struct(_) => {
                                    ("struct variant".to_owned(), "struct variant".to_owned())
                                }
                            };
                            self.lines.push(Line {
                                path: vpath.clone(),
                                parent: Some(path.to_owned()),
                                key,
                                display,
                            });
                            match form {
                                Variant::Unit => {}
                                Variant::Newtype(s) => self.inside(&vpath, s),
                                Variant::Tuple(items) => {
                                    for (i, item) in items.iter().enumerate() {
                                        self.entry(format!("{vpath}.{i}"), Some(&vpath), item);
                                    }
                                }
                                Variant::Struct(fields) => self.fields(&vpath, fields),
                            }
                        }
                    }
                }
                self.stack.pop();
            }
            _ => {}
        }
    }

    /// An element path (`[]`, `{}`): listed only when it holds more than
    /// its parent's line already says (a named container).
    fn nested(&mut self, path: String, parent: &str, inner: &Shape) {
        if contains_named(inner) {
            self.entry(path, Some(parent), inner);
        }
    }

    fn fields(&mut self, path: &str, fields: &[(String, Shape)]) {
        for (name, shape) in fields {
            self.entry(format!("{path}.{}", quote_name(name)), Some(path), shape);
        }
    }
}

fn contains_named(shape: &Shape) -> bool {
    match shape {
        Shape::Named(_) => true,
        Shape::Option(i) | Shape::Seq(i) | Shape::Array(i, _) => contains_named(i),
        Shape::Map(k, v) => contains_named(k) || contains_named(v),
        Shape::Tuple(items) => items.iter().any(contains_named),
        _ => false,
    }
}

/// How one path differs between a recorded shape and the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Removed {
        path: String,
        was: String,
    },
    Added {
        path: String,
        now: String,
    },
    Retyped {
        path: String,
        was: String,
        now: String,
    },
}

impl Change {
    pub(crate) fn is_removal(&self) -> bool {
        matches!(self, Change::Removed { .. })
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Removed { path, was } => write!(f, "{path}: {was} → removed"),
            Change::Added { path, now } => write!(f, "{path}: {now} → added"),
            Change::Retyped { path, was, now } => write!(f, "{path}: {was} → {now}"),
        }
    }
}

/// The paths that differ, each reported once: a path inside a removed or
/// added one is not listed again.
pub(crate) fn diff(old: &Recorded, new: &Recorded) -> Vec<Change> {
    let old_lines = old.flatten();
    let new_lines = new.flatten();
    let old_by: BTreeMap<&str, &Line> = old_lines.iter().map(|l| (l.path.as_str(), l)).collect();
    let new_by: BTreeMap<&str, &Line> = new_lines.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut changes = Vec::new();
    for line in &old_lines {
        match new_by.get(line.path.as_str()) {
            None if line
                .parent
                .as_deref()
                .is_none_or(|p| new_by.contains_key(p)) =>
            {
                changes.push(Change::Removed {
                    path: line.path.clone(),
                    was: line.display.clone(),
                })
            }
            None => {}
            Some(now) if now.key != line.key => changes.push(Change::Retyped {
                path: line.path.clone(),
                was: line.display.clone(),
                now: now.display.clone(),
            }),
            Some(_) => {}
        }
    }
    for line in &new_lines {
        if !old_by.contains_key(line.path.as_str())
            && line
                .parent
                .as_deref()
                .is_none_or(|p| old_by.contains_key(p))
        {
            changes.push(Change::Added {
                path: line.path.clone(),
                now: line.display.clone(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(line_fields: &[(&str, Shape)]) -> Recorded {
        let mut defs = BTreeMap::new();
        defs.insert(
            "Line".to_owned(),
            Def::Struct(
                line_fields
                    .iter()
                    .map(|(n, s)| ((*n).to_owned(), s.clone()))
                    .collect(),
            ),
        );
        Recorded {
            name: "Shop".into(),
            version: 1,
            fields: vec![(
                "cart".into(),
                Shape::Seq(Box::new(Shape::Named("Line".into()))),
            )],
            defs,
        }
    }

    #[test]
    fn a_nested_rename_is_one_removal_and_one_addition() {
        let old = cart(&[("sku", Shape::U32), ("qty", Shape::U32)]);
        let new = cart(&[("sku", Shape::U32), ("quantity", Shape::U32)]);
        let changes: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            ["cart[].qty: u32 → removed", "cart[].quantity: u32 → added"]
        );
    }

    #[test]
    fn container_names_are_not_compared() {
        let old = cart(&[("sku", Shape::U32)]);
        let mut new = old.clone();
        let def = new.defs.remove("Line");
        new.defs
            .insert("Item".into(), def.unwrap_or(Def::Struct(Vec::new())));
        new.fields[0].1 = Shape::Seq(Box::new(Shape::Named("Item".into())));
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn a_removed_field_is_reported_once() {
        let old = cart(&[("sku", Shape::U32)]);
        let new = Recorded {
            fields: Vec::new(),
            ..old.clone()
        };
        let changes: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["cart: Vec<Line> → removed"]);
    }
}

//! The recorded file: a Rust-like text, written by the check and read back
//! by it (and by people reviewing a change).
//!
//! ```text
//! session ShopSession v2 {
//!     user_id: Option<u64>,
//!     cart: Vec<CartLine>,
//! }
//!
//! struct CartLine { product_id: u32, quantity: u32 }
//!
//! enum Role { Admin, Customer }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::shape::{Def, Recorded, Shape, Variant, quote_name};

/// The file's text.
pub(crate) fn write(rec: &Recorded) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The stored shape of {}, version {}: each stored field's name and the serde",
        rec.name, rec.version
    );
    out.push_str(
        "# format of its type (what JSON holds; type names are for reading and are not\n\
         # compared). Written by typed_session::schema; commit it. A change to the\n\
         # shape without a version bump fails the check.\n\n",
    );
    let _ = writeln!(out, "session {} v{} {{", quote_name(&rec.name), rec.version);
    for (key, shape) in &rec.fields {
        let _ = writeln!(
            out,
            "    {}: {},",
            quote_name(key),
            shape.describe(&rec.defs, true)
        );
    }
    out.push_str("}\n");
    let reachable = rec.reachable();
    for (name, def) in rec.defs.iter().filter(|(n, _)| reachable.contains(*n)) {
        out.push('\n');
        match def {
            Def::Struct(fields) => {
                let _ = writeln!(
                    out,
                    "struct {} {}",
                    quote_name(name),
                    braced(fields, &rec.defs)
                );
            }
            Def::Enum(variants) => {
                let _ = writeln!(out, "enum {} {{", quote_name(name));
                for (variant, form) in variants {
                    let _ = write!(out, "    {}", quote_name(variant));
                    match form {
                        Variant::Unit => {}
                        Variant::Newtype(s) => {
                            let _ = write!(out, "({})", s.describe(&rec.defs, true));
                        }
                        Variant::Tuple(items) => {
                            let items: Vec<String> =
                                items.iter().map(|s| s.describe(&rec.defs, true)).collect();
                            let _ = write!(out, "({})", items.join(", "));
                        }
                        Variant::Struct(fields) => {
                            let _ = write!(out, " {}", braced(fields, &rec.defs));
                        }
                    }
                    out.push_str(",\n");
                }
                out.push_str("}\n");
            }
        }
    }
    out
}

fn braced(fields: &[(String, Shape)], defs: &BTreeMap<String, Def>) -> String {
    if fields.is_empty() {
        return "{}".to_owned();
    }
    let inner: Vec<String> = fields
        .iter()
        .map(|(n, s)| format!("{}: {}", quote_name(n), s.describe(defs, true)))
        .collect();
    format!("{{ {} }}", inner.join(", "))
}

/// Reads a recorded file back. The error says where and what was expected.
pub(crate) fn parse(text: &str) -> Result<Recorded, String> {
    let tokens = lex(text)?;
    let mut p = Parser { tokens, at: 0 };
    p.keyword("session")?;
    let name = p.name()?;
    let version = p.version()?;
    let fields = p.fields()?;
    let mut defs = BTreeMap::new();
    while !p.done() {
        let (kind, line) = p.next_ident()?;
        let def_name = p.name()?;
        let def = match kind.as_str() {
            "struct" => Def::Struct(p.fields()?),
            "enum" => Def::Enum(p.variants()?),
            other => {
                return Err(format!(
                    "line {line}: expected `struct` or `enum`, found `{other}`"
                ));
            }
        };
        if defs.insert(def_name.clone(), def).is_some() {
            return Err(format!("line {line}: `{def_name}` is defined twice"));
        }
    }
    Ok(Recorded {
        name,
        version,
        fields,
        defs,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(u64),
    Punct(char),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let mut chars = line.char_indices().peekable();
        while let Some(&(i, c)) = chars.peek() {
            if c == '#' {
                break;
            } else if c.is_whitespace() {
                chars.next();
            } else if c.is_ascii_alphabetic() || c == '_' {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((Tok::Ident(line[i..end].to_owned()), line_no));
            } else if c.is_ascii_digit() {
                let mut end = i;
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_digit() {
                        end = j + 1;
                        chars.next();
                    } else {
                        break;
                    }
                }
                let n = line[i..end]
                    .parse()
                    .map_err(|_| format!("line {line_no}: number too large"))?;
                out.push((Tok::Num(n), line_no));
            } else if c == '"' {
                let mut de = serde_json::Deserializer::from_str(&line[i..]).into_iter::<String>();
                let s = match de.next() {
                    Some(Ok(s)) => s,
                    _ => return Err(format!("line {line_no}: unterminated string")),
                };
                let end = i + de.byte_offset();
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                out.push((Tok::Str(s), line_no));
            } else if "{}()<>[];:,".contains(c) {
                out.push((Tok::Punct(c), line_no));
                chars.next();
            } else {
                return Err(format!("line {line_no}: unexpected `{c}`"));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(1, |t| t.1)
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.0)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.at).map(|t| t.0.clone());
        self.at += 1;
        t
    }

    fn expected<T>(&self, what: &str) -> Result<T, String> {
        let found = match self.peek() {
            None => "the end of the file".to_owned(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Str(s)) => format!("{s:?}"),
            Some(Tok::Num(n)) => format!("`{n}`"),
            Some(Tok::Punct(c)) => format!("`{c}`"),
        };
        Err(format!(
            "line {}: expected {what}, found {found}",
            self.line()
        ))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            self.expected(&format!("`{c}`"))
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        match self.peek() {
            Some(Tok::Ident(s)) if s == kw => {
                self.at += 1;
                Ok(())
            }
            _ => self.expected(&format!("`{kw}`")),
        }
    }

    fn next_ident(&mut self) -> Result<(String, usize), String> {
        let line = self.line();
        match self.peek() {
            Some(Tok::Ident(_)) => match self.bump() {
                Some(Tok::Ident(s)) => Ok((s, line)),
                _ => self.expected("a name"),
            },
            _ => self.expected("a name"),
        }
    }

    /// An identifier or a quoted name.
    fn name(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(_) | Tok::Str(_)) => match self.bump() {
                Some(Tok::Ident(s) | Tok::Str(s)) => Ok(s),
                _ => self.expected("a name"),
            },
            _ => self.expected("a name"),
        }
    }

    /// `v2`.
    fn version(&mut self) -> Result<u32, String> {
        if let Some(Tok::Ident(s)) = self.peek()
            && let Some(v) = s.strip_prefix('v').and_then(|n| n.parse().ok())
        {
            self.at += 1;
            return Ok(v);
        }
        self.expected("a version (`v2`)")
    }

    /// `{ name: Shape, ... }`, trailing comma allowed.
    fn fields(&mut self) -> Result<Vec<(String, Shape)>, String> {
        self.punct('{')?;
        let mut fields = Vec::new();
        while !self.eat('}') {
            let name = self.name()?;
            self.punct(':')?;
            fields.push((name, self.shape()?));
            if !self.eat(',') {
                self.punct('}')?;
                break;
            }
        }
        Ok(fields)
    }

    fn variants(&mut self) -> Result<Vec<(String, Variant)>, String> {
        self.punct('{')?;
        let mut variants = Vec::new();
        while !self.eat('}') {
            let name = self.name()?;
            let form = if self.peek() == Some(&Tok::Punct('{')) {
                Variant::Struct(self.fields()?)
            } else if self.eat('(') {
                let mut items = self.list(')')?;
                if items.len() == 1 {
                    Variant::Newtype(items.remove(0))
                } else {
                    Variant::Tuple(items)
                }
            } else {
                Variant::Unit
            };
            variants.push((name, form));
            if !self.eat(',') {
                self.punct('}')?;
                break;
            }
        }
        Ok(variants)
    }

    /// Shapes separated by commas up to `close` (consumed).
    fn list(&mut self, close: char) -> Result<Vec<Shape>, String> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.shape()?);
            if !self.eat(',') {
                self.punct(close)?;
                break;
            }
        }
        Ok(items)
    }

    fn shape(&mut self) -> Result<Shape, String> {
        if self.eat('(') {
            let items = self.list(')')?;
            return Ok(if items.is_empty() {
                Shape::Unit
            } else {
                Shape::Tuple(items)
            });
        }
        if self.eat('[') {
            let inner = self.shape()?;
            self.punct(';')?;
            let len = match self.bump() {
                Some(Tok::Num(n)) => usize::try_from(n).map_err(|_| "array too long".to_owned())?,
                _ => {
                    self.at -= 1;
                    return self.expected("an array length");
                }
            };
            self.punct(']')?;
            return Ok(Shape::Array(Box::new(inner), len));
        }
        let (name, _) = match self.peek() {
            Some(Tok::Str(_)) => (self.name()?, 0),
            _ => self.next_ident()?,
        };
        if let Some(p) = Shape::primitive(&name) {
            return Ok(p);
        }
        let one = |p: &mut Parser| -> Result<Box<Shape>, String> {
            p.punct('<')?;
            let inner = p.shape()?;
            p.punct('>')?;
            Ok(Box::new(inner))
        };
        match name.as_str() {
            "Option" => Ok(Shape::Option(one(self)?)),
            "Vec" => Ok(Shape::Seq(one(self)?)),
            "Map" => {
                self.punct('<')?;
                let key = self.shape()?;
                self.punct(',')?;
                let value = self.shape()?;
                self.punct('>')?;
                Ok(Shape::Map(Box::new(key), Box::new(value)))
            }
            "opaque" => {
                self.punct('(')?;
                let reason = self.name()?;
                self.punct(')')?;
                Ok(Shape::Opaque(reason))
            }
            _ => Ok(Shape::Named(name)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_written_record_reads_back_the_same() {
        let mut defs = BTreeMap::new();
        defs.insert(
            "Line".into(),
            Def::Struct(vec![
                ("sku".into(), Shape::U32),
                ("first-name".into(), Shape::Str),
            ]),
        );
        defs.insert(
            "Step".into(),
            Def::Enum(vec![
                ("Start".into(), Variant::Unit),
                ("One".into(), Variant::Newtype(Shape::U8)),
                ("Two".into(), Variant::Tuple(vec![Shape::Bool, Shape::Char])),
                (
                    "Three".into(),
                    Variant::Struct(vec![("at".into(), Shape::I64)]),
                ),
            ]),
        );
        let rec = Recorded {
            name: "Shop".into(),
            version: 7,
            fields: vec![
                (
                    "cart".into(),
                    Shape::Seq(Box::new(Shape::Named("Line".into()))),
                ),
                (
                    "step".into(),
                    Shape::Option(Box::new(Shape::Named("Step".into()))),
                ),
                (
                    "map".into(),
                    Shape::Map(
                        Box::new(Shape::Str),
                        Box::new(Shape::Tuple(vec![Shape::U64, Shape::Unit])),
                    ),
                ),
                ("arr".into(), Shape::Array(Box::new(Shape::F64), 3)),
                ("blob".into(), Shape::Bytes),
                ("any".into(), Shape::Opaque("deserialize_any".into())),
            ],
            defs,
        };
        let text = write(&rec);
        assert_eq!(parse(&text).unwrap(), rec, "{text}");
    }

    #[test]
    fn a_mistake_names_its_line() {
        let err = parse("session S v1 {\n  a: Vec<u32,\n}\n").unwrap_err();
        assert!(err.starts_with("line 2: expected `>`"), "{err}");
    }
}

//! The compile-time half of the recorded stored shapes: when the crate
//! being compiled has a recorded shape for this struct's version
//! (`session-schemas/{Struct}/v{N}.shape`, written by
//! `typed_session::schema::assert_recorded`), a top-level field added,
//! removed or renamed, or a field of plain type (integers, `bool`, `char`,
//! `String`, and `Option`/`Vec`/`Flash` of them) retyped, is a compile
//! error. Nested types, and fields of other types, are the test's job.
//! The file is included in the output, so that editing it rebuilds.
//! `TYPED_SESSION_RECORD=1` at compile time skips the check (the build
//! that re-records).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{GenericArgument, PathArguments, Type};

use crate::ast::Input;
use crate::ctxt::Ctxt;

/// Checks `input` against its recorded file, if there is one; returns the
/// tokens that make the compiler track the file.
pub(crate) fn check(cx: &Ctxt, input: &Input) -> TokenStream {
    let Ok(root) = std::env::var("CARGO_MANIFEST_DIR") else {
        return TokenStream::new();
    };
    let name = input.ident.to_string();
    let version = input.attrs.version.as_ref().map_or(1, |(_, v)| *v);
    let shown = format!("session-schemas/{name}/v{version}.shape");
    let path = std::path::Path::new(&root).join(&shown);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return TokenStream::new();
    };
    let path_str = path.to_string_lossy().into_owned();
    let tracking = quote!(
        const _: &[u8] = ::core::include_bytes!(#path_str);
    );
    let recording = std::env::var("TYPED_SESSION_RECORD")
        .is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    let Some(recorded) = top_level(&text) else {
        return tracking;
    };
    if recording {
        return tracking;
    }
    let current: Vec<(String, &Type, Span)> = input
        .fields
        .iter()
        .filter(|f| f.is_stored())
        .map(|f| (f.key(), f.ty, f.ident.span()))
        .collect();
    let changes = compare(&recorded, &current);
    if changes.is_empty() {
        return tracking;
    }
    let list: Vec<String> = changes.iter().map(|(c, _)| format!("`{c}`")).collect();
    let message = format!(
        "{name}: the stored shape of version {version} changed without a version bump \
         (recorded in {shown}): {}. Fix: bump the version and migrate the stored data \
         (`#[session(version = {next}, migrate(from = {version}, with = ...))]`), then run the \
         tests to record v{next}; or, if the change is compatible (a new field, a widened \
         integer), re-record: `TYPED_SESSION_RECORD=1 cargo test`",
        list.join("; "),
        next = version + 1,
    );
    let span = changes
        .iter()
        .find_map(|(_, span)| *span)
        .unwrap_or_else(|| input.ident.span());
    cx.error_at(span, message);
    tracking
}

/// `(key, type)` of each field in the file's `session Name vN { ... }`
/// block, whitespace removed; `None` when the file does not read as one.
fn top_level(text: &str) -> Option<Vec<(String, String)>> {
    let body: String = text
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before))
        .collect::<Vec<_>>()
        .join("\n");
    let start = body.find("session")?;
    let open = start + body[start..].find('{')?;
    let mut depth = 0usize;
    let mut entries = Vec::new();
    let mut current = String::new();
    for c in body[open + 1..].chars() {
        match c {
            '{' | '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth = depth.checked_sub(1)?,
            '}' if depth == 0 => {
                if !current.trim().is_empty() {
                    entries.push(std::mem::take(&mut current));
                }
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                entries.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    entries
        .iter()
        .map(|e| {
            let (key, ty) = e.split_once(':')?;
            let key = key.trim();
            let key = key
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .unwrap_or(key);
            Some((key.to_owned(), ty.split_whitespace().collect()))
        })
        .collect()
}

type Change = (String, Option<Span>);

fn compare(recorded: &[(String, String)], current: &[(String, &Type, Span)]) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, was) in recorded {
        match current.iter().find(|(k, _, _)| k == key) {
            None => changes.push((format!("{key}: {was} → removed"), None)),
            Some((_, ty, span)) => {
                if let Some(now) = plain(ty)
                    && now != *was
                {
                    changes.push((format!("{key}: {was} → {now}"), Some(*span)));
                }
            }
        }
    }
    for (key, ty, span) in current {
        if !recorded.iter().any(|(k, _)| k == key) {
            let now = plain(ty).unwrap_or_else(|| quote!(#ty).to_string().replace(' ', ""));
            changes.push((format!("{key}: {now} → added"), Some(*span)));
        }
    }
    changes
}

/// The recorded form of a plain type (as the tracer writes it), `None` for
/// any other type (a struct, an alias, a newtype: the test checks those).
fn plain(ty: &Type) -> Option<String> {
    match ty {
        Type::Tuple(t) if t.elems.is_empty() => Some("()".to_owned()),
        Type::Paren(p) => plain(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let seg = p.path.segments.last()?;
            let name = seg.ident.to_string();
            match &seg.arguments {
                PathArguments::None => match name.as_str() {
                    "u8" | "u16" | "u32" | "u64" | "u128" | "i8" | "i16" | "i32" | "i64"
                    | "i128" | "f32" | "f64" | "bool" | "char" | "String" => Some(name),
                    "usize" => Some("u64".to_owned()),
                    "isize" => Some("i64".to_owned()),
                    _ => None,
                },
                PathArguments::AngleBracketed(args) if args.args.len() == 1 => {
                    let GenericArgument::Type(inner) = args.args.first()? else {
                        return None;
                    };
                    let inner = plain(inner)?;
                    match name.as_str() {
                        "Option" => Some(format!("Option<{inner}>")),
                        "Vec" | "Flash" | "VecDeque" => Some(format!("Vec<{inner}>")),
                        "Box" => Some(inner),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\nsession Shop v2 {\n    user_id: Option<u64>,\n    cart: Vec<Line>,\n    \"page-views\": u32,\n    notices: Vec<String>,\n}\n\nstruct Line { sku: u32 }\n";

    fn fields(src: &str) -> syn::FieldsNamed {
        syn::parse_str(src).unwrap()
    }

    fn changes(src: &str) -> Vec<String> {
        let named = fields(src);
        let current: Vec<(String, &Type, Span)> = named
            .named
            .iter()
            .map(|f| {
                let key = f.ident.as_ref().unwrap().to_string().replace('_', "-");
                let key = if key == "page-views" {
                    key
                } else {
                    key.replace('-', "_")
                };
                (key, &f.ty, Span::call_site())
            })
            .collect();
        compare(&top_level(FILE).unwrap(), &current)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    #[test]
    fn reads_the_session_block() {
        let fields = top_level(FILE).unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0], ("user_id".into(), "Option<u64>".into()));
        assert_eq!(fields[2], ("page-views".into(), "u32".into()));
    }

    #[test]
    fn the_recorded_struct_passes() {
        let c = changes(
            "{ user_id: Option<u64>, cart: Vec<crate::Line>, page_views: u32, notices: Flash<String> }",
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn added_removed_and_retyped_fields_are_named() {
        let c = changes("{ user_id: u64, cart: Vec<Line>, page_views: u32, theme: String }");
        assert_eq!(
            c,
            [
                "user_id: Option<u64> → u64",
                "notices: Vec<String> → removed",
                "theme: String → added",
            ]
        );
    }

    #[test]
    fn types_it_cannot_judge_are_left_to_the_test() {
        let c =
            changes("{ user_id: UserId, cart: Cart, page_views: Count, notices: Flash<Notice> }");
        assert!(c.is_empty(), "{c:?}");
    }
}

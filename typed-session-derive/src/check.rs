//! Rules that need several attributes at once. Checks of a single attribute's
//! form happen while parsing, in `attr.rs`. Each rule is one function, called
//! in order from [`check`].

use std::collections::BTreeMap;

use proc_macro2::Span;

use syn::{GenericArgument, PathArguments, Type};

use crate::ast::{Field, Input};
use crate::ctxt::Ctxt;

/// The most fields a session struct may have: change tracking is one bit per field.
pub(crate) const MAX_FIELDS: usize = 128;

pub(crate) fn check(cx: &Ctxt, input: &Input) {
    check_migration_chain(cx, input);
    check_field_count(cx, input);
    for field in &input.fields {
        check_flash(cx, field);
        check_skip(cx, field);
    }
    check_duplicate_keys(cx, input);
    check_reserved_names(cx, input);
}

/// `version = N` needs exactly one `migrate(from = K, ...)` for every K in 1..N.
fn check_migration_chain(cx: &Ctxt, input: &Input) {
    let attrs = &input.attrs;
    let version = attrs.version.as_ref().map_or(1, |(_, v)| *v);
    let mut seen: BTreeMap<u32, ()> = BTreeMap::new();
    for migration in &attrs.migrations {
        if migration.from >= version {
            cx.error_at(
                migration.from_span,
                format_args!(
                    "`migrate(from = {})` must be below the struct's `version = {}`; raise `version` or remove this step",
                    migration.from, version
                ),
            );
        } else if seen.insert(migration.from, ()).is_some() {
            cx.error_at(
                migration.span,
                format_args!(
                    "duplicate `migrate(from = {})`; each version has exactly one migration step, remove one",
                    migration.from
                ),
            );
        }
    }
    let missing: Vec<String> = (1..version)
        .filter(|k| !seen.contains_key(k))
        .map(|k| format!("`migrate(from = {k}, with = ...)`"))
        .collect();
    if !missing.is_empty() {
        let span = attrs
            .version
            .as_ref()
            .map_or_else(|| input.ident.span(), |(span, _)| *span);
        cx.error_at(
            span,
            format_args!(
                "`#[session(version = {})]` needs a migration from every older version; add {}",
                version,
                missing.join(", ")
            ),
        );
    }
}

fn check_field_count(cx: &Ctxt, input: &Input) {
    if input.fields.len() > MAX_FIELDS {
        cx.error_spanned_by(
            input.ident,
            format_args!(
                "a session struct may have at most {MAX_FIELDS} fields; group related fields into nested structs"
            ),
        );
    }
}

/// `flash` belongs exactly on the fields of type `Flash<T>`.
fn check_flash(cx: &Ctxt, field: &Field) {
    let is_flash_type = flash_inner(field.ty).is_some();
    match (field.attrs.flash, is_flash_type) {
        (Some(span), false) => cx.error_at(
            span,
            "`#[session(flash)]` requires a field of type `Flash<T>`; change the type or remove `flash`",
        ),
        (None, true) if field.attrs.skip.is_none() => cx.error_spanned_by(
            field.ty,
            format_args!(
                "field `{}` has type `Flash<T>` but no `#[session(flash)]`; add it",
                field.name()
            ),
        ),
        _ => {}
    }
    if field.attrs.flash.is_some() {
        let conflicts = [
            ("validate", field.attrs.validate.as_ref().map(|(s, _)| *s)),
            (
                "on_invalid",
                field.attrs.on_invalid.as_ref().map(|(s, _)| *s),
            ),
            ("readonly", field.attrs.readonly),
            ("default", field.attrs.default.as_ref().map(|(s, _)| *s)),
        ];
        report_conflicts(cx, &conflicts, |name| {
            format!("`{name}` cannot be combined with `flash`; remove one of them")
        });
    }
}

/// Reports each attribute present in `conflicts` at its own span.
fn report_conflicts(
    cx: &Ctxt,
    conflicts: &[(&str, Option<Span>)],
    message: impl Fn(&str) -> String,
) {
    for (name, span) in conflicts {
        if let Some(span) = span {
            cx.error_at(*span, message(name));
        }
    }
}

/// `skip` fields are never stored, so storage attributes make no sense on them.
fn check_skip(cx: &Ctxt, field: &Field) {
    if field.attrs.skip.is_none() {
        return;
    }
    let conflicts = [
        ("validate", field.attrs.validate.as_ref().map(|(s, _)| *s)),
        (
            "on_invalid",
            field.attrs.on_invalid.as_ref().map(|(s, _)| *s),
        ),
        ("flash", field.attrs.flash),
        ("readonly", field.attrs.readonly),
        ("rename", field.attrs.rename.as_ref().map(|(s, _)| *s)),
    ];
    report_conflicts(cx, &conflicts, |name| {
        format!(
            "`{name}` cannot be combined with `skip`: a skipped field is never stored; remove one of them"
        )
    });
}

/// Two stored fields may not share a key (after `rename`).
fn check_duplicate_keys(cx: &Ctxt, input: &Input) {
    let mut keys: BTreeMap<String, &Field> = BTreeMap::new();
    for field in input.fields.iter().filter(|f| f.is_stored()) {
        let key = field.key();
        if let Some(first) = keys.get(&key) {
            let span = field
                .attrs
                .rename
                .as_ref()
                .map_or_else(|| field.ident.span(), |(s, _)| *s);
            cx.error_at(
                span,
                format_args!(
                    "duplicate session key `{}`: field `{}` already uses it; give one of them another `rename`",
                    key,
                    first.name()
                ),
            );
        } else {
            keys.insert(key, field);
        }
    }
}

/// `Some(T)` when `ty` is written `Flash<T>` (any path ending in `Flash`).
pub(crate) fn flash_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Flash" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// Methods a call on `TypedSession<S>` or `SessionView<S>` finds before the
/// generated accessors (which it reaches through `Deref`): their own
/// methods, the whole-struct accessors of the generated handles, and the
/// methods of prelude traits they implement (`Clone`, and the blanket
/// `ToOwned`, `Into`, `TryInto`). An accessor of one of these names would be
/// silently shadowed. Associated functions without `self` (`detached`,
/// `import`) cannot be called as methods and shadow nothing.
const SHADOWING_METHODS: &[(&str, &str)] = &[
    ("export", "TypedSession"),
    ("id", "TypedSession"),
    ("is_new", "TypedSession"),
    ("is_changed", "TypedSession"),
    ("regenerate", "TypedSession"),
    ("regenerate_clear", "TypedSession"),
    ("regenerate_clear_with", "TypedSession"),
    ("regenerate_with", "TypedSession"),
    ("destroy", "TypedSession"),
    ("set_subject", "TypedSession"),
    ("set_expiry", "TypedSession"),
    ("save", "TypedSession"),
    ("view", "TypedSession"),
    ("expires_at", "TypedSession"),
    ("read", "TypedSession"),
    ("update", "TypedSession"),
    ("snapshot", "TypedSession"),
    ("clone", "Clone"),
    ("clone_from", "Clone"),
    ("to_owned", "ToOwned"),
    ("clone_into", "ToOwned"),
    ("into", "Into"),
    ("try_into", "TryInto"),
];

/// The accessor names `#[derive(SessionSchema)]` generates for a field.
fn accessor_names(field: &crate::ast::Field) -> Vec<String> {
    let name = field.name();
    if field.attrs.flash.is_some() {
        return vec![name];
    }
    vec![
        name.clone(),
        format!("with_{name}"),
        format!("set_{name}"),
        format!("update_{name}"),
        format!("take_{name}"),
    ]
}

/// Whether one of the field's accessors would be shadowed.
pub(crate) fn accessor_shadowed(field: &crate::ast::Field) -> bool {
    accessor_names(field)
        .iter()
        .any(|a| SHADOWING_METHODS.iter().any(|(m, _)| m == a))
}

pub(crate) fn check_reserved_names(cx: &Ctxt, input: &Input) {
    for field in &input.fields {
        let name = field.name();
        let clash = accessor_names(field).into_iter().find_map(|accessor| {
            SHADOWING_METHODS
                .iter()
                .find(|(method, _)| *method == accessor)
                .map(|(method, owner)| (accessor.clone(), *method, *owner))
        });
        if let Some((accessor, method, owner)) = clash {
            cx.error_spanned_by(
                field.ident,
                format_args!(
                    "a session field cannot be named `{name}`: its accessor `{accessor}` would be shadowed by `{owner}::{method}`; rename the field and keep the stored key with `#[session(rename = \"{name}\")]`"
                ),
            );
        }
    }
}

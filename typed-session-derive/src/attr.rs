//! Parsing of `#[session(...)]` attributes into typed values.
//!
//! Simple rules (a value's form, a duplicate key, an unknown key) are checked
//! here, as the attribute is read; rules that need several attributes at once
//! live in `check.rs`.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Path};

use crate::ctxt::Ctxt;
use crate::symbol::*;

/// One attribute value with the span of the key the user wrote, so that a
/// second occurrence can be reported as a duplicate.
pub(crate) struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: Symbol,
    value: Option<(Span, T)>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: Symbol) -> Self {
        Attr {
            cx,
            name,
            value: None,
        }
    }

    fn set(&mut self, span: Span, value: T) {
        if self.value.is_some() {
            self.cx.error_at(
                span,
                format_args!(
                    "duplicate session attribute `{}`; remove one of them",
                    self.name
                ),
            );
        } else {
            self.value = Some((span, value));
        }
    }

    fn get(self) -> Option<(Span, T)> {
        self.value
    }
}

/// `on_invalid = "..."`: what loading does with a stored field that fails to
/// parse or to validate.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum OnInvalid {
    Reset,
    Destroy,
    Reject,
}

/// `migrate(from = K, with = path)`.
pub(crate) struct Migration {
    pub(crate) span: Span,
    pub(crate) from: u32,
    pub(crate) from_span: Span,
    pub(crate) with: Path,
}

/// `default` or `default = path`.
pub(crate) enum DefaultValue {
    Trait,
    Path(Path),
}

pub(crate) struct Container {
    pub(crate) version: Option<(Span, u32)>,
    pub(crate) migrations: Vec<Migration>,
    pub(crate) validate: Option<(Span, Path)>,
    pub(crate) krate: Option<(Span, Path)>,
    /// `handle = "Name"`: the generated handle type's name.
    pub(crate) handle: Option<(Span, syn::Ident)>,
}

pub(crate) struct Field {
    pub(crate) validate: Option<(Span, Path)>,
    pub(crate) on_invalid: Option<(Span, OnInvalid)>,
    pub(crate) flash: Option<Span>,
    pub(crate) readonly: Option<Span>,
    pub(crate) rename: Option<(Span, String)>,
    pub(crate) default: Option<(Span, DefaultValue)>,
    pub(crate) skip: Option<Span>,
}

const CONTAINER_KEYS: &str = "`version`, `migrate`, `validate`, `handle` or `crate`";
const FIELD_KEYS: &str =
    "`validate`, `on_invalid`, `flash`, `readonly`, `rename`, `default` or `skip`";

fn session_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path() == SESSION)
}

fn key_name(meta: &ParseNestedMeta) -> String {
    let path = &meta.path;
    quote::quote!(#path).to_string().replace(' ', "")
}

impl Container {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut version = Attr::none(cx, VERSION);
        let mut validate = Attr::none(cx, VALIDATE);
        let mut krate = Attr::none(cx, CRATE);
        let mut handle = Attr::none(cx, HANDLE);
        let mut migrations = Vec::new();

        for attr in session_attrs(attrs) {
            let result = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                if meta.path == VERSION {
                    // #[session(version = 2)]
                    let lit: LitInt = meta.value()?.parse()?;
                    match lit.base10_parse::<u32>() {
                        Ok(0) => cx.error_spanned_by(
                            &lit,
                            "`#[session(version = 0)]` is invalid: versions start at 1; use `version = 1` or leave it out",
                        ),
                        Ok(n) => version.set(span, n),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            "`#[session(version = ...)]` must be an integer from 1 to 4294967295",
                        ),
                    }
                } else if meta.path == MIGRATE {
                    // #[session(migrate(from = 1, with = path::to::fn))]
                    migrations.push(parse_migration(cx, &meta)?);
                } else if meta.path == VALIDATE {
                    // #[session(validate = path::to::fn)]
                    validate.set(span, meta.value()?.parse::<Path>()?);
                } else if meta.path == CRATE {
                    // #[session(crate = "path::to::typed_session")]
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse::<Path>() {
                        Ok(path) => krate.set(span, path),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            format_args!(
                                "`#[session(crate = {:?})]` is not a path; write it as `crate = \"my_crate::typed_session\"`",
                                lit.value()
                            ),
                        ),
                    }
                } else if meta.path == HANDLE {
                    // #[session(handle = "ShopSession")]
                    let lit: LitStr = meta.value()?.parse()?;
                    match lit.parse::<syn::Ident>() {
                        Ok(ident) => handle.set(span, ident),
                        Err(_) => cx.error_spanned_by(
                            &lit,
                            format_args!(
                                "`#[session(handle = {:?})]` is not a type name; write it as `handle = \"ShopSession\"`",
                                lit.value()
                            ),
                        ),
                    }
                } else if is_field_key(&meta.path) {
                    reject_key(cx, &meta, |key| {
                        format!("`#[session({key})]` belongs on a field, not on the struct; move it to the field it is about")
                    })?;
                } else {
                    reject_key(cx, &meta, |key| format!("unknown session attribute `{key}`; expected {CONTAINER_KEYS}"))?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        Container {
            version: version.get(),
            migrations,
            validate: validate.get(),
            krate: krate.get(),
            handle: handle.get(),
        }
    }
}

fn is_field_key(path: &Path) -> bool {
    path == ON_INVALID
        || path == FLASH
        || path == READONLY
        || path == RENAME
        || path == DEFAULT
        || path == SKIP
}

/// Reports a key that is unknown or misplaced here, then skips its value so
/// that the keys after it are still read.
fn reject_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    message: impl FnOnce(&str) -> String,
) -> syn::Result<()> {
    cx.error_at(meta.path.span(), message(&key_name(meta)));
    skip_value(meta)
}

/// Consumes `= value` or `(...)` after an unknown key so that parsing goes on
/// to report the keys after it.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

fn parse_migration(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Migration> {
    let span = meta.path.span();
    let mut from: Option<(Span, u32)> = None;
    let mut with: Option<Path> = None;
    meta.parse_nested_meta(|inner| {
        if inner.path == FROM {
            let lit: LitInt = inner.value()?.parse()?;
            match lit.base10_parse::<u32>() {
                Ok(0) | Err(_) => cx.error_spanned_by(
                    &lit,
                    "`migrate(from = ...)` must be a version from 1 up to one below `version`",
                ),
                Ok(n) => {
                    if from.is_some() {
                        cx.error_spanned_by(
                            &inner.path,
                            "duplicate `from` in `migrate(...)`; give it once",
                        );
                    }
                    from = Some((lit.span(), n));
                }
            }
        } else if inner.path == WITH {
            let path: Path = inner.value()?.parse()?;
            if with.is_some() {
                cx.error_spanned_by(
                    &inner.path,
                    "duplicate `with` in `migrate(...)`; give it once",
                );
            }
            with = Some(path);
        } else {
            cx.error_spanned_by(
                &inner.path,
                format_args!(
                    "unknown key `{}` in `migrate(...)`; expected `from` or `with`",
                    key_name(&inner)
                ),
            );
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    match (from, with) {
        (Some((from_span, from)), Some(with)) => Ok(Migration {
            span,
            from,
            from_span,
            with,
        }),
        _ => Err(syn::Error::new(
            span,
            "`migrate(...)` needs both keys: write `migrate(from = 1, with = path::to::fn)`",
        )),
    }
}

impl Field {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut validate = Attr::none(cx, VALIDATE);
        let mut on_invalid = Attr::none(cx, ON_INVALID);
        let mut flash = Attr::none(cx, FLASH);
        let mut readonly = Attr::none(cx, READONLY);
        let mut rename = Attr::none(cx, RENAME);
        let mut default = Attr::none(cx, DEFAULT);
        let mut skip = Attr::none(cx, SKIP);

        for attr in session_attrs(attrs) {
            let result = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                if meta.path == VALIDATE {
                    // #[session(validate = path::to::fn)]
                    validate.set(span, meta.value()?.parse::<Path>()?);
                } else if meta.path == ON_INVALID {
                    // #[session(on_invalid = "reset" | "destroy" | "reject")]
                    let lit: LitStr = meta.value()?.parse()?;
                    let policy = match lit.value().as_str() {
                        "reset" => Some(OnInvalid::Reset),
                        "destroy" => Some(OnInvalid::Destroy),
                        "reject" => Some(OnInvalid::Reject),
                        other => {
                            cx.error_spanned_by(
                                &lit,
                                format_args!(
                                    "unknown `on_invalid = {:?}`; expected \"reset\", \"destroy\" or \"reject\"",
                                    other
                                ),
                            );
                            None
                        }
                    };
                    if let Some(policy) = policy {
                        on_invalid.set(span, policy);
                    }
                } else if meta.path == FLASH {
                    // #[session(flash)]
                    flag(cx, &meta, "flash")?;
                    flash.set(span, ());
                } else if meta.path == READONLY {
                    // #[session(readonly)]
                    flag(cx, &meta, "readonly")?;
                    readonly.set(span, ());
                } else if meta.path == SKIP {
                    // #[session(skip)]
                    flag(cx, &meta, "skip")?;
                    skip.set(span, ());
                } else if meta.path == RENAME {
                    // #[session(rename = "key")]
                    let lit: LitStr = meta.value()?.parse()?;
                    if lit.value().is_empty() {
                        cx.error_spanned_by(&lit, "`#[session(rename = \"\")]` is empty; give the key a name");
                    } else {
                        rename.set(span, lit.value());
                    }
                } else if meta.path == DEFAULT {
                    // #[session(default)] or #[session(default = path::to::fn)]
                    if meta.input.peek(syn::Token![=]) {
                        default.set(span, DefaultValue::Path(meta.value()?.parse::<Path>()?));
                    } else {
                        default.set(span, DefaultValue::Trait);
                    }
                } else if meta.path == VERSION || meta.path == MIGRATE || meta.path == CRATE {
                    reject_key(cx, &meta, |key| {
                        format!("`#[session({key})]` belongs on the struct, not on a field; move it above `struct`")
                    })?;
                } else {
                    reject_key(cx, &meta, |key| format!("unknown session attribute `{key}`; expected {FIELD_KEYS}"))?;
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }

        Field {
            validate: validate.get(),
            on_invalid: on_invalid.get(),
            flash: flash.get().map(|(span, ())| span),
            readonly: readonly.get().map(|(span, ())| span),
            rename: rename.get(),
            default: default.get(),
            skip: skip.get().map(|(span, ())| span),
        }
    }
}

/// A flag takes no value: `#[session(flash = true)]` is an error that says so.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, name: &str) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            format_args!("`#[session({name})]` takes no value; write `#[session({name})]`"),
        );
        skip_value(meta)?;
    }
    Ok(())
}

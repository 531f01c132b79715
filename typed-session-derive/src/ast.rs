//! The typed IR of a `#[derive(SessionSchema)]` input, borrowing from syn.

use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr;
use crate::ctxt::Ctxt;

pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) attrs: attr::Container,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: attr::Field,
    /// Position among all fields, used as the field's change-tracking bit.
    pub(crate) index: usize,
    /// The field's doc comments, repeated on its accessors.
    pub(crate) docs: Vec<&'a syn::Attribute>,
}

impl<'a> Field<'a> {
    /// The key under which the field is stored.
    pub(crate) fn key(&self) -> String {
        match &self.attrs.rename {
            Some((_, name)) => name.clone(),
            None => unraw(self.ident),
        }
    }

    pub(crate) fn name(&self) -> String {
        unraw(self.ident)
    }

    pub(crate) fn is_stored(&self) -> bool {
        self.attrs.skip.is_none()
    }
}

pub(crate) fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    match s.strip_prefix("r#") {
        Some(rest) => rest.to_owned(),
        None => s,
    }
}

impl<'a> Input<'a> {
    /// Reads the input; records every problem in `cx` and returns `None` when
    /// the shape is not a struct with named fields.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::Container::from_ast(cx, &input.attrs);
        let data = match &input.data {
            Data::Struct(data) => data,
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`#[derive(SessionSchema)]` does not support enums; wrap the enum in a struct field: `struct MySession { state: MyEnum }`",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "`#[derive(SessionSchema)]` does not support unions; use a struct with named fields",
                );
                return None;
            }
        };
        let named = match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(fields) => {
                cx.error_spanned_by(
                    fields,
                    "`#[derive(SessionSchema)]` does not support tuple structs; give the fields names",
                );
                return None;
            }
            Fields::Unit => {
                cx.error_spanned_by(
                    data.struct_token,
                    "`#[derive(SessionSchema)]` needs named fields; a unit struct has nothing to store",
                );
                return None;
            }
        };
        if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
            cx.error_spanned_by(
                &input.generics,
                "`#[derive(SessionSchema)]` does not support generic parameters; use a concrete struct (a type alias of a generic struct will not work either)",
            );
            return None;
        }
        let fields = named
            .named
            .iter()
            .enumerate()
            .filter_map(|(index, field)| {
                let ident = field.ident.as_ref()?;
                Some(Field {
                    ident,
                    ty: &field.ty,
                    attrs: attr::Field::from_ast(cx, &field.attrs),
                    index,
                    docs: field
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("doc"))
                        .collect(),
                })
            })
            .collect();
        Some(Input {
            ident: &input.ident,
            vis: &input.vis,
            attrs,
            fields,
        })
    }
}

//! Code generation. Everything goes inside `const _: () = { ... };` and
//! reaches the runtime through `::typed_session::__private` (or the path given
//! with `#[session(crate = "...")]`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, LitStr};

use crate::ast::{Field, Input};
use crate::attr::{DefaultValue, OnInvalid};
use crate::ctxt::Ctxt;
use crate::symbol::private_path;
use crate::{check, fallback, recorded};

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = Input::from_syn(&cx, input);
    let mut tracking = TokenStream::new();
    if let Some(parsed) = &parsed {
        check::check(&cx, parsed);
        tracking = recorded::check(&cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => {
            let mut out = expand(&parsed, false);
            out.extend(tracking);
            out
        }
        // An attribute mistake in a struct that could be read: the errors,
        // then the full expansion as far as it is sound, so that every
        // accessor the user calls exists and the compile shows the real
        // mistakes alone (not one "no method" error per use).
        (Err(errors), Some(parsed)) => {
            let mut out = errors.to_compile_error();
            out.extend(expand(&parsed, true));
            out
        }
        (Err(errors), None) => fallback::expand(input, errors),
        // `from_syn` returns `None` only after recording an error.
        (Ok(()), None) => fallback::expand(
            input,
            syn::Error::new(
                Span::call_site(),
                "unsupported input to `#[derive(SessionSchema)]`",
            ),
        ),
    }
}

/// The generated handle and view type names: `{Struct}Handle` and
/// `{Struct}View`, or `{Name}` and `{Name}View` with `#[session(handle = "Name")]`.
pub(crate) fn handle_names(input: &Input) -> (syn::Ident, syn::Ident) {
    match &input.attrs.handle {
        Some((_, name)) => (name.clone(), format_ident!("{}View", name)),
        None => (
            format_ident!("{}Handle", input.ident),
            format_ident!("{}View", input.ident),
        ),
    }
}

/// The generated code; `recovering` after attribute errors, when the
/// accessors of a field whose name clashes are left out (they would only
/// add duplicate-definition errors to the reported clash).
fn expand(input: &Input, recovering: bool) -> TokenStream {
    let ident = input.ident;
    let ts = private_path(input.attrs.krate.as_ref().map(|(_, p)| p));
    let version = input.attrs.version.as_ref().map_or(1, |(_, v)| *v);
    let (handle, view) = handle_names(input);
    let vis = input.vis;

    let metas = input.fields.iter().map(|f| field_meta(f, &ts));
    let fresh_fields = input.fields.iter().map(|f| {
        let name = f.ident;
        let value = default_expr(f, &ts);
        quote!(#name: #value)
    });
    let clone_fields = input.fields.iter().map(|f| {
        let name = f.ident;
        let ty = f.ty;
        quote_spanned!(ty.span()=> #name: <#ty as ::core::clone::Clone>::clone(&self.#name))
    });
    let stored_clone_fields = input.fields.iter().map(|f| {
        let name = f.ident;
        let ty = f.ty;
        if !f.is_stored() {
            let value = default_expr(f, &ts);
            quote!(#name: #value)
        } else if is_flash(f) {
            quote!(#name: #ts::Flash::stored_clone(&self.#name))
        } else {
            quote_spanned!(ty.span()=> #name: <#ty as ::core::clone::Clone>::clone(&self.#name))
        }
    });
    let migrate_arms = input.attrs.migrations.iter().map(|m| {
        let from = m.from;
        let with = &m.with;
        let call = quote_spanned!(with.span()=> #ts::migration_fn(#with));
        quote!(#from => (#call)(data),)
    });
    let decode_arms = input.fields.iter().filter(|f| f.is_stored()).map(|f| {
        let index = f.index;
        let name = f.ident;
        let ty = f.ty;
        let call = quote_spanned!(ty.span()=> #ts::codec::<#ty>().decode(raw));
        quote!(#index => { self.#name = #call?; })
    });
    let encode_arms = input.fields.iter().filter(|f| f.is_stored()).map(|f| {
        let index = f.index;
        let name = f.ident;
        let ty = f.ty;
        let call = quote_spanned!(ty.span()=> #ts::codec::<#ty>().encode(out, &self.#name));
        quote!(#index => #call,)
    });
    let validate_arms = input.fields.iter().filter_map(|f| {
        let (_, path) = f.attrs.validate.as_ref()?;
        let index = f.index;
        let name = f.ident;
        let ty = f.ty;
        let key = f.name();
        let rule = quote_spanned!(path.span()=> #ts::run_field_rule::<#ty, _, _, _>(#key, &self.#name, #path));
        Some(quote!(#index => #rule,))
    });
    let flash_merge_arms = input
        .fields
        .iter()
        .filter(|f| f.is_stored() && is_flash(f))
        .map(|f| {
            let index = f.index;
            let name = f.ident;
            quote!(#index => #ts::merge_flash(&self.#name, theirs, out),)
        });
    // The stored fields' types, for `typed_session::schema`'s recorded
    // shapes (traced from their `Deserialize` impls).
    let field_type_visits = input.fields.iter().filter(|f| f.is_stored()).map(|f| {
        let index = f.index;
        let ty = f.ty;
        quote_spanned!(ty.span()=> #ts::codec::<#ty>().visit(visitor, #index);)
    });
    let reset_arms = input.fields.iter().map(|f| {
        let index = f.index;
        let name = f.ident;
        let value = default_expr(f, &ts);
        quote!(#index => { self.#name = #value; })
    });
    let container_validate = match &input.attrs.validate {
        Some((_, path)) => {
            quote_spanned!(path.span()=> #ts::run_container_rule::<Self, _, _>(self, #path))
        }
        None => quote!(::core::result::Result::Ok(())),
    };

    let accessible = || {
        input
            .fields
            .iter()
            .filter(move |f| !recovering || !check::accessor_shadowed(f))
    };
    let getters = accessible().map(|f| {
        let mut out = getters(f);
        out.extend(view_writers(f, &ts));
        out
    });
    let writers = accessible().map(|f| writers(f, ident, &ts));
    let ident_str = ident.to_string();
    let handle_doc = doc(format!(
        "The accessors of a [`{ident_str}`] session, generated by `#[derive(SessionSchema)]`: \
         `TypedSession<{ident_str}>` dereferences to this type, so its methods are called on the \
         session itself.\n\n\
         For each field `x`: `x()` (a copy), `with_x(|x| ..)` (a borrow), `set_x(value)` and \
         `update_x(|x| ..)` (validated; a failed rule keeps the old value) and `take_x()`; a flash \
         field has `x()` returning its message handle; read-only fields have no setters. The \
         read-only accessors are those of [`{view}`], which this type dereferences to. Name it \
         with `#[session(handle = \"...\")]` on the struct."
    ));
    let view_doc = doc(format!(
        "The read-only accessors of a [`{ident_str}`] session, generated by \
         `#[derive(SessionSchema)]`: `SessionView<{ident_str}>` dereferences to this type (and \
         [`{handle}`] to it)."
    ));

    quote! {
        #handle_doc
        #vis struct #handle(#view);

        #view_doc
        #vis struct #view(#ts::ReadCore<#ident>);

        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, unreachable_pub)]
        const _: () = {
            #[automatically_derived]
            impl #ts::SessionSchema for #ident {
                const VERSION: u32 = #version;
                const NAME: &'static str = #ident_str;
                const FIELDS: &'static [#ts::FieldMeta] = &[#(#metas),*];
                type Handle = #handle;
                type View = #view;

                fn fresh() -> Self {
                    #ident { #(#fresh_fields),* }
                }

                fn clone_schema(&self) -> Self {
                    #ident { #(#clone_fields),* }
                }

                fn clone_stored(&self) -> Self {
                    #ident { #(#stored_clone_fields),* }
                }

                fn migrate(
                    from: u32,
                    data: #ts::Value,
                ) -> ::core::result::Result<#ts::Value, #ts::MigrationError> {
                    match from {
                        #(#migrate_arms)*
                        _ => ::core::result::Result::Err(#ts::MigrationError::missing_step(from, #version)),
                    }
                }

                fn visit_field_types(visitor: &mut dyn #ts::FieldTypes) {
                    let _ = &visitor;
                    #(#field_type_visits)*
                }

                fn decode_field(
                    &mut self,
                    index: usize,
                    raw: &str,
                ) -> ::core::result::Result<(), #ts::JsonError> {
                    match index {
                        #(#decode_arms)*
                        _ => {}
                    }
                    ::core::result::Result::Ok(())
                }

                fn encode_field(
                    &self,
                    index: usize,
                    out: &mut #ts::Vec<u8>,
                ) -> ::core::result::Result<(), #ts::JsonError> {
                    match index {
                        #(#encode_arms)*
                        _ => ::core::result::Result::Ok(()),
                    }
                }

                fn validate_field(&self, index: usize) -> ::core::result::Result<(), #ts::ValidationError> {
                    match index {
                        #(#validate_arms)*
                        _ => ::core::result::Result::Ok(()),
                    }
                }

                fn validate(&self) -> ::core::result::Result<(), #ts::ValidationError> {
                    #container_validate
                }

                fn reset_field(&mut self, index: usize) {
                    match index {
                        #(#reset_arms)*
                        _ => {}
                    }
                }

                fn merge_flash_field(
                    &self,
                    index: usize,
                    theirs: &str,
                    out: &mut #ts::Vec<u8>,
                ) -> ::core::result::Result<bool, #ts::JsonError> {
                    let _ = (theirs, &out);
                    match index {
                        #(#flash_merge_arms)*
                        _ => ::core::result::Result::Ok(false),
                    }
                }
            }


            #[automatically_derived]
            impl #ts::HandleFor<#ident> for #view {
                fn from_core(core: #ts::Core<#ident>) -> Self {
                    #view(#ts::ReadCore::new(core))
                }
                fn core(&self) -> &#ts::Core<#ident> {
                    self.0.__core()
                }
            }

            #[automatically_derived]
            impl #ts::HandleFor<#ident> for #handle {
                fn from_core(core: #ts::Core<#ident>) -> Self {
                    #handle(#view(#ts::ReadCore::new(core)))
                }
                fn core(&self) -> &#ts::Core<#ident> {
                    (self.0).0.__core()
                }
            }

            #[automatically_derived]
            impl ::core::ops::Deref for #handle {
                type Target = #view;
                fn deref(&self) -> &#view {
                    &self.0
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #view {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Debug::fmt(&self.0, f)
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #handle {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Debug::fmt(&self.0, f)
                }
            }

            impl #view {
                #(#getters)*

                #[doc = concat!("Runs `f` with a borrow of the whole `", #ident_str, "`, without cloning.")]
                pub fn read<__R, __F>(&self, f: __F) -> __R
                where
                    __F: ::core::ops::FnOnce(&#ident) -> __R,
                {
                    self.0.read(f)
                }

                #[doc = concat!("Returns a copy of the whole `", #ident_str, "`.")]
                pub fn snapshot(&self) -> #ident {
                    self.0.snapshot()
                }
            }

            impl #handle {
                #(#writers)*

                #[doc = concat!(
                    "Changes the whole `", #ident_str, "` in `f`; every field rule and the struct rule run ",
                    "afterwards, and on failure every change is rolled back. Read-only fields may not change here."
                )]
                pub fn update<__R, __F>(&self, f: __F) -> ::core::result::Result<__R, #ts::ValidationError>
                where
                    __F: ::core::ops::FnOnce(&mut #ident) -> __R,
                {
                    (self.0).0.__core().update(f)
                }
            }
        };
    }
}

fn field_meta(f: &Field, ts: &TokenStream) -> TokenStream {
    let name = f.name();
    let key = f.key();
    let stored = f.is_stored();
    let flash = is_flash(f);
    let readonly = f.attrs.readonly.is_some();
    let policy = match f.attrs.on_invalid.as_ref().map(|(_, p)| *p) {
        None | Some(OnInvalid::Reset) => quote!(Reset),
        Some(OnInvalid::Destroy) => quote!(Destroy),
        Some(OnInvalid::Reject) => quote!(Reject),
    };
    quote! {
        #ts::FieldMeta {
            name: #name,
            key: #key,
            stored: #stored,
            flash: #flash,
            readonly: #readonly,
            on_invalid: #ts::OnInvalid::#policy,
        }
    }
}

fn default_expr(f: &Field, ts: &TokenStream) -> TokenStream {
    let ty = f.ty;
    match f.attrs.default.as_ref().map(|(_, d)| d) {
        Some(DefaultValue::Path(path)) => {
            let check = quote_spanned!(path.span()=> #ts::default_fn::<#ty>(#path));
            quote!((#check)())
        }
        Some(DefaultValue::Trait) | None => {
            quote_spanned!(ty.span()=> #ts::default_value::<#ty>())
        }
    }
}

/// A flash field: marked `#[session(flash)]` and of type `Flash<T>` (the
/// check reports either without the other; recovering code then treats the
/// field as an ordinary one).
fn is_flash(f: &Field) -> bool {
    f.attrs.flash.is_some() && check::flash_inner(f.ty).is_some()
}

/// The field's own doc comment, then a blank line, for each of its accessors.
fn field_docs(f: &Field) -> TokenStream {
    if f.docs.is_empty() {
        return TokenStream::new();
    }
    let docs = &f.docs;
    quote!(#(#docs)* #[doc = ""])
}

fn doc(text: String) -> TokenStream {
    let lit = LitStr::new(&text, Span::call_site());
    quote!(#[doc = #lit])
}

fn getters(f: &Field) -> TokenStream {
    let name = f.ident;
    let ty = f.ty;
    let field = f.name();
    if is_flash(f) {
        // Reading a flash field drains it, which is a write: only the full
        // handle has the flash accessor.
        return TokenStream::new();
    }
    let with = format_ident!("with_{}", field, span = name.span());
    let get_doc = doc(format!("Returns a copy of `{field}`."));
    let with_doc = doc(format!(
        "Runs `f` with a borrow of `{field}`, without cloning."
    ));
    let docs = field_docs(f);
    quote! {
        #docs
        #get_doc
        pub fn #name(&self) -> #ty {
            self.0.read(|s| <#ty as ::core::clone::Clone>::clone(&s.#name))
        }

        #docs
        #with_doc
        pub fn #with<__R, __F>(&self, f: __F) -> __R
        where
            __F: ::core::ops::FnOnce(&#ty) -> __R,
        {
            self.0.read(|s| f(&s.#name))
        }
    }
}

fn writers(f: &Field, ident: &syn::Ident, ts: &TokenStream) -> TokenStream {
    let name = f.ident;
    let ty = f.ty;
    let field = f.name();
    let index = f.index;
    let set = format_ident!("set_{}", field, span = name.span());
    let update = format_ident!("update_{}", field, span = name.span());
    let take = format_ident!("take_{}", field, span = name.span());

    if let Some(inner) = check::flash_inner(ty) {
        let flash_doc = doc(format!(
            "The flash messages of `{field}`: `push` for the next request, `now` for this one, `drain` to read (and consume) them."
        ));
        let blocked = blocked_writers(&set, &update, &take, ty, quote!(#ts::FlashField), ts);
        let docs = field_docs(f);
        return quote! {
            #docs
            #flash_doc
            pub fn #name(&self) -> #ts::FlashHandle<'_, #ident, #inner> {
                (self.0).0.__core().flash(#index, |s: &mut #ident| &mut s.#name)
            }
            #blocked
        };
    }
    if f.attrs.readonly.is_some() {
        return blocked_writers(&set, &update, &take, ty, quote!(#ts::ReadonlyField), ts);
    }

    let default = default_expr(f, ts);
    let set_doc = doc(format!(
        "Replaces `{field}` after validating it; on a validation error the old value stays."
    ));
    let update_doc = doc(format!(
        "Changes `{field}` in place; if the result fails validation the change is rolled back and the error returned."
    ));
    let take_doc = doc(format!("Takes `{field}` out, leaving its default."));
    let docs = field_docs(f);
    quote! {
        #docs
        #set_doc
        pub fn #set(&self, value: #ty) -> ::core::result::Result<(), #ts::ValidationError> {
            (self.0).0.__core().set_field(#index, |s: &mut #ident| &mut s.#name, value)
        }

        #docs
        #update_doc
        pub fn #update<__R, __F>(&self, f: __F) -> ::core::result::Result<__R, #ts::ValidationError>
        where
            __F: ::core::ops::FnOnce(&mut #ty) -> __R,
        {
            (self.0).0.__core().update_field(#index, |s: &mut #ident| &mut s.#name, f)
        }

        #docs
        #take_doc
        pub fn #take(&self) -> #ty {
            (self.0).0.__core().take_field(#index, |s: &mut #ident| &mut s.#name, #default)
        }
    }
}

/// Setters that exist only to fail, at the call, with a message that
/// explains why the field cannot be written this way. They have the real
/// setters' signatures (so `?`, `.unwrap()` and argument counts add no
/// second error); the bound, higher-ranked so that it is checked where the
/// method is called rather than where it is defined, is never satisfied.
/// On the view, every writer of `f` exists only to be refused: a view is
/// read-only, and the compile error says to take `TypedSession` (rather
/// than suggesting a similarly named getter). The handle's own writers
/// come first in method lookup, so `TypedSession` is unaffected.
fn view_writers(f: &Field, ts: &TokenStream) -> TokenStream {
    if is_flash(f) {
        return TokenStream::new();
    }
    let name = f.ident;
    let field = f.name();
    let set = format_ident!("set_{}", field, span = name.span());
    let update = format_ident!("update_{}", field, span = name.span());
    let take = format_ident!("take_{}", field, span = name.span());
    blocked_writers(&set, &update, &take, f.ty, quote!(#ts::ViewIsReadOnly), ts)
}

fn blocked_writers(
    set: &syn::Ident,
    update: &syn::Ident,
    take: &syn::Ident,
    ty: &syn::Type,
    marker: TokenStream,
    ts: &TokenStream,
) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(unreachable_code, unused_variables)]
        pub fn #set(&self, value: #ty) -> ::core::result::Result<(), #ts::ValidationError>
        where
            for<'__a> &'__a Self: #marker,
        {
            match #marker::unreachable(self) {}
        }
        #[doc(hidden)]
        #[allow(unreachable_code, unused_variables)]
        pub fn #update<__R, __F>(&self, f: __F) -> ::core::result::Result<__R, #ts::ValidationError>
        where
            __F: ::core::ops::FnOnce(&mut #ty) -> __R,
            for<'__a> &'__a Self: #marker,
        {
            match #marker::unreachable(self) {}
        }
        #[doc(hidden)]
        #[allow(unreachable_code)]
        pub fn #take(&self) -> #ty
        where
            for<'__a> &'__a Self: #marker,
        {
            match #marker::unreachable(self) {}
        }
    }
}

//! On an input that cannot be read as a session struct (an enum, a tuple
//! struct, generics): the `compile_error!`s plus a stub `SessionSchema`
//! impl, so that the user sees the real mistakes and not a pile of "trait
//! not implemented" errors wherever the type is used as a session. (Attribute
//! mistakes on a readable struct get the full expansion beside the errors:
//! see `expand::derive`.)

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::symbol::private_path;

pub(crate) fn expand(input: &DeriveInput, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let ident = &input.ident;
    let ts = private_path(None);
    // Generic inputs are rejected; a stub for them would only add errors.
    if !input.generics.params.is_empty() {
        return errors;
    }
    quote! {
        #errors
        #[allow(unused_qualifications, unreachable_code)]
        #[automatically_derived]
        impl #ts::SessionSchema for #ident {
            const VERSION: u32 = 1;
            const NAME: &'static str = ::core::stringify!(#ident);
            const FIELDS: &'static [#ts::FieldMeta] = &[];
            type Handle = #ts::StubHandle<Self>;
            type View = #ts::StubHandle<Self>;
            fn fresh() -> Self { ::core::unimplemented!() }
            fn clone_schema(&self) -> Self { ::core::unimplemented!() }
            fn clone_stored(&self) -> Self { ::core::unimplemented!() }
            fn migrate(_: u32, _: #ts::Value) -> ::core::result::Result<#ts::Value, #ts::MigrationError> {
                ::core::unimplemented!()
            }
            fn decode_field(&mut self, _: usize, _: &str) -> ::core::result::Result<(), #ts::JsonError> {
                ::core::unimplemented!()
            }
            fn encode_field(&self, _: usize, _: &mut #ts::Vec<u8>) -> ::core::result::Result<(), #ts::JsonError> {
                ::core::unimplemented!()
            }
            fn validate_field(&self, _: usize) -> ::core::result::Result<(), #ts::ValidationError> {
                ::core::unimplemented!()
            }
            fn validate(&self) -> ::core::result::Result<(), #ts::ValidationError> {
                ::core::unimplemented!()
            }
            fn reset_field(&mut self, _: usize) { ::core::unimplemented!() }
        }
    }
}

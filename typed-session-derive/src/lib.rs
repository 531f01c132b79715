//! The `#[derive(SessionSchema)]` macro of [typed-session](https://docs.rs/typed-session).
//!
//! Use it through the `typed_session` crate, which re-exports it; this crate
//! has no API of its own. The pipeline has one stage per module:
//! `ast` (typed IR) → `attr` (`#[session(...)]` parsing) → `check`
//! (rules across attributes, and `recorded`: the struct against its
//! recorded stored shape) → `expand` (code generation), with `fallback`
//! emitting a stub impl beside the errors.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod recorded;
mod symbol;

use proc_macro::TokenStream;

/// Derives `typed_session::SessionSchema` for a struct with named fields.
///
/// See the `typed_session` crate documentation for the attributes.
#[proc_macro_derive(SessionSchema, attributes(session))]
pub fn derive_session_schema(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

//! Names shared by the attribute parser and the generated code: the
//! keywords of `#[session(...)]`, compared against paths without allocating
//! (as serde_derive's `internals/symbol.rs`), and the runtime's private path.

use std::fmt::{self, Display};
use syn::{Ident, Path};

#[derive(Copy, Clone)]
pub(crate) struct Symbol(pub(crate) &'static str);

pub(crate) const SESSION: Symbol = Symbol("session");
pub(crate) const VERSION: Symbol = Symbol("version");
pub(crate) const MIGRATE: Symbol = Symbol("migrate");
pub(crate) const FROM: Symbol = Symbol("from");
pub(crate) const WITH: Symbol = Symbol("with");
pub(crate) const VALIDATE: Symbol = Symbol("validate");
pub(crate) const CRATE: Symbol = Symbol("crate");
pub(crate) const HANDLE: Symbol = Symbol("handle");
pub(crate) const ON_INVALID: Symbol = Symbol("on_invalid");
pub(crate) const FLASH: Symbol = Symbol("flash");
pub(crate) const READONLY: Symbol = Symbol("readonly");
pub(crate) const RENAME: Symbol = Symbol("rename");
pub(crate) const DEFAULT: Symbol = Symbol("default");
pub(crate) const SKIP: Symbol = Symbol("skip");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.0)
    }
}

/// The path of the runtime's private module, `::typed_session::__private` by default.
pub(crate) fn private_path(krate: Option<&syn::Path>) -> proc_macro2::TokenStream {
    match krate {
        Some(path) => quote::quote!(#path::__private),
        None => quote::quote!(::typed_session::__private),
    }
}

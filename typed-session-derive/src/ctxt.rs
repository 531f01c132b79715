//! Error accumulator: every mistake in one derive is reported in one compile
//! (serde_derive's `Ctxt`).

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use quote::ToTokens;

#[derive(Default)]
pub(crate) struct Ctxt {
    // `None` once `check` has run; the `Drop` guard catches a forgotten check.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanned on `obj`.
    pub(crate) fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<T: Display>(&self, span: proc_macro2::Span, msg: T) {
        self.syn_error(syn::Error::new(span, msg));
    }

    /// Records a `syn::Error` as it is.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        match self.errors.borrow_mut().as_mut() {
            Some(errors) => errors.push(err),
            // A bug in this macro, never a user error: an error reported
            // after `check` would be lost, so it fails loudly (and in tests).
            None => panic!("typed-session-derive: error reported after Ctxt::check(): {err}"),
        }
    }

    /// Consumes the context: `Ok` when nothing was recorded, else all errors combined.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut iter = errors.into_iter();
        let Some(mut combined) = iter.next() else {
            return Ok(());
        };
        for rest in iter {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        // A bug in this macro, never a user error: `check` must always run.
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("typed-session-derive: Ctxt dropped without check()");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "error reported after Ctxt::check()")]
    fn an_error_after_check_is_a_bug_not_a_silence() {
        let cx = Ctxt::new();
        let shared: &Ctxt = &cx;
        let late = syn::Error::new(proc_macro2::Span::call_site(), "late");
        // `check` consumes the context; a copy of the reference cannot exist
        // after it, so the late report is simulated through the inner state.
        shared.errors.borrow_mut().take();
        shared.syn_error(late);
    }
}

// Generated code must not depend on names in scope at the derive site.
#![deny(warnings)]
#![deny(
    unused_qualifications,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    deprecated
)]
//! A crate with strict lints using the derive.
#![allow(dead_code)]

#[allow(non_camel_case_types)]
struct Result;
#[allow(non_camel_case_types)]
struct Option;
#[allow(non_camel_case_types)]
struct Ok;
#[allow(non_camel_case_types)]
struct Err;
#[allow(non_camel_case_types)]
struct Some;
#[allow(non_camel_case_types)]
struct None;
#[allow(non_camel_case_types)]
struct Vec;
#[allow(non_camel_case_types)]
struct String;
#[allow(non_camel_case_types)]
struct Default;
#[allow(non_camel_case_types)]
struct Clone;
mod core {}
mod std {}
mod serde {}
mod serde_json {}

fn check(_: &u32) -> ::core::result::Result<(), &'static str> {
    ::core::result::Result::Ok(())
}

/// A documented session.
#[derive(::typed_session::SessionSchema, Debug)]
pub struct Hygienic {
    #[session(validate = check)]
    n: u32,
    #[session(flash)]
    notes: ::typed_session::Flash<u8>,
    #[session(readonly)]
    user: ::core::option::Option<u64>,
}

fn main() {}

//! Fuzz target: see `typed_session::fuzz::sealed_cookie`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| typed_session::fuzz::sealed_cookie(data));

//! Fuzz target: see `typed_session::fuzz::cookie_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| typed_session::fuzz::cookie_header(data));

//! Fuzz target: see `typed_session::fuzz::session_id`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| typed_session::fuzz::session_id(data));

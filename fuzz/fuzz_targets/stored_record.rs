//! Fuzz target: stored records of a schema with every attribute kind
//! (`typed_session::fuzz::Everything`), decoded as a store would hand them
//! to the runtime.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    typed_session::fuzz::stored_record::<typed_session::fuzz::Everything>(data);
});

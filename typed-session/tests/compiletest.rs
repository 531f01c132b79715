//! Compile-time guarantees: every `ui/fail` file must fail with the pinned
//! `.stderr` (rustc 1.95, the workspace's one toolchain; regenerate with
//! `TRYBUILD=overwrite cargo test -p typed-session --test compiletest`), and
//! every `ui/pass` file must compile.

#![allow(clippy::unwrap_used)]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

//! The `SessionStore` contract, checked against every built-in store and
//! the documented custom one (one conformance suite, instantiated per
//! store), plus each store's own behaviour: one module per store.

#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod custom;
#[cfg(feature = "file-store")]
mod file;
mod memory;
#[cfg(feature = "redis-store")]
mod redis;

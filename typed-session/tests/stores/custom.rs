//! The custom store of the `typed_session::store` module docs (the very
//! text the docs show), checked against the store contract.

include!("../../docs/custom_store.rs");

store_suite!(documented_custom_store, MapStore::default());

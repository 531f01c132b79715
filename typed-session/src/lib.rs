//! Typed, validated, versioned sessions for axum.
//!
//! The session is a struct. `#[derive(SessionSchema)]` gives it accessors,
//! validation on every write and load, versioned migrations of stored data
//! and flash messages; [`TypedSession<S>`] extracts it in a handler;
//! [`SessionLayer`] loads it from a [`store`] and saves what changed.
//!
//! ```
//! use axum::{Router, routing::post};
//! use serde::{Deserialize, Serialize};
//! use typed_session::{Flash, SessionLayer, SessionSchema, TypedSession, ValidationError};
//! use typed_session::store::MemoryStore;
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Item { sku: u32, qty: u32 }
//!
//! fn at_most_ten(cart: &[Item]) -> Result<(), String> {
//!     if cart.len() <= 10 { Ok(()) } else { Err("at most 10 items".into()) }
//! }
//!
//! #[derive(SessionSchema)]
//! struct Shop {
//!     #[session(readonly)]
//!     user_id: Option<u64>,
//!     #[session(validate = at_most_ten)]
//!     cart: Vec<Item>,
//!     #[session(flash)]
//!     notices: Flash<String>,
//! }
//!
//! async fn add(session: TypedSession<Shop>) -> Result<String, ValidationError> {
//!     let len = session.update_cart(|c| { c.push(Item { sku: 1, qty: 1 }); c.len() })?;
//!     session.notices().push("added".into());
//!     Ok(format!("{len} items"))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/cart", post(add))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! # let _ = app;
//! ```
//!
//! # Backends
//!
//! Server-side stores keep the record and send only a (signed) id:
//! [`store::MemoryStore`], `FileStore` (feature `file-store`), `RedisStore`
//! (feature `redis-store`, one node or a Cluster), or your own
//! [`store::SessionStore`]. Cookie mode (feature `cookie-store`,
//! `SessionLayer::encrypted_cookie`) seals the whole session in the cookie
//! instead. [`RevocationList`] ends every session of one user on any of them.
//!
//! # The generated accessors
//!
//! The derive emits two named types beside the struct, with the struct's
//! visibility: `{Struct}Handle`, the accessors that `TypedSession<Struct>`
//! dereferences to, and `{Struct}View`, the read-only ones behind
//! `SessionView<Struct>`. `cargo doc` lists them with every accessor and
//! each field's doc comment; `#[session(handle = "Name")]` renames them
//! (`Name`, `NameView`). Code can name them, for helpers that take any
//! session of that struct:
//!
//! ```
//! use typed_session::{SessionSchema, TypedSession};
//!
//! #[derive(SessionSchema)]
//! struct Cart {
//!     /// The products in the cart, by id.
//!     items: Vec<u32>,
//! }
//!
//! fn count(cart: &CartHandle) -> usize {
//!     cart.with_items(|items| items.len())
//! }
//!
//! let session = TypedSession::detached(Cart { items: vec![7, 9] });
//! assert_eq!(count(&session), 2);
//! ```
//!
//! # Attributes
//!
//! On the struct: `version = N`, `migrate(from = K, with = path)` for every
//! K below N, `validate = path` (a `fn(&Self) -> Result<(), E: Display>`),
//! `handle = "Name"` (the generated types' names), `crate = "path"`. On a field: `validate = path` (`fn(&T) -> Result<(), E:
//! Display>`, or the borrowed form: `fn(&[T])` for `Vec<T>`, `fn(&str)` for
//! `String`), `on_invalid = "reset" | "destroy" | "reject"` (what loading
//! does with a stored value that fails to parse or validate; `reset` by
//! default), `flash` (on `Flash<T>` fields), `readonly` (set only at
//! creation or in [`TypedSession::regenerate_with`]), `rename = "key"`,
//! `default` / `default = path`, `skip` (never stored).
//!
//! A migration function takes the stored fields of version K as a JSON
//! object (field keys to values, as version K wrote them) and returns them
//! as version K + 1 stores them: `fn(serde_json::Value) ->
//! Result<serde_json::Value, MigrationError>`, with `serde_json` re-exported
//! as [`typed_session::serde_json`](crate::serde_json). Loading runs the
//! steps in order and writes the upgraded record back.
//!
//! A write a rule refuses is a [`ValidationError`], answered `422` with the
//! field name and a generic reason (the rule's message stays server-side);
//! a stored value that fails is handled by its `on_invalid` policy, and
//! `reject` answers `400 invalid session`.

#![cfg_attr(docsrs, feature(doc_cfg))]

// One concern per module; internal imports run one way (see the README's
// "Code layout"): state <- access/persist/flash <- handle <- extract <- layer.
mod access;
mod backend;
mod config;
mod cookies;
mod envelope;
mod error;
mod expiry;
mod extract;
mod flash;
mod frame;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
mod handle;
mod id;
mod keys;
mod layer;
mod persist;
mod rejection;
mod revoke;
mod runtime;
mod service;
mod state;
mod telemetry;

pub mod clock;
pub mod schema;
pub mod store;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{
    CookieModeConfig, FileConfig, FileDurability, MemoryConfig, RedisConfig, SessionConfig,
    StoreConfig,
};
pub use cookies::SameSite;
pub use error::{
    ConfigError, Error, FieldError, LoadError, MigrationError, StoreError, ValidationError,
};
pub use flash::{Flash, FlashHandle, MAX_PENDING_FLASH};
pub use handle::{SessionView, TypedSession};
pub use id::{SessionId, SessionKey};
pub use keys::{MIN_KEY_BYTES, SigningKey};
pub use layer::SessionLayer;
pub use rejection::SessionRejection;
pub use revoke::RevocationList;
pub use runtime::NewerSchema;
pub use schema::{OnInvalid, SessionSchema};
/// The JSON crate the stored form and migrations use, re-exported so that a
/// migration function (`fn(serde_json::Value) -> Result<serde_json::Value,
/// MigrationError>`) needs no dependency of its own.
pub use serde_json;
pub use service::SessionService;

/// Derives [`SessionSchema`](trait@SessionSchema) for a struct with named fields.
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use typed_session_derive::SessionSchema;
